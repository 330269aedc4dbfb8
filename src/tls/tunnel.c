/*
 * The tunnel engine (see tunnel.h): the listener, who may use it, a thread
 * per connection that opens the upstream TLS connection and relays, and a
 * thread that follows the agent's events to end kept sessions. Threads and
 * what struct tunnel's lock guards are written at the struct.
 */
#include "config.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "common/err.h"
#include "common/peeruid.h"
#include "common/text.h"
#include "common/util.h"
#include "tls/tlsclient.h"
#include "tls/tunnel.h"
#include "tls/tunnel-gate.h"
#include "tls/tunnel-private.h"

/*
 * Threads: the main thread accepts, admits and joins finished connection
 * threads; a thread per connection opens its upstream and relays; the
 * watch thread (kept sessions, no --keep-on-removal) follows the agent's
 * events. lock guards active, served, done/ndone/capdone (threads to be
 * joined), the open list and stopping; idle is signalled when active
 * drops. Kept sessions have the cache's own lock (sessions.c); each
 * connection has its own agent handle (struct sc_tls_agent).
 */
struct tunnel {
	const struct sc_tunnel_opts *o;
	char host[256];
	char port[8];
	uid_t uid;			/* the one user served (unless remote clients are allowed) */
	int check_uid;			/* 0 only for --allow-remote on an address other than loopback */
	int stop_rd, stop_wr;		/* self-pipe: SIGTERM/SIGINT */
	int done_rd, done_wr;		/* a byte per finished connection thread */
	pthread_mutex_t lock;
	pthread_cond_t idle;
	int active;			/* connection threads not yet finished */
	unsigned long served;
	pthread_t *done;		/* finished threads, to be joined */
	size_t ndone, capdone;
	struct sc_tls_sessions *sessions;	/* kept sessions, shared by the connections; NULL: none */
	struct tconn *open;		/* connections whose upstream is up (under lock) */
	int stopping;			/* the watch thread ends (under lock) */
	unsigned long forgets;		/* tunnel_forget calls so far (under lock) */
	int gated;			/* a TCP listener: first requests pass the browser gate */
	struct sc_gate_hosts gh;	/* what the gate lets through */
};

struct tconn {
	struct tunnel *t;
	unsigned long id;
	int fd;
	char peer[96];
	/* while in t->open: */
	struct tconn *next;
	int upfd;			/* the upstream socket */
	int has_identity;		/* a client certificate authenticates it */
	char token[128];		/* that certificate's token ("" unknown) */
	struct sc_gate gate;		/* t->gated: the first request, held until judged */
	unsigned long forgets0;		/* t->forgets when it was accepted */
};

static int tunnel_stop_fd = -1;

static void
tunnel_signal(int sig)
{
	int saved = errno;
	ssize_t w;

	(void)sig;
	w = write(tunnel_stop_fd, "x", 1);
	(void)w;
	errno = saved;
}

static void tlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
tlog(const char *fmt, ...)
{
	char ts[32], prefix[64];
	time_t now = time(NULL);
	struct tm tm;
	va_list ap;

	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", localtime_r(&now, &tm));
	snprintf(prefix, sizeof(prefix), "%s scagent tunnel: ", ts);
	/* Peers' and servers' words are escaped for the terminal; one line, one fprintf (text.h). */
	va_start(ap, fmt);
	sc_term_vsay(stderr, prefix, fmt, ap);
	va_end(ap);
}

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
	return SC_GATE_MAX - tc->gate.len < room ? SC_GATE_MAX - tc->gate.len : room;
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
 * The gate refused tc's first request: a 403 page says why (curl and the
 * browser show it), the log too; nothing of it went upstream.
 */
static void
gate_refuse(struct tconn *tc)
{
	char body[700], *shown = sc_term_escape(tc->gate.why, strlen(tc->gate.why), 1);

	snprintf(body, sizeof(body), "scagent tunnel: refused %s: only the card owner's own "
	    "programs may use this tunnel (scagent tunnel --allow-host NAME lets a name through)\n",
	    shown != NULL ? shown : "a request");
	free(shown);
	tlog("connection #%lu: refused %s; nothing of it was sent upstream", tc->id, tc->gate.why);
	answer_page(tc->fd, "403 Forbidden", body);
}

