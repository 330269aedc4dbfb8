/* The mutual-TLS client of connect, probe and tunnel (see tlsclient.h). */
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

/* ---------------------------------------------------------------- helpers */

void
sc_tls_note(const struct sc_tls_conn *c, const char *fmt, ...)
{
	va_list ap;

	if (c == NULL || c->o == NULL || !c->o->verbose)
		return;
	fprintf(stderr, "scagent: %s", c->logprefix);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void
note_prefix(int verbose, const char *prefix, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
note_prefix(int verbose, const char *prefix, const char *fmt, ...)
{
	va_list ap;

	if (!verbose)
		return;
	fprintf(stderr, "scagent: %s", prefix ? prefix : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int
fail(struct sc_tls_conn *c, int kind, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int
fail(struct sc_tls_conn *c, int kind, int code, const char *fmt, ...)
{
	va_list ap;

	c->fail = kind;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	return code;
}

static void
x509s_free(STACK_OF(X509) *sk)
{
	sk_X509_pop_free(sk, X509_free);
}

static void
name_text(const X509_NAME *n, char *buf, size_t len)
{
	char *s = n ? sc_name_oneline(n) : NULL;

	snprintf(buf, len, "%s", s ? s : "(none)");
	free(s);
}

const char *
sc_tls_req_phase_text(int phase)
{
	switch (phase) {
	case SC_TLS_REQ_HANDSHAKE:
		return "in the handshake";
	case SC_TLS_REQ_RENEGOTIATION:
		return "after the request, by a TLS 1.2 renegotiation";
	case SC_TLS_REQ_PHA:
		return "after the request, by TLS 1.3 post-handshake authentication";
	default:
		return "never";
	}
}

/* ---------------------------------------------------------------- agent */

void
sc_tls_agent_init(struct sc_tls_agent *ag, const char *socket)
{
	memset(ag, 0, sizeof(*ag));
	ag->socket = socket;
	pthread_mutex_init(&ag->lock, NULL);
}

void
sc_tls_agent_clear(struct sc_tls_agent *ag)
{
	if (ag == NULL)
		return;
	scagent_close(ag->client);
	ag->client = NULL;
	pthread_mutex_destroy(&ag->lock);
}

int
sc_tls_agent_get(struct sc_tls_agent *ag, scagent_client **client, char *why, size_t whylen)
{
	char *path;
	int r = SC_OK;

	*client = NULL;
	pthread_mutex_lock(&ag->lock);
	if (ag->client == NULL && (r = scagent_connect(ag->socket, &ag->client)) != SC_OK) {
		path = scagent_default_socket(ag->socket);
		snprintf(why, whylen, "no agent at %s (%s): start one with `eval \"$(scagentd)\"` "
		    "or give --socket", path ? path : "(unknown)", scagent_strerror(r));
		free(path);
		r = SC_ERR_AGENT_UNREACHABLE;
	}
	*client = ag->client;
	pthread_mutex_unlock(&ag->lock);
	return r;
}

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

/* ---------------------------------------------------------------- connection */

void
sc_tls_conn_init(struct sc_tls_conn *c, const struct sc_tls_opts *o, const char *host,
    const char *port)
{
	memset(c, 0, sizeof(*c));
	c->o = o;
	c->fd = -1;
	c->verify_err = X509_V_OK;
	c->verify_depth = -1;
	snprintf(c->host, sizeof(c->host), "%s", host);
	snprintf(c->port, sizeof(c->port), "%s", port);
}

void
sc_tls_choice_clear(struct sc_tls_choice *ch)
{
	X509_free(ch->cert);
	x509s_free(ch->chain);
	memset(ch, 0, sizeof(*ch));
}

void
sc_tls_conn_free(struct sc_tls_conn *c)
{
	if (c == NULL)
		return;
	if (c->o != NULL)
		sc_tls_sessions_end(c->o->sessions, c->flight);
	c->flight = 0;
	SSL_free(c->ssl);
	c->ssl = NULL;
	SSL_CTX_free(c->ctx);
	c->ctx = NULL;
	EVP_PKEY_free(c->pkey);
	c->pkey = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	sk_X509_NAME_pop_free(c->req.ca_names, X509_NAME_free);
	c->req.ca_names = NULL;
	sc_tls_choice_clear(&c->choice);
	if (c->proxy.auth != NULL) {
		explicit_bzero(c->proxy.auth, strlen(c->proxy.auth));
		free(c->proxy.auth);
		c->proxy.auth = NULL;
	}
}

/* ---------------------------------------------------------------- proxy */

/* no_proxy as curl reads it: "*", or names and domains (a leading dot optional), comma-separated. */
static int
no_proxy_for(const char *list, const char *host)
{
	char buf[1024], *save = NULL;
	size_t hl = strlen(host);

	if (list == NULL || *list == '\0')
		return 0;
	snprintf(buf, sizeof(buf), "%s", list);
	for (char *w = strtok_r(buf, ", ", &save); w != NULL; w = strtok_r(NULL, ", ", &save)) {
		size_t wl;
		if (strcmp(w, "*") == 0)
			return 1;
		if (*w == '.')
			w++;
		wl = strlen(w);
		if (wl == 0)
			continue;
		if (strcasecmp(w, host) == 0 ||
		    (hl > wl && host[hl - wl - 1] == '.' && strcasecmp(host + hl - wl, w) == 0))
			return 1;
	}
	return 0;
}

static int
hexval(int ch)
{
	return isdigit(ch) ? ch - '0' : isxdigit(ch) ? (tolower(ch) - 'a' + 10) : -1;
}

/* %XX decoding in place (user names and passwords in URLs). */
static void
pct_decode(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (*s == '%' && hexval((unsigned char)s[1]) >= 0 && hexval((unsigned char)s[2]) >= 0) {
			*o++ = (char)(hexval((unsigned char)s[1]) * 16 + hexval((unsigned char)s[2]));
			s += 2;
		} else
			*o++ = *s;
	}
	*o = '\0';
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
		return fail(c, SC_TLS_E_USAGE, SC_ERR_INVALID, "the proxy from %s is not http://: "
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
		return fail(c, SC_TLS_E_USAGE, SC_ERR_INVALID, "the proxy from %s wants "
		    "http://[user:pass@]host:port", c->proxy.source);
	snprintf(c->proxy.shown, sizeof(c->proxy.shown), "http://%s%s%s:%s",
	    strchr(c->proxy.host, ':') ? "[" : "", c->proxy.host, strchr(c->proxy.host, ':') ? "]" : "",
	    c->proxy.port);
	if (at != NULL) {
		char *b64;
		if ((size_t)(at - p) >= sizeof(cred))
			return fail(c, SC_TLS_E_USAGE, SC_ERR_INVALID, "the proxy credentials from %s "
			    "are too long", c->proxy.source);
		memcpy(cred, p, (size_t)(at - p));
		cred[at - p] = '\0';
		pct_decode(cred);
		b64 = sc_b64((const unsigned char *)cred, strlen(cred));
		if (b64 == NULL || asprintf(&c->proxy.auth, "Basic %s", b64) < 0) {
			c->proxy.auth = NULL;
			r = fail(c, SC_TLS_E_USAGE, SC_ERR_NOMEM, "out of memory");
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

int
sc_tls_proxy_connect(struct sc_tls_conn *c)
{
	char *req = NULL, line[512], tgt[300];
	size_t got = 0;
	int n, v6 = strchr(c->host, ':') != NULL, status = 0;

	snprintf(tgt, sizeof(tgt), "%s%s%s:%s", v6 ? "[" : "", c->host, v6 ? "]" : "", c->port);
	n = asprintf(&req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: scagent/%s\r\n%s%s%s"
	    "\r\n", tgt, tgt, PACKAGE_VERSION, c->proxy.auth ? "Proxy-Authorization: " : "",
	    c->proxy.auth ? c->proxy.auth : "", c->proxy.auth ? "\r\n" : "");
	if (n < 0)
		return fail(c, SC_TLS_E_PROXY, SC_ERR_NOMEM, "out of memory");
	if (send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		explicit_bzero(req, (size_t)n);
		free(req);
		return fail(c, SC_TLS_E_PROXY, SC_ERR_IO, "the proxy %s closed the connection: %s",
		    c->proxy.shown, strerror(errno));
	}
	explicit_bzero(req, (size_t)n);
	free(req);
	/* The answer, byte by byte up to the empty line: nothing of the tunnel is read. */
	for (;;) {
		size_t len = 0;
		for (;;) {
			char ch;
			ssize_t k = recv(c->fd, &ch, 1, 0);
			if (k <= 0)
				return fail(c, k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ?
				    SC_TLS_E_TIMEOUT : SC_TLS_E_PROXY, SC_ERR_IO, "the proxy %s %s before "
				    "answering CONNECT %s", c->proxy.shown, k == 0 ? "closed the connection" :
				    "failed", tgt);
			if (ch == '\n')
				break;
			if (ch != '\r' && len + 1 < sizeof(line))
				line[len++] = ch;
		}
		line[len] = '\0';
		if (got++ == 0) {
			if (strncmp(line, "HTTP/1.", 7) != 0 || len < 12)
				return fail(c, SC_TLS_E_PROXY, SC_ERR_PROTOCOL, "%s is not an HTTP proxy "
				    "(it answered \"%.60s\")", c->proxy.shown, line);
			status = atoi(line + 9);
			snprintf(c->proxy_answer, sizeof(c->proxy_answer), "%.120s", line);
		} else if (len == 0)
			break;
		if (got > 100)
			return fail(c, SC_TLS_E_PROXY, SC_ERR_PROTOCOL, "the proxy %s sent too many headers",
			    c->proxy.shown);
	}
	if (status == 407)
		return fail(c, SC_TLS_E_PROXY, SC_ERR_PROTOCOL, "the proxy %s wants credentials (%s)%s",
		    c->proxy.shown, c->proxy_answer, c->proxy.auth ? ": it refused those given" : "");
	if (status < 200 || status > 299)
		return fail(c, SC_TLS_E_PROXY, SC_ERR_PROTOCOL, "the proxy %s refused CONNECT %s: %s",
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
		return fail(c, SC_TLS_E_RESOLVE, SC_ERR_NOT_FOUND, "cannot resolve %s%s%s%s: %s",
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
		return fail(c, SC_TLS_E_TCP, SC_ERR_IO, "cannot connect to the proxy %s (%s)",
		    c->proxy.shown, lasterr);
	return fail(c, SC_TLS_E_TCP, SC_ERR_IO, "cannot connect to %s:%s (%s)", c->host, c->port, lasterr);
}

/* ---------------------------------------------------------------- callbacks */

static int ex_index = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void
ex_init(void)
{
	ex_index = SSL_get_ex_new_index(0, "scagent tls conn", NULL, NULL, NULL);
}

static struct sc_tls_conn *
conn_of(const SSL *ssl)
{
	return SSL_get_ex_data(ssl, ex_index);
}

static int
verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct sc_tls_conn *c = ssl ? conn_of(ssl) : NULL;

	if (c != NULL && c->peer_names[0] == '\0' && X509_STORE_CTX_get0_cert(xs) != NULL)
		sc_tls_principal_matches(X509_STORE_CTX_get0_cert(xs), "", c->peer_names,
		    sizeof(c->peer_names));
	if (!ok && c != NULL && c->verify_err == X509_V_OK) {
		X509 *x = X509_STORE_CTX_get_current_cert(xs);
		c->verify_err = X509_STORE_CTX_get_error(xs);
		c->verify_depth = X509_STORE_CTX_get_error_depth(xs);
		name_text(x ? X509_get_subject_name(x) : NULL, c->verify_subject, sizeof(c->verify_subject));
	}
	return c != NULL && !c->o->strict ? 1 : ok;
}

/*
 * The whole check of the server certificate, where OpenSSL verifies it: the
 * chain (and, strict, the host name) by X509_verify_cert, then --principal.
 * A strict handshake with a server for another principal ends here, before
 * the server's CertificateRequest can be answered; not strict, the failure
 * is only recorded (cert_cb then offers no certificate).
 */
static int
cert_verify_cb(X509_STORE_CTX *xs, void *arg)
{
	struct sc_tls_conn *c = arg;
	X509 *leaf = X509_STORE_CTX_get0_cert(xs);
	STACK_OF(X509) *sent = X509_STORE_CTX_get0_untrusted(xs);
	int ok;

	/* What the server sent, for probe-diag's incomplete-chain. */
	c->sent_certs = sent ? sk_X509_num(sent) : 0;
	c->sent_last_is_ca = c->sent_certs > 0 && X509_check_ca(sk_X509_value(sent, c->sent_certs - 1)) > 0;
	ok = X509_verify_cert(xs);

	if (ok > 0 && c->o->principal != NULL &&
	    (leaf == NULL || !sc_tls_principal_matches(leaf, c->o->principal, NULL, 0))) {
		c->principal_bad = 1;
		if (c->o->strict) {
			X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
			ok = 0;
		}
	}
	return c->o->strict ? ok : 1;
}

/*
 * 1 when the server passed its checks (trusted chain, host name, principal);
 * else 0 with c->refused and c->refused_kind saying which failed.
 */
static int
server_passed(struct sc_tls_conn *c, SSL *ssl)
{
	X509 *peer = SSL_get0_peer_certificate(ssl);
	long v = SSL_get_verify_result(ssl);
	char names[512];

	if (peer == NULL) {
		c->refused_kind = SC_TLS_E_CHAIN;
		snprintf(c->refused, sizeof(c->refused), "the server sent no certificate");
	} else if (c->verify_err != X509_V_OK || (v != X509_V_OK && !c->principal_bad)) {
		c->refused_kind = SC_TLS_E_CHAIN;
		snprintf(c->refused, sizeof(c->refused), "its certificate is not trusted: %s",
		    X509_verify_cert_error_string(c->verify_err != X509_V_OK ? c->verify_err : v));
	} else if (!sc_tls_host_matches(peer, c->host)) {
		sc_tls_principal_matches(peer, "", names, sizeof(names));
		c->refused_kind = SC_TLS_E_NAME;
		snprintf(c->refused, sizeof(c->refused), "its certificate is not for %.200s (it names %.250s)",
		    c->host, names[0] ? names : "no DNS name");
	} else if (c->o->principal != NULL &&
	    (c->principal_bad || !sc_tls_principal_matches(peer, c->o->principal, names, sizeof(names)))) {
		sc_tls_principal_matches(peer, "", names, sizeof(names));
		c->refused_kind = SC_TLS_E_PRINCIPAL;
		snprintf(c->refused, sizeof(c->refused), "--principal msstd:%.150s does not match its "
		    "certificate, which names %.250s", c->o->principal, names[0] ? names : "nothing");
	} else
		return 1;
	return 0;
}

static void
info_cb(const SSL *ssl, int where, int ret)
{
	struct sc_tls_conn *c = conn_of(ssl);

	if (c == NULL || !(where & SSL_CB_ALERT) || !(where & SSL_CB_READ))
		return;
	if ((ret >> 8) == SSL3_AL_FATAL || (ret & 0xff) != SSL_AD_CLOSE_NOTIFY) {
		if (c->alert[0] == '\0' && (ret & 0xff) != SSL_AD_CLOSE_NOTIFY) {
			/* OpenSSL 3.0 has no name for TLS 1.3's certificate_required (116). */
			snprintf(c->alert, sizeof(c->alert), "%s", (ret & 0xff) == 116 ?
			    "certificate required" : SSL_alert_desc_string_long(ret));
			c->alert_after_cert = c->cert_sent;
		}
	}
}

static void
record_request(struct sc_tls_conn *c, SSL *ssl)
{
	const STACK_OF(X509_NAME) *names = SSL_get0_peer_CA_list(ssl);
	int n;

	sk_X509_NAME_pop_free(c->req.ca_names, X509_NAME_free);
	c->req.ca_names = names ? sk_X509_NAME_deep_copy(names, X509_NAME_dup, X509_NAME_free) :
	    sk_X509_NAME_new_null();
	c->req.version = SSL_version(ssl);
	c->req.nsigalgs = 0;
	n = SSL_get_sigalgs(ssl, -1, NULL, NULL, NULL, NULL, NULL);
	for (int i = 0; i < n && c->req.nsigalgs < (int)(sizeof(c->req.sigalgs) / sizeof(c->req.sigalgs[0])); i++) {
		unsigned char rsig = 0, rhash = 0;
		SSL_get_sigalgs(ssl, i, NULL, NULL, NULL, &rsig, &rhash);
		c->req.sigalgs[c->req.nsigalgs++] = (uint16_t)((rhash << 8) | rsig);
	}
}

static void sigalgs_text(const struct sc_tls_req *req, char *buf, size_t len);

static int
cert_cb(SSL *ssl, void *arg)
{
	struct sc_tls_conn *c = arg;
	int phase, r;

	phase = !c->handshake_done ? SC_TLS_REQ_HANDSHAKE :
	    SSL_version(ssl) >= TLS1_3_VERSION ? SC_TLS_REQ_PHA : SC_TLS_REQ_RENEGOTIATION;
	if (c->req_phase == SC_TLS_REQ_NONE)
		c->req_phase = phase;
	c->requests++;
	record_request(c, ssl);
	sc_tls_note(c, "the server asks for a client certificate %s (%d acceptable CA name%s)",
	    sc_tls_req_phase_text(phase), sk_X509_NAME_num(c->req.ca_names),
	    sk_X509_NAME_num(c->req.ca_names) == 1 ? "" : "s");
	if (c->o->verbose) {
		for (int i = 0; i < sk_X509_NAME_num(c->req.ca_names); i++) {
			char nm[256];
			name_text(sk_X509_NAME_value(c->req.ca_names, i), nm, sizeof(nm));
			sc_tls_note(c, "  acceptable CA: %s", nm);
		}
	}
	if (c->o->verbose) {
		char sa[512];
		sigalgs_text(&c->req, sa, sizeof(sa));
		sc_tls_note(c, "  signature schemes accepted: %s", sa);
	}
	if (c->cert_sent)
		return 1;	/* the certificate already given stays */
	if (!c->o->offer_cert || c->o->resume_only)
		return 1;
	/*
	 * Nothing is offered, and so nothing signed, for a server that failed
	 * its checks: a strict handshake never gets here with one, this is the
	 * guard for the others. 0 ends the handshake (TLS 1.3: after the
	 * server's Finished, before the client's Certificate).
	 */
	if (!server_passed(c, ssl)) {
		sc_tls_note(c, "offering no certificate: %s", c->refused);
		return 0;
	}
	r = c->choice_err = sc_tls_choose_cert(c->o, &c->req, &c->choice, c->logprefix);
	if (r != SC_OK) {
		sc_tls_note(c, "sending no certificate: %s", c->choice.why);
		return 1;
	}
	memset(&c->signer, 0, sizeof(c->signer));
	if ((r = sc_tls_agent_get(c->o->agent, &c->signer.client, c->choice.why,
	    sizeof(c->choice.why))) != SC_OK)
		return 1;
	snprintf(c->signer.ref, sizeof(c->signer.ref), "%s", c->choice.sha256);
	snprintf(c->signer.label, sizeof(c->signer.label), "%s", c->choice.label);
	c->signer.ask_pin = c->o->ask_pin;
	if ((r = sc_tls_agent_pkey(c->choice.cert, &c->signer, &c->pkey)) != SC_OK) {
		snprintf(c->choice.why, sizeof(c->choice.why), "cannot use the key of \"%s\" "
		    "with OpenSSL: %s", c->choice.label, sc_strerror(r));
		return 0;
	}
	if (SSL_use_cert_and_key(ssl, c->choice.cert, c->pkey, c->choice.chain, 1) != 1) {
		snprintf(c->choice.why, sizeof(c->choice.why), "OpenSSL refused the certificate "
		    "\"%s\" with its token key", c->choice.label);
		return 0;
	}
	c->cert_sent = 1;
	sc_tls_note(c, "sending certificate \"%s\" (%s) with %d intermediate%s",
	    c->choice.label, c->choice.subject, sk_X509_num(c->choice.chain),
	    sk_X509_num(c->choice.chain) == 1 ? "" : "s");
	return 1;
}

/* ---------------------------------------------------------------- sessions */

/* Sessions are kept and resumed only where the certificate goes to a server that passed its checks. */
static int
keeps_sessions(const struct sc_tls_conn *c)
{
	return c->o->sessions != NULL && c->o->strict && c->o->offer_cert;
}

const char *
sc_tls_identity(const struct sc_tls_conn *c, const char **token)
{
	const struct sc_tls_sess_id *id = &c->sess_id;

	if (token != NULL)
		*token = NULL;
	if (c->cert_sent) {
		if (token != NULL)
			*token = c->choice.token;
		return c->choice.label;
	}
	if (!c->resumed)
		return NULL;
	if (token != NULL)
		*token = id->token;
	return id->label;
}

/*
 * OpenSSL has a new session for this connection: at the end of a full TLS
 * 1.2 handshake (also a renegotiation's), or a TLS 1.3 ticket, which comes
 * after the handshake (also after post-handshake authentication). It is
 * kept when it carries the client's identity: a certificate was sent on
 * this connection, or the session resumed was made with one.
 */
static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct sc_tls_conn *c = conn_of(ssl);
	struct sc_tls_sess_id id;

	if (c == NULL || !keeps_sessions(c))
		return 0;
	memset(&id, 0, sizeof(id));
	if (c->cert_sent) {
		snprintf(id.sha256, sizeof(id.sha256), "%s", c->choice.sha256);
		snprintf(id.label, sizeof(id.label), "%s", c->choice.label);
		snprintf(id.token, sizeof(id.token), "%s", c->choice.token);
	} else if (c->resumed || SSL_session_reused(ssl))
		id = c->sess_id;
	else
		return 0;	/* no certificate in it: resuming it would cost a signature anyway */
	if (sc_tls_sessions_put(c->o->sessions, c->host, c->port, &id, sess))
		sc_tls_note(c, "session kept for %s:%s with certificate \"%s\" (%s, for %ld s at most)",
		    c->host, c->port, id.label, SSL_SESSION_get_protocol_version(sess) >= TLS1_3_VERSION ?
		    "TLS 1.3 ticket" : SSL_SESSION_has_ticket(sess) ? "TLS 1.2 ticket" :
		    "TLS 1.2 session id", SSL_SESSION_get_timeout(sess));
	return 0;	/* the cache keeps a copy, not this reference */
}

/* ---------------------------------------------------------------- handshake */

static int
setup_ctx(struct sc_tls_conn *c)
{
	static const unsigned char alpn[] = "\x08http/1.1";
	unsigned long e;

	if ((c->ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		return fail(c, SC_TLS_E_HANDSHAKE, SC_ERR_NOMEM, "cannot create a TLS context");
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(c->ctx, c->o->tls_max ? c->o->tls_max : TLS1_3_VERSION);
	SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
	if (c->o->cafile != NULL) {
		if (SSL_CTX_load_verify_locations(c->ctx, c->o->cafile, NULL) != 1) {
			e = ERR_peek_last_error();
			ERR_clear_error();
			return fail(c, SC_TLS_E_USAGE, SC_ERR_INVALID, "cannot read --cafile %s: %s",
			    c->o->cafile, ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "no certificates");
		}
	} else
		SSL_CTX_set_default_verify_paths(c->ctx);
	SSL_CTX_set_verify(c->ctx, c->o->strict ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, verify_cb);
	SSL_CTX_set_cert_verify_callback(c->ctx, cert_verify_cb, c);
	if (keeps_sessions(c)) {
		/* Sessions go to o->sessions only (shared by the connections), none to this context. */
		SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(c->ctx, new_session_cb);
		/* A TLS 1.2 session id has no lifetime from the server: ours. */
		SSL_CTX_set_timeout(c->ctx, sc_tls_sessions_lifetime(c->o->sessions));
	}
	if ((c->ssl = SSL_new(c->ctx)) == NULL)
		return fail(c, SC_TLS_E_HANDSHAKE, SC_ERR_NOMEM, "cannot create a TLS connection");
	pthread_once(&ex_once, ex_init);
	SSL_set_ex_data(c->ssl, ex_index, c);
	SSL_set_cert_cb(c->ssl, cert_cb, c);
	SSL_set_info_callback(c->ssl, info_cb);
	SSL_set_post_handshake_auth(c->ssl, 1);
	SSL_set_alpn_protos(c->ssl, alpn, sizeof(alpn) - 1);
	if (c->o->strict) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
		unsigned char tmp[16];
		if (inet_pton(AF_INET, c->host, tmp) == 1 || inet_pton(AF_INET6, c->host, tmp) == 1)
			X509_VERIFY_PARAM_set1_ip_asc(vp, c->host);
		else {
			X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			X509_VERIFY_PARAM_set1_host(vp, c->host, 0);
		}
	}
	{
		unsigned char tmp[16];
		if (inet_pton(AF_INET, c->host, tmp) != 1 && inet_pton(AF_INET6, c->host, tmp) != 1)
			SSL_set_tlsext_host_name(c->ssl, c->host);
	}
	SSL_set_fd(c->ssl, c->fd);
	return SC_OK;
}

/* The OpenSSL error queue as one short line. */
static void
ssl_errors(char *buf, size_t len)
{
	unsigned long e;
	size_t off = 0;

	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		const char *r = ERR_reason_error_string(e);
		char tmp[256];
		if (r == NULL) {
			ERR_error_string_n(e, tmp, sizeof(tmp));
			r = tmp;
		}
		if (off < len && strstr(buf, r) == NULL)
			off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? "; " : "", r);
	}
}

static const char *
verify_text(long err)
{
	return X509_verify_cert_error_string(err);
}

void
sc_tls_record_failure(struct sc_tls_conn *c, int ret, const char *during)
{
	int e = SSL_get_error(c->ssl, ret), saved = errno;
	char errs[384];

	ssl_errors(errs, sizeof(errs));
	if (c->choice_err == SC_ERR_AGENT_UNREACHABLE) {
		fail(c, SC_TLS_E_AGENT, SC_ERR_AGENT_UNREACHABLE, "the server asks for a client "
		    "certificate and the agent is unreachable: %s", c->choice.why);
		return;
	}
	if (c->refused[0] != '\0') {
		fail(c, c->refused_kind, SC_ERR_TLS, "no client certificate was offered to %.200s:%s "
		    "and the connection was ended: %s", c->host, c->port, c->refused);
		return;
	}
	if (c->o->strict && c->principal_bad) {
		fail(c, SC_TLS_E_PRINCIPAL, SC_ERR_TLS, "--principal msstd:%s does not match the "
		    "server certificate, which names %s; the connection was ended before any "
		    "client certificate", c->o->principal, c->peer_names[0] ? c->peer_names :
		    "nothing (no CN, no DNS name)");
		return;
	}
	if (c->signer.last_err == SC_ERR_NOT_LOGGED_IN) {
		fail(c, SC_TLS_E_SIGN, SC_ERR_TLS, "the key of \"%s\" cannot sign: token \"%s\" needs "
		    "a login; run `scagent login --token %s` first", c->signer.label, c->choice.token,
		    c->choice.token);
		return;
	}
	if (c->signer.last_err != 0) {
		fail(c, c->signer.last_err == SC_ERR_AGENT_UNREACHABLE ? SC_TLS_E_AGENT : SC_TLS_E_SIGN,
		    SC_ERR_TLS, "the agent could not sign with \"%s\" (%s): %s", c->signer.label,
		    c->signer.last_alg, c->signer.last_msg);
		return;
	}
	if (c->o->strict && c->verify_err != X509_V_OK) {
		if (c->verify_err == X509_V_ERR_HOSTNAME_MISMATCH || c->verify_err == X509_V_ERR_IP_ADDRESS_MISMATCH) {
			fail(c, SC_TLS_E_NAME, SC_ERR_TLS, "the server certificate is not for %s "
			    "(it names %s)", c->host, c->peer_names[0] ? c->peer_names : "no DNS name");
		} else
			fail(c, SC_TLS_E_CHAIN, SC_ERR_TLS, "the server certificate is not trusted: %s "
			    "(at depth %d, %s)", verify_text(c->verify_err), c->verify_depth, c->verify_subject);
		return;
	}
	if (c->alert[0] != '\0') {
		if (c->alert_after_cert)
			fail(c, SC_TLS_E_REJECTED, SC_ERR_TLS, "the server rejected the client "
			    "certificate \"%s\" %s: TLS alert \"%s\"", c->choice.label, during, c->alert);
		else if (c->requests > 0 && !c->cert_sent)
			fail(c, SC_TLS_E_NOCERT, SC_ERR_TLS, "the server requires a client certificate "
			    "and none was sent (TLS alert \"%s\" %s): %s", c->alert, during,
			    c->choice.why[0] ? c->choice.why : "no certificate chosen");
		else
			fail(c, SC_TLS_E_HANDSHAKE, SC_ERR_TLS, "TLS failed %s: the server sent the "
			    "alert \"%s\"", during, c->alert);
		return;
	}
	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && saved == 0) ||
	    (e == SSL_ERROR_SSL && strstr(errs, "unexpected eof") != NULL)) {
		if (c->cert_sent)
			fail(c, SC_TLS_E_CLOSED, SC_ERR_TLS, "the server closed the connection %s, "
			    "after it received the client certificate \"%s\", without a TLS alert",
			    during, c->choice.label);
		else if (c->requests > 0)
			fail(c, SC_TLS_E_NOCERT, SC_ERR_TLS, "the server closed the connection %s; it "
			    "had asked for a client certificate and none was sent: %s", during,
			    c->choice.why[0] ? c->choice.why : "no certificate chosen");
		else
			fail(c, SC_TLS_E_HANDSHAKE, SC_ERR_TLS, "the server closed the connection %s", during);
		return;
	}
	if (e == SSL_ERROR_SYSCALL && (saved == EAGAIN || saved == EWOULDBLOCK)) {
		fail(c, SC_TLS_E_TIMEOUT, SC_ERR_TIMEOUT, "no answer from %s:%s %s within %d s",
		    c->host, c->port, during, c->o->timeout_ms / 1000);
		return;
	}
	if (e == SSL_ERROR_SYSCALL) {
		fail(c, c->cert_sent ? SC_TLS_E_CLOSED : c->handshake_done ? SC_TLS_E_IO : SC_TLS_E_HANDSHAKE,
		    SC_ERR_IO, "connection to %s:%s failed %s: %s%s", c->host, c->port, during,
		    strerror(saved), c->cert_sent ? " (after the client certificate was sent)" : "");
		return;
	}
	if (c->requests > 0 && !c->cert_sent && c->choice.why[0] && c->o->offer_cert)
		fail(c, SC_TLS_E_NOCERT, SC_ERR_TLS, "TLS failed %s (%s); no client certificate "
		    "was sent: %s", during, errs[0] ? errs : "unknown error", c->choice.why);
	else
		fail(c, c->handshake_done ? SC_TLS_E_IO : SC_TLS_E_HANDSHAKE, SC_ERR_TLS,
		    "TLS failed %s: %s", during, errs[0] ? errs : "unknown error");
}

void
sc_tls_describe(const struct sc_tls_conn *c, char *buf, size_t len)
{
	if (c->ssl == NULL) {
		snprintf(buf, len, "no TLS");
		return;
	}
	snprintf(buf, len, "%s, %s", SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
}

/*
 * A kept session for this server (and --cert) goes into the ClientHello;
 * while another connection's handshake for it is in flight, this one waits
 * for its session rather than have the card sign in parallel.
 */
static void
offer_session(struct sc_tls_conn *c)
{
	SSL_SESSION *sess;
	int wait_ms = c->o->timeout_ms > 0 ? c->o->timeout_ms : 120000;

	sess = sc_tls_sessions_get(c->o->sessions, c->host, c->port, c->o->cert_fp, &c->sess_id,
	    &c->flight, wait_ms);
	if (sess == NULL)
		return;
	if (SSL_set_session(c->ssl, sess) != 1)
		memset(&c->sess_id, 0, sizeof(c->sess_id));
	else
		sc_tls_note(c, "offering the kept session of certificate \"%s\"", c->sess_id.label);
	SSL_SESSION_free(sess);
}

int
sc_tls_handshake(struct sc_tls_conn *c)
{
	char desc[128];
	int r, ret;

	if ((r = setup_ctx(c)) != SC_OK)
		return r;
	if (keeps_sessions(c))
		offer_session(c);
	ERR_clear_error();
	ret = SSL_connect(c->ssl);
	if (ret != 1) {
		sc_tls_record_failure(c, ret, "during the handshake");
		sc_tls_sessions_end(c->o->sessions, c->flight);
		c->flight = 0;
		return SC_ERR_TLS;
	}
	c->handshake_done = 1;
	c->resumed = c->sess_id.sha256[0] != '\0' && SSL_session_reused(c->ssl);
	if (c->sess_id.sha256[0] != '\0')
		sc_tls_note(c, c->resumed ? "session resumed: certificate \"%s\" without a signature" :
		    "the server did not resume the session of \"%s\"", c->sess_id.label);
	if (c->flight != 0) {
		/*
		 * TLS 1.2 kept its session in the handshake; a TLS 1.3 ticket
		 * comes just after it, so the waiters wait a moment more. No
		 * certificate, no card: nothing to wait for.
		 */
		if (SSL_version(c->ssl) >= TLS1_3_VERSION && c->cert_sent)
			sc_tls_sessions_done(c->o->sessions, c->flight, 2000);
		else {
			sc_tls_sessions_end(c->o->sessions, c->flight);
			c->flight = 0;
		}
	}
	sc_tls_describe(c, desc, sizeof(desc));
	sc_tls_note(c, "TLS handshake done: %s", desc);
	if (c->cert_sent)
		sc_tls_note(c, "client certificate \"%s\" sent%s%s", c->choice.label,
		    c->signer.nsigs ? ", signed with " : "", c->signer.nsigs ? c->signer.last_alg : "");
	return SC_OK;
}

/* ---------------------------------------------------------------- principal */

static void
append_name(char *names, size_t len, const char *n)
{
	size_t off = strlen(names);

	if (off < len)
		snprintf(names + off, len - off, "%s%s", off ? ", " : "", n);
}

int
sc_tls_principal_matches(X509 *x, const char *name, char *names, size_t nameslen)
{
	X509_NAME *subj = X509_get_subject_name(x);
	GENERAL_NAMES *gens;
	int match = 0, i = -1;

	if (names && nameslen)
		names[0] = '\0';
	while ((i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0) {
		ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
		unsigned char *u = NULL;
		int n = ASN1_STRING_to_UTF8(&u, d);
		if (n > 0 && memchr(u, '\0', (size_t)n) == NULL) {
			if (strcasecmp((char *)u, name) == 0)
				match = 1;
			if (names)
				append_name(names, nameslen, (char *)u);
		}
		OPENSSL_free(u);
	}
	if ((gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL)) != NULL) {
		for (int k = 0; k < sk_GENERAL_NAME_num(gens); k++) {
			GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, k);
			const char *s;
			int n;
			if (g->type != GEN_DNS)
				continue;
			s = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
			n = ASN1_STRING_length(g->d.dNSName);
			if (n <= 0 || memchr(s, '\0', (size_t)n) != NULL)
				continue;
			if ((size_t)n == strlen(name) && strncasecmp(s, name, (size_t)n) == 0)
				match = 1;
			if (names) {
				char tmp[256];
				snprintf(tmp, sizeof(tmp), "%.*s", n, s);
				append_name(names, nameslen, tmp);
			}
		}
		GENERAL_NAMES_free(gens);
	}
	return match;
}

int
sc_tls_host_matches(X509 *x, const char *host)
{
	unsigned char tmp[16];

	if (inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1)
		return X509_check_ip_asc(x, host, 0) == 1;
	return X509_check_host(x, host, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
}

int
sc_tls_check_principal(struct sc_tls_conn *c)
{
	X509 *peer;
	char names[512];

	if (c->o->principal == NULL)
		return SC_OK;
	if ((peer = SSL_get0_peer_certificate(c->ssl)) == NULL)
		return fail(c, SC_TLS_E_PRINCIPAL, SC_ERR_TLS, "the server sent no certificate to "
		    "check --principal against");
	if (!sc_tls_principal_matches(peer, c->o->principal, names, sizeof(names)))
		return fail(c, SC_TLS_E_PRINCIPAL, SC_ERR_TLS, "--principal msstd:%s does not match "
		    "the server certificate, which names %s", c->o->principal,
		    names[0] ? names : "nothing (no CN, no DNS name)");
	sc_tls_note(c, "principal msstd:%s matches the server certificate", c->o->principal);
	return SC_OK;
}

int
sc_tls_open(struct sc_tls_conn *c)
{
	struct addrinfo *res = NULL;
	int r;

	if ((r = sc_tls_proxy_choose(c)) != SC_OK || (r = sc_tls_resolve(c, &res)) != SC_OK)
		return r;
	r = sc_tls_tcp(c, res);
	freeaddrinfo(res);
	if (r != SC_OK)
		return r;
	if (c->via_proxy && (r = sc_tls_proxy_connect(c)) != SC_OK)
		return r;
	if ((r = sc_tls_handshake(c)) != SC_OK)
		return r;
	return sc_tls_check_principal(c);
}

/* ---------------------------------------------------------------- choice */

static const struct {
	uint16_t code;
	const char *name;
} sigalg_names[] = {
	{ 0x0401, "rsa_pkcs1_sha256" }, { 0x0501, "rsa_pkcs1_sha384" }, { 0x0601, "rsa_pkcs1_sha512" },
	{ 0x0804, "rsa_pss_rsae_sha256" }, { 0x0805, "rsa_pss_rsae_sha384" }, { 0x0806, "rsa_pss_rsae_sha512" },
	{ 0x0403, "ecdsa_secp256r1_sha256" }, { 0x0503, "ecdsa_secp384r1_sha384" },
	{ 0x0603, "ecdsa_secp521r1_sha512" },
};

/* The request's signature schemes the agent can make, by name. */
static void
sigalgs_text(const struct sc_tls_req *req, char *buf, size_t len)
{
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(sigalg_names) / sizeof(sigalg_names[0]); i++)
		for (int k = 0; k < req->nsigalgs; k++)
			if (req->sigalgs[k] == sigalg_names[i].code)
				append_name(buf, len, sigalg_names[i].name);
	if (buf[0] == '\0')
		snprintf(buf, len, "none the agent makes");
}

static int
req_has(const struct sc_tls_req *req, uint16_t code)
{
	for (int i = 0; i < req->nsigalgs; i++)
		if (req->sigalgs[i] == code)
			return 1;
	return 0;
}

/* NULL when a key of this type can answer req, else why not. */
static const char *
key_unfit(const char *type, const char *curve, const struct sc_tls_req *req, char *buf, size_t len)
{
	int tls13 = req->version >= TLS1_3_VERSION;

	if (req->nsigalgs == 0)
		return NULL;
	if (type != NULL && strcmp(type, "rsa") == 0) {
		if (req_has(req, 0x0804) || req_has(req, 0x0805) || req_has(req, 0x0806))
			return NULL;
		if (!tls13 && (req_has(req, 0x0401) || req_has(req, 0x0501) || req_has(req, 0x0601)))
			return NULL;
		snprintf(buf, len, "an RSA key, and the server accepts no RSA signature scheme the "
		    "agent makes%s", tls13 ? " (TLS 1.3 needs RSA-PSS)" : "");
		return buf;
	}
	if (type != NULL && strcmp(type, "ec") == 0) {
		uint16_t want = curve == NULL ? 0 : strcmp(curve, "prime256v1") == 0 ? 0x0403 :
		    strcmp(curve, "secp384r1") == 0 ? 0x0503 : strcmp(curve, "secp521r1") == 0 ? 0x0603 : 0;
		if (tls13 ? req_has(req, want) :
		    (req_has(req, 0x0403) || req_has(req, 0x0503) || req_has(req, 0x0603)))
			return NULL;
		snprintf(buf, len, "an EC key (%s), and the server accepts no matching ECDSA scheme",
		    curve ? curve : "unknown curve");
		return buf;
	}
	snprintf(buf, len, "a %s key, which TLS client authentication through the agent "
	    "does not support", type ? type : "unknown");
	return buf;
}

static int
name_in(const STACK_OF(X509_NAME) *names, const X509_NAME *n)
{
	for (int i = 0; i < sk_X509_NAME_num(names); i++)
		if (X509_NAME_cmp(sk_X509_NAME_value(names, i), n) == 0)
			return 1;
	return 0;
}

static X509 *
find_subject(STACK_OF(X509) *pool, const X509_NAME *n)
{
	for (int i = 0; i < sk_X509_num(pool); i++)
		if (X509_NAME_cmp(X509_get_subject_name(sk_X509_value(pool, i)), n) == 0)
			return sk_X509_value(pool, i);
	return NULL;
}

static int
self_issued(X509 *x)
{
	return X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0;
}

/*
 * Walk up from leaf through pool; 1 when a certificate on the way is issued
 * by one of names (or names is empty). chain gets the intermediates found.
 */
static int
chains_to(X509 *leaf, STACK_OF(X509) *pool, const STACK_OF(X509_NAME) *names,
    STACK_OF(X509) *chain, char *matched, size_t mlen)
{
	X509 *cur = leaf, *up;
	int found = sk_X509_NAME_num(names) == 0;

	for (int depth = 0; depth < 8; depth++) {
		if (!found && name_in(names, X509_get_issuer_name(cur))) {
			found = 1;
			name_text(X509_get_issuer_name(cur), matched, mlen);
		}
		if (self_issued(cur) || (up = find_subject(pool, X509_get_issuer_name(cur))) == NULL || up == cur)
			break;
		if (!self_issued(up) && chain != NULL && X509_up_ref(up))
			sk_X509_push(chain, up);
		cur = up;
	}
	return found;
}

static X509 *
der_to_x509(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;

	return d2i_X509(NULL, &p, (long)len);
}

/* Certificate and token CA certificates from the agent; pool gets the CAs (and --cafile's). */
static int
fetch_cert(scagent_client *cl, const char *ref, const char *cafile, X509 **x,
    STACK_OF(X509) *pool, char *why, size_t whylen)
{
	unsigned char *der = NULL;
	size_t len = 0;
	char *chain = NULL;
	json_object *arr = NULL;
	int r;

	*x = NULL;
	if ((r = scagent_get_cert(cl, ref, &der, &len, &chain)) != SC_OK) {
		snprintf(why, whylen, "%s", scagent_error(cl));
		return r;
	}
	*x = der_to_x509(der, len);
	scagent_free(der);
	if (*x == NULL) {
		scagent_free(chain);
		snprintf(why, whylen, "the agent's certificate \"%s\" does not parse", ref);
		return SC_ERR_CERT;
	}
	if (chain != NULL && (arr = json_tokener_parse(chain)) != NULL &&
	    json_object_is_type(arr, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			unsigned char *d = NULL;
			size_t dl = 0;
			X509 *ca;
			if (sc_unb64(json_object_get_string(json_object_array_get_idx(arr, i)), &d, &dl) != SC_OK)
				continue;
			if ((ca = der_to_x509(d, dl)) != NULL && !sk_X509_push(pool, ca))
				X509_free(ca);
			free(d);
		}
	}
	json_object_put(arr);
	scagent_free(chain);
	if (cafile != NULL) {
		FILE *fp = fopen(cafile, "r");
		X509 *ca;
		while (fp != NULL && (ca = PEM_read_X509(fp, NULL, NULL, NULL)) != NULL)
			if (!sk_X509_push(pool, ca))
				X509_free(ca);
		if (fp != NULL)
			fclose(fp);
		ERR_clear_error();
	}
	return SC_OK;
}

static void
accept_names(const struct sc_tls_req *req, char *buf, size_t len)
{
	buf[0] = '\0';
	for (int i = 0; i < sk_X509_NAME_num(req->ca_names); i++) {
		char nm[256];
		name_text(sk_X509_NAME_value(req->ca_names, i), nm, sizeof(nm));
		append_name(buf, len, nm);
	}
}

static void
set_choice(struct sc_tls_choice *ch, X509 *x, STACK_OF(X509) *chain, const char *label,
    const char *token)
{
	ch->cert = x;
	ch->chain = chain;
	snprintf(ch->label, sizeof(ch->label), "%s", label);
	snprintf(ch->token, sizeof(ch->token), "%s", token ? token : "");
	sc_cert_sha256_hex(x, ch->sha256);
	name_text(X509_get_subject_name(x), ch->subject, sizeof(ch->subject));
}

static const char *
jstr(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

/* A CA certificate kept on the token for the chain: not a candidate. */
static int
is_ca_cert(json_object *ce)
{
	json_object *ku;

	if (!json_object_object_get_ex(ce, "key_usage", &ku))
		return 0;
	for (size_t i = 0; i < json_object_array_length(ku); i++)
		if (strcmp(json_object_get_string(json_object_array_get_idx(ku, i)), "keyCertSign") == 0)
			return 1;
	return 0;
}

/* The token's login state lets the agent sign now (or it will ask for the PIN). */
static int
token_usable(json_object *tok)
{
	json_object *flags, *v;

	if (!json_object_object_get_ex(tok, "flags", &flags))
		return 1;
	if (json_object_object_get_ex(flags, "logged_in", &v) && json_object_get_boolean(v))
		return 1;
	return json_object_object_get_ex(flags, "login_required", &v) && !json_object_get_boolean(v);
}

static void
sc_tls_choice_clear_cert(struct sc_tls_choice *ch)
{
	X509_free(ch->cert);
	ch->cert = NULL;
	x509s_free(ch->chain);
	ch->chain = NULL;
}

int
sc_tls_find_cert(struct sc_tls_opts *o, char *why, size_t whylen)
{
	scagent_client *cl = NULL;
	json_object *args = NULL, *found = NULL;
	char *res = NULL;
	const char *fp;
	int r;

	o->cert_fp[0] = '\0';
	if (o->cert_ref == NULL)
		return SC_OK;
	if ((r = sc_tls_agent_get(o->agent, &cl, why, whylen)) != SC_OK)
		return r;
	if ((args = json_object_new_object()) == NULL) {
		r = SC_ERR_NOMEM;
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	json_object_object_add(args, "ref", json_object_new_string(o->cert_ref));
	if ((r = scagent_call(cl, "find", json_object_to_json_string(args), &res)) != SC_OK) {
		/* The agent's message lists the candidates. */
		snprintf(why, whylen, "--cert: %s", scagent_error(cl));
		goto out;
	}
	if ((found = json_tokener_parse(res)) == NULL || (fp = jstr(found, "sha256")) == NULL ||
	    strlen(fp) != 64) {
		r = SC_ERR_PROTOCOL;
		snprintf(why, whylen, "--cert %s: the agent's answer names no certificate", o->cert_ref);
		goto out;
	}
	snprintf(o->cert_fp, sizeof(o->cert_fp), "%s", fp);
	note_prefix(o->verbose, "", "--cert %s is \"%s\" on token %s (%.16s)", o->cert_ref,
	    jstr(found, "label") ? jstr(found, "label") : "", jstr(found, "token") ?
	    jstr(found, "token") : "?", fp);
	r = SC_OK;
out:
	json_object_put(found);
	json_object_put(args);
	scagent_free(res);
	return r;
}

int
sc_tls_choose_cert(const struct sc_tls_opts *o, const struct sc_tls_req *req,
    struct sc_tls_choice *ch, const char *logprefix)
{
	scagent_client *cl = NULL;
	json_object *list = NULL, *toks, *v;
	char *text = NULL, reason[256], accepted[512], skipped[512] = "";
	int r, nskipped = 0, score, best = 0;

	sc_tls_choice_clear(ch);
	accept_names(req, accepted, sizeof(accepted));
	if ((r = sc_tls_agent_get(o->agent, &cl, ch->why, sizeof(ch->why))) != SC_OK)
		return r;
	if (o->cert_ref != NULL) {
		STACK_OF(X509) *pool = sk_X509_new_null(), *chain = sk_X509_new_null();
		X509 *x = NULL;
		json_object *info = NULL;
		char fp[65];

		if ((r = fetch_cert(cl, o->cert_fp[0] ? o->cert_fp : o->cert_ref, o->cafile, &x, pool,
		    ch->why, sizeof(ch->why))) != SC_OK) {
			x509s_free(pool);
			sk_X509_free(chain);
			return r;
		}
		ch->candidates = 1;
		if (chains_to(x, pool, req->ca_names, chain, ch->matched_ca, sizeof(ch->matched_ca)))
			ch->matches = 1;
		else
			note_prefix(o->verbose, logprefix, "warning: --cert %s is not issued under a CA "
			    "the server names (%s); sending it anyway", o->cert_ref, accepted);
		sc_cert_sha256_hex(x, fp);
		/* The list entry of this certificate, for its key type and label. */
		if (scagent_list(cl, &text) == SC_OK && (list = json_tokener_parse(text)) != NULL &&
		    json_object_object_get_ex(list, "tokens", &toks)) {
			for (size_t t = 0; t < json_object_array_length(toks) && info == NULL; t++) {
				json_object *tok = json_object_array_get_idx(toks, t), *certs;
				if (!json_object_object_get_ex(tok, "certificates", &certs))
					continue;
				for (size_t i = 0; i < json_object_array_length(certs); i++) {
					json_object *ce = json_object_array_get_idx(certs, i);
					if (jstr(ce, "sha256") && strcmp(jstr(ce, "sha256"), fp) == 0) {
						info = ce;
						snprintf(ch->token, sizeof(ch->token), "%s", jstr(tok, "label") ? jstr(tok, "label") : "");
						break;
					}
				}
			}
		}
		if (info != NULL && json_object_object_get_ex(info, "key", &v) &&
		    key_unfit(jstr(v, "type"), jstr(v, "curve"), req, reason, sizeof(reason)) != NULL) {
			char asked[320];
			sc_tls_req_text(req, asked, sizeof(asked));
			snprintf(ch->why, sizeof(ch->why), "--cert %.150s has %.250s; the server asked for %s",
			    o->cert_ref, reason, asked);
			json_object_put(list);
			scagent_free(text);
			X509_free(x);
			x509s_free(pool);
			x509s_free(chain);
			return SC_ERR_KEY;
		}
		{
			char tok[128];
			snprintf(tok, sizeof(tok), "%s", ch->token);
			set_choice(ch, x, chain, info && jstr(info, "label") ? jstr(info, "label") : o->cert_ref, tok);
		}
		x509s_free(pool);
		json_object_put(list);
		scagent_free(text);
		return SC_OK;
	}
	if ((r = scagent_list(cl, &text)) != SC_OK) {
		snprintf(ch->why, sizeof(ch->why), "cannot list the agent's certificates: %s", scagent_error(cl));
		return r;
	}
	if ((list = json_tokener_parse(text)) == NULL || !json_object_object_get_ex(list, "tokens", &toks)) {
		scagent_free(text);
		json_object_put(list);
		snprintf(ch->why, sizeof(ch->why), "the agent's list is not JSON");
		return SC_ERR_PROTOCOL;
	}
	for (size_t t = 0; t < json_object_array_length(toks); t++) {
		json_object *tok = json_object_array_get_idx(toks, t), *certs;
		const char *tlabel = jstr(tok, "label");
		if (!json_object_object_get_ex(tok, "certificates", &certs))
			continue;
		for (size_t i = 0; i < json_object_array_length(certs); i++) {
			json_object *ce = json_object_array_get_idx(certs, i), *cba, *key = NULL;
			const char *label = jstr(ce, "label") ? jstr(ce, "label") : "(no label)";
			const char *sha = jstr(ce, "sha256");
			STACK_OF(X509) *pool, *chain;
			X509 *x = NULL;
			char matched[256] = "", why[256];

			if (sha == NULL || is_ca_cert(ce))
				continue;
			ch->candidates++;
			reason[0] = '\0';
			if (json_object_object_get_ex(ce, "cba", &cba) && json_object_object_get_ex(cba, "suitable", &v) &&
			    !json_object_get_boolean(v)) {
				json_object *probs;
				snprintf(reason, sizeof(reason), "not suitable for client authentication:");
				if (json_object_object_get_ex(cba, "problems", &probs))
					for (size_t k = 0; k < json_object_array_length(probs); k++) {
						size_t off = strlen(reason);
						snprintf(reason + off, sizeof(reason) - off, " %s",
						    json_object_get_string(json_object_array_get_idx(probs, k)));
					}
			} else if (json_object_object_get_ex(ce, "key", &key) &&
			    jstr(key, "private_key") && strcmp(jstr(key, "private_key"), "absent") == 0) {
				snprintf(reason, sizeof(reason), "no private key on the token");
			} else if (key_unfit(jstr(key, "type"), jstr(key, "curve"), req, why, sizeof(why)) != NULL) {
				snprintf(reason, sizeof(reason), "%s", why);
			}
			if (reason[0] != '\0') {
				note_prefix(o->verbose, logprefix, "skipped \"%s\" on %s: %s", label,
				    tlabel ? tlabel : "?", reason);
				if (nskipped++ < 4) {
					size_t off = strlen(skipped);
					snprintf(skipped + off, sizeof(skipped) - off, "%s%s (%s)",
					    off ? "; " : "", label, reason);
				}
				continue;
			}
			pool = sk_X509_new_null();
			chain = sk_X509_new_null();
			if (fetch_cert(cl, sha, o->cafile, &x, pool, why, sizeof(why)) != SC_OK) {
				note_prefix(o->verbose, logprefix, "skipped \"%s\": %s", label, why);
				x509s_free(pool);
				sk_X509_free(chain);
				continue;
			}
			if (!chains_to(x, pool, req->ca_names, chain, matched, sizeof(matched))) {
				char iss[256];
				name_text(X509_get_issuer_name(x), iss, sizeof(iss));
				note_prefix(o->verbose, logprefix, "skipped \"%s\" on %s: issued by %s, "
				    "which does not chain to a CA the server accepts", label, tlabel ? tlabel : "?", iss);
				if (nskipped++ < 4) {
					size_t off = strlen(skipped);
					snprintf(skipped + off, sizeof(skipped) - off, "%s%s (issued by %s)",
					    off ? "; " : "", label, iss);
				}
				X509_free(x);
				x509s_free(pool);
				x509s_free(chain);
				continue;
			}
			ch->matches++;
			/* Prefer a key known to be there, on a token the agent can use now. */
			score = (jstr(key, "private_key") && strcmp(jstr(key, "private_key"), "present") == 0 ? 2 : 1) +
			    (token_usable(tok) ? 2 : 0);
			note_prefix(o->verbose, logprefix, "\"%s\" on %s fits: it chains to %s%s", label,
			    tlabel ? tlabel : "?", matched[0] ? matched : "(any CA accepted)",
			    score < 4 ? " (token not logged in, or private key not visible yet)" : "");
			if (score > best) {
				sc_tls_choice_clear_cert(ch);
				best = score;
				set_choice(ch, x, chain, label, tlabel);
				snprintf(ch->matched_ca, sizeof(ch->matched_ca), "%s", matched[0] ? matched : "any CA");
			} else {
				X509_free(x);
				x509s_free(chain);
			}
			x509s_free(pool);
		}
	}
	json_object_put(list);
	scagent_free(text);
	if (ch->cert != NULL) {
		note_prefix(o->verbose, logprefix, "chose \"%s\" on %s (%s)%s", ch->label, ch->token,
		    ch->subject, ch->matches > 1 ? "; --cert REF picks another" : "");
		return SC_OK;
	}
	if (ch->candidates == 0)
		snprintf(ch->why, sizeof(ch->why), "the agent's tokens hold no certificates "
		    "(is the card inserted? `scagent list` shows what the agent sees)");
	else {
		/* Always said, not only with -v: which schemes and CAs were asked for. */
		char asked[320];
		sc_tls_req_text(req, asked, sizeof(asked));
		snprintf(ch->why, sizeof(ch->why), "none of the %d certificate%s on the agent's tokens "
		    "fits the server's request: %.280s; the server asked for %s", ch->candidates,
		    ch->candidates == 1 ? "" : "s", skipped, asked);
	}
	return SC_ERR_NOT_FOUND;
}

/* ---------------------------------------------------------------- I/O */

long
sc_tls_read(struct sc_tls_conn *c, void *buf, size_t len)
{
	size_t got = 0;
	int ret;

	ERR_clear_error();
	ret = SSL_read_ex(c->ssl, buf, len, &got);
	if (ret == 1)
		return (long)got;
	if (SSL_get_error(c->ssl, 0) == SSL_ERROR_ZERO_RETURN && c->alert[0] == '\0')
		return 0;
	sc_tls_record_failure(c, ret, "while reading the response");
	if (c->fail == SC_TLS_E_HANDSHAKE && c->handshake_done)
		c->fail = SC_TLS_E_IO;
	return SC_ERR_TLS;
}

int
sc_tls_write_all(struct sc_tls_conn *c, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	while (len > 0) {
		size_t w = 0;
		int ret;
		ERR_clear_error();
		ret = SSL_write_ex(c->ssl, p, len, &w);
		if (ret != 1) {
			sc_tls_record_failure(c, ret, "while sending the request");
			return SC_ERR_TLS;
		}
		p += w;
		len -= w;
	}
	return SC_OK;
}

/* ---------------------------------------------------------------- advice */

const char *
sc_tls_advice(const struct sc_tls_conn *c)
{
	switch (c->fail) {
	case SC_TLS_E_RESOLVE:
		return "check the host name, DNS, or give the address with --resolve HOST:PORT:ADDR";
	case SC_TLS_E_TCP:
		return "check that the server is up and that no firewall or proxy blocks the port";
	case SC_TLS_E_CHAIN:
		/* One advice per kind of failure: incomplete-chain, untrusted-root, ... */
		return sc_tls_chain_advice(sc_tls_chain_code(c));
	case SC_TLS_E_NAME:
		return "connect with a name the certificate lists (--resolve NAME:PORT:ADDR keeps the "
		    "address), or reissue the server certificate with this name in its SAN";
	case SC_TLS_E_PRINCIPAL:
		return "set --principal msstd:NAME to the certificate's CN or a DNS name "
		    "(msstd:*.domain for a wildcard certificate), or check you reach the right server";
	case SC_TLS_E_NOCERT:
		return "run `scagent -v list` to see your certificates; the server must trust their "
		    "issuing CA (its CA list names the CAs it accepts), or pick one with --cert REF";
	case SC_TLS_E_SIGN:
		if (c->signer.last_err == SC_ERR_NOT_LOGGED_IN)
			return "log the agent in to the token (it asks through pinentry when the agent "
			    "has one configured)";
		if (c->signer.last_err == SC_ERR_PIN_REQUIRED)
			return "this key asks for its PIN at every signature: run the command at a "
			    "terminal (it asks), or start scagentd with --pinentry PROGRAM";
		if (c->signer.last_err == SC_ERR_PIN_INCORRECT)
			return "the key's PIN was wrong (tried once): run again with the right PIN";
		if (c->signer.last_err == SC_ERR_PIN_LOCKED)
			return "the PIN is locked: unblock it with the PUK or SO PIN "
			    "(`scagent pin unblock --token LABEL`)";
		if (c->signer.last_err == SC_ERR_MECHANISM && strncmp(c->signer.last_alg, "rsa-pss", 7) == 0)
			return "the token cannot make RSA-PSS signatures, which TLS 1.3 requires for RSA "
			    "keys: use --tls-max 1.2, or an EC key";
		return "check the token with `scagent list` and the agent's log";
	case SC_TLS_E_REJECTED:
		return "the server did not accept the certificate: check that it trusts the issuing "
		    "CA (for IIS/Exchange: NTAuth store and the CA chain on the server), that the "
		    "certificate is valid and not revoked, and that it maps to an account";
	case SC_TLS_E_CLOSED:
		return "servers drop the connection when they reject a client certificate without "
		    "saying why: check the server's trust of the issuing CA, its CRL access and its "
		    "logs; on IIS also the certificate mapping and the client certificate negotiation setting";
	case SC_TLS_E_AGENT:
		return "start the agent (eval \"$(scagentd)\") or give --socket";
	case SC_TLS_E_TIMEOUT:
		return "the server or a device on the way does not answer; check it and the network";
	case SC_TLS_E_PROXY:
		if (strstr(c->err, "wants credentials") != NULL)
			return "give the proxy's user and password: --proxy http://user:pass@host:port "
			    "(or in https_proxy)";
		return "check the proxy address (--proxy, https_proxy, HTTPS_PROXY) and that it allows "
		    "CONNECT to this server and port; no_proxy lists hosts reached directly";
	case SC_TLS_E_HANDSHAKE:
		if (c->alert[0] && strstr(c->alert, "protocol version"))
			return "the server and scagent share no TLS version: scagent speaks TLS 1.2 and 1.3";
		return "check the server's TLS settings (protocols, ciphers) and its logs";
	default:
		return "";
	}
}

/* ---------------------------------------------------------------- HTTP */

struct rbuf {
	struct sc_tls_conn *c;
	unsigned char buf[16384];
	size_t pos, len;
	int eof;
};

static int
rfill(struct rbuf *rb)
{
	long n;

	if (rb->eof)
		return 0;
	if (rb->pos > 0 && rb->pos < rb->len)
		memmove(rb->buf, rb->buf + rb->pos, rb->len - rb->pos);
	rb->len -= rb->pos;
	rb->pos = 0;
	if (rb->len == sizeof(rb->buf))
		return SC_ERR_TOO_LARGE;
	n = sc_tls_read(rb->c, rb->buf + rb->len, sizeof(rb->buf) - rb->len);
	if (n < 0)
		return (int)n;
	if (n == 0) {
		rb->eof = 1;
		return 0;
	}
	rb->len += (size_t)n;
	return 1;
}

/* One line (without CRLF) into out; SC_OK, or 0-length with eof; SC_ERR_* on failure. */
static int
rline(struct rbuf *rb, char *out, size_t outlen, int *eof)
{
	int r;

	*eof = 0;
	for (;;) {
		unsigned char *nl = memchr(rb->buf + rb->pos, '\n', rb->len - rb->pos);
		if (nl != NULL) {
			size_t n = (size_t)(nl - (rb->buf + rb->pos));
			size_t m = n > 0 && rb->buf[rb->pos + n - 1] == '\r' ? n - 1 : n;
			if (m >= outlen)
				return SC_ERR_TOO_LARGE;
			memcpy(out, rb->buf + rb->pos, m);
			out[m] = '\0';
			rb->pos += n + 1;
			return SC_OK;
		}
		if ((r = rfill(rb)) < 0)
			return r;
		if (r == 0) {
			*eof = 1;
			out[0] = '\0';
			return SC_OK;
		}
	}
}

static int
body_append(struct sc_http_resp *resp, const unsigned char *p, size_t n, size_t max)
{
	unsigned char *nb;

	if (resp->bodylen + n > max)
		return SC_ERR_TOO_LARGE;
	if ((nb = realloc(resp->body, resp->bodylen + n + 1)) == NULL)
		return SC_ERR_NOMEM;
	resp->body = nb;
	memcpy(resp->body + resp->bodylen, p, n);
	resp->bodylen += n;
	resp->body[resp->bodylen] = '\0';
	return SC_OK;
}

/* Up to want bytes (or to EOF when want is SIZE_MAX) into the body. */
static int
rbody(struct rbuf *rb, struct sc_http_resp *resp, size_t want, size_t max)
{
	int r;

	while (want > 0) {
		size_t avail = rb->len - rb->pos, n;
		if (avail == 0) {
			if ((r = rfill(rb)) < 0)
				return r;
			if (r == 0)
				return want == SIZE_MAX ? SC_OK : SC_ERR_PROTOCOL;
			continue;
		}
		n = avail < want ? avail : want;
		if ((r = body_append(resp, rb->buf + rb->pos, n, max)) != SC_OK)
			return r;
		rb->pos += n;
		if (want != SIZE_MAX)
			want -= n;
	}
	return SC_OK;
}

static int
head_append(struct sc_http_resp *resp, const char *line)
{
	size_t n = strlen(line);
	char *nh = realloc(resp->head, resp->headlen + n + 3);

	if (nh == NULL)
		return SC_ERR_NOMEM;
	resp->head = nh;
	memcpy(resp->head + resp->headlen, line, n);
	memcpy(resp->head + resp->headlen + n, "\r\n", 3);
	resp->headlen += n + 2;
	return SC_OK;
}

void
sc_http_resp_free(struct sc_http_resp *resp)
{
	free(resp->head);
	free(resp->body);
	memset(resp, 0, sizeof(*resp));
}

int
sc_http_exchange(struct sc_tls_conn *c, const char *method, const char *path,
    const char **headers, int nheaders, const unsigned char *body, size_t bodylen,
    size_t maxbody, struct sc_http_resp *resp)
{
	struct rbuf *rb = NULL;
	char *req = NULL, line[8192];
	size_t reqlen = 0;
	FILE *fp;
	int r, eof, chunked = 0, has_ct = 0, has_host = 0, has_ua = 0, has_accept = 0;
	long long clen = -1;

	memset(resp, 0, sizeof(*resp));
	for (int i = 0; i < nheaders; i++) {
		has_ct |= strncasecmp(headers[i], "Content-Type:", 13) == 0;
		has_host |= strncasecmp(headers[i], "Host:", 5) == 0;
		has_ua |= strncasecmp(headers[i], "User-Agent:", 11) == 0;
		has_accept |= strncasecmp(headers[i], "Accept:", 7) == 0;
	}
	if ((fp = open_memstream(&req, &reqlen)) == NULL)
		return fail(c, SC_TLS_E_IO, SC_ERR_NOMEM, "out of memory");
	fprintf(fp, "%s %s HTTP/1.1\r\n", method, path);
	if (!has_host) {
		int v6 = strchr(c->host, ':') != NULL;
		if (strcmp(c->port, "443") == 0)
			fprintf(fp, "Host: %s%s%s\r\n", v6 ? "[" : "", c->host, v6 ? "]" : "");
		else
			fprintf(fp, "Host: %s%s%s:%s\r\n", v6 ? "[" : "", c->host, v6 ? "]" : "", c->port);
	}
	if (!has_ua)
		fprintf(fp, "User-Agent: scagent/%s\r\n", PACKAGE_VERSION);
	if (!has_accept)
		fprintf(fp, "Accept: */*\r\n");
	for (int i = 0; i < nheaders; i++)
		fprintf(fp, "%s\r\n", headers[i]);
	if (body != NULL) {
		fprintf(fp, "Content-Length: %zu\r\n", bodylen);
		if (!has_ct)
			fprintf(fp, "Content-Type: application/x-www-form-urlencoded\r\n");
	}
	fprintf(fp, "Connection: close\r\n\r\n");
	if (fclose(fp) != 0 || req == NULL) {
		free(req);
		return fail(c, SC_TLS_E_IO, SC_ERR_NOMEM, "out of memory");
	}
	resp->req_phase_before = c->req_phase;
	r = sc_tls_write_all(c, req, reqlen);
	free(req);
	if (r == SC_OK && body != NULL && bodylen > 0)
		r = sc_tls_write_all(c, body, bodylen);
	if (r != SC_OK)
		return r;
	if ((rb = calloc(1, sizeof(*rb))) == NULL)
		return fail(c, SC_TLS_E_IO, SC_ERR_NOMEM, "out of memory");
	rb->c = c;
	/* Status line; 1xx answers are skipped. */
	for (;;) {
		if ((r = rline(rb, line, sizeof(line), &eof)) != SC_OK)
			goto out;
		if (eof) {
			if (c->fail == SC_TLS_OK && c->choice_err == SC_ERR_AGENT_UNREACHABLE)
				fail(c, SC_TLS_E_AGENT, SC_ERR_AGENT_UNREACHABLE, "the server asked for a "
				    "client certificate and the agent is unreachable: %s", c->choice.why);
			else if (c->fail == SC_TLS_OK) {
				if (c->cert_sent)
					fail(c, SC_TLS_E_CLOSED, SC_ERR_PROTOCOL, "the server closed the "
					    "connection without an answer after it received the client "
					    "certificate \"%s\" (%s)", c->choice.label,
					    sc_tls_req_phase_text(c->req_phase));
				else if (c->requests > 0 && !c->cert_sent)
					fail(c, SC_TLS_E_NOCERT, SC_ERR_PROTOCOL, "the server closed the "
					    "connection without an answer; it had asked for a client "
					    "certificate and none was sent: %s", c->choice.why[0] ?
					    c->choice.why : "no certificate chosen");
				else
					fail(c, SC_TLS_E_IO, SC_ERR_PROTOCOL,
					    "the server closed the connection without an HTTP answer");
			}
			r = SC_ERR_PROTOCOL;
			goto out;
		}
		if (strncmp(line, "HTTP/1.", 7) != 0 || strlen(line) < 12 ||
		    !isdigit((unsigned char)line[9]) || !isdigit((unsigned char)line[10]) ||
		    !isdigit((unsigned char)line[11])) {
			r = fail(c, SC_TLS_E_IO, SC_ERR_PROTOCOL, "the server's answer is not HTTP/1.x: \"%.60s\"", line);
			goto out;
		}
		resp->status = atoi(line + 9);
		snprintf(resp->reason, sizeof(resp->reason), "%.100s", line[12] == ' ' ? line + 13 : "");
		free(resp->head);
		resp->head = NULL;
		resp->headlen = 0;
		head_append(resp, line);
		for (;;) {
			if ((r = rline(rb, line, sizeof(line), &eof)) != SC_OK)
				goto out;
			if (eof) {
				r = fail(c, SC_TLS_E_IO, SC_ERR_PROTOCOL, "the server closed the connection in the headers");
				goto out;
			}
			if (line[0] == '\0')
				break;
			head_append(resp, line);
			if (strncasecmp(line, "Content-Length:", 15) == 0)
				clen = strtoll(line + 15, NULL, 10);
			else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 && strcasestr(line + 18, "chunked"))
				chunked = 1;
		}
		if (resp->status >= 200 || resp->status == 101)
			break;
		clen = -1;
		chunked = 0;
	}
	if (strcmp(method, "HEAD") == 0 || resp->status == 204 || resp->status == 304 ||
	    (resp->status >= 100 && resp->status < 200)) {
		r = SC_OK;
	} else if (chunked) {
		for (;;) {
			unsigned long long n;
			char *end;
			if ((r = rline(rb, line, sizeof(line), &eof)) != SC_OK)
				goto out;
			if (eof) {
				r = fail(c, SC_TLS_E_IO, SC_ERR_PROTOCOL, "the server closed the connection in a chunked body");
				goto out;
			}
			n = strtoull(line, &end, 16);
			if (end == line || n > maxbody) {
				r = fail(c, SC_TLS_E_IO, SC_ERR_PROTOCOL, "bad chunk size \"%.20s\"", line);
				goto out;
			}
			if (n == 0) {
				/* trailers up to the empty line */
				do {
					if ((r = rline(rb, line, sizeof(line), &eof)) != SC_OK)
						goto out;
				} while (!eof && line[0] != '\0');
				break;
			}
			if ((r = rbody(rb, resp, (size_t)n, maxbody)) != SC_OK ||
			    (r = rline(rb, line, sizeof(line), &eof)) != SC_OK)
				goto out;
		}
	} else if (clen >= 0) {
		if ((unsigned long long)clen > maxbody) {
			r = fail(c, SC_TLS_E_IO, SC_ERR_TOO_LARGE, "the body (%lld bytes) is over the %zu-byte limit", clen, maxbody);
			goto out;
		}
		r = rbody(rb, resp, (size_t)clen, maxbody);
	} else
		r = rbody(rb, resp, SIZE_MAX, maxbody);
	if (r == SC_ERR_PROTOCOL && c->fail == SC_TLS_OK)
		fail(c, SC_TLS_E_IO, r, "the server closed the connection before the end of the body");
	else if (r == SC_ERR_TOO_LARGE && c->fail == SC_TLS_OK)
		fail(c, SC_TLS_E_IO, r, "the body is over the %zu-byte limit", maxbody);
out:
	free(rb);
	return r;
}

const char *
sc_http_advice(const struct sc_tls_conn *c, const struct sc_http_resp *resp)
{
	const char *b = resp->body ? (const char *)resp->body : "";

	if (resp->status == 403 && (strstr(b, "403.7") || strcasestr(b, "client certificate")))
		return c->cert_sent ?
		    "403.7: the server wants a client certificate and did not take the one sent: "
		    "check that it trusts the issuing CA and that the certificate maps to an account" :
		    "403.7: the server requires a client certificate and none was sent: run "
		    "`scagent -v list`, log in to the token, or pick one with --cert REF";
	if (resp->status == 400 && strcasestr(b, "SSL certificate"))
		return c->cert_sent ?
		    "the server did not accept the client certificate: check its trust of the issuing CA" :
		    "the server requires a client certificate and none was sent: see `scagent -v list`, "
		    "or pick one with --cert REF";
	if (resp->status == 413 && c->req_phase != SC_TLS_REQ_HANDSHAKE)
		return c->req_phase == SC_TLS_REQ_NONE ?
		    "413 for a request with a body, and no certificate was asked for in the "
		    "handshake: a server that wants the certificate only for this path must buffer the "
		    "body before it renegotiates; raise IIS's uploadReadAheadSize (Apache: "
		    "SSLRenegBufferSize), or negotiate the certificate in the handshake (netsh http "
		    "clientcertnegotiation=enable)" :
		    "413 after the server asked for the certificate during the request: it must "
		    "buffer the request body to renegotiate; raise IIS's uploadReadAheadSize (Apache: "
		    "SSLRenegBufferSize), or negotiate the certificate in the handshake (netsh http "
		    "clientcertnegotiation=enable)";
	if (resp->status == 401)
		return "the server wants other credentials as well (Basic, NTLM or Kerberos); the "
		    "certificate alone did not sign in";
	return "";
}
