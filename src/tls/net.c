/*
 * Where a connection goes, up to the TCP socket: https:// URLs, the proxy
 * (--proxy, https_proxy, no_proxy) and its CONNECT, name resolution with
 * curl's --resolve, and TCP with timeouts.
 */
#include "config.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "cert/certinfo.h"
#include "common/err.h"
#include "common/util.h"
#include "tls/probe-diag.h"
#include "tls/tlsclient.h"
#include "tls/tls-private.h"

/* ---------------------------------------------------------------- URL */

int
sc_tls_parse_url(const char *url, char *host, size_t hostlen, char *port, size_t portlen,
    char **path, char *why, size_t whylen)
{
	const char *p, *hend, *pstart = NULL, *slash;
	size_t n;

	*path = NULL;
	if (strncasecmp(url, "https://", 8) != 0) {
		snprintf(why, whylen, "\"%s\" is not an https:// URL (scagent speaks HTTPS only)", url);
		return SC_ERR_INVALID;
	}
	p = url + 8;
	slash = p + strcspn(p, "/?#");
	if (memchr(p, '@', (size_t)(slash - p)) != NULL) {
		snprintf(why, whylen, "user names in URLs are not supported: %s", url);
		return SC_ERR_INVALID;
	}
	if (*p == '[') {
		if ((hend = memchr(p, ']', (size_t)(slash - p))) == NULL) {
			snprintf(why, whylen, "unterminated [IPv6 address] in %s", url);
			return SC_ERR_INVALID;
		}
		p++;
		if (hend[1] == ':')
			pstart = hend + 2;
	} else {
		hend = memchr(p, ':', (size_t)(slash - p));
		if (hend != NULL)
			pstart = hend + 1;
		else
			hend = slash;
	}
	n = (size_t)(hend - p);
	if (n == 0 || n >= hostlen) {
		snprintf(why, whylen, "no usable host name in %s", url);
		return SC_ERR_INVALID;
	}
	memcpy(host, p, n);
	host[n] = '\0';
	if (pstart != NULL) {
		n = (size_t)(slash - pstart);
		if (n == 0 || n >= portlen || strspn(pstart, "0123456789") < n ||
		    atoi(pstart) < 1 || atoi(pstart) > 65535) {
			snprintf(why, whylen, "bad port in %s", url);
			return SC_ERR_INVALID;
		}
		memcpy(port, pstart, n);
		port[n] = '\0';
	} else
		snprintf(port, portlen, "443");
	if (*slash == '/')
		*path = strndup(slash, strcspn(slash, "#"));
	else if (*slash == '?') {
		if (asprintf(path, "/%.*s", (int)strcspn(slash, "#"), slash) < 0)
			*path = NULL;
	} else
		*path = strdup("/");
	return *path ? SC_OK : SC_ERR_NOMEM;
}


/* ---------------------------------------------------------------- proxy */

/* 1 when the address text a is within net/bits (an entry of no_proxy); family of both must agree. */
static int
ip_in(const char *a, const char *net, int bits)
{
	unsigned char x[16], y[16];
	int fam = strchr(a, ':') ? AF_INET6 : AF_INET, len = fam == AF_INET6 ? 16 : 4;

	if (inet_pton(fam, a, x) != 1 || inet_pton(fam, net, y) != 1)
		return 0;
	if (bits <= 0 || bits > len * 8)
		bits = len * 8;
	for (int i = 0; i < len && bits > 0; i++, bits -= 8) {
		int mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
		if ((x[i] & mask) != (y[i] & mask))
			return 0;
	}
	return 1;
}

/*
 * no_proxy as curl reads it: "*" alone (every host), or entries separated by
 * commas or blanks (a "*" among them is no wildcard).
 * For a host name, an entry is a name or a domain that covers its
 * subdomains (a leading dot optional), compared without case and without a
 * trailing dot. For an address (IPv4, or IPv6 as given in [ ]), an entry is
 * an address or an address block ADDR/BITS (127.0.0.0/8, ::1, [::1]), never
 * a suffix: "0.0.1" does not name 127.0.0.1.
 */
