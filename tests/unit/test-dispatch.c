/*
 * The agent's dispatcher (src/daemon) in-process: a server on a token store
 * with the SoftHSM tokens of tests/unit/softhsm-fixture.sh, each test's
 * client one end of a socketpair the server serves as an accepted
 * connection (sc_server_add_client). Requests go in as the bytes a client
 * sends; the answers are read as lines and parsed as JSON.
 *
 * Environment: TOP_SRCDIR, TOP_BUILDDIR (make check sets them).
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/evp.h>

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/server.h"
#include "token/token.h"
#include "softhsm-fixture.h"

#define PIN "123456"
#define HELLO "{\"id\":0,\"op\":\"hello\",\"version\":1}\n"
#define ANSWER_WAIT_MS 20000

static struct fixture fx;
static char audit_file[512];
static struct sc_store *store;
static struct sc_server *srv;
static pthread_t srv_thread;

static const unsigned char data[] = "what the dispatcher's test signs";

/* ------------------------------------------------------------------ */
/* A client */

struct conn {
	int fd;
	char buf[1 << 16];
	size_t len;
};

static void *
server_main(void *arg)
{
	sc_server_run(arg);
	return NULL;
}

static int
setup_conn(void **state)
{
	struct conn *c = calloc(1, sizeof(*c));
	int sv[2];

	assert_non_null(c);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	c->fd = sv[0];
	assert_int_equal(sc_server_add_client(srv, sv[1], NULL), SC_OK);
	*state = c;
	return 0;
}

static int
teardown_conn(void **state)
{
	struct conn *c = *state;

	close(c->fd);
	free(c);
	return 0;
}

static void
send_raw(struct conn *c, const void *p, size_t n)
{
	size_t off = 0;

	while (off < n) {
		ssize_t w = send(c->fd, (const char *)p + off, n - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		assert_true(w > 0);
		off += (size_t)w;
	}
}

/* The next answer line as JSON (new reference), or NULL when the agent closed the connection. */
static json_object *
recv_json(struct conn *c)
{
	char *nl;

	while ((nl = memchr(c->buf, '\n', c->len)) == NULL) {
		struct pollfd p = { c->fd, POLLIN, 0 };
		ssize_t n;

		assert_true(c->len < sizeof(c->buf));
		assert_int_equal(poll(&p, 1, ANSWER_WAIT_MS), 1);
		n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		/* closed (reset: the agent closed with bytes of ours unread) */
		if ((n == 0 || (n < 0 && errno == ECONNRESET)) && c->len == 0)
			return NULL;
		assert_true(n > 0);
		c->len += (size_t)n;
	}
	*nl = '\0';
	json_tokener *tok = json_tokener_new();
	json_object *j;

	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	j = json_tokener_parse_ex(tok, c->buf, (int)(nl - c->buf));
	if (j == NULL || json_tokener_get_error(tok) != json_tokener_success)
		fail_msg("the agent's answer is not JSON: %s", c->buf);
	json_tokener_free(tok);
	c->len -= (size_t)(nl + 1 - c->buf);
	memmove(c->buf, nl + 1, c->len);
	return j;
}

/* One request line (newline added) and its answer. */
static json_object *
ask(struct conn *c, const char *line)
{
	send_raw(c, line, strlen(line));
	send_raw(c, "\n", 1);
	return recv_json(c);
}

static void
hello(struct conn *c)
{
	json_object *a;

	send_raw(c, HELLO, strlen(HELLO));
	a = recv_json(c);
	assert_non_null(a);
	json_object_put(a);
}

/* The member at a dotted path ("error.code"), or NULL; borrowed from j. */
static json_object *
at(json_object *j, const char *path)
{
	char buf[128], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *k = strtok_r(buf, ".", &save); k != NULL && j != NULL; k = strtok_r(NULL, ".", &save))
		if (!json_object_object_get_ex(j, k, &j))
			j = NULL;
	return j;
}

