/*
 * A tunnel connection's life (tunnel-private.h): its first request through
 * the browser gate, the upstream TLS handshake, the relay both ways, the
 * pages the tunnel answers itself (403 from the gate, 502 when the token is
 * not logged in), and its end. One thread per connection runs
 * sc_tunnel_conn_main.
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "common/err.h"
#include "common/text.h"
#include "common/util.h"
#include "tls/sessions.h"
#include "tls/tlsclient.h"
#include "tls/tunnel.h"
#include "tls/tunnel-gate.h"
#include "tls/tunnel-private.h"

#define RELAY_BUF 16384

_Static_assert(SC_GATE_MAX <= RELAY_BUF, "what the gate held fits a relay buffer");

struct relay {
	unsigned char buf[RELAY_BUF];
	size_t off, len;
};

/*
 * After an SSL_read_ex or SSL_write_ex that failed: 1 when OpenSSL only waits
 * for the socket (noted in want_r or want_w), else 0 with the error in *e.
 */
static int
ssl_waits(SSL *ssl, int *want_r, int *want_w, int *e)
{
	*e = SSL_get_error(ssl, 0);
	if (*e == SSL_ERROR_WANT_READ)
		*want_r = 1;
	else if (*e == SSL_ERROR_WANT_WRITE)
		*want_w = 1;
	else
		return 0;
	return 1;
}

/* How much the next read from the client may take: the gate holds at most SC_GATE_MAX. */
static size_t
gate_room(const struct tconn *tc, size_t room)
{
	if (!tc->t->gated || tc->gate.state != SC_GATE_UNDECIDED)
		return room;
	return sc_gate_room(&tc->gate) < room ? sc_gate_room(&tc->gate) : room;
}

/*
 * An HTTP answer of our own to the local client: STATUS and a one-line
 * text/plain body, then the connection's end. What the client still sends is
 * read and dropped (a close with it unread would reset the answer).
 */
static void
answer_page(int fd, const char *status, const char *body)
{
	char resp[1200], drain[4096];
	struct pollfd p = { fd, POLLIN, 0 };
	int rlen = snprintf(resp, sizeof(resp), "HTTP/1.1 %s\r\nContent-Type: text/plain; "
	    "charset=utf-8\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s", status,
	    strlen(body), body);

	if (rlen > 0 && (size_t)rlen < sizeof(resp))
		(void)!send(fd, resp, (size_t)rlen, MSG_NOSIGNAL);
	shutdown(fd, SHUT_WR);
	for (int i = 0; i < 64 && poll(&p, 1, 1000) > 0 &&
	    recv(fd, drain, sizeof(drain), MSG_DONTWAIT) > 0; i++)
		;
}

/*
 * The gate refused one of tc's requests: the log says why, and a 403 page
 * too (curl and the browser show it) when page is set: not while an answer
 * to an earlier request is still on its way. Nothing of it went upstream.
 */
static void
gate_refuse(struct tconn *tc, int page)
{
	char body[700], nth[64] = "", *shown = sc_term_escape(tc->gate.why, strlen(tc->gate.why), 1);

	if (tc->gate.requests > 0)
		snprintf(nth, sizeof(nth), " (request %lu of the connection)", tc->gate.requests + 1);
	snprintf(body, sizeof(body), "scagent tunnel: refused %s: only the card owner's own "
	    "programs may use this tunnel (scagent tunnel --allow-host NAME lets a name through)\n",
	    shown != NULL ? shown : "a request");
	free(shown);
	sc_tunnel_refused(tc->t, "connection #%lu: refused %s%s; nothing of it was sent upstream",
	    tc->id, tc->gate.why, nth);
	if (page)
		answer_page(tc->fd, "403 Forbidden", body);
}

/*
 * n bytes the client sent, in buf (of RELAY_BUF): through the gate, which
 * holds each request head until it is judged. 1 with what may go upstream now
 * in buf and *n (0 bytes while the gate holds them); 0 when it refused.
 */
static int
gate_pass(struct tconn *tc, unsigned char *buf, size_t *n)
{
	struct sc_gate *g = &tc->gate;

	if (!tc->t->gated || (g->state == SC_GATE_PASS && g->len == 0))
		return 1;
	if (sc_gate_add(g, &tc->t->gh, buf, *n) == SC_GATE_REFUSE)
		return 0;
	*n = sc_gate_take(g, buf, RELAY_BUF);
	return 1;
}

/*
 * The client closed its side while the gate held bytes: an unfinished HTTP
 * request head is refused (0), anything else goes upstream (as gate_pass).
 */