static int
no_proxy_for(const char *list, const char *host)
{
	char *buf, *save = NULL, name[256];
	unsigned char tmp[16];
	int ip, hit = 0;
	size_t hl;

	if (list == NULL || *list == '\0')
		return 0;
	if (strcmp(list, "*") == 0)
		return 1;
	if ((buf = strdup(list)) == NULL)
		return 0;
	snprintf(name, sizeof(name), "%s", host);
	hl = strlen(name);
	if (hl > 1 && name[hl - 1] == '.')
		name[--hl] = '\0';
	ip = inet_pton(AF_INET, name, tmp) == 1 || inet_pton(AF_INET6, name, tmp) == 1;
	for (char *w = strtok_r(buf, ", \t", &save); w != NULL && !hit; w = strtok_r(NULL, ", \t", &save)) {
		size_t wl;
		if (ip) {
			char *slash = strchr(w, '/');
			int bits = slash ? atoi(slash + 1) : -1;
			if (slash != NULL)
				*slash = '\0';
			if (*w == '[' && (wl = strlen(w)) > 1 && w[wl - 1] == ']') {
				w[wl - 1] = '\0';
				w++;
			}
			hit = ip_in(name, w, bits);
			continue;
		}
		if (*w == '.')
			w++;
		wl = strlen(w);
		if (wl > 0 && w[wl - 1] == '.')
			w[--wl] = '\0';
		if (wl == 0)
			continue;
		hit = strcasecmp(w, name) == 0 ||
		    (hl > wl && name[hl - wl - 1] == '.' && strcasecmp(name + hl - wl, w) == 0);
	}
	free(buf);
	return hit;
}

static int
hexval(int ch)
{
	return isdigit(ch) ? ch - '0' : isxdigit(ch) ? (tolower(ch) - 'a' + 10) : -1;
}

/* %XX decoding in place (user names and passwords in URLs): the length decoded (a %00 shows in it). */
static size_t
pct_decode(char *s)
{
	char *start = s;

	char *o = s;

	for (; *s; s++) {
		if (*s == '%' && hexval((unsigned char)s[1]) >= 0 && hexval((unsigned char)s[2]) >= 0) {
			*o++ = (char)(hexval((unsigned char)s[1]) * 16 + hexval((unsigned char)s[2]));
			s += 2;
		} else
			*o++ = *s;
	}
	*o = '\0';
	return (size_t)(o - start);
}

