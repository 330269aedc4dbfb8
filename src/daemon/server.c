/*
 * The agent's socket server: accept (peer checks, the client limit), one
 * thread per client (a slow token only holds up the clients that use it),
 * the client list, each client's output queue, and events to the watchers.
 * Locks and threads: server-private.h.
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/server-private.h"
#include "proto/proto.h"
#include "token/pcsc.h"

#define CLIENT_IDLE_MS (30UL * 60 * 1000)
#define MAX_CLIENTS 256			/* default of scagentd --max-clients */
/* A connection must say hello within this, or it is closed: idle connections never fill the house. */
#define HELLO_TIMEOUT_MS 5000
/* A client whose socket takes nothing of what waits for it this long is dropped. */
#define SEND_TIMEOUT_MS 5000
/* Events waiting for a watcher beyond its socket buffer; more and it is dropped. */
#define EVENT_BACKLOG_MAX (64 * 1024)
/* An output buffer above this is freed when it empties (a big answer passed). */
#define OUT_KEEP (64 * 1024)

/* ------------------------------------------------------------------ */

/*
 * Write p[0..n) as far as the socket takes it without blocking: *done gets
 * how much it took. SC_ERR_IO when the client is gone.
 */
static int
send_nb(struct client *c, const char *p, size_t n, size_t *done)
{
	*done = 0;
	while (*done < n) {
		ssize_t w = send(c->fd, p + *done, n - *done, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return SC_ERR_IO;
		}
		*done += (size_t)w;
	}
	c->written += *done;
	if (*done > 0)
		c->progress_at = sc_now_ms();
	return SC_OK;
}

static size_t
out_waiting(const struct client *c)
{
	return c->outlen - c->outoff;
}

/* Write what waits in c->out as far as the socket takes it (wlock held). */
static int
out_flush(struct client *c)
{
	size_t done = 0;
	int r = SC_OK;

	/* Nothing waits: c->out may be NULL, and NULL + 0 is undefined in C. */
	if (out_waiting(c) > 0)
		r = send_nb(c, c->out + c->outoff, out_waiting(c), &done);
	c->outoff += done;
	if (c->outoff == c->outlen) {
		c->outoff = c->outlen = 0;
		c->backlog = 0;
		if (c->outcap > OUT_KEEP) {
			free(c->out);
			c->out = NULL;
			c->outcap = 0;
		}
	}
	return r;
}

/* Send line after what waits; what the socket does not take waits in c->out (wlock held). */
static int
out_put(struct client *c, const char *line, size_t len)
{
	size_t done = 0;
	int r;

	if (c->dead)
		return SC_ERR_IO;
	if ((r = out_flush(c)) != SC_OK)
		return r;
	c->queued += len;
	if (out_waiting(c) == 0) {
		if ((r = send_nb(c, line, len, &done)) != SC_OK)
			return r;
		if (done == len)
			return SC_OK;
		c->progress_at = sc_now_ms();	/* from now on, the bytes wait */
	}
	if (c->outoff > 0) {
		memmove(c->out, c->out + c->outoff, out_waiting(c));
		c->outlen -= c->outoff;
		c->outoff = 0;
	}
	if (len - done > c->outcap - c->outlen) {
		size_t cap = c->outlen + (len - done);
		char *n;
		if (cap < 2 * c->outcap)
			cap = 2 * c->outcap;
		if ((n = realloc(c->out, cap)) == NULL)
			return SC_ERR_NOMEM;
		c->out = n;
		c->outcap = cap;
	}
	memcpy(c->out + c->outlen, line + done, len - done);
	c->outlen += len - done;
	return SC_OK;
}

/* Drop a client (wlock held): its thread sees the socket shut and ends it. why NULL: no log. */
static void
out_drop(struct client *c, const char *why)
{
	if (c->dead)
		return;
	c->dead = 1;
	if (why != NULL)
		sc_warn("client pid %ld (%s): %s; disconnected", (long)c->pid, c->exe, why);
	shutdown(c->fd, SHUT_RDWR);
}

/*
 * The client has bytes waiting: write what its socket takes now, and drop it
 * when it took nothing for SEND_TIMEOUT_MS (wlock held). SC_ERR_IO: dropped.
 */