static int
gate_at_end(struct tconn *tc, unsigned char *buf, size_t *n)
{
	struct sc_gate *g = &tc->gate;

	if (!tc->t->gated || g->state != SC_GATE_UNDECIDED || g->len == 0)
		return 1;
	if (g->http || g->requests > 0) {
		g->state = SC_GATE_REFUSE;
		snprintf(g->why, sizeof(g->why), "an HTTP request whose headers did not end");
		return 0;
	}
	g->state = SC_GATE_PASS;
	g->ok = g->len;
	*n = sc_gate_take(g, buf, RELAY_BUF);
	return 1;
}

/*
 * Before the upstream handshake (and so before the card signs): what the
 * client sends in its first GATE_WAIT_MS goes through the gate. 0 when it
 * refused or the client closed without a byte; 1 when it passed or is still to judge (a client that waits for the
 * server, a browser's preconnect: judged in the relay).
 */
#define GATE_WAIT_MS 500

static int
gate_first(struct tconn *tc)
{
	unsigned char buf[4096];
	struct pollfd p = { tc->fd, POLLIN, 0 };
	uint64_t end = sc_now_ms() + GATE_WAIT_MS;
	long left;

	while (tc->gate.state == SC_GATE_UNDECIDED && tc->gate.requests == 0 &&
	    (left = (long)(end - sc_now_ms())) > 0 && poll(&p, 1, (int)left) > 0) {
		ssize_t n = recv(tc->fd, buf, gate_room(tc, sizeof(buf)), MSG_DONTWAIT);

		if (n == 0 && tc->gate.len == 0) {
			/* gone without a byte (a browser's preconnect it gave up): nothing to sign for */
			sc_tunnel_log("connection #%lu: closed by the client before it sent anything; "
			    "the server and the card were not asked", tc->id);
			return 0;
		}
		if (n <= 0)
			break;	/* the client closed after its bytes: the relay sees it */
		if (sc_gate_add(&tc->gate, &tc->t->gh, buf, (size_t)n) == SC_GATE_REFUSE) {
			gate_refuse(tc, 1);
			return 0;
		}
	}
	return 1;
}

/* Copy both ways until both sides are done (half-close kept), or stop. */
static void
relay(struct tconn *tc, struct sc_tls_conn *up, unsigned long long *nup, unsigned long long *ndown)
{
	struct relay *c2u = calloc(1, sizeof(*c2u)), *u2c = calloc(1, sizeof(*u2c));
	int c_eof = 0, u_eof = 0, shut_c = 0, shut_u = 0, ssl_want_r = 0, ssl_want_w = 0, e, kick = 0;
	int fl = fcntl(up->fd, F_GETFL);

	if (c2u == NULL || u2c == NULL)
		goto out;
	fcntl(up->fd, F_SETFL, fl | O_NONBLOCK);
	fcntl(tc->fd, F_SETFL, fcntl(tc->fd, F_GETFL) | O_NONBLOCK);
	/* what the gate passed before the upstream was up goes first */
	if (tc->t->gated && (c2u->len = sc_gate_take(&tc->gate, c2u->buf, sizeof(c2u->buf))) > 0)
		kick = 1;	/* written in the first round, not after an event */
	while (!(c_eof && u_eof && c2u->len == 0 && u2c->len == 0)) {
		struct pollfd p[3];
		int timeout = SSL_pending(up->ssl) > 0 || kick ? 0 : -1;

		kick = 0;

		p[0].fd = tc->fd;
		p[0].events = (short)((!c_eof && c2u->len == 0 ? POLLIN : 0) | (u2c->len ? POLLOUT : 0));
		p[1].fd = up->fd;
		p[1].events = (short)(((!u_eof && u2c->len == 0) || ssl_want_r ? POLLIN : 0) |
		    (ssl_want_w ? POLLOUT : 0));
		p[2].fd = tc->t->stop_rd;
		p[2].events = POLLIN;
		p[0].revents = p[1].revents = p[2].revents = 0;
		if (poll(p, 3, timeout) < 0 && errno != EINTR)
			break;
		if (p[2].revents & POLLIN) {
			sc_tunnel_log("connection #%lu: closing for shutdown", tc->id);
			break;
		}
		ssl_want_r = ssl_want_w = 0;
		/* upstream -> client */
		if (!u_eof && u2c->len == 0) {
			size_t got = 0;
			ERR_clear_error();
			if (SSL_read_ex(up->ssl, u2c->buf, sizeof(u2c->buf), &got) == 1) {
				u2c->off = 0;
				u2c->len = got;
				*ndown += got;
			} else if (!ssl_waits(up->ssl, &ssl_want_r, &ssl_want_w, &e)) {
				if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL) {
					u_eof = 1;
				} else {
					sc_tls_record_failure(up, 0, "while relaying");
					sc_tunnel_log("connection #%lu: upstream failed: %s", tc->id, up->err);
					break;
				}
			}
		}
		if (u2c->len > 0) {
			ssize_t w = send(tc->fd, u2c->buf + u2c->off, u2c->len, MSG_NOSIGNAL);
			if (w < 0 && errno != EAGAIN && errno != EINTR) {
				sc_tunnel_log("connection #%lu: client gone: %s", tc->id, strerror(errno));
				break;
			}
			if (w > 0) {
				u2c->off += (size_t)w;
				u2c->len -= (size_t)w;
			}
		}
		if (u_eof && u2c->len == 0 && !shut_c) {
			shutdown(tc->fd, SHUT_WR);
			shut_c = 1;
		}
		/* client -> upstream (each request head through the gate) */
		if (!c_eof && c2u->len == 0) {
			ssize_t n = recv(tc->fd, c2u->buf, gate_room(tc, sizeof(c2u->buf)), 0);
			if (n > 0) {
				c2u->off = 0;
				c2u->len = (size_t)n;
				*nup += (unsigned long long)n;
				if (!gate_pass(tc, c2u->buf, &c2u->len)) {
					gate_refuse(tc, u2c->len == 0);
					break;
				}
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				c_eof = 1;
				if (!gate_at_end(tc, c2u->buf, &c2u->len)) {
					gate_refuse(tc, u2c->len == 0);
					break;
				}
			}
		}
		if (c2u->len > 0) {
			size_t w = 0;
			ERR_clear_error();
			if (SSL_write_ex(up->ssl, c2u->buf + c2u->off, c2u->len, &w) == 1) {
				c2u->off += w;
				c2u->len -= w;
			} else if (!ssl_waits(up->ssl, &ssl_want_r, &ssl_want_w, &e)) {
				sc_tls_record_failure(up, 0, "while relaying");
				sc_tunnel_log("connection #%lu: upstream write failed: %s", tc->id, up->err);
				break;
			}
		}
		if (c_eof && c2u->len == 0 && !shut_u) {
			ERR_clear_error();
			if (SSL_shutdown(up->ssl) >= 0)
				shut_u = 1;	/* close_notify: the write half is closed */
			else if (SSL_get_error(up->ssl, 0) == SSL_ERROR_WANT_WRITE)
				ssl_want_w = 1;
			else
				shut_u = 1;
			if (u_eof)
				break;
		}
	}
