/*
 * The tunnel's browser gate (tunnel-gate.h): on a TCP connection whose first
 * line is an HTTP/1.x request line, each request head is held until it is
 * known that no web page sent it through the owner's browser. Any process of
 * the owner passes the uid check, the browser too: a page could make it post
 * to the tunnel (cross-site) or, by DNS rebinding, read the answers, and the
 * server would see the card's certificate.
 *
 * Refused: a Host that a web page's own name could be (a DNS name that is not
 * the upstream's, a loopback name or an --allow-host name; addresses are
 * fine: rebinding needs a name), an Origin that is not the tunnel's own (a
 * loopback origin on the tunnel's port, the upstream's, an --allow-host
 * name), a Sec-Fetch-Site other than "none" or "same-origin", two Host
 * headers, and request heads over SC_GATE_MAX bytes.
 *
 * Between the heads, the gate follows the requests' framing (RFC 9112,
 * section 6): a Content-Length body or a chunked one goes through as it
 * comes, and what follows it is the next head, judged in turn; a head with
 * a framing that another reader could take otherwise (both Transfer-Encoding
 * and Content-Length, two Content-Lengths, a Transfer-Encoding that does not
 * end in chunked) is refused, so nothing can hide a request in a body. A
 * first line that is no HTTP/1.x request line passes: the tunnel is a plain
 * relay for it; so does everything after a request that switches protocols
 * (Upgrade, CONNECT).
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

/*
 * name (len bytes, no port) as an address literal, v4 or v6 ("[::1]" without
 * brackets): 0 none, 1 an address, 2 a loopback one (127/8, ::1, ::ffff:127/104).
 */
static int
address_kind(const char *name, size_t len)
{
	static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	static const unsigned char v6loop[16] = { [15] = 1 };
	char buf[64];
	unsigned char a[16];

	if (len == 0 || len >= sizeof(buf))
		return 0;
	memcpy(buf, name, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET, buf, a) == 1)
		return a[0] == 127 ? 2 : 1;
	if (inet_pton(AF_INET6, buf, a) != 1)
		return 0;
	return memcmp(a, v6loop, 16) == 0 || (memcmp(a, v4mapped, 12) == 0 && a[12] == 127) ? 2 : 1;
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
	return address_kind(name, nlen) > 0 || loopback_name(name, nlen) ||
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
	if (!loopback_name(name, nlen) && address_kind(name, nlen) != 2)
		return name_is(name, nlen, h->upstream) || name_in_list(name, nlen, h->allow);
	/* a page on another local port is another web application */
	if (plen == 0)
		return skip == 7 && strcmp(h->port, "80") == 0;
	return plen == strlen(h->port) && strncmp(port, h->port, plen) == 0;
}

/* Where the gate is in the client's stream. */
enum { P_HEAD, P_BODY, P_CHUNK_SIZE, P_CHUNK_DATA, P_CHUNK_END, P_TRAILER };

#define CHUNK_LINE_MAX 4096	/* a chunk-size line (with its extensions), a trailer line */

/* What a request head says of the bytes after it. */
struct framing {
	int lengths;			/* Content-Length headers */
	unsigned long long length;	/* the first one's value */
	int bad_length;			/* ... is no decimal number */
	int te, chunked;		/* Transfer-Encoding, and its last coding is chunked */
	int upgrade;			/* an Upgrade header, or the CONNECT method */
};

/* v (len bytes) as a Content-Length: 0, or -1 when it is no decimal number we take. */
static int
parse_length(const char *v, size_t len, unsigned long long *out)
{
	*out = 0;
	if (len == 0 || len > 18)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)v[i]))
			return -1;
		*out = *out * 10 + (unsigned long long)(v[i] - '0');
	}
	return 0;
}

/* 1 when the last of the codings in v (comma-separated) is "chunked". */
static int
ends_chunked(const char *v, size_t len)
{
	const char *last = v;

	for (size_t i = 0; i < len; i++)
		if (v[i] == ',')
			last = v + i + 1;
	len -= (size_t)(last - v);
	while (len > 0 && (*last == ' ' || *last == '\t')) {
		last++;
		len--;
	}
	return len == 7 && strncasecmp(last, "chunked", 7) == 0;
}

/* The head b (hend bytes, its blank line included) is complete: judge it, and *f of its framing. */
static void
judge(struct sc_gate *g, const struct sc_gate_hosts *h, const unsigned char *b, size_t hend,
    struct framing *f)
{
	const char *p = memchr(b, '\n', hend), *end = (const char *)b + hend;
	int hosts = 0;

	memset(f, 0, sizeof(*f));
	f->upgrade = hend > 8 && memcmp(b, "CONNECT ", 8) == 0;
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
		else if (name_is(line, nlen, "Content-Length") && f->lengths++ == 0)
			f->bad_length = parse_length(v, vlen, &f->length) < 0;
		else if (name_is(line, nlen, "Transfer-Encoding")) {
			f->te = 1;
			f->chunked = ends_chunked(v, vlen);
		} else if (name_is(line, nlen, "Upgrade"))
			f->upgrade = 1;
		if (g->state == SC_GATE_REFUSE)
			return;
	}
	if (f->te && f->lengths > 0)
		refuse(g, "a request with both Transfer-Encoding and Content-Length", "", 0, "");
	else if (f->lengths > 1)
		refuse(g, "a request with two Content-Length headers", "", 0, "");
	else if (f->bad_length)
		refuse(g, "a request whose Content-Length is not a number", "", 0, "");
	else if (f->te && !f->chunked)
		refuse(g, "a request whose body has no known length (its Transfer-Encoding does not "
		    "end in chunked)", "", 0, "");
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

