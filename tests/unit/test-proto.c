/*
 * Unit tests for src/proto/proto.c: the line framing (size cap, NUL bytes,
 * CRLF, partial and pipelined lines) over a real socket pair, and request
 * validation for every operation of sc_proto_ops.
 */
#include "config.h"

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

#include "common/err.h"
#include "proto/proto.h"

struct pair {
	int w, r;
	struct sc_linebuf lb;
};

static int
setup_pair(void **state, size_t max)
{
	struct pair *p = calloc(1, sizeof(*p));
	int sv[2];

	if (p == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
		free(p);
		return -1;
	}
	p->w = sv[0];
	p->r = sv[1];
	sc_linebuf_init(&p->lb, max);
	*state = p;
	return 0;
}

static int
setup_big(void **state)
{
	return setup_pair(state, SC_PROTO_MAX_REQUEST);
}

static int
setup_small(void **state)
{
	return setup_pair(state, 64);
}

static int
teardown_pair(void **state)
{
	struct pair *p = *state;

	if (p->w >= 0)
		close(p->w);
	close(p->r);
	sc_linebuf_free(&p->lb);
	free(p);
	return 0;
}

static void
put(struct pair *p, const char *s, size_t n)
{
	assert_int_equal(write(p->w, s, n), (ssize_t)n);
}

/* Read once and expect a line (returned, caller frees). */
static char *
take_line(struct pair *p, size_t *len)
{
	char *line = NULL;

	assert_int_equal(sc_linebuf_take(&p->lb, &line, len), 1);
	assert_non_null(line);
	return line;
}

static void
expect_line(struct pair *p, const char *want)
{
	size_t len;
	char *line = take_line(p, &len);

	assert_string_equal(line, want);
	assert_int_equal(len, strlen(want));
	free(line);
}

static void
expect_none(struct pair *p)
{
	char *line = (char *)1;
	size_t len = 99;

	assert_int_equal(sc_linebuf_take(&p->lb, &line, &len), 0);
	assert_null(line);
	assert_int_equal(len, 0);
}

/* ------------------------------------------------------------------ framing */

static void
test_one_line(void **state)
{
	struct pair *p = *state;

	put(p, "{\"id\":1}\n", 9);
	assert_int_equal(sc_linebuf_read(&p->lb, p->r), 9);
	expect_line(p, "{\"id\":1}");
	expect_none(p);
}

static void
test_partial_line(void **state)
{
	struct pair *p = *state;

	expect_none(p);
	put(p, "{\"id\"", 5);
	assert_int_equal(sc_linebuf_read(&p->lb, p->r), 5);
	expect_none(p);
	put(p, ":2", 2);
	assert_int_equal(sc_linebuf_read(&p->lb, p->r), 2);
	expect_none(p);
	put(p, "}\nrest", 6);
	assert_int_equal(sc_linebuf_read(&p->lb, p->r), 6);
	expect_line(p, "{\"id\":2}");
	expect_none(p);
	put(p, "\n", 1);
	assert_int_equal(sc_linebuf_read(&p->lb, p->r), 1);
	expect_line(p, "rest");
}

static void
test_pipelined(void **state)
{
	struct pair *p = *state;

	put(p, "a\nbb\n\nccc\n", 10);
	assert_int_equal(sc_linebuf_read(&p->lb, p->r), 10);
	expect_line(p, "a");
	expect_line(p, "bb");
	expect_line(p, "");	/* an empty line is a line; the agent skips it */
	expect_line(p, "ccc");
	expect_none(p);
}

static void
test_crlf(void **state)
{
	struct pair *p = *state;

	put(p, "abc\r\n\r\nx\ry\n", 11);
	assert_int_equal(sc_linebuf_read(&p->lb, p->r), 11);
	expect_line(p, "abc");
	expect_line(p, "");
	expect_line(p, "x\ry");	/* only a CR right before the LF goes */
}

static void
test_nul(void **state)
{
	struct pair *p = *state;
	char *line = NULL;
	size_t len = 0;

	put(p, "a\0b\nnext\n\0\n", 11);
	assert_int_equal(sc_linebuf_read(&p->lb, p->r), 11);
	assert_int_equal(sc_linebuf_take(&p->lb, &line, &len), SC_ERR_PROTOCOL);
	assert_null(line);
	expect_line(p, "next");	/* the bad line was consumed, framing goes on */
	assert_int_equal(sc_linebuf_take(&p->lb, &line, &len), SC_ERR_PROTOCOL);
	expect_none(p);
}

