/*
 * The tunnel's browser gate (src/tls/tunnel-gate.c): which first requests
 * pass, which are refused and why, fed whole and a byte at a time.
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

/* The state after feeding s, whole (step 0) or step bytes at a time, until decided; *fed: how much. */
static int
feed_n(struct sc_gate *g, const char *s, size_t step, size_t *fed)
{
	size_t len = strlen(s), off = 0;
	int st = SC_GATE_UNDECIDED;

	sc_gate_init(g);
	while (off < len && st == SC_GATE_UNDECIDED) {
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
		  "Sec-Fetch-Site: same-origin\r\n\r\nbody", SC_GATE_PASS, NULL },
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

			if (st != cases[i].want)
				fail_msg("case %zu (step %zu): state %d, want %d (%s)", i, step, st,
				    cases[i].want, g->why);
			if (cases[i].why != NULL && strstr(g->why, cases[i].why) == NULL)
				fail_msg("case %zu: why \"%s\" lacks \"%s\"", i, g->why, cases[i].why);
			/* what passes is held whole, to be relayed as it came */
			if (st == SC_GATE_PASS && (g->len != fed || memcmp(g->buf, cases[i].req, fed) != 0))
				fail_msg("case %zu: held %zu bytes of %zu", i, g->len, fed);
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
	assert_int_equal(feed(g, "GE", 0), SC_GATE_UNDECIDED);
	assert_false(g->http);
	/* once decided, more bytes change nothing */
	assert_int_equal(feed(g, "\x16\x03", 0), SC_GATE_PASS);
	assert_int_equal(sc_gate_add(g, &hosts, "GET", 3), SC_GATE_PASS);
	assert_int_equal(g->len, 2);
	/* a refused Host is cut to 100 bytes in why */
	memcpy(big, "GET / HTTP/1.1\r\nHost: ", 22);
	memset(big + 22, 'h', 300);
	memcpy(big + 322, "\r\n\r\n", 5);
	assert_int_equal(feed(g, big, 0), SC_GATE_REFUSE);
	assert_true(strlen(g->why) < 200);
	free(big);
	free(g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
