/*
 * The tunnel's browser gate (tunnel-gate.h): the first request of a TCP
 * connection, when it is HTTP, is held until it is known that no web page
 * sent it through the owner's browser. Any process of the owner passes the
 * uid check, the browser too: a page could make it post to the tunnel
 * (cross-site) or, by DNS rebinding, read the answers, and the server would
 * see the card's certificate.
 *
 * Refused: a Host that a web page's own name could be (a DNS name that is not
 * the upstream's, a loopback name or an --allow-host name; addresses are
 * fine: rebinding needs a name), an Origin that is not the tunnel's own (a
 * loopback origin on the tunnel's port, the upstream's, an --allow-host
 * name), a Sec-Fetch-Site other than "none" or "same-origin", two Host
 * headers, and request heads over SC_GATE_MAX bytes. A first line that is
 * no HTTP/1.x request line passes: the tunnel is a plain relay for it.
 */
#include "config.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "tls/tunnel-gate.h"

_Static_assert(SC_GATE_MAX == 16384, "the refusal below says 16384");

void
sc_gate_init(struct sc_gate *g)
{
	memset(g, 0, sizeof(*g));
}

/* Refused: why is before, then the client's words (cut; escaped where they are said), then after. */
static void
refuse(struct sc_gate *g, const char *before, const char *what, size_t len, const char *after)
{
	snprintf(g->why, sizeof(g->why), "%s%.*s%s", before, (int)(len < 100 ? len : 100), what, after);
	g->state = SC_GATE_REFUSE;
}

/* name (len bytes, no port) is an address: a literal, v4 or v6 ("[::1]" without brackets). */
static int
is_address(const char *name, size_t len)
{
	char buf[64];
	unsigned char a[16];

	if (len == 0 || len >= sizeof(buf))
		return 0;
	memcpy(buf, name, len);
	buf[len] = '\0';
	return inet_pton(AF_INET, buf, a) == 1 || inet_pton(AF_INET6, buf, a) == 1;
}

static int
name_is(const char *name, size_t len, const char *want)
{
	size_t wl = want != NULL ? strlen(want) : 0;

	return wl > 0 && len == wl && strncasecmp(name, want, len) == 0;
}

/* 1 when name is in the comma-separated list. */
static int
name_in_list(const char *name, size_t len, const char *list)
{
	while (list != NULL && *list != '\0') {
		const char *comma = strchr(list, ',');
		size_t n = comma != NULL ? (size_t)(comma - list) : strlen(list);

		if (n == len && strncasecmp(name, list, len) == 0)
			return 1;
		list = comma != NULL ? comma + 1 : NULL;
	}
	return 0;
}

/*
 * "host[:port]" or "[v6][:port]" (len bytes) into its name (trailing dot
 * dropped) and port ("" when none); -1 when malformed.
 */
static int
split(const char *s, size_t len, const char **name, size_t *nlen, const char **port, size_t *plen)
{
	const char *colon;

	*port = "";
	*plen = 0;
	if (len > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', len);
		if (close == NULL)
			return -1;
		*name = s + 1;
		*nlen = (size_t)(close - s) - 1;
		if (close + 1 < s + len) {
			if (close[1] != ':')
				return -1;
			*port = close + 2;
			*plen = len - (size_t)(close + 2 - s);
		}
	} else {
		*name = s;
		*nlen = len;
		if ((colon = memchr(s, ':', len)) != NULL) {
			if (memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)) != NULL)
				return -1;
			*nlen = (size_t)(colon - s);
			*port = colon + 1;
			*plen = len - (size_t)(colon + 1 - s);
		}
	}
	for (size_t i = 0; i < *plen; i++)
		if (!isdigit((unsigned char)(*port)[i]))
			return -1;
	if (*nlen > 1 && (*name)[*nlen - 1] == '.')
		(*nlen)--;
	return *nlen > 0 ? 0 : -1;
}

static int
loopback_name(const char *name, size_t len)
{
	return name_is(name, len, "localhost") || (len > 10 &&
	    strncasecmp(name + len - 10, ".localhost", 10) == 0);
}

/* A Host no web page's name can be. */
static int
host_ok(const struct sc_gate_hosts *h, const char *v, size_t len)
{
	const char *name, *port;
	size_t nlen, plen;

	if (split(v, len, &name, &nlen, &port, &plen) < 0)
		return 0;
	return is_address(name, nlen) || loopback_name(name, nlen) ||
	    name_is(name, nlen, h->upstream) || name_in_list(name, nlen, h->allow);
}