static void
test_eof(void **state)
{
	struct pair *p = *state;

	put(p, "half", 4);
	close(p->w);
	p->w = -1;
	assert_int_equal(sc_linebuf_read(&p->lb, p->r), 4);
	assert_int_equal(sc_linebuf_read(&p->lb, p->r), 0);
	expect_none(p);
}

/* max = 64: a line of 63 bytes plus its newline fits, 64 plus newline does not. */
static void
test_cap_exact(void **state)
{
	struct pair *p = *state;
	char buf[80];

	memset(buf, 'x', 63);
	buf[63] = '\n';
	put(p, buf, 64);
	assert_int_equal(sc_linebuf_read(&p->lb, p->r), 64);
	buf[63] = '\0';
	expect_line(p, buf);
	assert_true(p->lb.cap <= 64);
}

static void
test_cap_over(void **state)
{
	struct pair *p = *state;
	char buf[80];
	long r;
	int reads = 0;

	memset(buf, 'x', 64);
	buf[64] = '\n';
	put(p, buf, 65);
	while ((r = sc_linebuf_read(&p->lb, p->r)) > 0 && reads < 10) {
		reads++;
		expect_none(p);
	}
	assert_int_equal(r, SC_ERR_TOO_LARGE);
	assert_true(p->lb.cap <= 64);	/* never allocated past the cap */
	assert_int_equal(sc_linebuf_read(&p->lb, p->r), SC_ERR_TOO_LARGE);
}

static void
test_cap_no_newline(void **state)
{
	struct pair *p = *state;
	char buf[200];
	long r;

	memset(buf, '{', sizeof(buf));
	put(p, buf, sizeof(buf));
	while ((r = sc_linebuf_read(&p->lb, p->r)) > 0)
		expect_none(p);
	assert_int_equal(r, SC_ERR_TOO_LARGE);
	assert_true(p->lb.len <= 64);
}

/* Complete lines and a partial one that together exceed the cap are fine. */
static void
test_cap_counts_one_line(void **state)
{
	struct pair *p = *state;
	char buf[120];
	int got = 0;

	for (int i = 0; i < 3; i++) {
		memset(buf + i * 40, 'a' + i, 39);
		buf[i * 40 + 39] = '\n';
	}
	put(p, buf, 120);
	for (int i = 0; i < 10 && got < 3; i++) {
		char *line;
		size_t len;
		assert_true(sc_linebuf_read(&p->lb, p->r) > 0);
		while (sc_linebuf_take(&p->lb, &line, &len) == 1) {
			assert_int_equal(len, 39);
			assert_int_equal(line[0], 'a' + got);
			free(line);
			got++;
		}
	}
	assert_int_equal(got, 3);
}

/* The agent's cap: exactly SC_PROTO_MAX_REQUEST bytes with the newline. */
static void
test_cap_agent(void **state)
{
	struct pair *p = *state;
	size_t n = SC_PROTO_MAX_REQUEST;
	char *big = malloc(n + 1), *line = NULL;
	size_t len = 0, off = 0;
	int got = 0;

	assert_non_null(big);
	memset(big, 'y', n - 1);
	big[n - 1] = '\n';
	big[n] = 'z';	/* first byte of the next request */
	/* The socket buffer may be smaller than the line: write and read in
	 * turns, taking lines after every read as the agent does. */
	while (!got) {
		if (off < n + 1) {
			size_t k = n + 1 - off > 32768 ? 32768 : n + 1 - off;
			assert_int_equal(write(p->w, big + off, k), (ssize_t)k);
			off += k;
		}
		assert_true(sc_linebuf_read(&p->lb, p->r) > 0);
		got = sc_linebuf_take(&p->lb, &line, &len);
		assert_true(got >= 0);
	}
	assert_int_equal(len, n - 1);
	free(line);
	free(big);
}

/* ------------------------------------------------------------------ requests */

struct parsed {
	int r;
	int64_t id;
	const struct sc_op_spec *op;
	char why[256];
};