static const char *
str_at(json_object *j, const char *path)
{
	json_object *v = at(j, path);

	return v != NULL && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* An answer: ok true with id; frees it unless keep. */
static json_object *
expect_ok(json_object *a, int64_t id, int keep)
{
	assert_non_null(a);
	if (!json_object_get_boolean(at(a, "ok")))
		fail_msg("expected ok, got %s", json_object_to_json_string(a));
	assert_int_equal(json_object_get_int64(at(a, "id")), id);
	if (keep)
		return a;
	json_object_put(a);
	return NULL;
}

/* An answer: ok false, code, id (-1: null), message containing msg (may be NULL). */
static void
expect_err(json_object *a, int64_t id, const char *code, const char *msg)
{
	const char *m;

	assert_non_null(a);
	if (json_object_get_boolean(at(a, "ok")) || str_at(a, "error.code") == NULL ||
	    strcmp(str_at(a, "error.code"), code) != 0)
		fail_msg("expected error %s, got %s", code, json_object_to_json_string(a));
	if (id < 0)
		assert_true(json_object_object_get_ex(a, "id", NULL) && at(a, "id") == NULL);
	else
		assert_int_equal(json_object_get_int64(at(a, "id")), id);
	m = str_at(a, "error.message");
	assert_non_null(m);
	assert_true(strlen(m) > 0 && strchr(m, '\n') == NULL);
	if (msg != NULL && strstr(m, msg) == NULL)
		fail_msg("message \"%s\" does not say \"%s\"", m, msg);
	json_object_put(a);
}

/* ------------------------------------------------------------------ */
/* Tests */

static void
test_hello_first(void **state)
{
	struct conn *c = *state;
	json_object *a, *ops;
	int has_sign = 0;

	expect_err(ask(c, "{\"id\":1,\"op\":\"list\"}"), 1, "protocol", "hello");
	expect_err(ask(c, "{\"id\":2,\"op\":\"hello\",\"version\":2}"), 2, "unsupported",
	    "protocol version 2 is not supported");
	/* still no session after a failed hello */
	expect_err(ask(c, "{\"id\":3,\"op\":\"status\"}"), 3, "protocol", "hello");
	a = expect_ok(ask(c, "{\"id\":4,\"op\":\"hello\",\"version\":1,\"client\":\"test-dispatch\"}"), 4, 1);
	assert_int_equal(json_object_get_int(at(a, "result.protocol")), 1);
	assert_non_null(strstr(str_at(a, "result.agent"), "scagentd"));
	ops = at(a, "result.ops");
	assert_true(json_object_is_type(ops, json_type_array));
	for (size_t i = 0; i < json_object_array_length(ops); i++)
		if (strcmp(json_object_get_string(json_object_array_get_idx(ops, i)), "sign") == 0)
			has_sign = 1;
	assert_true(has_sign);
	json_object_put(a);
	a = expect_ok(ask(c, "{\"id\":5,\"op\":\"status\"}"), 5, 1);
	assert_int_equal(json_object_get_int64(at(a, "result.pid")), (int64_t)getpid());
	assert_int_equal(json_object_get_int(at(a, "result.modules")), 1);
	json_object_put(a);
}

static void
test_list_find(void **state)
{
	struct conn *c = *state;
	json_object *a, *toks;
	char labels[64] = "";

	hello(c);
	a = expect_ok(ask(c, "{\"id\":1,\"op\":\"list\"}"), 1, 1);
	toks = at(a, "result.tokens");
	assert_int_equal(json_object_array_length(toks), 2);
	for (size_t i = 0; i < 2; i++) {
		strcat(labels, str_at(json_object_array_get_idx(toks, i), "label"));
		strcat(labels, " ");
	}
	assert_true(strcmp(labels, "card1 card2 ") == 0 || strcmp(labels, "card2 card1 ") == 0);
	json_object_put(a);

	a = expect_ok(ask(c, "{\"id\":2,\"op\":\"find\",\"ref\":\"bob\"}"), 2, 1);
	assert_string_equal(str_at(a, "result.token"), "card1");
	assert_string_equal(str_at(a, "result.key.type"), "ec");
	assert_int_equal(strlen(str_at(a, "result.sha256")), 64);
	json_object_put(a);
	expect_err(ask(c, "{\"id\":3,\"op\":\"find\",\"ref\":\"nobody\"}"), 3, "not-found", "alice");
	/* a pkcs11: URI that is not one */
	expect_err(ask(c, "{\"id\":4,\"op\":\"find\",\"ref\":\"pkcs11:object=%zz\"}"), 4, "invalid", NULL);
}

/* SC_OK when sig verifies over data with the certificate DER of b64der. */
static int
verify(const char *b64der, const char *alg_name, const unsigned char *sig, size_t siglen)
{
	unsigned char *der = NULL;
	size_t derlen = 0;
	int r;

	assert_int_equal(sc_unb64(b64der, &der, &derlen), SC_OK);
	r = fixture_verify(der, derlen, sc_alg_parse(alg_name), data, sizeof(data), sig, siglen) == 0 ?
	    SC_OK : SC_ERR_BAD_SIGNATURE;
	free(der);
	return r;
}

/* sign ref with alg over data (or its digest) on c; asserts the signature verifies. */
static void
sign_ok(struct conn *c, int64_t id, const char *ref, const char *alg, int as_digest)
{
	char *b64 = NULL, line[1024], *cert_b64;
	unsigned char md[EVP_MAX_MD_SIZE], *sig = NULL;
	unsigned int mdlen = 0;
	size_t siglen = 0;
	json_object *a, *g;

	if (as_digest) {
		assert_int_equal(EVP_Digest(data, sizeof(data), md, &mdlen, sc_alg_md(sc_alg_parse(alg)), NULL), 1);
		b64 = sc_b64(md, mdlen);
	} else
		b64 = sc_b64(data, sizeof(data));
	snprintf(line, sizeof(line), "{\"id\":%lld,\"op\":\"sign\",\"ref\":\"%s\",\"alg\":\"%s\",\"%s\":\"%s\"}",
	    (long long)id, ref, alg, as_digest ? "digest" : "data", b64);
	free(b64);
	a = expect_ok(ask(c, line), id, 1);
	assert_int_equal(sc_unb64(str_at(a, "result.signature"), &sig, &siglen), SC_OK);
	json_object_put(a);
	snprintf(line, sizeof(line), "{\"id\":%lld,\"op\":\"get-cert\",\"ref\":\"%s\"}", (long long)id + 1000, ref);
	g = expect_ok(ask(c, line), id + 1000, 1);
	assert_non_null(cert_b64 = strdup(str_at(g, "result.der")));
	json_object_put(g);
	assert_int_equal(verify(cert_b64, alg, sig, siglen), SC_OK);
	free(cert_b64);
	free(sig);
}

/* The lines of the audit log that contain every word given. */
static int
audit_count(const char *w1, const char *w2)
{
	FILE *fp = fopen(audit_file, "r");
	char line[2048];
	int n = 0;

	if (fp == NULL)
		return 0;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strstr(line, w1) != NULL && (w2 == NULL || strstr(line, w2) != NULL))
			n++;
	fclose(fp);
	return n;
}