/* An Origin that is the tunnel's own: the upstream's or an allowed name, or loopback on its port. */
static int
origin_ok(const struct sc_gate_hosts *h, const char *v, size_t len)
{
	const char *name, *port, *rest;
	size_t nlen, plen, skip;

	if (len > 7 && strncasecmp(v, "http://", 7) == 0)
		skip = 7;
	else if (len > 8 && strncasecmp(v, "https://", 8) == 0)
		skip = 8;
	else
		return 0;	/* "null" (a sandboxed page, a file) among them */
	rest = v + skip;
	if (split(rest, len - skip, &name, &nlen, &port, &plen) < 0)
		return 0;
	if (!loopback_name(name, nlen) && !is_address(name, nlen))
		return name_is(name, nlen, h->upstream) || name_in_list(name, nlen, h->allow);
	/* a page on another local port is another web application */
	if (plen == 0)
		return skip == 7 && strcmp(h->port, "80") == 0;
	return plen == strlen(h->port) && strncmp(port, h->port, plen) == 0;
}

/* The header block is complete in g->buf (its end at hend): decide. */
static void
judge(struct sc_gate *g, const struct sc_gate_hosts *h, size_t hend)
{
	const char *p = memchr(g->buf, '\n', hend), *end = (const char *)g->buf + hend;
	int hosts = 0;

	while (p != NULL && p + 1 < end) {
		const char *line = p + 1, *eol = memchr(line, '\n', (size_t)(end - line)), *colon;
		size_t llen, nlen, vlen;
		const char *v;

		if (eol == NULL)
			eol = end;
		llen = (size_t)(eol - line);
		if (llen > 0 && line[llen - 1] == '\r')
			llen--;
		p = eol;
		if (llen == 0 || (colon = memchr(line, ':', llen)) == NULL)
			continue;
		nlen = (size_t)(colon - line);
		v = colon + 1;
		vlen = llen - nlen - 1;
		while (vlen > 0 && (*v == ' ' || *v == '\t')) {
			v++;
			vlen--;
		}
		while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;
		if (name_is(line, nlen, "Host") && ++hosts > 1)
			refuse(g, "a request with two Host headers", "", 0, "");
		else if (name_is(line, nlen, "Host") && !host_ok(h, v, vlen))
			refuse(g, "a request for the host \"", v, vlen, "\", which is not this "
			    "tunnel's (a web page's request through your browser?)");
		else if (name_is(line, nlen, "Origin") && !origin_ok(h, v, vlen))
			refuse(g, "a request from the web page origin \"", v, vlen, "\"");
		else if (name_is(line, nlen, "Sec-Fetch-Site") &&
		    !(vlen == 4 && strncasecmp(v, "none", 4) == 0) &&
		    !(vlen == 11 && strncasecmp(v, "same-origin", 11) == 0))
			refuse(g, "a request that a browser says another site made (Sec-Fetch-Site: ",
			    v, vlen, ")");
		if (g->state == SC_GATE_REFUSE)
			return;
	}
	g->state = SC_GATE_PASS;
}

/* Where the header block ends (after its blank line) in the first len bytes, or 0. */
static size_t
head_end(const unsigned char *b, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (b[i] != '\n')
			continue;
		if (b[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && b[i + 1] == '\r' && b[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

int
sc_gate_add(struct sc_gate *g, const struct sc_gate_hosts *h, const void *data, size_t n)
{
	size_t i = 0, hend;

	if (g->state != SC_GATE_UNDECIDED)
		return g->state;
	if (n > SC_GATE_MAX - g->len)
		n = SC_GATE_MAX - g->len;
	memmove(g->buf + g->len, data, n);
	g->len += n;
	if (!g->http) {
		/* "METHOD target HTTP/1.x": an HTTP request line; anything else is relayed */
		const unsigned char *nl;
		size_t ll;

		while (i < g->len && i < 20 && isupper(g->buf[i]))
			i++;
		if (i == g->len && i < 20)
			return g->state;	/* more to come */
		if (i < 3 || i >= 20 || g->buf[i] != ' ') {
			g->state = SC_GATE_PASS;
			return g->state;
		}
		if ((nl = memchr(g->buf, '\n', g->len)) == NULL) {
			if (g->len >= SC_GATE_MAX)
				refuse(g, "a request whose headers go beyond 16384 bytes", "", 0, "");
			return g->state;	/* the line goes on (a long URL is a browser's too) */
		}
		ll = (size_t)(nl - g->buf);
		if (ll > 0 && g->buf[ll - 1] == '\r')
			ll--;
		if (ll < i + 10 || memcmp(g->buf + ll - 9, " HTTP/1.", 8) != 0) {
			g->state = SC_GATE_PASS;
			return g->state;
		}
		g->http = 1;
	}
	if ((hend = head_end(g->buf, g->len)) > 0)
		judge(g, h, hend);
	else if (g->len >= SC_GATE_MAX)
		refuse(g, "a request whose headers go beyond 16384 bytes", "", 0, "");
	return g->state;
}