/*
 * n bytes the client sent, in buf (of RELAY_BUF): through the gate while it
 * judges the first request. 1 with what may go upstream now in buf and *n
 * (0 bytes while the gate holds them); 0 when it refused (said).
 */
static int
gate_pass(struct tconn *tc, unsigned char *buf, size_t *n)
{
	struct sc_gate *g = &tc->gate;

	if (!tc->t->gated || g->state == SC_GATE_PASS)
		return 1;
	switch (sc_gate_add(g, &tc->t->gh, buf, *n)) {
	case SC_GATE_PASS:
		memcpy(buf, g->buf, g->len);
		*n = g->len;
		g->len = 0;
		return 1;
	case SC_GATE_REFUSE:
		gate_refuse(tc);
		return 0;
	default:
		*n = 0;
		return 1;
	}
}

/*
 * The client closed its side while the gate held bytes: any but an
 * unfinished HTTP request head go upstream (as gate_pass); 0 when refused.
 */
static int
gate_at_end(struct tconn *tc, unsigned char *buf, size_t *n)
{
	struct sc_gate *g = &tc->gate;

	if (!tc->t->gated || g->state != SC_GATE_UNDECIDED)
		return 1;
	if (g->http) {
		g->state = SC_GATE_REFUSE;
		snprintf(g->why, sizeof(g->why), "an HTTP request whose headers did not end");
		gate_refuse(tc);
		return 0;
	}
	g->state = SC_GATE_PASS;
	memcpy(buf, g->buf, g->len);
	*n = g->len;
	g->len = 0;
	return 1;
}