static int
out_check(struct client *c, const char *what)
{
	char why[160];

	if (c->dead)
		return SC_ERR_IO;
	if (out_flush(c) != SC_OK) {
		out_drop(c, NULL);	/* gone */
		return SC_ERR_IO;
	}
	if (out_waiting(c) > 0 && sc_now_ms() - c->progress_at >= SEND_TIMEOUT_MS) {
		snprintf(why, sizeof(why), "did not read its %s for %d s (%zu bytes waiting)", what,
		    SEND_TIMEOUT_MS / 1000, out_waiting(c));
		out_drop(c, why);
		return SC_ERR_IO;
	}
	return SC_OK;
}

/*
 * An answer, from the client's own thread: wait (without the lock, so events
 * still queue behind it) until the socket has taken it, or drop the client
 * when it reads nothing for SEND_TIMEOUT_MS.
 */
int
send_line(struct client *c, char *line, size_t len)
{
	uint64_t end;
	int r;

	if (line == NULL)
		return SC_ERR_NOMEM;
	pthread_mutex_lock(&c->wlock);
	if ((r = out_put(c, line, len)) != SC_OK)
		out_drop(c, NULL);
	end = c->queued;	/* the answer is written when the socket has taken this much */
	while (r == SC_OK && (r = out_check(c, "answers")) == SC_OK && c->written < end) {
		struct pollfd p = { c->fd, POLLOUT, 0 };
		uint64_t waited = sc_now_ms() - c->progress_at;

		pthread_mutex_unlock(&c->wlock);
		poll(&p, 1, waited < SEND_TIMEOUT_MS ? (int)(SEND_TIMEOUT_MS - waited) : 0);
		pthread_mutex_lock(&c->wlock);
	}
	pthread_mutex_unlock(&c->wlock);
	free(line);
	return r;
}

/* An event for one watcher (evlock held): never waits; a watcher that falls behind is dropped. */
static void
send_event(struct client *c, const char *line, size_t len)
{
	char why[160];
	size_t before;

	pthread_mutex_lock(&c->wlock);
	if (out_check(c, "events") != SC_OK)
		goto out;
	if (c->backlog + len > EVENT_BACKLOG_MAX) {
		snprintf(why, sizeof(why), "a watcher that does not read its events (%zu bytes waiting)",
		    out_waiting(c));
		out_drop(c, why);
		goto out;
	}
	before = out_waiting(c);
	if (out_put(c, line, len) != SC_OK)
		out_drop(c, NULL);
	else if (out_waiting(c) > before)
		c->backlog += out_waiting(c) - before;
out:
	pthread_mutex_unlock(&c->wlock);
}

void
sc_server_broadcast(struct sc_server *srv, const char *event, json_object *fields)
{
	size_t len = 0;
	char *line;

	if (srv->desk != NULL)
		desktop_event(srv, event, fields);
	if ((line = sc_proto_event(event, fields, &len)) == NULL)
		return;
	pthread_mutex_lock(&srv->evlock);
	for (struct client *c = srv->clients; c != NULL; c = c->next)
		if (c->watching)
			send_event(c, line, len);
	pthread_mutex_unlock(&srv->evlock);
	free(line);
}

int
op_watch(struct client *c, int64_t id, json_object *req)
{
	int r = reply_ok(c, id, NULL);

	pthread_mutex_lock(&c->srv->evlock);
	c->watching = 1;
	pthread_mutex_unlock(&c->srv->evlock);
	return r;
}

/* ------------------------------------------------------------------ */
/* Client threads */