out:
	free(c2u);
	free(u2c);
}

/*
 * The upstream of tc is up: it joins t->open, where the agent's events find
 * it, and 1. 0 when it carries an identity and a token was removed or logged
 * out since tc was accepted: the card may be gone (the event came while its
 * handshake ran, too early to close it), so it is not served.
 */
static int
conn_opened(struct tconn *tc, int upfd, int has_identity, const char *token)
{
	struct tunnel *t = tc->t;

	pthread_mutex_lock(&t->lock);
	if (has_identity && t->forgets != tc->forgets0) {
		pthread_mutex_unlock(&t->lock);
		return 0;
	}
	tc->upfd = upfd;
	tc->has_identity = has_identity;
	snprintf(tc->token, sizeof(tc->token), "%s", token ? token : "");
	tc->next = t->open;
	t->open = tc;
	pthread_mutex_unlock(&t->lock);
	return 1;
}

/* The relay of tc has ended: it leaves t->open. */
static void
conn_closed(struct tconn *tc)
{
	struct tunnel *t = tc->t;

	pthread_mutex_lock(&t->lock);
	for (struct tconn **pp = &t->open; *pp != NULL; pp = &(*pp)->next)
		if (*pp == tc) {
			*pp = tc->next;
			break;
		}
	pthread_mutex_unlock(&t->lock);
}

/*
 * Last in a connection thread: the main thread joins finished threads, so
 * that at shutdown each has ended (OpenSSL's per-thread state freed) before
 * it exits.
 */
static void
conn_finished(struct tunnel *t)
{
	pthread_mutex_lock(&t->lock);
	if (t->ndone == t->capdone) {
		size_t cap = t->capdone ? 2 * t->capdone : 16;
		pthread_t *nd = realloc(t->done, cap * sizeof(*nd));

		if (nd != NULL) {
			t->done = nd;
			t->capdone = cap;
		}
	}
	if (t->ndone < t->capdone)
		t->done[t->ndone++] = pthread_self();
	else
		pthread_detach(pthread_self());	/* no memory to be joined: end on its own */
	t->active--;
	pthread_cond_broadcast(&t->idle);
	pthread_mutex_unlock(&t->lock);
	(void)!write(t->done_wr, "", 1);	/* wake the main thread to join this one */
}