static void
test_login_sign_logout(void **state)
{
	struct conn *c = *state;
	char pid[48], *b64 = sc_b64(data, sizeof(data)), line[512];
	json_object *a;
	int signs;

	snprintf(pid, sizeof(pid), " sign pid=%ld ", (long)getpid());
	hello(c);
	snprintf(line, sizeof(line), "{\"id\":1,\"op\":\"sign\",\"ref\":\"alice\",\"alg\":\"rsa-pss-sha256\","
	    "\"data\":\"%s\"}", b64);
	expect_err(ask(c, line), 1, "not-logged-in", "card1");
	expect_err(ask(c, "{\"id\":2,\"op\":\"login\",\"token\":\"card1\",\"pin\":\"000000\"}"), 2,
	    "pin-incorrect", "card1");
	assert_int_equal(audit_count("login", "result=pin-incorrect"), 1);
	a = expect_ok(ask(c, "{\"id\":3,\"op\":\"login\",\"token\":\"card1\",\"pin\":\"" PIN "\"}"), 3, 1);
	assert_true(json_object_get_boolean(at(a, "result.flags.logged_in")));
	json_object_put(a);
	signs = audit_count(pid, "result=ok");
	sign_ok(c, 10, "alice", "rsa-pss-sha256", 0);
	sign_ok(c, 11, "alice", "rsa-pkcs1-sha384", 1);
	sign_ok(c, 12, "bob", "ecdsa-sha256", 0);
	/* every signature in the audit log, with this process as the peer */
	assert_int_equal(audit_count(pid, "result=ok") - signs, 3);
	assert_int_equal(audit_count(pid, "alg=ecdsa-sha256 result=ok"), 1);
	assert_int_equal(audit_count(pid, "result=not-logged-in"), 1);
	expect_err(ask(c, "{\"id\":4,\"op\":\"sign\",\"ref\":\"bob\",\"alg\":\"rsa-pkcs1-sha256\","
	    "\"data\":\"AAAA\"}"), 4, "key", NULL);
	expect_err(ask(c, "{\"id\":5,\"op\":\"sign\",\"ref\":\"alice\",\"alg\":\"md5-rsa\",\"data\":\"AAAA\"}"),
	    5, "invalid", NULL);
	expect_ok(ask(c, "{\"id\":6,\"op\":\"logout\",\"token\":\"card1\"}"), 6, 0);
	expect_err(ask(c, line), 1, "not-logged-in", NULL);
	expect_err(ask(c, "{\"id\":7,\"op\":\"logout\",\"token\":\"card1\"}"), 7, "not-logged-in", NULL);
	expect_err(ask(c, "{\"id\":8,\"op\":\"login\",\"token\":\"nosuch\",\"pin\":\"1\"}"), 8, "not-found", NULL);
	/* no pinentry: a login without a PIN is refused, nothing tried */
	expect_err(ask(c, "{\"id\":9,\"op\":\"login\",\"token\":\"card1\"}"), 9, "invalid", "pinentry");
	free(b64);
}

