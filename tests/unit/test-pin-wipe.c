/*
 * No PIN left in freed memory by the request parser (agent side) or by the
 * printing of a request (client side): every block the process frees while a
 * request with a PIN is parsed or printed and released (json-c's buffers
 * included, and the old blocks realloc() lets go of) is searched for any
 * piece of the PIN before it goes back to malloc.
 *
 * This program replaces free() and realloc() for the whole process (json-c's
 * calls too) and hands the blocks to glibc's __libc_free; built with
 * AddressSanitizer, or run under valgrind (whose allocators that would not
 * know), it skips (77).
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
#include "../mock/free-watch.h"

#define PIN "S3cr3t-4711"
/* Longer than json-c's first buffers (32 bytes), which then grow by realloc(). */
#define LONG_PIN "Lq7#Vw2&Zr9!Kp4%Tx6*Hm3^Bn8@Jd5(Fs1)Gc0_Yv+Ue=Wa;Xo:Ni<Rb>Ql?Mz~"

static const char *watch;	/* while set, freed blocks are searched for pieces of it */
static int seen;		/* freed blocks that held a piece */

#define PIECE 6			/* the shortest piece looked for */

static int
holds_piece(const void *p, size_t n)
{
	size_t wl = strlen(watch);

	for (size_t i = 0; i + PIECE <= wl; i++)
		if (memmem(p, n, watch + i, PIECE) != NULL)
			return 1;
	return 0;
}

static void
freed_block(const void *p, size_t n)
{
	if (watch != NULL && holds_piece(p, n))
		seen++;
}

/* What the agent does with a request: parse, wipe its PIN arguments, free. */
static int
parse_and_release_pin(const char *line, const char *pin)
{
	const struct sc_op_spec *op;
	json_object *req = NULL;
	char why[256];
	int64_t id;
	int r;

	seen = 0;
	watch = pin;
	r = sc_proto_parse_request(line, strlen(line), &req, &id, &op, why, sizeof(why));
	if (req != NULL)
		sc_proto_wipe_pins(req);
	json_object_put(req);
	watch = NULL;
	return r;
}

static int
parse_and_release(const char *line)
{
	return parse_and_release_pin(line, PIN);
}

