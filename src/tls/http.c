/*
 * A small HTTP/1.1 exchange over a TLS connection: the request, the
 * response (Content-Length, chunked, or until the server closes), and the
 * advice an HTTP status gets after the connection's story.
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

/* ---------------------------------------------------------------- HTTP */

/*
 * The most a response's status lines, headers and trailers may take, 1xx
 * answers included (curl allows 300 KB): a server that sends headers or
 * "100 Continue" without end is cut off, not kept in memory or waited on.
 */
#define MAX_HEAD (256 * 1024)

struct rbuf {
	struct sc_tls_conn *c;
	unsigned char buf[16384];
	size_t pos, len;
	size_t headbytes;		/* of MAX_HEAD, taken so far */
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

/* Write the request: method path, our headers unless given, the caller's, the body. */
static int
send_request(struct sc_tls_conn *c, const char *method, const char *path,
    const char **headers, int nheaders, const unsigned char *body, size_t bodylen,
    struct sc_http_resp *resp)
{
	char *req = NULL;
	size_t reqlen = 0;
	FILE *fp;
	int r, has_ct = 0, has_host = 0, has_ua = 0, has_accept = 0;

	for (int i = 0; i < nheaders; i++) {
		has_ct |= strncasecmp(headers[i], "Content-Type:", 13) == 0;
		has_host |= strncasecmp(headers[i], "Host:", 5) == 0;
		has_ua |= strncasecmp(headers[i], "User-Agent:", 11) == 0;
		has_accept |= strncasecmp(headers[i], "Accept:", 7) == 0;
	}
	if ((fp = open_memstream(&req, &reqlen)) == NULL)
		return sc_tls_fail(c, SC_TLS_E_IO, SC_ERR_NOMEM, "out of memory");
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
		return sc_tls_fail(c, SC_TLS_E_IO, SC_ERR_NOMEM, "out of memory");
	}
	resp->req_phase_before = c->req_phase;
	r = sc_tls_write_all(c, req, reqlen);
	free(req);
	if (r == SC_OK && body != NULL && bodylen > 0)
		r = sc_tls_write_all(c, body, bodylen);
	return r;
}

/* One line of the head (status, header, trailer), counted against MAX_HEAD. */
static int
rhead(struct rbuf *rb, char *out, size_t outlen, int *eof)
{
	int r = rline(rb, out, outlen, eof);

	if (r == SC_ERR_TOO_LARGE && rb->c->fail == SC_TLS_OK)
		return sc_tls_fail(rb->c, SC_TLS_E_IO, r, "a line of the server's HTTP headers is over "
		    "the %zu-byte limit", outlen - 1);
	if (r != SC_OK)
		return r;
	rb->headbytes += strlen(out) + 2;
	if (rb->headbytes > MAX_HEAD)
		return sc_tls_fail(rb->c, SC_TLS_E_IO, SC_ERR_TOO_LARGE, "the server's HTTP headers "
		    "are over the %d-byte limit", MAX_HEAD);
	return SC_OK;
}

/* The server closed before the status line: why, after this connection's story. */
static void
closed_without_answer(struct sc_tls_conn *c)
{
	if (c->fail == SC_TLS_OK && c->choice_err == SC_ERR_AGENT_UNREACHABLE)
		sc_tls_fail(c, SC_TLS_E_AGENT, SC_ERR_AGENT_UNREACHABLE, "the server asked for a "
		    "client certificate and the agent is unreachable: %s", c->choice.why);
	else if (c->fail == SC_TLS_OK) {
		if (c->cert_sent)
			sc_tls_fail(c, SC_TLS_E_CLOSED, SC_ERR_PROTOCOL, "the server closed the "
			    "connection without an answer after it received the client "
			    "certificate \"%s\" (%s)", c->choice.label,
			    sc_tls_req_phase_text(c->req_phase));
		else if (c->requests > 0 && !c->cert_sent)
			sc_tls_fail(c, SC_TLS_E_NOCERT, SC_ERR_PROTOCOL, "the server closed the "
			    "connection without an answer; it had asked for a client "
			    "certificate and none was sent: %s", c->choice.why[0] ?
			    c->choice.why : "no certificate chosen");
		else
			sc_tls_fail(c, SC_TLS_E_IO, SC_ERR_PROTOCOL,
			    "the server closed the connection without an HTTP answer");
	}
}