/*
 * Before the upstream handshake (and so before the card signs): what the
 * client sends in its first GATE_WAIT_MS goes through the gate. 0 when it
 * refused; 1 when it passed or is still to judge (a client that waits for the
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

	while (tc->gate.state == SC_GATE_UNDECIDED && (left = (long)(end - sc_now_ms())) > 0 &&
	    poll(&p, 1, (int)left) > 0) {
		ssize_t n = recv(tc->fd, buf, gate_room(tc, sizeof(buf)), MSG_DONTWAIT);

		if (n <= 0)
			break;	/* the client closed: the relay sees it */
		if (sc_gate_add(&tc->gate, &tc->t->gh, buf, (size_t)n) == SC_GATE_REFUSE) {
			gate_refuse(tc);
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
	/* what the gate held before the upstream was up goes first */
	if (tc->t->gated && tc->gate.state == SC_GATE_PASS && tc->gate.len > 0) {
		memcpy(c2u->buf, tc->gate.buf, tc->gate.len);
		c2u->len = tc->gate.len;
		tc->gate.len = 0;
		kick = 1;	/* written in the first round, not after an event */
	}
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
			tlog("connection #%lu: closing for shutdown", tc->id);
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
					tlog("connection #%lu: upstream failed: %s", tc->id, up->err);
					break;
				}
			}
		}
		if (u2c->len > 0) {
			ssize_t w = send(tc->fd, u2c->buf + u2c->off, u2c->len, MSG_NOSIGNAL);
			if (w < 0 && errno != EAGAIN && errno != EINTR) {
				tlog("connection #%lu: client gone: %s", tc->id, strerror(errno));
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
		/* client -> upstream (the first request through the gate) */
		if (!c_eof && c2u->len == 0) {
			ssize_t n = recv(tc->fd, c2u->buf, gate_room(tc, sizeof(c2u->buf)), 0);
			if (n > 0) {
				c2u->off = 0;
				c2u->len = (size_t)n;
				*nup += (unsigned long long)n;
				if (!gate_pass(tc, c2u->buf, &c2u->len))
					break;
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				c_eof = 1;
				if (!gate_at_end(tc, c2u->buf, &c2u->len))
					break;
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
				tlog("connection #%lu: upstream write failed: %s", tc->id, up->err);
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
		tlog("connection #%lu: closed: token \"%s\" is not logged in; log in with "
		    "`scagent login --token %s`", tc->id, token, token);
		return;
	}
	/* The label is the token's: the page (which curl prints) gets it escaped, as the terminal would. */
	shown = sc_term_escape(token, strlen(token), 1);
	snprintf(body, sizeof(body), "scagent tunnel: the card is not logged in: log in "
	    "with `scagent login --token %s`\n", shown != NULL ? shown : "LABEL");
	free(shown);
	answer_page(tc->fd, "502 Bad Gateway", body);
	tlog("connection #%lu: answered the HTTP client 502 Bad Gateway: token \"%s\" is not "
	    "logged in; log in with `scagent login --token %s`", tc->id, token, token);
}

static void *
tunnel_conn(void *arg)
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
		tlog("connection #%lu: upstream %s:%s failed: %s%s%s", tc->id, t->host, t->port, up.err,
		    adv[0] ? "; advice: " : "", adv);
		if (up.signer.last_err == SC_ERR_NOT_LOGGED_IN)
			tunnel_not_logged_in(tc, up.choice.token);
	} else {
		const char *who = sc_tls_identity(&up, NULL);

		const char *token = NULL;

		sc_tls_identity(&up, &token);
		sc_tls_describe(&up, desc, sizeof(desc));
		tlog("connection #%lu: upstream %s:%s up (%s%s%s%s)", tc->id, t->host, t->port, desc,
		    who ? ", client certificate " : "", who ? who : "",
		    up.resumed ? ", session resumed: nothing signed" : "");
		if (!conn_opened(tc, up.fd, who != NULL, token)) {
			tlog("connection #%lu: closed: a token was removed or logged out while its "
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
	tlog("connection #%lu from %s closed: %llu bytes up, %llu down (%d active)", tc->id,
	    tc->peer, nup, ndown, active);
	free(tc);
	conn_finished(t);
	return NULL;
}

/*
 * The identity ends with the card: token's certificates (NULL: every one)
 * lose their kept sessions, and the connections made with them are closed
 * (shutdown() wakes their relay, which ends them).
 */
static void
tunnel_forget(struct tunnel *t, const char *token, const char *why)
{
	int n = sc_tls_sessions_forget(t->sessions, token), closed = 0;

	pthread_mutex_lock(&t->lock);
	t->forgets++;
	for (struct tconn *tc = t->open; tc != NULL; tc = tc->next) {
		if (!tc->has_identity || (token != NULL && tc->token[0] != '\0' &&
		    strcmp(tc->token, token) != 0))
			continue;
		shutdown(tc->upfd, SHUT_RDWR);
		shutdown(tc->fd, SHUT_RDWR);
		closed++;
	}
	pthread_mutex_unlock(&t->lock);
	tlog("%s: forgot %d kept session%s and closed %d connection%s made with %s%s%s; the next "
	    "connection needs the card again", why, n, n == 1 ? "" : "s", closed, closed == 1 ? "" : "s",
	    token ? "the certificates of token \"" : "any certificate", token ? token : "",
	    token ? "\"" : "");
}

static void
tunnel_event(struct tunnel *t, const char *text)
{
	json_object *ev = json_tokener_parse(text), *v;
	const char *what, *token = NULL;
	char why[200];

	if (ev == NULL || !json_object_object_get_ex(ev, "event", &v) ||
	    (what = json_object_get_string(v)) == NULL)
		goto out;
	if (json_object_object_get_ex(ev, "token", &v) && json_object_is_type(v, json_type_string))
		token = json_object_get_string(v);
	if (strcmp(what, "token-removed") == 0 || strcmp(what, "logout") == 0) {
		snprintf(why, sizeof(why), "the agent says %s%s%s", what, token ? " of token " : "",
		    token ? token : "");
		tunnel_forget(t, token, why);
	}
out:
	json_object_put(ev);
}

/* 1 when the tunnel stops (waits up to ms for it). */
static int
tunnel_stopping(struct tunnel *t, int ms)
{
	struct pollfd p = { t->stop_rd, POLLIN, 0 };
	int stop;

	pthread_mutex_lock(&t->lock);
	stop = t->stopping;
	pthread_mutex_unlock(&t->lock);
	return stop || poll(&p, 1, ms) > 0;
}

/*
 * The agent's events, on a connection of their own: token-removed and
 * logout end the sessions of that token. While the agent is away, the
 * sessions are forgotten once (what happened to the card meanwhile is not
 * known) and the thread tries again every second.
 */
static void *
tunnel_watch(void *arg)
{
	struct tunnel *t = arg;
	scagent_client *cl = NULL;
	int had = 0;

	while (!tunnel_stopping(t, 0)) {
		char *ev = NULL;
		int r;

		if (cl == NULL) {
			if (scagent_connect(t->o->tls->agent ? t->o->tls->agent->socket : NULL, &cl) != SC_OK ||
			    scagent_watch(cl) != SC_OK) {
				scagent_close(cl);
				cl = NULL;
				tunnel_stopping(t, 1000);
				continue;
			}
			had = 1;
		}
		if ((r = scagent_next_event(cl, 500, &ev)) == SC_OK)
			tunnel_event(t, ev);
		else if (r != SC_ERR_TIMEOUT) {
			scagent_close(cl);
			cl = NULL;
			if (had)
				tunnel_forget(t, NULL, "the agent went away");
			had = 0;
		}
		scagent_free(ev);
	}
	scagent_close(cl);
	return NULL;
}

/* Join the connection threads that have finished. */
static void
tunnel_reap(struct tunnel *t)
{
	pthread_t *v;
	size_t n;

	pthread_mutex_lock(&t->lock);
	v = t->done;
	n = t->ndone;
	t->done = NULL;
	t->ndone = t->capdone = 0;
	pthread_mutex_unlock(&t->lock);
	for (size_t i = 0; i < n; i++)
		pthread_join(v[i], NULL);
	free(v);
}

/*
 * Whether the connection just accepted on fd may be served: 1 (peer then
 * describes it), or 0 when it is refused (logged; the caller closes it).
 * Nothing has gone upstream and nothing has been signed for it yet.
 */
static int
admit(struct tunnel *t, const struct listener *l, int fd, const struct sockaddr_storage *ss,
    socklen_t sl, char *peer, size_t peerlen)
{
	char h[64] = "?", s[16] = "?", why[128];
	uid_t uid = (uid_t)-1;
	int r, active;

	if (l->is_unix) {
		struct ucred cr;
		socklen_t cl = sizeof(cr);

		/* Mode 0600 keeps others out; root is not kept out by modes. */
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0) {
			tlog("refused a connection: cannot tell which user opened it (SO_PEERCRED: %s)",
			    strerror(errno));
			return 0;
		}
		uid = cr.uid;
		snprintf(peer, peerlen, "pid %ld, uid %lu", (long)cr.pid, (unsigned long)uid);
	} else {
		getnameinfo((const struct sockaddr *)ss, sl, h, sizeof(h), s, sizeof(s),
		    NI_NUMERICHOST | NI_NUMERICSERV);
		snprintf(peer, peerlen, "%s:%s", h, s);
		if (t->check_uid) {
			if ((r = sc_peer_uid(fd, &uid)) != SC_OK) {
				snprintf(why, sizeof(why), "%s", r == SC_ERR_NOT_FOUND ?
				    "no socket on this host has its address" : strerror(errno));
				tlog("refused a connection from %s: cannot tell which user opened it (%s)",
				    peer, why);
				return 0;
			}
			snprintf(peer + strlen(peer), peerlen - strlen(peer), ", uid %lu", (unsigned long)uid);
		}
	}
	if ((l->is_unix || t->check_uid) && uid != t->uid) {
		tlog("refused a connection from uid %lu (%s): only uid %lu may use this tunnel",
		    (unsigned long)uid, peer, (unsigned long)t->uid);
		return 0;
	}
	pthread_mutex_lock(&t->lock);
	active = t->active;
	pthread_mutex_unlock(&t->lock);
	if (active >= t->o->max_connections) {
		tlog("refused a connection from %s: %d connections are open, the most "
		    "--max-connections allows", peer, active);
		return 0;
	}
	return 1;
}

/* The self-pipes, and SIGTERM and SIGINT written into the stop pipe. 0, or SC_ERR_IO (said). */
static int
tunnel_pipes(struct tunnel *t, int pipefd[2], int donefd[2], struct sigaction *old_term,
    struct sigaction *old_int)
{
	struct sigaction sa;

	if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(donefd, O_CLOEXEC | O_NONBLOCK) < 0) {
		t->o->say_err("pipe: %s", strerror(errno));
		return SC_ERR_IO;
	}
	t->stop_rd = pipefd[0];
	t->stop_wr = pipefd[1];
	t->done_rd = donefd[0];
	t->done_wr = donefd[1];
	tunnel_stop_fd = pipefd[1];
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = tunnel_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, old_term);
	sigaction(SIGINT, &sa, old_int);
	return SC_OK;
}