/* The instrument works: a freed copy of the PIN is seen. */
static void
test_instrument(void **state)
{
	void (*volatile release)(void *) = free;	/* not a pair the compiler may drop */
	/* Not the PIN of the other tests: the freed block keeps it. */
	char *copy = strdup("before instrument-check after");

	(void)state;
	seen = 0;
	watch = "instrument-check";
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

/* A PIN change carries two PINs, an unblock the SO PIN and the new PIN. */
static void
test_pin_change(void **state)
{
	(void)state;
	assert_int_equal(parse_and_release("{\"id\":4,\"op\":\"pin-change\",\"token\":\"demo\","
	    "\"pin\":\"123456\",\"new_pin\":\"" PIN "\"}"), SC_OK);
	assert_int_equal(seen, 0);
	assert_int_equal(parse_and_release("{\"id\":5,\"op\":\"pin-unblock\",\"token\":\"demo\","
	    "\"so_pin\":\"12345678\",\"new_pin\":\"" PIN "\"}"), SC_OK);
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

/* A PIN longer than json-c's first buffer: no copy of the part read before it grew. */
static void
test_long_pin(void **state)
{
	char line[1024], pin[201];

	(void)state;
	assert_int_equal(parse_and_release_pin("{\"id\":6,\"op\":\"login\",\"token\":\"demo\",\"pin\":\""
	    LONG_PIN "\"}", LONG_PIN), SC_OK);
	assert_int_equal(seen, 0);
	/* 200 bytes, as long as a PIN the CLI reads. */
	for (size_t i = 0; i < 200; i++)
		pin[i] = LONG_PIN[i % (sizeof(LONG_PIN) - 1)] + (char)(i / (sizeof(LONG_PIN) - 1));
	pin[200] = '\0';
	for (size_t i = 0; i < 200; i++)
		if (pin[i] == '"' || pin[i] == '\\' || (unsigned char)pin[i] >= 0x7f)
			pin[i] = 'k';
	snprintf(line, sizeof(line), "{\"id\":7,\"op\":\"sign\",\"ref\":\"carol\",\"alg\":"
	    "\"ecdsa-sha256\",\"data\":\"AA==\",\"pin\":\"%s\"}", pin);
	assert_int_equal(parse_and_release_pin(line, pin), SC_OK);
	assert_int_equal(seen, 0);
}

/*
 * What the client library does: print a request carrying a PIN, send it,
 * wipe, free; the agent's parser reads the text back.
 */
static void
print_and_release(const char *op, const char *pin_name, const char *pin)
{
	json_object *req = json_object_new_object(), *back = NULL, *v;
	const struct sc_op_spec *spec;
	const char *text;
	char why[256];
	int64_t id;

	seen = 0;
	watch = pin;
	if (strcmp(op, "init-token") == 0) {
		json_object_object_add(req, "label", json_object_new_string("vsc1"));
		json_object_object_add(req, "pin", json_object_new_string("123456"));
	} else
		json_object_object_add(req, "token", json_object_new_string("demo"));
	if (strcmp(op, "pin-change") == 0)
		json_object_object_add(req, "pin", json_object_new_string("123456"));
	json_object_object_add(req, pin_name, json_object_new_string(pin));
	json_object_object_add(req, "id", json_object_new_int64(8));
	json_object_object_add(req, "op", json_object_new_string(op));
	text = sc_proto_text(req);
	/* The text is the request, PIN included. */
	assert_int_equal(sc_proto_parse_request(text, strlen(text), &back, &id, &spec, why, sizeof(why)), SC_OK);
	assert_int_equal(id, 8);
	assert_string_equal(spec->name, op);
	assert_true(json_object_object_get_ex(back, pin_name, &v));
	assert_string_equal(json_object_get_string(v), pin);
	sc_proto_wipe_pins(back);
	json_object_put(back);
	explicit_bzero((char *)text, strlen(text));
	sc_proto_wipe_pins(req);
	json_object_put(req);
	watch = NULL;
}

static void
test_client_print(void **state)
{
	(void)state;
	print_and_release("login", "pin", PIN);
	assert_int_equal(seen, 0);
	print_and_release("login", "pin", LONG_PIN);
	assert_int_equal(seen, 0);
	print_and_release("init-token", "so_pin", LONG_PIN LONG_PIN);
	assert_int_equal(seen, 0);
	print_and_release("pin-change", "new_pin", LONG_PIN);
	assert_int_equal(seen, 0);
	/* Characters JSON escapes make the printed PIN longer than the PIN. */
	print_and_release("login", "pin", "\"q\\u\"o\\t\"e\"\t\x01\x02\x03\x04\x05\x06/x/y/z");
	assert_int_equal(seen, 0);
}

/* scagent_call()'s arguments come as text: parsed without leaving the PIN behind. */
static void
test_parse_text(void **state)
{
	json_object *o, *v;

	(void)state;
	seen = 0;
	watch = LONG_PIN;
	assert_non_null(o = sc_proto_parse_text("{\"label\":\"vsc1\",\"so_pin\":\"" LONG_PIN
	    "\",\"pin\":\"" LONG_PIN "\"}"));
	assert_true(json_object_object_get_ex(o, "so_pin", &v));
	assert_string_equal(json_object_get_string(v), LONG_PIN);
	sc_proto_wipe_pins(o);
	json_object_put(o);
	/* Cut off after the PIN: refused, and wiped all the same. */
	assert_null(sc_proto_parse_text("{\"label\":\"vsc1\",\"pin\":\"" LONG_PIN "\",\"so_pin\":"));
	assert_null(sc_proto_parse_text("{\"pin\":\"" LONG_PIN "\"} trailing"));
	watch = NULL;
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
		cmocka_unit_test(test_pin_change),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_long_pin),
		cmocka_unit_test(test_client_print),
		cmocka_unit_test(test_parse_text),
	};
	const char *pre = getenv("LD_PRELOAD");

	if (pre != NULL && strstr(pre, "vgpreload") != NULL) {
		puts("# skip: valgrind replaces the allocator this test replaces free() of");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