/* 1 when the first bytes the client sent (peeked, not taken) look like an HTTP request line. */
static int
client_speaks_http(int fd)
{
	struct pollfd p = { fd, POLLIN, 0 };
	char first[16];
	ssize_t n = 0, i = 0;

	if (poll(&p, 1, 1000) > 0)
		n = recv(fd, first, sizeof(first), MSG_PEEK | MSG_DONTWAIT);
	while (i < n && first[i] >= 'A' && first[i] <= 'Z')
		i++;
	return i >= 3 && i < n && first[i] == ' ';
}

/*
 * The upstream handshake failed because the token is not logged in (and the
 * agent had no pinentry to ask): an HTTP client gets a 502 page that says
 * what to do, any other client only the close; the log says which.
 */
static void
tunnel_not_logged_in(struct tconn *tc, const char *token)
{
	char body[300], *shown = NULL;

	if (token == NULL || token[0] == '\0')
		token = "LABEL";
	if (!tc->gate.http && !client_speaks_http(tc->fd)) {
		sc_tunnel_log("connection #%lu: closed: token \"%s\" is not logged in; log in with "
		    "`scagent login --token %s`", tc->id, token, token);
		return;
	}
	/* The label is the token's: the page (which curl prints) gets it escaped, as the terminal would. */
	shown = sc_term_escape(token, strlen(token), 1);
	snprintf(body, sizeof(body), "scagent tunnel: the card is not logged in: log in "
	    "with `scagent login --token %s`\n", shown != NULL ? shown : "LABEL");
	free(shown);
	answer_page(tc->fd, "502 Bad Gateway", body);
	sc_tunnel_log("connection #%lu: answered the HTTP client 502 Bad Gateway: token \"%s\" is not "
	    "logged in; log in with `scagent login --token %s`", tc->id, token, token);
}

void *
sc_tunnel_conn_main(void *arg)
{
	struct tconn *tc = arg;
	struct tunnel *t = tc->t;
	struct sc_tls_conn up;
	struct sc_tls_agent ag;
	struct sc_tls_opts o = *t->o->tls;
	unsigned long long nup = 0, ndown = 0;
	char desc[128];
	int active;

	/*
	 * Each connection talks to the agent on its own connection: one that
	 * fails costs the others nothing, and an agent restarted meanwhile is
	 * simply found again.
	 */
	sc_tls_agent_init(&ag, t->o->tls->agent != NULL ? t->o->tls->agent->socket : NULL);
	o.agent = &ag;
	o.sessions = t->sessions;
	sc_tls_conn_init(&up, &o, t->host, t->port);
	snprintf(up.logprefix, sizeof(up.logprefix), "#%lu: ", tc->id);
	if (t->gated && !gate_first(tc)) {
		/* refused before anything was asked of the server or the card */
	} else if (sc_tls_open(&up) != SC_OK) {
		const char *adv = sc_tls_advice(&up);
		sc_tunnel_log("connection #%lu: upstream %s:%s failed: %s%s%s", tc->id, t->host, t->port, up.err,
		    adv[0] ? "; advice: " : "", adv);
		if (up.signer.last_err == SC_ERR_NOT_LOGGED_IN)
			tunnel_not_logged_in(tc, up.choice.token);
	} else {
		const char *who = sc_tls_identity(&up, NULL);

		const char *token = NULL;

		sc_tls_identity(&up, &token);
		sc_tls_describe(&up, desc, sizeof(desc));
		sc_tunnel_log("connection #%lu: upstream %s:%s up (%s%s%s%s)", tc->id, t->host, t->port, desc,
		    who ? ", client certificate " : "", who ? who : "",
		    up.resumed ? ", session resumed: nothing signed" : "");
		if (!conn_opened(tc, up.fd, who != NULL, token)) {
			sc_tunnel_log("connection #%lu: closed: a token was removed or logged out while its "
			    "handshake ran; the next connection needs the card again", tc->id);
		} else {
			relay(tc, &up, &nup, &ndown);
			conn_closed(tc);
		}
	}
	sc_tls_conn_free(&up);
	sc_tls_agent_clear(&ag);
	close(tc->fd);
	pthread_mutex_lock(&t->lock);
	active = t->active - 1;
	pthread_mutex_unlock(&t->lock);
	sc_tunnel_log("connection #%lu from %s closed: %llu bytes up, %llu down (%d active)", tc->id,
	    tc->peer, nup, ndown, active);
	free(tc);
	conn_finished(t);
	return NULL;
}