static void
client_remove(struct client *c)
{
	struct sc_server *srv = c->srv;

	/* evlock: no broadcast is writing to c when it goes. */
	pthread_mutex_lock(&srv->evlock);
	pthread_mutex_lock(&srv->lock);
	for (struct client **pp = &srv->clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	srv->nclients--;
	pthread_cond_broadcast(&srv->cond);
	pthread_mutex_unlock(&srv->lock);
	pthread_mutex_unlock(&srv->evlock);
	route_client_free(c);
	close(c->fd);
	pthread_mutex_destroy(&c->wlock);
	free(c->out);
	free(c);
}

static void *
client_main(void *arg)
{
	struct client *c = arg;
	struct sc_linebuf lb;
	uint64_t last = sc_now_ms(), partial_since = 0;
	char *line;
	size_t len;

	sc_linebuf_init(&lb, SC_PROTO_MAX_REQUEST);
	while (!c->srv->stopping) {
		struct pollfd p = { c->fd, POLLIN, 0 };
		int n, waiting;

		/* Events that the socket did not take: write them when it can. */
		pthread_mutex_lock(&c->wlock);
		waiting = out_check(c, "events") != SC_OK ? -1 : out_waiting(c) > 0;
		pthread_mutex_unlock(&c->wlock);
		if (waiting < 0)
			break;
		if (waiting)
			p.events |= POLLOUT;

		n = poll(&p, 1, 1000);
		/* Only writable: nothing to read (the next round writes). */
		if (n > 0 && !(p.revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)))
			n = 0;
		uint64_t now = sc_now_ms();

		if (n < 0 && errno != EINTR)
			break;
		if (!c->hello && now - c->accepted >= HELLO_TIMEOUT_MS) {
			/* A connection that never says hello holds a client slot for nothing. */
			char msg[128];

			sc_info("client pid %ld (%s): no hello within %d s, disconnected", (long)c->pid,
			    c->exe, HELLO_TIMEOUT_MS / 1000);
			snprintf(msg, sizeof(msg), "no hello within %d s: send "
			    "{\"id\":0,\"op\":\"hello\",\"version\":1} first", HELLO_TIMEOUT_MS / 1000);
			reply_err(c, -1, SC_ERR_TIMEOUT, msg);
			break;
		}
		/* Checked whatever came: a client that trickles a byte a second is never idle. */
		if (partial_since && now - partial_since > c->srv->o.request_timeout_ms) {
			sc_info("client pid %ld: request not completed in time, disconnected", (long)c->pid);
			break;
		}
		if (n <= 0) {
			/* A worker's connections are the agent's: they last as long as its clients. */
			if (!c->watching && !c->srv->o.worker && now - last > CLIENT_IDLE_MS)
				break;
			continue;
		}
		long rd = sc_linebuf_read(&lb, c->fd);
		if (rd == 0)
			break;
		if (rd == SC_ERR_TOO_LARGE) {
			sc_warn("client pid %ld: request over %d bytes, disconnected", (long)c->pid,
			    SC_PROTO_MAX_REQUEST);
			reply_err(c, -1, SC_ERR_TOO_LARGE, "request too large: the limit is 262144 bytes");
			break;
		}
		if (rd < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			break;
		}
		last = now;
		int r;
		while ((r = sc_linebuf_take(&lb, &line, &len)) != 0) {
			if (r < 0) {
				reply_err(c, -1, SC_ERR_PROTOCOL, "a request contains a NUL byte");
				continue;
			}
			if (len > 0)
				r = dispatch(c, line, len);
			explicit_bzero(line, len);	/* may have held a PIN */
			free(line);
			if (r == SC_ERR_IO)
				goto out;
		}
		partial_since = lb.len > 0 ? (partial_since ? partial_since : now) : 0;
	}
out:
	if (lb.buf)
		explicit_bzero(lb.buf, lb.cap);
	sc_linebuf_free(&lb);
	/*
	 * OpenSSL's state of this thread (its error queue) goes now: once
	 * client_remove has counted the client out, the process may exit
	 * before the thread's own destructors run.
	 */
	OPENSSL_thread_stop();
	client_remove(c);
	return NULL;
}

/*
 * The newcomer on fd cannot be served (why says so): tell it before closing,
 * so that it says "busy" and not "no agent". One line that fits any socket
 * buffer, written without waiting; the connection has sent nothing yet, so
 * the answer's id is null.
 */