int
sc_tls_proxy_choose(struct sc_tls_conn *c)
{
	const char *url = c->o->proxy, *p, *at, *hp, *colon, *end;
	char cred[512];
	int r = SC_OK;

	c->via_proxy = 0;
	c->proxy.source = "--proxy";
	if (url == NULL) {
		if ((url = getenv("https_proxy")) != NULL && *url)
			c->proxy.source = "https_proxy";
		else if ((url = getenv("HTTPS_PROXY")) != NULL && *url)
			c->proxy.source = "HTTPS_PROXY";
	}
	if (url == NULL || *url == '\0')
		return SC_OK;
	if (no_proxy_for(getenv("no_proxy") ? getenv("no_proxy") : getenv("NO_PROXY"), c->host)) {
		sc_tls_note(c, "no_proxy names %s: no proxy", c->host);
		return SC_OK;
	}
	p = strstr(url, "://") ? strstr(url, "://") + 3 : url;
	if (p != url && strncasecmp(url, "http://", 7) != 0)
		return sc_tls_fail(c, SC_TLS_E_USAGE, SC_ERR_INVALID, "the proxy from %s is not http://: "
		    "scagent speaks HTTP CONNECT to a proxy", c->proxy.source);
	end = p + strcspn(p, "/?#");
	at = memrchr(p, '@', (size_t)(end - p));
	hp = at ? at + 1 : p;
	if (*hp == '[') {
		const char *rb = memchr(hp, ']', (size_t)(end - hp));
		colon = rb && rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
		snprintf(c->proxy.host, sizeof(c->proxy.host), "%.*s", rb ? (int)(rb - hp - 1) : 0, hp + 1);
	} else {
		colon = memchr(hp, ':', (size_t)(end - hp));
		snprintf(c->proxy.host, sizeof(c->proxy.host), "%.*s", (int)((colon ? colon : end) - hp), hp);
	}
	if (colon != NULL)
		snprintf(c->proxy.port, sizeof(c->proxy.port), "%.*s", (int)(end - colon - 1), colon + 1);
	else
		snprintf(c->proxy.port, sizeof(c->proxy.port), "1080");	/* curl's default */
	if (c->proxy.host[0] == '\0' || c->proxy.port[0] == '\0' ||
	    strspn(c->proxy.port, "0123456789") != strlen(c->proxy.port) || atoi(c->proxy.port) < 1 ||
	    atoi(c->proxy.port) > 65535)
		return sc_tls_fail(c, SC_TLS_E_USAGE, SC_ERR_INVALID, "the proxy from %s wants "
		    "http://[user:pass@]host:port", c->proxy.source);
	snprintf(c->proxy.shown, sizeof(c->proxy.shown), "http://%s%s%s:%s",
	    strchr(c->proxy.host, ':') ? "[" : "", c->proxy.host, strchr(c->proxy.host, ':') ? "]" : "",
	    c->proxy.port);
	if (at != NULL) {
		char *b64;
		if ((size_t)(at - p) >= sizeof(cred) - 1)
			return sc_tls_fail(c, SC_TLS_E_USAGE, SC_ERR_INVALID, "the proxy credentials from %s "
			    "are too long", c->proxy.source);
		memcpy(cred, p, (size_t)(at - p));
		cred[at - p] = '\0';
		if (pct_decode(cred) != strlen(cred)) {
			explicit_bzero(cred, sizeof(cred));
			return sc_tls_fail(c, SC_TLS_E_USAGE, SC_ERR_INVALID, "the proxy credentials from %s "
			    "hold %%00, which Basic authentication cannot send", c->proxy.source);
		}
		/* user-pass is user ":" password (RFC 7617), the password empty when not given */
		if (strchr(cred, ':') == NULL)
			strcat(cred, ":");
		b64 = sc_b64((const unsigned char *)cred, strlen(cred));
		if (b64 == NULL || asprintf(&c->proxy.auth, "Basic %s", b64) < 0) {
			c->proxy.auth = NULL;
			r = sc_tls_fail(c, SC_TLS_E_USAGE, SC_ERR_NOMEM, "out of memory");
		}
		if (b64 != NULL) {
			explicit_bzero(b64, strlen(b64));
			free(b64);
		}
		explicit_bzero(cred, sizeof(cred));
		if (r != SC_OK)
			return r;
	}
	c->via_proxy = 1;
	sc_tls_note(c, "through the proxy %s (from %s%s)", c->proxy.shown, c->proxy.source,
	    c->proxy.auth ? ", with credentials" : "");
	return SC_OK;
}

/* At most this much of the proxy's answer to CONNECT is read: a status line and a few headers. */
#define PROXY_ANSWER_MAX 16384

/*
 * One byte of the proxy's answer within the deadline (monotonic ms; 0:
 * none): 1, 0 at its close, -1 with errno (ETIMEDOUT when the time is up).
 */