/* Say who may use the listener, start the events thread (*watching), and say what sessions do. */
static int
tunnel_announce(struct tunnel *t, pthread_t *watcher, int *watching)
{
	const struct sc_tunnel_opts *o = t->o;
	char shown[32];

	if (!t->check_uid)
		tlog("WARNING: %s is not a loopback address: anyone who can reach this port signs in "
		    "to %s with your card's certificate, and the tunnel cannot tell who they are; "
		    "prefer --listen unix:PATH or 127.0.0.1", o->listen, o->connect);
	if (t->check_uid)
		snprintf(shown, sizeof(shown), "uid %lu only", (unsigned long)t->uid);
	else
		snprintf(shown, sizeof(shown), "remote clients allowed");
	tlog("listening on %s, forwarding to %s over mutual TLS (%s, at most %d connections at once)",
	    o->listen, o->connect, shown, o->max_connections);
	if (t->sessions != NULL && !o->keep_on_removal) {
		if (pthread_create(watcher, NULL, tunnel_watch, t) != 0) {
			o->say_err("cannot start the thread that follows the agent's events");
			return SC_ERR_INTERNAL;
		}
		*watching = 1;
	}
	if (t->sessions != NULL)
		tlog("TLS sessions are kept for up to %ld s and resumed: the card signs once per "
		    "certificate, not per connection; %s", o->session_lifetime, *watching ?
		    "they end when the token is removed or logged out" :
		    "--keep-on-removal: they outlive the token's removal or logout");
	else
		tlog("no TLS session is kept (--session-lifetime 0): every connection asks the card");
	return SC_OK;
}

