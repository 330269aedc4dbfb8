/*
 * The tunnel engine (see tunnel.h): who may use the listener, a thread per
 * connection (its life is tunnel-conn.c's), and a thread that follows the
 * agent's events to end kept sessions and the connections made with them.
 * Threads and what struct tunnel's lock guards are written at the struct
 * (tunnel-private.h).
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
#include "common/err.h"
#include "common/peeruid.h"
#include "common/text.h"
#include "common/util.h"
#include "tls/tlsclient.h"
#include "tls/tunnel.h"
#include "tls/tunnel-gate.h"
#include "tls/tunnel-private.h"

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

static void
vlog(const char *fmt, va_list ap)
{
	char ts[32], prefix[64];
	time_t now = time(NULL);
	struct tm tm;

	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", localtime_r(&now, &tm));
	snprintf(prefix, sizeof(prefix), "%s scagent tunnel: ", ts);
	/* Peers' and servers' words are escaped for the terminal; one line, one fprintf (text.h). */
	sc_term_vsay(stderr, prefix, fmt, ap);
}

void
sc_tunnel_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(fmt, ap);
	va_end(ap);
}

/* The refusals not said one by one, said in one line (t->lock not held). */
static void
say_unsaid(unsigned long unsaid)
{
	if (unsaid > 0)
		sc_tunnel_log("%lu more connection%s or request%s refused within %d s, not logged one "
		    "by one (at most %d are)", unsaid, unsaid == 1 ? "" : "s", unsaid == 1 ? "" : "s",
		    SC_TUNNEL_REFUSAL_WINDOW_MS / 1000, SC_TUNNEL_REFUSALS_SAID);
}

void
sc_tunnel_refused(struct tunnel *t, const char *fmt, ...)
{
	uint64_t now = sc_now_ms();
	unsigned long unsaid = 0;
	va_list ap;
	int say;

	pthread_mutex_lock(&t->lock);
	if (t->refusal_window == 0 || now - t->refusal_window >= SC_TUNNEL_REFUSAL_WINDOW_MS) {
		unsaid = t->refusals_unsaid;
		t->refusal_window = now;
		t->refusals = t->refusals_unsaid = 0;
	}
	if (!(say = ++t->refusals <= SC_TUNNEL_REFUSALS_SAID))
		t->refusals_unsaid++;
	pthread_mutex_unlock(&t->lock);
	say_unsaid(unsaid);
	if (!say)
		return;
	va_start(ap, fmt);
	vlog(fmt, ap);
	va_end(ap);
}

void
sc_tunnel_refusals_said(struct tunnel *t)
{
	unsigned long unsaid;

	pthread_mutex_lock(&t->lock);
	unsaid = t->refusals_unsaid;
	t->refusals_unsaid = 0;
	pthread_mutex_unlock(&t->lock);
	say_unsaid(unsaid);
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
	sc_tunnel_log("%s: forgot %d kept session%s and closed %d connection%s made with %s%s%s; the next "
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
			pthread_mutex_lock(&t->lock);
			t->watch_up = 1;
			pthread_cond_broadcast(&t->idle);
			pthread_mutex_unlock(&t->lock);
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
			sc_tunnel_refused(t, "refused a connection: cannot tell which user opened it (SO_PEERCRED: %s)",
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
				sc_tunnel_refused(t, "refused a connection from %s: cannot tell which user opened it (%s)",
				    peer, why);
				return 0;
			}
			snprintf(peer + strlen(peer), peerlen - strlen(peer), ", uid %lu", (unsigned long)uid);
		}
	}
	if ((l->is_unix || t->check_uid) && uid != t->uid) {
		sc_tunnel_refused(t, "refused a connection from uid %lu (%s): only uid %lu may use this tunnel",
		    (unsigned long)uid, peer, (unsigned long)t->uid);
		return 0;
	}
	pthread_mutex_lock(&t->lock);
	active = t->active;
	pthread_mutex_unlock(&t->lock);
	if (active >= t->o->max_connections) {
		sc_tunnel_refused(t, "refused a connection from %s: %d connections are open, the most "
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
#define WATCH_WAIT_MS 3000

/* 1 when the watch thread follows the agent's events within WATCH_WAIT_MS. */
static int
watch_wait(struct tunnel *t)
{
	struct timespec ts = sc_deadline(CLOCK_REALTIME, WATCH_WAIT_MS);
	int up;

	pthread_mutex_lock(&t->lock);
	while (!t->watch_up && pthread_cond_timedwait(&t->idle, &t->lock, &ts) == 0)
		;
	up = t->watch_up;
	pthread_mutex_unlock(&t->lock);
	return up;
}

static int
tunnel_announce(struct tunnel *t, pthread_t *watcher, int *watching)
{
	const struct sc_tunnel_opts *o = t->o;
	char shown[32];

	if (!t->check_uid)
		sc_tunnel_log("WARNING: %s is not a loopback address: anyone who can reach this port signs in "
		    "to %s with your card's certificate, and the tunnel cannot tell who they are; "
		    "prefer --listen unix:PATH or 127.0.0.1", o->listen, o->connect);
	if (t->check_uid)
		snprintf(shown, sizeof(shown), "uid %lu only", (unsigned long)t->uid);
	else
		snprintf(shown, sizeof(shown), "remote clients allowed");
	sc_tunnel_log("listening on %s, forwarding to %s over mutual TLS (%s, at most %d connections at once)",
	    o->listen, o->connect, shown, o->max_connections);
	/* Without kept sessions too: the connections made with a card's certificate end with it. */
	if (!o->keep_on_removal) {
		if (pthread_create(watcher, NULL, tunnel_watch, t) != 0) {
			o->say_err("cannot start the thread that follows the agent's events");
			return SC_ERR_INTERNAL;
		}
		*watching = 1;
		/*
		 * Connections are served once the events are followed (a card
		 * removed meanwhile would go unseen), or after WATCH_WAIT_MS
		 * without the agent: its absence is said by the connections.
		 */
		if (!watch_wait(t))
			sc_tunnel_log("the agent's events are not followed yet (is scagentd running?): "
			    "trying again every second");
	}
	if (t->sessions != NULL)
		sc_tunnel_log("TLS sessions are kept for up to %ld s and resumed: the card signs once per "
		    "certificate, not per connection; %s", o->session_lifetime, *watching ?
		    "they end when the token is removed or logged out" :
		    "--keep-on-removal: they outlive the token's removal or logout");
	else
		sc_tunnel_log("no TLS session is kept (--session-lifetime 0): every connection asks the card");
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
			sc_tunnel_log("cannot accept a connection: %s; lower --max-connections or raise "
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
	sc_tunnel_log("connection #%lu from %s (%s)", tc->id, tc->peer, shown);
	if (pthread_create(&th, NULL, sc_tunnel_conn_main, tc) != 0) {
		sc_tunnel_log("connection #%lu: cannot start a thread", tc->id);
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
		sc_tunnel_log("stopping: closing %d connection%s", t.active, t.active == 1 ? "" : "s");
	while (t.active > 0)
		pthread_cond_wait(&t.idle, &t.lock);
	pthread_mutex_unlock(&t.lock);
	tunnel_reap(&t);
	if (watching) {
		tunnel_unwatch(&t, watcher);
		watching = 0;
	}
	sc_tunnel_refusals_said(&t);
	sc_tunnel_log("stopped after %lu connection%s", t.served, t.served == 1 ? "" : "s");
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