static int
proxy_byte(int fd, long long deadline, char *ch)
{
	struct pollfd p = { fd, POLLIN, 0 };
	ssize_t k;

	if (deadline != 0) {
		long long left = deadline - (long long)sc_now_ms();
		int n;

		if (left <= 0 || (n = poll(&p, 1, (int)left)) == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (n < 0)
			return -1;
	}
	if ((k = recv(fd, ch, 1, 0)) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		errno = ETIMEDOUT;
	return k < 0 ? -1 : (int)k;
}

int
sc_tls_proxy_connect(struct sc_tls_conn *c)
{
	char *req = NULL, line[512], tgt[300];
	size_t got = 0, total = 0;
	long long deadline = c->o->timeout_ms > 0 ? (long long)sc_now_ms() + c->o->timeout_ms : 0;
	int n, v6 = strchr(c->host, ':') != NULL, status = 0;

	snprintf(tgt, sizeof(tgt), "%s%s%s:%s", v6 ? "[" : "", c->host, v6 ? "]" : "", c->port);
	n = asprintf(&req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: scagent/%s\r\n%s%s%s"
	    "\r\n", tgt, tgt, PACKAGE_VERSION, c->proxy.auth ? "Proxy-Authorization: " : "",
	    c->proxy.auth ? c->proxy.auth : "", c->proxy.auth ? "\r\n" : "");
	if (n < 0)
		return sc_tls_fail(c, SC_TLS_E_PROXY, SC_ERR_NOMEM, "out of memory");
	if (send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		explicit_bzero(req, (size_t)n);
		free(req);
		return sc_tls_fail(c, SC_TLS_E_PROXY, SC_ERR_IO, "the proxy %s closed the connection: %s",
		    c->proxy.shown, strerror(errno));
	}
	explicit_bzero(req, (size_t)n);
	free(req);
	/*
	 * The answer, byte by byte up to the empty line: nothing of the tunnel
	 * is read. It is bounded in size and, with a timeout, in time: a proxy
	 * that never ends its answer, or trickles it, is a failure, not a hang.
	 * Its words are kept as printable ASCII only ('?' for other bytes):
	 * they go into messages, verbose notes and probe's JSON.
	 */
	for (;;) {
		size_t len = 0;
		for (;;) {
			char ch;
			int k = proxy_byte(c->fd, deadline, &ch);
			if (k <= 0)
				return sc_tls_fail(c, k < 0 && errno == ETIMEDOUT ? SC_TLS_E_TIMEOUT :
				    SC_TLS_E_PROXY, SC_ERR_IO, "the proxy %s %s before answering CONNECT %s",
				    c->proxy.shown, k == 0 ? "closed the connection" : k < 0 && errno == ETIMEDOUT ?
				    "did not finish its answer in time" : "failed", tgt);
			if (++total > PROXY_ANSWER_MAX)
				return sc_tls_fail(c, SC_TLS_E_PROXY, SC_ERR_PROTOCOL, "the proxy %s answered "
				    "CONNECT %s with more than %d bytes of header", c->proxy.shown, tgt,
				    PROXY_ANSWER_MAX);
			if (ch == '\n')
				break;
			if (ch != '\r' && len + 1 < sizeof(line))
				line[len++] = ch >= 0x20 && ch < 0x7f ? ch : '?';
		}
		line[len] = '\0';
		if (got++ == 0) {
			if (strncmp(line, "HTTP/1.", 7) != 0 || len < 12)
				return sc_tls_fail(c, SC_TLS_E_PROXY, SC_ERR_PROTOCOL, "%s is not an HTTP proxy "
				    "(it answered \"%.60s\")", c->proxy.shown, line);
			status = atoi(line + 9);
			snprintf(c->proxy_answer, sizeof(c->proxy_answer), "%.120s", line);
		} else if (len == 0)
			break;
		if (got > 100)
			return sc_tls_fail(c, SC_TLS_E_PROXY, SC_ERR_PROTOCOL, "the proxy %s sent too many headers",
			    c->proxy.shown);
	}
	if (status == 407)
		return sc_tls_fail(c, SC_TLS_E_PROXY, SC_ERR_PROTOCOL, "the proxy %s wants credentials (%s)%s",
		    c->proxy.shown, c->proxy_answer, c->proxy.auth ? ": it refused those given" : "");
	if (status < 200 || status > 299)
		return sc_tls_fail(c, SC_TLS_E_PROXY, SC_ERR_PROTOCOL, "the proxy %s refused CONNECT %s: %s",
		    c->proxy.shown, tgt, c->proxy_answer);
	sc_tls_note(c, "the proxy %s connected us to %s (%s)", c->proxy.shown, tgt, c->proxy_answer);
	return SC_OK;
}

/* curl's --resolve HOST:PORT:ADDR[,ADDR]: the address for host:port, or NULL. */
static const char *
resolve_override(const struct sc_tls_opts *o, const char *host, const char *port,
    char *buf, size_t len)
{
	for (int i = 0; i < o->nresolve; i++) {
		const char *e = o->resolve[i], *c1, *c2;
		size_t hl;

		if ((c1 = strchr(e, ':')) == NULL || (c2 = strchr(c1 + 1, ':')) == NULL)
			continue;
		hl = (size_t)(c1 - e);
		if (strlen(host) != hl || strncasecmp(e, host, hl) != 0 ||
		    (size_t)(c2 - c1 - 1) != strlen(port) || strncmp(c1 + 1, port, strlen(port)) != 0)
			continue;
		c2++;
		if (*c2 == '[') {
			snprintf(buf, len, "%.*s", (int)strcspn(c2 + 1, "]"), c2 + 1);
		} else
			snprintf(buf, len, "%.*s", (int)strcspn(c2, ","), c2);
		return buf;
	}
	return NULL;
}

int
sc_tls_resolve(struct sc_tls_conn *c, struct addrinfo **res)
{
	struct addrinfo hints;
	char buf[128];
	const char *host = c->via_proxy ? c->proxy.host : c->host;
	const char *port = c->via_proxy ? c->proxy.port : c->port;
	const char *addr = resolve_override(c->o, host, port, buf, sizeof(buf));
	const char *h = host;
	int e;

	*res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_family = AF_UNSPEC;
	if (addr != NULL) {
		hints.ai_flags = AI_NUMERICHOST;
		h = addr;
	}
	if ((e = getaddrinfo(h, port, &hints, res)) != 0)
		return sc_tls_fail(c, SC_TLS_E_RESOLVE, SC_ERR_NOT_FOUND, "cannot resolve %s%s%s%s: %s",
		    c->via_proxy ? "the proxy " : "", host, addr ? " (--resolve " : "", addr ? addr : "",
		    gai_strerror(e));
	if (addr != NULL)
		sc_tls_note(c, "--resolve: %s:%s is %s", host, port, addr);
	return SC_OK;
}

static void
set_timeouts(int fd, int ms)
{
	struct timeval tv;

	if (ms <= 0)
		return;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int
sc_tls_tcp(struct sc_tls_conn *c, struct addrinfo *res)
{
	char lasterr[128] = "no address";
	int one = 1;

	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		int fd, fl, err = 0;
		socklen_t el = sizeof(err);
		char host[64] = "?";

		getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host), NULL, 0, NI_NUMERICHOST);
		if ((fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol)) < 0) {
			snprintf(lasterr, sizeof(lasterr), "%s: %s", host, strerror(errno));
			continue;
		}
		fl = fcntl(fd, F_GETFL);
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			if (errno == EINPROGRESS) {
				struct pollfd p = { fd, POLLOUT, 0 };
				int n = poll(&p, 1, c->o->timeout_ms > 0 ? c->o->timeout_ms : -1);
				if (n == 0)
					err = ETIMEDOUT;
				else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
					err = errno;
			} else
				err = errno;
		}
		if (err != 0) {
			snprintf(lasterr, sizeof(lasterr), "%s port %s: %s", host,
			    c->via_proxy ? c->proxy.port : c->port, strerror(err));
			close(fd);
			continue;
		}
		fcntl(fd, F_SETFL, fl);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		set_timeouts(fd, c->o->timeout_ms);
		c->fd = fd;
		snprintf(c->addr, sizeof(c->addr), "%s", host);
		sc_tls_note(c, "connected to %s%s port %s", c->via_proxy ? "the proxy at " : "", host,
		    c->via_proxy ? c->proxy.port : c->port);
		return SC_OK;
	}
	if (c->via_proxy)
		return sc_tls_fail(c, SC_TLS_E_TCP, SC_ERR_IO, "cannot connect to the proxy %s (%s)",
		    c->proxy.shown, lasterr);
	return sc_tls_fail(c, SC_TLS_E_TCP, SC_ERR_IO, "cannot connect to %s:%s (%s)", c->host, c->port, lasterr);
}