/* The status line and headers of the final answer (1xx answers are skipped). */
static int
read_head(struct rbuf *rb, struct sc_http_resp *resp, long long *clen, int *chunked)
{
	struct sc_tls_conn *c = rb->c;
	char line[8192];
	int r, eof;

	for (;;) {
		if ((r = rhead(rb, line, sizeof(line), &eof)) != SC_OK)
			return r;
		if (eof) {
			closed_without_answer(c);
			return SC_ERR_PROTOCOL;
		}
		if (strncmp(line, "HTTP/1.", 7) != 0 || strlen(line) < 12 ||
		    !isdigit((unsigned char)line[9]) || !isdigit((unsigned char)line[10]) ||
		    !isdigit((unsigned char)line[11]))
			return sc_tls_fail(c, SC_TLS_E_IO, SC_ERR_PROTOCOL, "the server's answer is not HTTP/1.x: \"%.60s\"", line);
		resp->status = atoi(line + 9);
		snprintf(resp->reason, sizeof(resp->reason), "%.100s", line[12] == ' ' ? line + 13 : "");
		free(resp->head);
		resp->head = NULL;
		resp->headlen = 0;
		if ((r = head_append(resp, line)) != SC_OK)
			return sc_tls_fail(c, SC_TLS_E_IO, r, "out of memory");
		for (;;) {
			if ((r = rhead(rb, line, sizeof(line), &eof)) != SC_OK)
				return r;
			if (eof)
				return sc_tls_fail(c, SC_TLS_E_IO, SC_ERR_PROTOCOL, "the server closed the connection in the headers");
			if (line[0] == '\0')
				break;
			if ((r = head_append(resp, line)) != SC_OK)
				return sc_tls_fail(c, SC_TLS_E_IO, r, "out of memory");
			if (strncasecmp(line, "Content-Length:", 15) == 0)
				*clen = strtoll(line + 15, NULL, 10);
			else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 && strcasestr(line + 18, "chunked"))
				*chunked = 1;
		}
		if (resp->status >= 200 || resp->status == 101)
			return SC_OK;
		*clen = -1;
		*chunked = 0;
	}
}

/* A chunked body, trailers up to the empty line. */
static int
read_chunked(struct rbuf *rb, struct sc_http_resp *resp, size_t maxbody)
{
	struct sc_tls_conn *c = rb->c;
	char line[8192];
	int r, eof;

	for (;;) {
		unsigned long long n;
		char *end;
		if ((r = rline(rb, line, sizeof(line), &eof)) != SC_OK)
			return r;
		if (eof)
			return sc_tls_fail(c, SC_TLS_E_IO, SC_ERR_PROTOCOL, "the server closed the connection in a chunked body");
		n = strtoull(line, &end, 16);
		if (end == line || n > maxbody)
			return sc_tls_fail(c, SC_TLS_E_IO, SC_ERR_PROTOCOL, "bad chunk size \"%.20s\"", line);
		if (n == 0) {
			/* trailers up to the empty line */
			do {
				if ((r = rhead(rb, line, sizeof(line), &eof)) != SC_OK)
					return r;
			} while (!eof && line[0] != '\0');
			return SC_OK;
		}
		if ((r = rbody(rb, resp, (size_t)n, maxbody)) != SC_OK ||
		    (r = rline(rb, line, sizeof(line), &eof)) != SC_OK)
			return r;
	}
}

int
sc_http_exchange(struct sc_tls_conn *c, const char *method, const char *path,
    const char **headers, int nheaders, const unsigned char *body, size_t bodylen,
    size_t maxbody, struct sc_http_resp *resp)
{
	struct rbuf *rb = NULL;
	int r, chunked = 0;
	long long clen = -1;

	memset(resp, 0, sizeof(*resp));
	if ((r = send_request(c, method, path, headers, nheaders, body, bodylen, resp)) != SC_OK)
		return r;
	if ((rb = calloc(1, sizeof(*rb))) == NULL)
		return sc_tls_fail(c, SC_TLS_E_IO, SC_ERR_NOMEM, "out of memory");
	rb->c = c;
	if ((r = read_head(rb, resp, &clen, &chunked)) != SC_OK)
		goto out;
	if (strcmp(method, "HEAD") == 0 || resp->status == 204 || resp->status == 304 ||
	    (resp->status >= 100 && resp->status < 200)) {
		r = SC_OK;
	} else if (chunked) {
		r = read_chunked(rb, resp, maxbody);
		goto out;	/* its failures are said */
	} else if (clen >= 0) {
		if ((unsigned long long)clen > maxbody) {
			r = sc_tls_fail(c, SC_TLS_E_IO, SC_ERR_TOO_LARGE, "the body (%lld bytes) is over the %zu-byte limit", clen, maxbody);
			goto out;
		}
		r = rbody(rb, resp, (size_t)clen, maxbody);
	} else
		r = rbody(rb, resp, SIZE_MAX, maxbody);
	if (r == SC_ERR_PROTOCOL && c->fail == SC_TLS_OK)
		sc_tls_fail(c, SC_TLS_E_IO, r, "the server closed the connection before the end of the body");
	else if (r == SC_ERR_TOO_LARGE && c->fail == SC_TLS_OK)
		sc_tls_fail(c, SC_TLS_E_IO, r, "the body is over the %zu-byte limit", maxbody);
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