static struct parsed
parse(const char *text)
{
	struct parsed p;
	json_object *req = NULL;

	memset(&p, 0, sizeof(p));
	p.r = sc_proto_parse_request(text, strlen(text), &req, &p.id, &p.op, p.why, sizeof(p.why));
	if (p.r == SC_OK)
		assert_non_null(req);
	else
		assert_null(req);
	json_object_put(req);
	return p;
}

static void
expect_fail(const char *text, int code, int64_t id, const char *why_part)
{
	struct parsed p = parse(text);

	if (p.r != code || p.id != id || strstr(p.why, why_part) == NULL)
		fail_msg("%s: got %d id %lld \"%s\", want %d id %lld \"...%s...\"", text, p.r,
		    (long long)p.id, p.why, code, (long long)id, why_part);
}

static void
test_malformed(void **state)
{
	expect_fail("", SC_ERR_PROTOCOL, -1, "JSON");
	expect_fail("{", SC_ERR_PROTOCOL, -1, "JSON");
	expect_fail("{\"id\":1,\"op\":", SC_ERR_PROTOCOL, -1, "JSON");
	expect_fail("{\"id\":1,\"op\":\"status\"} x", SC_ERR_PROTOCOL, -1, "JSON");
	expect_fail("{\"id\":1,\"op\":\"status\"}{\"id\":2,\"op\":\"status\"}", SC_ERR_PROTOCOL, -1, "JSON");
	expect_fail("{'id':1,'op':'status'}", SC_ERR_PROTOCOL, -1, "JSON");
	expect_fail("{\"id\":1,\"op\":\"status\",}", SC_ERR_PROTOCOL, -1, "JSON");
	expect_fail("{\"id\":NaN,\"op\":\"status\"}", SC_ERR_PROTOCOL, -1, "\"id\"");
	expect_fail("/* c */{\"id\":1,\"op\":\"status\"}", SC_ERR_PROTOCOL, -1, "JSON");
	expect_fail("{\"id\":1,\"op\":\"find\",\"ref\":\"\xff\xfe\"}", SC_ERR_INVALID, -1, "UTF-8 (byte 27)");
	expect_fail("{\"id\":1,\"op\":\"find\",\"ref\":\"\xc3\"}", SC_ERR_INVALID, -1, "UTF-8");
	expect_fail("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
	    SC_ERR_PROTOCOL, -1, "JSON");
	expect_fail("[1,2]", SC_ERR_PROTOCOL, -1, "JSON object");
	expect_fail("\"status\"", SC_ERR_PROTOCOL, -1, "JSON object");
	expect_fail("42", SC_ERR_PROTOCOL, -1, "JSON object");
	expect_fail("null", SC_ERR_PROTOCOL, -1, "JSON");
}

static void
test_id_and_op(void **state)
{
	struct parsed p;

	expect_fail("{\"op\":\"status\"}", SC_ERR_PROTOCOL, -1, "\"id\"");
	expect_fail("{\"id\":-1,\"op\":\"status\"}", SC_ERR_PROTOCOL, -1, "\"id\"");
	expect_fail("{\"id\":\"1\",\"op\":\"status\"}", SC_ERR_PROTOCOL, -1, "\"id\"");
	expect_fail("{\"id\":1.5,\"op\":\"status\"}", SC_ERR_PROTOCOL, -1, "\"id\"");
	expect_fail("{\"id\":null,\"op\":\"status\"}", SC_ERR_PROTOCOL, -1, "\"id\"");
	expect_fail("{\"id\":3}", SC_ERR_PROTOCOL, 3, "\"op\"");
	expect_fail("{\"id\":3,\"op\":7}", SC_ERR_PROTOCOL, 3, "\"op\"");
	expect_fail("{\"id\":4,\"op\":\"format-disk\"}", SC_ERR_UNSUPPORTED, 4, "unknown op");
	expect_fail("{\"id\":4,\"op\":\"Status\"}", SC_ERR_UNSUPPORTED, 4, "unknown op");
	/* large ids round-trip */
	p = parse("{\"id\":9007199254740993,\"op\":\"status\"}");
	assert_int_equal(p.r, SC_OK);
	assert_true(p.id == 9007199254740993LL);
	p = parse("  {\"op\":\"status\",\"id\":0}  ");
	assert_int_equal(p.r, SC_OK);
	assert_string_equal(p.op->name, "status");
}