static void
test_malformed(void **state)
{
	struct conn *c = *state;
	static const char nul_line[] = "{\"id\":5,\"op\":\"st\0atus\"}\n";

	hello(c);
	expect_err(ask(c, "not json"), -1, "protocol", "JSON");
	expect_err(ask(c, "[1,2]"), -1, "protocol", "JSON object");
	expect_err(ask(c, "{\"id\":1}"), 1, "protocol", "\"op\"");
	expect_err(ask(c, "{\"id\":2,\"op\":\"fly\"}"), 2, "unsupported", "fly");
	expect_err(ask(c, "{\"id\":3,\"op\":\"find\"}"), 3, "invalid", "needs \"ref\"");
	expect_err(ask(c, "{\"id\":4,\"op\":\"find\",\"ref\":7}"), 4, "invalid", "ref");
	expect_err(ask(c, "{\"id\":5,\"op\":\"status\",\"bogus\":true}"), 5, "invalid", "bogus");
	/* a key given twice, also written another way: refused, not the last one taken */
	expect_err(ask(c, "{\"id\":6,\"op\":\"status\",\"op\":\"list\"}"), 6, "invalid", NULL);
	expect_err(ask(c, "{\"id\":7,\"op\":\"status\",\"\\u006fp\":\"list\"}"), 7, "invalid", NULL);
	expect_err(ask(c, "{\"id\":9223372036854775808,\"op\":\"status\"}"), -1, "invalid", NULL);
	expect_err(ask(c, "{\"id\":8,\"op\":\"status\"} {\"id\":9}"), -1, "protocol", "one JSON object per line");
	expect_err(ask(c, "{\"id\":10,\"op\":\"sign\",\"ref\":\"a\",\"alg\":\"ecdsa-sha256\",\"data\":\"!!\"}"),
	    10, "invalid", NULL);
	expect_err(ask(c, "{\"id\":11,\"op\":\"find\",\"ref\":\"\xff\"}"), -1, "invalid", NULL);
	/* a NUL byte: a protocol error, the line skipped, the connection kept */
	send_raw(c, nul_line, sizeof(nul_line) - 1);
	expect_err(recv_json(c), -1, "protocol", "NUL");
	/* empty lines are ignored: the next answer is the status's */
	send_raw(c, "\n\r\n", 3);
	expect_ok(ask(c, "{\"id\":12,\"op\":\"status\"}"), 12, 0);
	/* several requests in one write are answered in order */
	send_raw(c, "{\"id\":13,\"op\":\"status\"}\n{\"id\":14,\"op\":\"fly\"}\n", 46);
	expect_ok(recv_json(c), 13, 0);
	expect_err(recv_json(c), 14, "unsupported", NULL);
}