/* A connection waits on the listener: admit it and start its thread, or close it. */
static void
tunnel_accept(struct tunnel *t, const struct listener *l)
{
	char peer[96], shown[32];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct tconn *tc;
	pthread_t th;
	int fd;

	if ((fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC)) < 0) {
		if (errno == EMFILE || errno == ENFILE) {
			/* the waiting connection stays readable: do not spin on it */
			tlog("cannot accept a connection: %s; lower --max-connections or raise "
			    "the limit of open files (ulimit -n)", strerror(errno));
			poll(NULL, 0, 1000);
		}
		return;
	}
	if (!admit(t, l, fd, &ss, sl, peer, sizeof(peer)) ||
	    (tc = calloc(1, sizeof(*tc))) == NULL) {
		close(fd);
		return;
	}
	tc->t = t;
	tc->fd = fd;
	memcpy(tc->peer, peer, sizeof(tc->peer));
	pthread_mutex_lock(&t->lock);
	tc->id = ++t->served;
	tc->forgets0 = t->forgets;
	t->active++;
	snprintf(shown, sizeof(shown), "%d active", t->active);
	pthread_mutex_unlock(&t->lock);
	tlog("connection #%lu from %s (%s)", tc->id, tc->peer, shown);
	if (pthread_create(&th, NULL, tunnel_conn, tc) != 0) {
		tlog("connection #%lu: cannot start a thread", tc->id);
		close(fd);
		free(tc);
		pthread_mutex_lock(&t->lock);
		t->active--;
		pthread_mutex_unlock(&t->lock);
	}
}