static void
test_utf8(void **state)
{
	static const struct {
		const char *s;
		size_t good;		/* bytes valid from the start */
	} t[] = {
		{ "plain ASCII", 11 },
		{ "Ren\xc3\xa9" "e \xe2\x82\xac \xf0\x9f\x94\x91", 15 },	/* é € 🔑 */
		{ "\xed\x9f\xbf \xee\x80\x80 \xf4\x8f\xbf\xbf", 12 },	/* U+D7FF U+E000 U+10FFFF */
		{ "a\xc0\xaf", 1 },		/* overlong '/' */
		{ "a\xc1\xbf", 1 },
		{ "a\xe0\x80\xaf", 1 },		/* overlong in three bytes */
		{ "a\xe0\x9f\xbf", 1 },
		{ "a\xf0\x8f\xbf\xbf", 1 },	/* overlong in four bytes */
		{ "a\xed\xa0\x80", 1 },		/* U+D800: a surrogate */
		{ "a\xed\xbf\xbf", 1 },		/* U+DFFF */
		{ "a\xf4\x90\x80\x80", 1 },	/* U+110000 */
		{ "a\xf5\x80\x80\x80", 1 },
		{ "a\xff", 1 },
		{ "a\x80", 1 },			/* a lone continuation byte */
		{ "ab\xc3", 2 },			/* cut short */
		{ "ab\xe2\x82", 2 },
		{ "ab\xe2\x82x", 2 },
		{ "ab\xf0\x9f\x94", 2 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (sc_utf8_check(t[i].s, strlen(t[i].s)) != t[i].good)
			fail_msg("%zu: %zu valid bytes, want %zu", i, sc_utf8_check(t[i].s, strlen(t[i].s)), t[i].good);
	/* What json-c takes unchecked is refused, whatever the op. */
	expect_fail("{\"id\":1,\"op\":\"find\",\"ref\":\"\xc0\xaf\"}", SC_ERR_INVALID, -1, "UTF-8");
	expect_fail("{\"id\":1,\"op\":\"find\",\"ref\":\"\xed\xa0\x80\"}", SC_ERR_INVALID, -1, "UTF-8");
	expect_fail("{\"id\":1,\"op\":\"find\",\"ref\":\"\xf4\x90\x80\x80\"}", SC_ERR_INVALID, -1, "UTF-8");
	expect_fail("{\"id\":1,\"op\":\"sign\",\"ref\":\"\xe0\x80\xaf\",\"alg\":\"ecdsa-sha256\",\"data\":\"\"}",
	    SC_ERR_INVALID, -1, "UTF-8");
	/* An escaped lone surrogate is U+FFFD to json-c: valid. */
	assert_int_equal(parse("{\"id\":1,\"op\":\"find\",\"ref\":\"\\ud800\"}").r, SC_OK);
}

static void
test_duplicate_keys(void **state)
{
	(void)state;
	expect_fail("{\"id\":1,\"op\":\"status\",\"op\":\"list\"}", SC_ERR_INVALID, 1, "twice");
	expect_fail("{\"id\":1,\"id\":2,\"op\":\"status\"}", SC_ERR_INVALID, 2, "twice");
	/* The same key written another way. */
	expect_fail("{\"id\":1,\"op\":\"status\",\"\\u006fp\":\"list\"}", SC_ERR_INVALID, 1, "twice");
	expect_fail("{\"id\":3,\"op\":\"find\",\"ref\":\"a\",\"r\\u0065f\":\"b\"}", SC_ERR_INVALID, 3, "twice");
	/* json-c ends keys at an escaped NUL: "a\u0000b" is "a". */
	expect_fail("{\"id\":3,\"op\":\"status\",\"a\\u0000b\":1,\"a\":2}", SC_ERR_INVALID, 3, "twice");
	/* Every request, sign and PIN-carrying ones too; a bad id stays unknown. */
	expect_fail("{\"id\":4,\"op\":\"sign\",\"ref\":\"a\",\"alg\":\"ecdsa-sha256\",\"data\":\"\",\"ref\":\"b\"}",
	    SC_ERR_INVALID, 4, "twice");
	expect_fail("{\"id\":5,\"op\":\"login\",\"token\":\"t\",\"pin\":\"1\",\"pin\":\"2\"}", SC_ERR_INVALID, 5, "twice");
	expect_fail("{\"id\":\"x\",\"op\":\"status\",\"op\":\"status\"}", SC_ERR_INVALID, -1, "twice");
	/* Nested objects count too; the same key in two objects is fine, and ':' in strings is no key. */
	expect_fail("{\"id\":6,\"op\":\"status\",\"x\":{\"a\":1,\"a\":1}}", SC_ERR_INVALID, 6, "twice");
	expect_fail("{\"id\":6,\"op\":\"status\",\"x\":[{\"a\":1},{\"b\":[{\"c\":1,\"c\":2}]}]}", SC_ERR_INVALID, 6, "twice");
	expect_fail("{\"id\":6,\"op\":\"status\",\"x\":{\"op\":1,\"id\":\"a:b\\\":\"}}", SC_ERR_INVALID, 6,
	    "takes no argument \"x\"");
	assert_int_equal(parse("{\"id\":7,\"op\":\"find\",\"ref\":\"pkcs11:token=a;object=b:c\\\"\"}").r, SC_OK);
}

static void
test_id_range(void **state)
{
	struct parsed p;

	(void)state;
	p = parse("{\"id\":9223372036854775807,\"op\":\"status\"}");
	assert_int_equal(p.r, SC_OK);
	assert_true(p.id == INT64_MAX);
	/* 2^63, 2^64 and beyond: json-c clamps them. */
	expect_fail("{\"id\":9223372036854775808,\"op\":\"status\"}", SC_ERR_INVALID, -1, "out of range");
	expect_fail("{\"id\":18446744073709551616,\"op\":\"status\"}", SC_ERR_INVALID, -1, "out of range");
	expect_fail("{\"id\":99999999999999999999999999,\"op\":\"status\"}", SC_ERR_INVALID, -1, "out of range");
	expect_fail("{\"op\":\"status\",\"id\":10000000000000000000}", SC_ERR_INVALID, -1, "out of range");
	/* Any integer of the request, and below int64 too; floats are json-c's doubles. */
	expect_fail("{\"id\":1,\"op\":\"hello\",\"version\":18446744073709551617}", SC_ERR_INVALID, -1, "out of range");
	expect_fail("{\"id\":-9223372036854775809,\"op\":\"status\"}", SC_ERR_INVALID, -1, "out of range");
	expect_fail("{\"id\":-9223372036854775808,\"op\":\"status\"}", SC_ERR_PROTOCOL, -1, "\"id\"");
	expect_fail("{\"id\":1e30,\"op\":\"status\"}", SC_ERR_PROTOCOL, -1, "\"id\"");
	/* Digits in strings are text. */
	assert_int_equal(parse("{\"id\":1,\"op\":\"find\",\"ref\":\"99999999999999999999999\"}").r, SC_OK);
}

static void
test_cafile_retired(void **state)
{
	(void)state;
	expect_fail("{\"id\":1,\"op\":\"list\",\"cafile\":\"/tmp/fifo\"}", SC_ERR_INVALID, 1,
	    "op \"list\" no longer takes \"cafile\": the agent opens no file a client names: read the CA "
	    "file and send its certificates as \"cas\" (PEM text)");
	expect_fail("{\"id\":2,\"op\":\"find\",\"ref\":\"a\",\"cafile\":\"ca.pem\"}", SC_ERR_INVALID, 2,
	    "send its certificates as \"cas\"");
	expect_fail("{\"id\":3,\"op\":\"get-cert\",\"ref\":\"a\",\"cafile\":\"ca.pem\"}", SC_ERR_INVALID, 3,
	    "takes no argument \"cafile\"");
	assert_int_equal(parse("{\"id\":4,\"op\":\"list\",\"cas\":\"-----BEGIN CERTIFICATE-----\"}").r, SC_OK);
}

/* A JSON value of the given kind, or of a different kind when wrong. */
static const char *
value_of(enum sc_arg_kind k, int wrong)
{
	switch (k) {
	case SC_ARG_STRING:
		return wrong ? "17" : "\"text\"";
	case SC_ARG_B64:
		return wrong ? "[\"aGVsbG8=\"]" : "\"aGVsbG8=\"";
	case SC_ARG_INT:
		return wrong ? "\"1\"" : "1";
	case SC_ARG_BOOL:
		return wrong ? "1" : "true";
	}
	return "null";
}

/* {"id":5,"op":NAME, every argument except skip (or all when skip < 0), arg bad wrong} */
static char *
request(const struct sc_op_spec *s, int required_only, int skip, int wrong, const char *extra)
{
	char *buf = malloc(4096);
	size_t o;

	assert_non_null(buf);
	o = (size_t)snprintf(buf, 4096, "{\"id\":5,\"op\":\"%s\"", s->name);
	for (int i = 0; i < SC_OP_MAX_ARGS && s->args[i].name; i++) {
		if (i == skip || (required_only && !s->args[i].required))
			continue;
		o += (size_t)snprintf(buf + o, 4096 - o, ",\"%s\":%s", s->args[i].name,
		    value_of(s->args[i].kind, i == wrong));
	}
	snprintf(buf + o, 4096 - o, "%s}", extra ? extra : "");
	return buf;
}

static void
test_every_op(void **state)
{
	int nops = 0;

	for (const struct sc_op_spec *s = sc_proto_ops; s->name != NULL; s++, nops++) {
		struct parsed p;
		char *req, want[128];
		int nargs = 0;

		while (nargs < SC_OP_MAX_ARGS && s->args[nargs].name)
			nargs++;
		/* all arguments, then only the required ones: accepted */
		for (int ro = 0; ro < 2; ro++) {
			req = request(s, ro, -1, -1, NULL);
			p = parse(req);
			if (p.r != SC_OK)
				fail_msg("%s refused: %s", req, p.why);
			assert_int_equal(p.id, 5);
			assert_ptr_equal(p.op, s);
			free(req);
		}
		for (int i = 0; i < nargs; i++) {
			/* a missing required argument */
			if (s->args[i].required) {
				req = request(s, 0, i, -1, NULL);
				snprintf(want, sizeof(want), "needs \"%s\"", s->args[i].name);
				expect_fail(req, SC_ERR_INVALID, 5, want);
				free(req);
			}
			/* each argument of the wrong JSON type */
			req = request(s, 0, -1, i, NULL);
			snprintf(want, sizeof(want), "\"%s\" must be", s->args[i].name);
			expect_fail(req, SC_ERR_INVALID, 5, want);
			free(req);
		}
		/* an argument the op does not take */
		req = request(s, 0, -1, -1, ",\"module\":\"/tmp/evil.so\"");
		snprintf(want, sizeof(want), "op \"%s\" takes no argument \"module\"", s->name);
		expect_fail(req, SC_ERR_INVALID, 5, want);
		free(req);
	}
	assert_true(nops >= 10);
}

static void
test_op_table(void **state)
{
	static const char *expected[] = { "hello", "list", "find", "get-cert", "login", "logout",
		"sign", "status", "watch", "refresh" };

	for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
		int found = 0;
		for (const struct sc_op_spec *s = sc_proto_ops; s->name != NULL; s++)
			found += strcmp(s->name, expected[i]) == 0;
		if (found != 1)
			fail_msg("op %s appears %d times in sc_proto_ops", expected[i], found);
	}
	/* spot checks of the argument specs */
	expect_fail("{\"id\":1,\"op\":\"hello\"}", SC_ERR_INVALID, 1, "needs \"version\"");
	expect_fail("{\"id\":1,\"op\":\"hello\",\"version\":\"1\"}", SC_ERR_INVALID, 1, "an integer");
	expect_fail("{\"id\":1,\"op\":\"sign\",\"ref\":\"a\",\"alg\":\"x\",\"data\":null}",
	    SC_ERR_INVALID, 1, "base64 text");
	expect_fail("{\"id\":1,\"op\":\"login\",\"token\":\"t\",\"confirm_final_try\":1}",
	    SC_ERR_INVALID, 1, "true or false");
	expect_fail("{\"id\":1,\"op\":\"status\",\"verbose\":true}", SC_ERR_INVALID, 1,
	    "takes no argument \"verbose\"");
	assert_int_equal(parse("{\"id\":1,\"op\":\"login\",\"token\":\"t\"}").r, SC_OK);
	assert_int_equal(parse("{\"id\":1,\"op\":\"sign\",\"ref\":\"a\",\"alg\":\"x\"}").r, SC_OK);
}

/* ------------------------------------------------------------------ responses */

static json_object *
reparse(char *line, size_t len)
{
	json_object *o;

	assert_non_null(line);
	assert_true(len > 0);
	assert_int_equal(line[len - 1], '\n');
	assert_int_equal(strlen(line), len);
	assert_null(memchr(line, '\n', len - 1));	/* one line */
	o = json_tokener_parse(line);
	assert_non_null(o);
	free(line);
	return o;
}

static void
test_responses(void **state)
{
	json_object *o, *res = json_object_new_object(), *v, *e;
	size_t len = 0;
	char *line;

	json_object_object_add(res, "path", json_object_new_string("a/b\nc"));
	line = sc_proto_ok(12, res, &len);
	o = reparse(line, len);
	assert_true(json_object_object_get_ex(o, "id", &v) && json_object_get_int64(v) == 12);
	assert_true(json_object_object_get_ex(o, "ok", &v) && json_object_get_boolean(v));
	assert_true(json_object_object_get_ex(o, "result", &v));
	assert_string_equal(json_object_get_string(json_object_object_get(v, "path")), "a/b\nc");
	json_object_put(o);

	line = sc_proto_error(-1, SC_ERR_TOO_LARGE, NULL, &len);
	o = reparse(line, len);
	assert_true(json_object_object_get_ex(o, "id", &v) && v == NULL);
	assert_true(json_object_object_get_ex(o, "ok", &v) && !json_object_get_boolean(v));
	assert_true(json_object_object_get_ex(o, "error", &e));
	assert_string_equal(json_object_get_string(json_object_object_get(e, "code")), "too-large");
	assert_string_equal(json_object_get_string(json_object_object_get(e, "message")),
	    sc_strerror(SC_ERR_TOO_LARGE));
	json_object_put(o);

	line = sc_proto_error(3, SC_ERR_PIN_INCORRECT, "wrong PIN", &len);
	o = reparse(line, len);
	assert_int_equal(json_object_get_int64(json_object_object_get(o, "id")), 3);
	e = json_object_object_get(o, "error");
	assert_string_equal(json_object_get_string(json_object_object_get(e, "code")), "pin-incorrect");
	assert_string_equal(json_object_get_string(json_object_object_get(e, "message")), "wrong PIN");
	json_object_put(o);

	line = sc_proto_event("changed", NULL, &len);
	o = reparse(line, len);
	assert_string_equal(json_object_get_string(json_object_object_get(o, "event")), "changed");
	assert_false(json_object_object_get_ex(o, "id", NULL));
	json_object_put(o);
}

/* Every error code has a distinct stable name that maps back to it. */
static void
test_error_names(void **state)
{
	for (int c = SC_OK; c > SC_ERR_MAX_; c--) {
		const char *name = sc_errname(c);
		assert_int_equal(sc_errcode(name), c);
		for (int d = c - 1; d > SC_ERR_MAX_; d--)
			assert_string_not_equal(name, sc_errname(d));
	}
	assert_int_equal(sc_errcode("no-such-code"), SC_ERR_INTERNAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_one_line, setup_big, teardown_pair),
		cmocka_unit_test_setup_teardown(test_partial_line, setup_big, teardown_pair),
		cmocka_unit_test_setup_teardown(test_pipelined, setup_big, teardown_pair),
		cmocka_unit_test_setup_teardown(test_crlf, setup_big, teardown_pair),
		cmocka_unit_test_setup_teardown(test_nul, setup_big, teardown_pair),
		cmocka_unit_test_setup_teardown(test_eof, setup_big, teardown_pair),
		cmocka_unit_test_setup_teardown(test_cap_exact, setup_small, teardown_pair),
		cmocka_unit_test_setup_teardown(test_cap_over, setup_small, teardown_pair),
		cmocka_unit_test_setup_teardown(test_cap_no_newline, setup_small, teardown_pair),
		cmocka_unit_test_setup_teardown(test_cap_counts_one_line, setup_small, teardown_pair),
		cmocka_unit_test_setup_teardown(test_cap_agent, setup_big, teardown_pair),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_id_and_op),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_id_range),
		cmocka_unit_test(test_cafile_retired),
		cmocka_unit_test(test_every_op),
		cmocka_unit_test(test_op_table),
		cmocka_unit_test(test_responses),
		cmocka_unit_test(test_error_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
