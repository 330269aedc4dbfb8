/*
 * No PIN left in freed memory by the request parser: every block the process
 * frees while a request with a PIN is parsed and released (json-c's tokener
 * buffer included) is searched for the PIN before it goes back to malloc.
 *
 * This program replaces free() for the whole process (json-c's calls too) and
 * hands the blocks to glibc's __libc_free; built with AddressSanitizer, or run
 * under valgrind (whose allocators that would not know), it skips (77).
 */
#include "config.h"

#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "common/err.h"
#include "proto/proto.h"

#if defined(__SANITIZE_ADDRESS__)
#include <stdio.h>

int
main(void)
{
	puts("# skip: ASan replaces the allocator this test replaces free() of");
	return 77;
}
#else

#define PIN "S3cr3t-4711"

extern void __libc_free(void *);

static const char *watch;	/* while set, freed blocks are searched for it */
static int seen;		/* freed blocks that held it */

/* Exported (the build hides symbols by default), so that json-c's frees come here too. */
__attribute__((visibility("default"))) void
free(void *p)
{
	if (p != NULL && watch != NULL && memmem(p, malloc_usable_size(p), watch, strlen(watch)) != NULL)
		seen++;
	__libc_free(p);
}

/* What the agent does with a request: parse, wipe its PIN arguments, free. */
static int
parse_and_release(const char *line)
{
	const struct sc_op_spec *op;
	json_object *req = NULL;
	char why[256];
	int64_t id;
	int r;

	seen = 0;
	watch = PIN;
	r = sc_proto_parse_request(line, strlen(line), &req, &id, &op, why, sizeof(why));
	if (req != NULL)
		sc_proto_wipe_pins(req);
	json_object_put(req);
	watch = NULL;
	return r;
}

/* The instrument works: a freed copy of the PIN is seen. */
static void
test_instrument(void **state)
{
	void (*volatile release)(void *) = free;	/* not a pair the compiler may drop */
	char *copy = strdup("before " PIN " after");

	(void)state;
	seen = 0;
	watch = PIN;
	release(copy);
	watch = NULL;
	assert_int_equal(seen, 1);
}

static void
test_login(void **state)
{
	(void)state;
	assert_int_equal(parse_and_release("{\"id\":1,\"op\":\"login\",\"token\":\"demo\",\"pin\":\"" PIN "\"}"),
	    SC_OK);
	assert_int_equal(seen, 0);
}

static void
test_sign_with_pin(void **state)
{
	(void)state;
	assert_int_equal(parse_and_release("{\"id\":2,\"op\":\"sign\",\"ref\":\"carol\",\"alg\":"
	    "\"rsa-pkcs1-sha256\",\"digest\":\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\","
	    "\"pin\":\"" PIN "\"}"), SC_OK);
	assert_int_equal(seen, 0);
}

static void
test_init_token(void **state)
{
	(void)state;
	assert_int_equal(parse_and_release("{\"id\":3,\"op\":\"init-token\",\"label\":\"vsc1\","
	    "\"so_pin\":\"" PIN "\",\"pin\":\"123456\"}"), SC_OK);
	assert_int_equal(seen, 0);
}

/* A refused request is freed inside the parser: its PIN is wiped there. */
static void
test_refused(void **state)
{
	(void)state;
	assert_int_equal(parse_and_release("{\"id\":4,\"op\":\"login\",\"token\":\"demo\",\"pin\":\"" PIN
	    "\",\"bogus\":1}"), SC_ERR_INVALID);
	assert_int_equal(seen, 0);
	assert_int_not_equal(parse_and_release("{\"id\":5,\"op\":\"login\",\"pin\":\"" PIN "\",\"token\":"),
	    SC_OK);
	assert_int_equal(seen, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_instrument),
		cmocka_unit_test(test_login),
		cmocka_unit_test(test_sign_with_pin),
		cmocka_unit_test(test_init_token),
		cmocka_unit_test(test_refused),
	};
	const char *pre = getenv("LD_PRELOAD");

	if (pre != NULL && strstr(pre, "vgpreload") != NULL) {
		puts("# skip: valgrind replaces the allocator this test replaces free() of");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