/* Accept until the stop pipe is written; finished threads are joined on the way. */
static void
tunnel_serve(struct tunnel *t, const struct listener *l)
{
	for (;;) {
		struct pollfd p[3] = { { l->fd, POLLIN, 0 }, { t->stop_rd, POLLIN, 0 },
			{ t->done_rd, POLLIN, 0 } };
		char drain[64];

		tunnel_reap(t);
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents & POLLIN)
			break;
		if (p[2].revents & POLLIN) {
			while (read(t->done_rd, drain, sizeof(drain)) > 0)
				;
			continue;	/* join it at the top */
		}
		tunnel_accept(t, l);
	}
}

/* The events thread told to stop, and joined. */
static void
tunnel_unwatch(struct tunnel *t, pthread_t watcher)
{
	pthread_mutex_lock(&t->lock);
	t->stopping = 1;
	pthread_mutex_unlock(&t->lock);
	pthread_join(watcher, NULL);
}

int
sc_tunnel_run(const struct sc_tunnel_opts *o)
{
	struct tunnel t;
	struct listener l;
	struct sigaction old_term, old_int;
	int pipefd[2] = { -1, -1 }, donefd[2] = { -1, -1 }, signals = 0, watching = 0, rc;
	pthread_t watcher;

	memset(&t, 0, sizeof(t));
	memset(&l, 0, sizeof(l));
	l.fd = -1;
	t.o = o;
	t.uid = geteuid();
	pthread_mutex_init(&t.lock, NULL);
	pthread_cond_init(&t.idle, NULL);
	if ((rc = sc_tunnel_check(o)) != SC_OK)
		goto out;
	sc_tunnel_split_hostport(o->connect, t.host, sizeof(t.host), t.port, sizeof(t.port));
	if (o->session_lifetime > 0 && (t.sessions = sc_tls_sessions_new(o->session_lifetime)) == NULL) {
		o->say_err("out of memory");
		rc = SC_ERR_NOMEM;
		goto out;
	}
	if ((rc = sc_tunnel_listen(o, &l)) != SC_OK)
		goto out;
	t.check_uid = l.loopback;
	if (!l.is_unix) {
		/* a browser reaches a TCP port, not a Unix socket */
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char ignored[NI_MAXHOST];

		t.gated = 1;
		t.gh.upstream = t.host;
		t.gh.allow = o->allow_host;
		if (getsockname(l.fd, (struct sockaddr *)&ss, &sl) != 0 ||
		    getnameinfo((struct sockaddr *)&ss, sl, ignored, sizeof(ignored), t.gh.port,
		    sizeof(t.gh.port), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
			snprintf(t.gh.port, sizeof(t.gh.port), "0");
	}
	if ((rc = tunnel_pipes(&t, pipefd, donefd, &old_term, &old_int)) != SC_OK)
		goto out;
	signals = 1;
	signal(SIGPIPE, SIG_IGN);
	if ((rc = tunnel_announce(&t, &watcher, &watching)) != SC_OK)
		goto out;
	tunnel_serve(&t, &l);
	sc_tunnel_listener_close(&l);
	pthread_mutex_lock(&t.lock);
	if (t.active > 0)
		tlog("stopping: closing %d connection%s", t.active, t.active == 1 ? "" : "s");
	while (t.active > 0)
		pthread_cond_wait(&t.idle, &t.lock);
	pthread_mutex_unlock(&t.lock);
	tunnel_reap(&t);
	if (watching) {
		tunnel_unwatch(&t, watcher);
		watching = 0;
	}
	tlog("stopped after %lu connection%s", t.served, t.served == 1 ? "" : "s");
	rc = SC_OK;
out:
	if (watching)
		tunnel_unwatch(&t, watcher);
	if (signals) {
		sigaction(SIGTERM, &old_term, NULL);
		sigaction(SIGINT, &old_int, NULL);
	}
	tunnel_stop_fd = -1;
	sc_tunnel_listener_close(&l);
	for (int i = 0; i < 2; i++) {
		if (pipefd[i] >= 0)
			close(pipefd[i]);
		if (donefd[i] >= 0)
			close(donefd[i]);
	}
	sc_tls_sessions_free(t.sessions);
	pthread_mutex_destroy(&t.lock);
	pthread_cond_destroy(&t.idle);
	return rc;
}
