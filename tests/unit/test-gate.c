/*
 * The tunnel's browser gate (src/tls/tunnel-gate.c): which requests pass,
 * which are refused and why, the first one of a connection and the ones after
 * it (bodies followed by their framing), fed whole and a few bytes at a time.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tls/tunnel-gate.h"

static const struct sc_gate_hosts hosts = { "mail.contoso.com", "owa.local,intranet", "8080" };

/*
 * The state after feeding s, whole (step 0) or step bytes at a time, until
 * the first request is judged; *fed: how much. What passed stays in g.
 */
static int
feed_n(struct sc_gate *g, const char *s, size_t step, size_t *fed)
{
	size_t len = strlen(s), off = 0;
	int st = SC_GATE_UNDECIDED;

	sc_gate_init(g);
	while (off < len && st == SC_GATE_UNDECIDED && g->requests == 0) {
		size_t n = step == 0 || step > len - off ? len - off : step;
		st = sc_gate_add(g, &hosts, s + off, n);
		off += n;
	}
	*fed = off;
	return st;
}

static int
feed(struct sc_gate *g, const char *s, size_t step)
{
	size_t fed;

	return feed_n(g, s, step, &fed);
}

static void
test_cases(void **state)
{
	static const struct {
		const char *req;
		int want;
		const char *why;	/* in g.why when refused */
	} cases[] = {
		/* not HTTP: passes at once */
		{ "\x16\x03\x01\x02\x00", SC_GATE_PASS, NULL },
		{ "EHLO x\r\n", SC_GATE_PASS, NULL },
		{ "get / HTTP/1.1\r\n", SC_GATE_PASS, NULL },
		/* HTTP, the tunnel's own names */
		{ "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", SC_GATE_PASS, NULL },
		{ "GET / HTTP/1.1\r\nHost: localhost:8080\r\nAccept: */*\r\n\r\n", SC_GATE_PASS, NULL },
		{ "GET / HTTP/1.1\r\nHost: LOCALHOST\r\n\r\n", SC_GATE_PASS, NULL },
		{ "GET / HTTP/1.1\r\nHost: app.localhost:8080\r\n\r\n", SC_GATE_PASS, NULL },
		{ "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", SC_GATE_PASS, NULL },
		{ "GET / HTTP/1.1\r\nHost: 10.1.2.3\r\n\r\n", SC_GATE_PASS, NULL },
		{ "GET / HTTP/1.1\r\nHost: Mail.Contoso.Com.\r\n\r\n", SC_GATE_PASS, NULL },
		{ "GET / HTTP/1.1\r\nHost: intranet:8080\r\n\r\n", SC_GATE_PASS, NULL },
		{ "GET / HTTP/1.0\n\n", SC_GATE_PASS, NULL },		/* no Host at all */
		{ "POST /ews HTTP/1.1\r\nHost:localhost:8080\r\nOrigin: http://localhost:8080\r\n"
		  "Sec-Fetch-Site: same-origin\r\nContent-Length: 4\r\n\r\nbody", SC_GATE_PASS, NULL },
		{ "GET / HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: https://mail.contoso.com\r\n\r\n",
		  SC_GATE_PASS, NULL },
		{ "GET / HTTP/1.1\r\nHost: localhost:8080\r\nSec-Fetch-Site: none\r\n\r\n", SC_GATE_PASS, NULL },
		/* a page's own name: DNS rebinding */
		{ "GET / HTTP/1.1\r\nHost: rebind.example:8080\r\n\r\n", SC_GATE_REFUSE,
		  "host \"rebind.example:8080\"" },
		{ "GET / HTTP/1.1\r\nHost: mail.contoso.com.evil.example\r\n\r\n", SC_GATE_REFUSE, "host" },
		{ "GET / HTTP/1.1\r\nHost: localhost:8080\r\nHost: evil.example\r\n\r\n", SC_GATE_REFUSE,
		  "two Host headers" },
		{ "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", SC_GATE_REFUSE, "host" },
		/* another site, another local port, a sandboxed page */
		{ "GET / HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: https://evil.example\r\n\r\n",
		  SC_GATE_REFUSE, "origin \"https://evil.example\"" },
		{ "GET / HTTP/1.1\r\nHost: localhost:8080\r\norigin: http://localhost:3000\r\n\r\n",
		  SC_GATE_REFUSE, "origin" },
		{ "GET / HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: http://127.0.0.1\r\n\r\n",
		  SC_GATE_REFUSE, "origin" },	/* port 80, not the tunnel's 8080 */
		{ "GET / HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: null\r\n\r\n", SC_GATE_REFUSE, "null" },
		/* an address is the tunnel's own origin only when it is loopback's */
		{ "GET / HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: http://203.0.113.5:8080\r\n\r\n",
		  SC_GATE_REFUSE, "origin \"http://203.0.113.5:8080\"" },
		{ "GET / HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: http://[2001:db8::1]:8080\r\n\r\n",
		  SC_GATE_REFUSE, "origin" },
		{ "GET / HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: http://127.0.0.2:8080\r\n\r\n",
		  SC_GATE_PASS, NULL },
		{ "GET / HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: http://[::1]:8080\r\n\r\n", SC_GATE_PASS, NULL },
		{ "GET / HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: http://[::ffff:127.0.0.1]:8080\r\n\r\n",
		  SC_GATE_PASS, NULL },
		{ "GET / HTTP/1.1\r\nHost: localhost:8080\r\nSec-Fetch-Site: cross-site\r\n\r\n",
		  SC_GATE_REFUSE, "Sec-Fetch-Site: cross-site" },
		{ "GET / HTTP/1.1\r\nHost: localhost:8080\r\nSec-Fetch-Site: same-site\r\n\r\n",
		  SC_GATE_REFUSE, "same-site" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (size_t step = 0; step <= 3; step += 3) {
			struct sc_gate *g = calloc(1, sizeof(*g));
			size_t fed;
			int st = feed_n(g, cases[i].req, step, &fed);

			/* an HTTP request that passed: the gate follows the connection on */
			if (st == SC_GATE_UNDECIDED && g->requests == 1)
				st = SC_GATE_PASS;

			if (st != cases[i].want)
				fail_msg("case %zu (step %zu): state %d, want %d (%s)", i, step, st,
				    cases[i].want, g->why);
			if (cases[i].why != NULL && strstr(g->why, cases[i].why) == NULL)
				fail_msg("case %zu: why \"%s\" lacks \"%s\"", i, g->why, cases[i].why);
			/* what passes may all go upstream, as it came */
			if (st != SC_GATE_REFUSE && (g->ok != fed || g->len != fed ||
			    memcmp(g->buf, cases[i].req, fed) != 0))
				fail_msg("case %zu: %zu bytes may go of %zu", i, g->ok, fed);
			free(g);
		}
}

static void
test_limits(void **state)
{
	struct sc_gate *g = calloc(1, sizeof(*g));
	char *big = malloc(SC_GATE_MAX + 100);

	(void)state;
	/* a head with no end, over the limit: refused once the limit is reached */
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	memset(big + 19, 'a', SC_GATE_MAX + 80);
	big[SC_GATE_MAX + 99] = '\0';
	assert_int_equal(feed(g, big, 0), SC_GATE_REFUSE);
	assert_non_null(strstr(g->why, "16384"));
	assert_int_equal(g->len, SC_GATE_MAX);
	/* undecided while the head is unfinished, and it says it is HTTP */
	assert_int_equal(feed(g, "GET / HTTP/1.1\r\nHost: localhost\r\n", 0), SC_GATE_UNDECIDED);
	assert_true(g->http);
	assert_int_equal(g->ok, 0);	/* nothing of it may go yet */
	assert_int_equal(feed(g, "GE", 0), SC_GATE_UNDECIDED);
	assert_false(g->http);
	/* not HTTP: whatever follows passes too */
	assert_int_equal(feed(g, "\x16\x03", 0), SC_GATE_PASS);
	assert_int_equal(sc_gate_add(g, &hosts, "GET", 3), SC_GATE_PASS);
	assert_int_equal(g->ok, 5);
	/* a refused Host is cut to 100 bytes in why */
	memcpy(big, "GET / HTTP/1.1\r\nHost: ", 22);
	memset(big + 22, 'h', 300);
	memcpy(big + 322, "\r\n\r\n", 5);
	assert_int_equal(feed(g, big, 0), SC_GATE_REFUSE);
	assert_true(strlen(g->why) < 200);
	free(big);
	free(g);
}

/*
 * Feed a whole connection's bytes, step at a time (0: at once), taking what
 * may go upstream after each; the state at the end, what went in *out.
 */
static int
stream(struct sc_gate *g, const char *s, size_t step, char *out, size_t *outlen)
{
	size_t len = strlen(s), off = 0;
	int st = SC_GATE_UNDECIDED;

	sc_gate_init(g);
	*outlen = 0;
	while (off < len && st != SC_GATE_REFUSE) {
		size_t n = step == 0 || step > len - off ? len - off : step;

		if (n > sc_gate_room(g))
			n = sc_gate_room(g);
		st = sc_gate_add(g, &hosts, s + off, n);
		off += n;
		*outlen += sc_gate_take(g, out + *outlen, 8192);	/* and a cap it may meet */
		*outlen += sc_gate_take(g, out + *outlen, 1 << 20);
	}
	out[*outlen] = '\0';
	return st;
}

#define OK_GET "GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"
#define EVIL_GET "GET /x HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: https://evil.example\r\n\r\n"
#define FAKE_HEAD "GET /in-a-body HTTP/1.1\r\nHost: evil.example\r\n\r\n"

static void
test_stream(void **state)
{
	static const struct {
		const char *conn;	/* a connection's bytes */
		int want;		/* the state at their end */
		size_t passed;		/* how many go upstream: the first so many bytes */
		unsigned long requests;	/* heads that passed */
		const char *why;
	} cases[] = {
		/* keep-alive: the second request is judged as the first was */
		{ OK_GET EVIL_GET, SC_GATE_REFUSE, sizeof(OK_GET) - 1, 1, "origin \"https://evil.example\"" },
		{ OK_GET "GET / HTTP/1.1\r\nHost: rebind.example:8080\r\n\r\n", SC_GATE_REFUSE,
		  sizeof(OK_GET) - 1, 1, "host \"rebind.example:8080\"" },
		{ OK_GET "\r\n" OK_GET OK_GET, SC_GATE_UNDECIDED, 3 * (sizeof(OK_GET) - 1) + 2, 3, NULL },
		/* a body is no head, whatever it holds; the head after it is judged */
		{ "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 47\r\n\r\n" FAKE_HEAD OK_GET,
		  SC_GATE_UNDECIDED, 56 + 47 + sizeof(OK_GET) - 1, 2, NULL },
		{ "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 47\r\n\r\n" FAKE_HEAD EVIL_GET,
		  SC_GATE_REFUSE, 56 + 47, 1, "origin" },
		/* chunked: sizes, an extension, data that looks like a head, trailers */
		{ "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
		  "2f;name=x\r\n" FAKE_HEAD "\r\n1\r\nz\r\n0\r\nX-Trailer: 1\r\n\r\n" OK_GET,
		  SC_GATE_UNDECIDED, 64 + 11 + 47 + 2 + 3 + 3 + 3 + 14 + 2 + sizeof(OK_GET) - 1, 2, NULL },
		{ "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
		  "A\n0123456789\n0\n\n" EVIL_GET, SC_GATE_REFUSE, 70 + 2 + 10 + 1 + 2 + 1, 1, "origin" },
		/* framing that another reader could take otherwise */
		{ "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		  SC_GATE_REFUSE, 0, 0, "both Transfer-Encoding and Content-Length" },
		{ "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", SC_GATE_REFUSE, 0, 0,
		  "two Content-Length" },
		{ "POST / HTTP/1.1\r\nContent-Length: 3x\r\n\r\nabc", SC_GATE_REFUSE, 0, 0, "not a number" },
		{ "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabc", SC_GATE_REFUSE, 0, 0,
		  "does not end in chunked" },
		{ OK_GET "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", SC_GATE_REFUSE,
		  sizeof(OK_GET) - 1 + 47, 2, "chunked body is malformed" },
		{ "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc", SC_GATE_REFUSE, 47 + 4, 1,
		  "chunked body is malformed" },
		/* after a request, bytes that start no request */
		{ OK_GET "hello\r\n", SC_GATE_REFUSE, sizeof(OK_GET) - 1, 1, "no HTTP/1.x request" },
		/* a protocol switch: what follows is not HTTP, and passes */
		{ "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
		  "\x81\x05hello" EVIL_GET, SC_GATE_PASS, 78 + 7 + sizeof(EVIL_GET) - 1, 1, NULL },
		{ "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n" EVIL_GET, SC_GATE_PASS,
		  55 + sizeof(EVIL_GET) - 1, 1, NULL },
	};
	static const size_t steps[] = { 0, 1, 3, 17 };
	char *out = malloc(1 << 16);
	struct sc_gate *g = calloc(1, sizeof(*g));

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
			size_t outlen;
			int st = stream(g, cases[i].conn, steps[k], out, &outlen);

			if (st != cases[i].want || g->requests != cases[i].requests)
				fail_msg("case %zu (step %zu): state %d, want %d; %lu requests, want %lu (%s)",
				    i, steps[k], st, cases[i].want, g->requests, cases[i].requests, g->why);
			if (outlen != cases[i].passed || memcmp(out, cases[i].conn, outlen) != 0)
				fail_msg("case %zu (step %zu): %zu bytes went upstream, want the first %zu",
				    i, steps[k], outlen, cases[i].passed);
			if (cases[i].why != NULL && strstr(g->why, cases[i].why) == NULL)
				fail_msg("case %zu: why \"%s\" lacks \"%s\"", i, g->why, cases[i].why);
		}
	free(g);
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_stream),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