static void
refuse_busy(int fd, pid_t pid, const char *why)
{
	char *line;
	size_t len = 0;

	if ((line = sc_proto_error(-1, SC_ERR_BUSY, why, &len)) != NULL &&
	    send(fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		sc_debug("could not tell pid %ld the agent is busy: %s", (long)pid, strerror(errno));
	free(line);
	close(fd);
}

/*
 * The peer of a connection the agent accepted: its identity into *id (exe in
 * exe), or an error (fd closed): not the agent's user, or every client slot
 * taken.
 */
static int
peer_ident(struct sc_server *srv, int fd, struct sc_client_ident *id, char *exe, size_t exelen)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	char path[64];
	ssize_t n;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
		sc_warn("cannot check the peer of a connection: %s", strerror(errno));
		close(fd);
		return SC_ERR_IO;
	}
	if (cred.uid != getuid() && cred.uid != 0) {
		sc_warn("refused a connection from uid %lu (pid %ld): not the agent's user",
		    (unsigned long)cred.uid, (long)cred.pid);
		close(fd);
		return SC_ERR_DENIED;
	}
	pthread_mutex_lock(&srv->lock);
	if (srv->nclients >= srv->o.max_clients) {
		char msg[200];

		pthread_mutex_unlock(&srv->lock);
		snprintf(msg, sizeof(msg), "the agent is serving %d clients, its maximum: try again "
		    "later, or raise scagentd --max-clients", srv->o.max_clients);
		sc_warn("refused a connection from pid %ld: %d clients already", (long)cred.pid,
		    srv->o.max_clients);
		refuse_busy(fd, cred.pid, msg);
		return SC_ERR_BUSY;
	}
	pthread_mutex_unlock(&srv->lock);
	snprintf(path, sizeof(path), "/proc/%ld/exe", (long)cred.pid);
	if ((n = readlink(path, exe, exelen - 1)) > 0)
		exe[n] = '\0';
	else
		snprintf(exe, exelen, "?");
	id->pid = cred.pid;
	id->uid = cred.uid;
	id->exe = exe;
	return SC_OK;
}

int
sc_server_add_client(struct sc_server *srv, int fd, const struct sc_client_ident *id)
{
	struct sc_client_ident peer;
	struct client *c;
	pthread_attr_t attr;
	pthread_t th;
	char exe[256];
	int r;

	if (id == NULL) {
		if ((r = peer_ident(srv, fd, &peer, exe, sizeof(exe))) != SC_OK)
			return r;
		id = &peer;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return SC_ERR_NOMEM;
	}
	c->srv = srv;
	c->fd = fd;
	c->pid = id->pid;
	c->uid = id->uid;
	c->accepted = sc_now_ms();
	snprintf(c->exe, sizeof(c->exe), "%s", id->exe != NULL ? id->exe : "?");
	pthread_mutex_init(&c->wlock, NULL);
	pthread_mutex_lock(&srv->evlock);
	pthread_mutex_lock(&srv->lock);
	c->next = srv->clients;
	srv->clients = c;
	srv->nclients++;
	pthread_mutex_unlock(&srv->lock);
	pthread_mutex_unlock(&srv->evlock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	r = SC_OK;
	if (pthread_create(&th, &attr, client_main, c) != 0) {
		sc_warn("cannot start a thread for a client");
		client_remove(c);
		r = SC_ERR_INTERNAL;
	}
	pthread_attr_destroy(&attr);
	return r;
}

/*
 * No file descriptor is left (RLIMIT_NOFILE; clients, their connections to
 * the workers): the newcomer waits in the listening socket's queue, which
 * stays readable, so poll() would return at once for ever. The spare fd is
 * given up for a moment to take the newcomer and tell it "busy"; without a
 * spare, accepting pauses briefly rather than spin.
 */
static void
accept_no_fd(struct sc_server *srv, int err)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	char msg[256];
	int fd = -1;

	if (srv->spare_fd >= 0) {
		close(srv->spare_fd);
		fd = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0 && (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 ||
		    (cred.uid != getuid() && cred.uid != 0)))
			close(fd);	/* not the agent's user: told nothing */
		else if (fd >= 0) {
			snprintf(msg, sizeof(msg), "the agent has no file descriptor left for a new "
			    "connection (%s): try again when fewer clients are connected, or raise its "
			    "limit of open files (ulimit -n, LimitNOFILE=)", strerror(err));
			sc_warn("refused a connection: %s", strerror(err));
			refuse_busy(fd, cred.pid, msg);
		}
		srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	if (fd < 0)
		poll(NULL, 0, 100);
}