/* b (n bytes) starts with: 1 an HTTP/1.x request line, 0 something else, -1 not known yet. */
static int
request_line(const unsigned char *b, size_t n)
{
	const unsigned char *nl;
	size_t i = 0, ll;

	while (i < n && i < 20 && (isupper(b[i]) || b[i] == '-' || b[i] == '_'))
		i++;
	if (i == n && i < 20)
		return -1;
	if (i < 3 || i >= 20 || b[i] != ' ')
		return 0;
	if ((nl = memchr(b, '\n', n)) == NULL)
		return -1;	/* the line goes on (a long URL is a browser's too) */
	ll = (size_t)(nl - b);
	if (ll > 0 && b[ll - 1] == '\r')
		ll--;
	return ll >= i + 10 && memcmp(b + ll - 9, " HTTP/1.", 8) == 0;
}

/* The head at g->buf + g->ok is complete (hend bytes) and judged: what follows it. */
static void
frame(struct sc_gate *g, const struct framing *f, size_t hend)
{
	g->ok += hend;
	g->requests++;
	if (f->upgrade)
		g->state = SC_GATE_PASS;	/* another protocol may follow: the gate is done */
	else if (f->chunked) {
		g->phase = P_CHUNK_SIZE;
		g->left = 0;
		g->linelen = 0;
		g->digits = 0;
	} else if (f->length > 0) {
		g->phase = P_BODY;
		g->left = f->length;
	}
}

/* One byte of a chunked body's framing (a chunk-size line, a chunk's CRLF, a trailer). */
static void
chunk_byte(struct sc_gate *g, unsigned char c)
{
	static const char bad[] = "a request whose chunked body is malformed";

	if (c == '\n') {
		if (g->phase == P_CHUNK_SIZE && g->digits == 0)
			refuse(g, bad, "", 0, "");
		else if (g->phase == P_CHUNK_SIZE)
			g->phase = g->left > 0 ? P_CHUNK_DATA : P_TRAILER;
		else if (g->phase == P_CHUNK_END)
			g->phase = P_CHUNK_SIZE;
		else if (g->linelen == 0)
			g->phase = P_HEAD;	/* the trailers' end: the next request */
		g->linelen = 0;
		g->digits = 0;
		return;
	}
	if (g->phase == P_CHUNK_SIZE && g->linelen == (size_t)g->digits && isxdigit(c)) {
		if (g->digits == 15) {
			refuse(g, "a request with a chunk over 2^60 bytes", "", 0, "");
			return;
		}
		g->left = g->left * 16 + (unsigned long long)(isdigit(c) ? c - '0' : (c | 0x20) - 'a' + 10);
		g->digits++;
	} else if ((g->phase == P_CHUNK_SIZE && g->digits == 0) ||
	    (g->phase == P_CHUNK_END && (c != '\r' || g->linelen > 0))) {
		refuse(g, bad, "", 0, "");
		return;
	} else if (g->phase == P_TRAILER && c == '\r')
		return;		/* a trailer line's end, or the blank line's */
	if (++g->linelen > CHUNK_LINE_MAX)
		refuse(g, "a request whose chunked body has a line over 4096 bytes", "", 0, "");
}

/* Judge and follow what is held from g->ok on, as far as it goes. */
static void
advance(struct sc_gate *g, const struct sc_gate_hosts *h)
{
	while (g->state == SC_GATE_UNDECIDED && g->ok < g->len) {
		const unsigned char *b = g->buf + g->ok;
		size_t n = g->len - g->ok, hend, k;
		struct framing f;
		int rl;

		switch (g->phase) {
		case P_HEAD:
			if (g->requests > 0 && (b[0] == '\r' || b[0] == '\n')) {
				g->ok++;	/* a blank line between requests (RFC 9112, 2.2) */
				break;
			}
			if ((rl = request_line(b, n)) == 0) {
				if (g->requests == 0)
					g->state = SC_GATE_PASS;	/* not HTTP: relayed as it is */
				else
					refuse(g, "bytes after a request that are no HTTP/1.x request", "",
					    0, "");
				break;
			}
			g->http |= rl > 0 && g->requests == 0;
			if (rl < 0 || (hend = head_end(b, n)) == 0) {
				if (n >= SC_GATE_MAX)
					refuse(g, "a request whose headers go beyond 16384 bytes", "", 0, "");
				return;	/* the head goes on */
			}
			judge(g, h, b, hend, &f);
			if (g->state == SC_GATE_UNDECIDED)
				frame(g, &f, hend);
			break;
		case P_BODY:
		case P_CHUNK_DATA:
			k = n < g->left ? n : (size_t)g->left;
			g->ok += k;
			g->left -= k;
			if (g->left == 0)
				g->phase = g->phase == P_BODY ? P_HEAD : P_CHUNK_END;
			break;
		default:
			chunk_byte(g, b[0]);
			g->ok += g->state == SC_GATE_UNDECIDED;
			break;
		}
	}
	if (g->state == SC_GATE_PASS)
		g->ok = g->len;
}

size_t
sc_gate_room(const struct sc_gate *g)
{
	return SC_GATE_MAX - g->len;
}

int
sc_gate_add(struct sc_gate *g, const struct sc_gate_hosts *h, const void *data, size_t n)
{
	if (g->state == SC_GATE_REFUSE)
		return g->state;
	if (n > SC_GATE_MAX - g->len)
		n = SC_GATE_MAX - g->len;
	memmove(g->buf + g->len, data, n);
	g->len += n;
	advance(g, h);
	return g->state;
}

size_t
sc_gate_take(struct sc_gate *g, void *out, size_t cap)
{
	size_t n = g->ok < cap ? g->ok : cap;

	memcpy(out, g->buf, n);
	memmove(g->buf, g->buf + n, g->len - n);
	g->len -= n;
	g->ok -= n;
	return n;
}