static void
test_too_long(void **state)
{
	struct conn *c = *state;
	size_t n = 256 * 1024, off = 0;
	char *big = malloc(n);

	hello(c);
	assert_non_null(big);
	memset(big, ' ', n);
	memcpy(big, "{\"id\":1,\"op\":\"find\",\"ref\":\"", 27);
	/* 256 KiB without a newline: the agent may close before it took the last bytes */
	while (off < n) {
		ssize_t w = send(c->fd, big + off, n - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	free(big);
	expect_err(recv_json(c), -1, "too-large", "262144");
	/* and the agent closed the connection */
	assert_null(recv_json(c));
}

/* ------------------------------------------------------------------ */

static int
server_up(void)
{
	struct sc_store_opts so = { .verify_ecdsa = 1 };
	struct sc_server_opts o = { .audit_log = audit_file };

	if ((store = sc_store_new(&so)) == NULL || sc_store_add_module(store, fx.softhsm) != SC_OK ||
	    sc_store_refresh(store, NULL) != SC_OK) {
		fprintf(stderr, "test-dispatch: cannot load %s\n", fx.softhsm);
		return 99;
	}
	if ((srv = sc_server_new(store, -1, &o)) == NULL ||
	    pthread_create(&srv_thread, NULL, server_main, srv) != 0) {
		fprintf(stderr, "test-dispatch: cannot start the server\n");
		return 99;
	}
	return 0;
}

static void
server_down(void)
{
	if (srv != NULL) {
		sc_server_stop(srv);
		pthread_join(srv_thread, NULL);
		sc_server_free(srv);
	}
	sc_store_free(store);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hello_first, setup_conn, teardown_conn),
		cmocka_unit_test_setup_teardown(test_list_find, setup_conn, teardown_conn),
		cmocka_unit_test_setup_teardown(test_login_sign_logout, setup_conn, teardown_conn),
		cmocka_unit_test_setup_teardown(test_malformed, setup_conn, teardown_conn),
		cmocka_unit_test_setup_teardown(test_too_long, setup_conn, teardown_conn),
	};
	int r;

	sc_log_init("test-dispatch", getenv("SC_TEST_LOG") ? sc_log_parse_level(getenv("SC_TEST_LOG")) :
	    SC_LOG_INFO, 0);
	/* The server watches PC/SC: never a pcscd this test did not start. */
	setenv("PCSCLITE_CSOCK_NAME", "/nonexistent/scagent-test-dispatch/pcscd.comm", 1);
	if ((r = fixture_up("test-dispatch", &fx)) != 0) {
		fixture_down("test-dispatch", &fx);
		return r;
	}
	fixture_path(&fx, "audit.log", audit_file, sizeof(audit_file));
	if ((r = server_up()) == 0)
		r = cmocka_run_group_tests_name("dispatch", tests, NULL, NULL);
	server_down();
	fixture_down("test-dispatch", &fx);
	return r;
}