static void
accept_client(struct sc_server *srv)
{
	int fd;

	if ((fd = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
		if (errno == EMFILE || errno == ENFILE)
			accept_no_fd(srv, errno);
		return;
	}
	sc_server_add_client(srv, fd, NULL);
}

/* ------------------------------------------------------------------ */
/* The server */

struct sc_server *
sc_server_new(struct sc_store *st, int listen_fd, const struct sc_server_opts *o)
{
	struct sc_server *srv;

	if ((srv = calloc(1, sizeof(*srv))) == NULL)
		return NULL;
	srv->st = st;
	srv->o = *o;
	if (srv->o.request_timeout_ms == 0)
		srv->o.request_timeout_ms = 10000;
	if (srv->o.max_clients <= 0)
		srv->o.max_clients = MAX_CLIENTS;
	srv->lfd = listen_fd;
	srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	srv->started = sc_now_ms();
	srv->fatal_base = sc_ckr_fatal_count();
	monitor_init(srv);
	pthread_mutex_init(&srv->evlock, NULL);
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->cond, NULL);
	if (pipe2(srv->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		if (srv->spare_fd >= 0)
			close(srv->spare_fd);
		free(srv);
		return NULL;
	}
	audit_open(srv, o->audit_log);
	return srv;
}

void
sc_server_stop(struct sc_server *srv)
{
	int saved = errno;

	srv->stopping = 1;
	if (write(srv->stop_pipe[1], "x", 1) < 0) {
		/* the pipe is full: a stop is already pending */
	}
	errno = saved;
}

void
sc_server_set_sup(struct sc_server *srv, struct sc_sup *sup)
{
	srv->sup = sup;
}

int
sc_server_reinit(struct sc_server *srv)
{
	return srv->reinit;	/* set to the exit status by worker_check_reinit */
}

int
sc_server_run(struct sc_server *srv)
{
	if (!srv->o.worker)
		readers_start(srv);	/* the agent watches PC/SC; its workers are told */
	if (pthread_create(&srv->monitor, NULL, monitor_main, srv) == 0)
		srv->monitor_started = 1;
	while (!srv->stopping) {
		struct pollfd p[2] = { { srv->lfd, POLLIN, 0 }, { srv->stop_pipe[0], POLLIN, 0 } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			sc_error("poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		if (srv->o.worker && (p[0].revents & (POLLIN | POLLHUP))) {
			if (worker_accept(srv) != SC_OK)
				break;	/* the agent is gone */
		} else if (p[0].revents & POLLIN)
			accept_client(srv);
		else if (p[0].revents & (POLLNVAL | POLLERR | POLLHUP)) {
			/* Never spin on a listening socket that went bad. */
			sc_error("the listening socket failed; stopping");
			break;
		}
	}
	srv->stopping = 1;
	/* No more PC/SC events: they would go to clients that are leaving. */
	sc_pcsc_stop(srv->pcsc);
	pthread_mutex_lock(&srv->lock);
	pthread_cond_broadcast(&srv->cond);
	/*
	 * Wake clients out of poll() and wait for them to go. Only the reading
	 * side: a thread that waits on a worker wakes by the stop pipe and
	 * still writes its "the agent is stopping" answer.
	 */
	for (struct client *c = srv->clients; c; c = c->next)
		shutdown(c->fd, SHUT_RD);
	while (srv->nclients > 0)
		pthread_cond_wait(&srv->cond, &srv->lock);
	pthread_mutex_unlock(&srv->lock);
	if (srv->monitor_started)
		pthread_join(srv->monitor, NULL);
	return SC_OK;
}

void
sc_server_free(struct sc_server *srv)
{
	if (srv == NULL)
		return;
	desktop_stop(srv);
	close(srv->stop_pipe[0]);
	close(srv->stop_pipe[1]);
	if (srv->spare_fd >= 0)
		close(srv->spare_fd);
	audit_close(srv);
	sc_pcsc_free(srv->pcsc);
	pthread_mutex_destroy(&srv->lock);
	pthread_mutex_destroy(&srv->evlock);
	pthread_cond_destroy(&srv->cond);
	free(srv);
}
