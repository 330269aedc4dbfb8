/*
 * The agent's workers: each configured module runs in a process of its own,
 * `scagentd --worker MODULE`, on a socketpair to the agent (fd 3 in the
 * worker). Connections reach a worker as fds passed over that socketpair with
 * the client's identity; one of them, the worker's event connection, says
 * hello, watch and list when the worker starts: its list answer says the
 * worker serves, its events are passed on to the agent's watchers, and its
 * end says the worker ended.
 *
 * The supervisor thread (sup_main) reads the event connections, reaps a worker
 * that ended, tells the watchers its tokens went (token-removed), and starts
 * it again after a back-off (0.2 s, doubling while it keeps dying, up to
 * 30 s); back, it says module-restarted and token-added. Five ends within
 * 60 s and the module is broken: left stopped, shown by status, until a
 * `refresh` starts it afresh (sup_retry_stopped).
 *
 * A worker whose module does not load (C_Initialize failed: no TPM, no
 * pcscd; or the module file is missing) says why on the socketpair and ends
 * with SC_WORKER_ABSENT: the module is absent, which is no crash. It is
 * logged and told (module-absent) once, shown by status and left out of the
 * human list, and tried again every ABSENT_RETRY_MS and at each `refresh`
 * (sup_retry_stopped) in a fresh worker, quietly while the reason stays the
 * same; once it loads, its tokens are added.
 *
 * sup->lock guards every worker's fields (supervise-private.h); sup->cond says a worker changed
 * state. Order: sup->lock before srv->evlock (events go out under it).
 * Workers are forked by the main thread at start and by the supervisor
 * thread later: both live as long as the workers (PR_SET_PDEATHSIG follows
 * the thread that forked).
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/server-private.h"
#include "daemon/supervise-private.h"
#include "proto/proto.h"

/* ------------------------------------------------------------------ */

struct sc_sup *
sc_sup_new(const struct sc_sup_opts *o)
{
	struct sc_sup *sup = calloc(1, sizeof(*sup));
	size_t nargs = 0;

	if (sup == NULL)
		return NULL;
	while (o->args[nargs] != NULL)
		nargs++;
	sup->w = calloc(o->nmodules ? o->nmodules : 1, sizeof(*sup->w));
	sup->args = calloc(nargs + 1, sizeof(*sup->args));
	if (sup->w == NULL || sup->args == NULL || pipe2(sup->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		free(sup->w);
		free(sup->args);
		free(sup);
		return NULL;
	}
	for (size_t i = 0; i < nargs; i++)
		sup->args[i] = strdup(o->args[i]);
	sup->n = o->nmodules;
	sup->timeout_ms = o->timeout_ms;
	sup->slow_timeout_ms = o->slow_timeout_ms;
	pthread_mutex_init(&sup->lock, NULL);
	pthread_cond_init(&sup->cond, NULL);
	for (size_t i = 0; i < sup->n; i++) {
		struct worker *w = &sup->w[i];
		size_t a = 0;
		int vsc = o->vsc_module != NULL && strcmp(o->vsc_module, o->modules[i]) == 0;

		w->module = strdup(o->modules[i]);
		w->ctl = w->ev = -1;
		w->argv = calloc(nargs + 8, sizeof(*w->argv));
		w->argv[a++] = "scagentd";
		w->argv[a++] = "--worker";
		w->argv[a++] = w->module;
		w->argv[a++] = "--worker-fd";
		w->argv[a++] = "3";
		if (vsc)
			w->argv[a++] = "--worker-vsc";
		for (size_t k = 0; k < nargs; k++)
			w->argv[a++] = sup->args[k];
		w->retry_arg = a;	/* NULL, or --worker-retry */
		sc_linebuf_init(&w->evbuf, SC_PROTO_MAX_RESPONSE);
	}
	return sup;
}

void
sc_sup_free(struct sc_sup *sup)
{
	if (sup == NULL)
		return;
	for (size_t i = 0; i < sup->n; i++) {
		free(sup->w[i].module);
		free(sup->w[i].argv);
		sc_linebuf_free(&sup->w[i].evbuf);
		json_object_put(sup->w[i].tokens);
		free(sup->w[i].flights);
	}
	for (size_t i = 0; sup->args[i] != NULL; i++)
		free(sup->args[i]);
	free(sup->args);
	free(sup->w);
	close(sup->wake[0]);
	close(sup->wake[1]);
	pthread_mutex_destroy(&sup->lock);
	pthread_cond_destroy(&sup->cond);
	free(sup);
}

/* ------------------------------------------------------------------ */
/* Connections */

/* A new connection to w for a client (sup->lock held): the agent's end, or -1. */
int
sup_pass_conn(struct worker *w, pid_t pid, uid_t uid, const char *exe)
{
	struct worker_ident id;
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &id, sizeof(id) };
	struct msghdr m;
	struct cmsghdr *cm;
	int sp[2];

	if (w->ctl < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return -1;
	memset(&id, 0, sizeof(id));
	id.pid = (int32_t)pid;
	id.uid = (uint32_t)uid;
	snprintf(id.exe, sizeof(id.exe), "%s", exe);
	memset(&m, 0, sizeof(m));
	memset(cbuf, 0, sizeof(cbuf));
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = cbuf;
	m.msg_controllen = sizeof(cbuf);
	cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &sp[1], sizeof(int));
	/* Never wait: a worker that takes no connection is one that hangs. */
	if (sendmsg(w->ctl, &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		close(sp[0]);
		close(sp[1]);
		return -1;
	}
	close(sp[1]);
	return sp[0];
}

void
sup_ev_send(struct worker *w, int id, const char *op)
{
	char line[96];
	int n = snprintf(line, sizeof(line), "{\"id\":%d,\"op\":\"%s\"%s}\n", id, op,
	    id == EV_HELLO ? ",\"version\":1" : "");

	if (w->ev >= 0 && send(w->ev, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) != n)
		sc_debug("worker %s: could not ask %s", w->module, op);
}

/*
 * w could not be started (sup->lock held): no file descriptor or process was
 * left (what the agent's clients hold counts), which is no fault of the
 * module and never makes it broken. Tried again after the back-off.
 */
static void
start_failed(struct sc_sup *sup, struct worker *w, const char *what, int err)
{
	w->backoff_ms = w->backoff_ms < BACKOFF_MIN_MS ? BACKOFF_MIN_MS :
	    w->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : w->backoff_ms * 2;
	snprintf(w->last_error, sizeof(w->last_error), "cannot start its process (%s: %s); "
	    "tried again in %u ms", what, strerror(err), w->backoff_ms);
	sc_warn("module %s: %s", w->module, w->last_error);
	w->state = W_DOWN;
	w->due = sc_now_ms() + w->backoff_ms;
	pthread_cond_broadcast(&sup->cond);
}

/* Start w (sup->lock held). */
static void
spawn(struct sc_sup *sup, struct worker *w)
{
	int sv[2], ev, err;
	pid_t pid;

	w->due = 0;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		start_failed(sup, w, "socketpair", errno);
		return;
	}
	w->argv[w->retry_arg] = w->absent ? "--worker-retry" : NULL;
	if ((pid = fork()) < 0) {
		err = errno;
		close(sv[0]);
		close(sv[1]);
		start_failed(sup, w, "fork", err);
		return;
	}
	if (pid == 0) {
		/* Only async-signal-safe calls: the agent has threads. */
		if (sv[1] == 3)
			fcntl(3, F_SETFD, 0);
		else if (dup2(sv[1], 3) < 0)
			_exit(127);
		execv("/proc/self/exe", (char *const *)w->argv);
		_exit(127);
	}
	close(sv[1]);
	w->ctl = sv[0];
	/* Its event connection: without it, nothing would ever say the worker serves or ended. */
	if ((ev = sup_pass_conn(w, getpid(), getuid(), "scagentd")) < 0) {
		err = errno;
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		close(w->ctl);
		w->ctl = -1;
		start_failed(sup, w, "its event connection", err);
		return;
	}
	if (w->gen > 0 && !w->absent)
		w->restarts++;
	w->gen++;
	w->pid = pid;
	w->ev = ev;
	w->kill_why[0] = '\0';
	w->state = W_STARTING;
	w->started = sc_now_ms();
	w->due = w->started + sup->timeout_ms;
	sup_ev_send(w, EV_HELLO, "hello");
	sup_ev_send(w, EV_WATCH, "watch");
	sup_ev_send(w, EV_LIST, "list");
	if (w->absent)
		sc_debug("module %s: worker process %ld started (the module was absent)", w->module, (long)pid);
	else
		sc_info("module %s: worker process %ld started", w->module, (long)pid);
}

/* A list token as the fields of its token-added/token-removed event. */
static json_object *
token_event_fields(json_object *t)
{
	static const char *const keys[][2] = {
		{ "label", "token" }, { "label_hex", "token_hex" }, { "reader", "reader" },
		{ "reader_hex", "reader_hex" }, { "module", "module" }, { "slot", "slot" },
		{ "serial", "serial" }, { "serial_hex", "serial_hex" },
	};
	json_object *e = json_object_new_object(), *v;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (json_object_object_get_ex(t, keys[i][0], &v))
			json_object_object_add(e, keys[i][1], json_object_get(v));
	return e;
}

static int
same_token(json_object *a, json_object *b)
{
	const char *k[] = { "token", "slot", "serial" };

	for (size_t i = 0; i < 3; i++) {
		json_object *x = json_object_object_get(a, k[i]), *y = json_object_object_get(b, k[i]);
		if (strcmp(json_object_get_string(x) ? json_object_get_string(x) : "",
		    json_object_get_string(y) ? json_object_get_string(y) : "") != 0)
			return 0;
	}
	return 1;
}

/* Keep w->tokens as the worker's events change them. */
static void
track_token(struct worker *w, const char *event, json_object *fields)
{
	if (w->tokens == NULL)
		w->tokens = json_object_new_array();
	if (strcmp(event, "token-added") == 0) {
		json_object_array_add(w->tokens, json_object_get(fields));
		return;
	}
	for (size_t i = 0; i < json_object_array_length(w->tokens); i++)
		if (same_token(json_object_array_get_idx(w->tokens, i), fields)) {
			json_object_array_del_idx(w->tokens, i, 1);
			return;
		}
}

/* The list answer of a starting worker: it serves (sup->lock held). */
static void
worker_up(struct sc_sup *sup, struct worker *w, json_object *ans)
{
	json_object *res = NULL, *toks = NULL, *f;

	json_object_object_get_ex(ans, "result", &res);
	json_object_object_get_ex(res, "tokens", &toks);
	json_object_put(w->tokens);
	w->tokens = json_object_new_array();
	for (size_t i = 0; toks != NULL && i < json_object_array_length(toks); i++)
		json_object_array_add(w->tokens, token_event_fields(json_object_array_get_idx(toks, i)));
	w->loaded = !json_object_object_get_ex(res, "errors", NULL);
	w->state = W_RUNNING;
	pthread_cond_broadcast(&sup->cond);
	if (w->absent) {
		sc_info("module %s: loaded now (it was absent: %s)", w->module, w->last_error);
		w->absent = 0;
		w->last_error[0] = '\0';
	} else if (w->restarts == 0)
		return;
	else {
		sc_warn("module %s: restarted (%s); its tokens are logged out", w->module, w->last_error);
		f = json_object_new_object();
		json_object_object_add(f, "module", json_object_new_string(w->module));
		json_object_object_add(f, "restarts", json_object_new_int64(w->restarts));
		json_object_object_add(f, "reason", json_object_new_string(w->last_error));
		sc_server_broadcast(sup->srv, "module-restarted", f);
	}
	for (size_t i = 0; i < json_object_array_length(w->tokens); i++)
		sc_server_broadcast(sup->srv, "token-added",
		    json_object_get(json_object_array_get_idx(w->tokens, i)));
	if (json_object_array_length(w->tokens) > 0)
		sc_server_broadcast(sup->srv, "changed", json_object_new_object());
}

/* One line from w's event connection (sup->lock held). */
static void
ev_line(struct sc_sup *sup, struct worker *w, const char *line)
{
	json_object *o = json_tokener_parse(line), *v;
	char name[64];
	int id;

	if (o == NULL)
		return;
	if (json_object_object_get_ex(o, "event", &v)) {
		snprintf(name, sizeof(name), "%s", json_object_get_string(v));
		json_object_object_del(o, "event");
		if (strcmp(name, "token-added") == 0 || strcmp(name, "token-removed") == 0)
			track_token(w, name, o);
		sc_server_broadcast(sup->srv, name, o);
		return;
	}
	id = json_object_object_get_ex(o, "id", &v) ? json_object_get_int(v) : 0;
	if (id == EV_LIST && w->state == W_STARTING)
		worker_up(sup, w, o);
	else if (id == EV_LOGOUT) {
		/* logout-all's answer: {"logged_out": N, "reason"} */
		json_object *res = json_object_object_get(o, "result");
		long n = (long)json_object_get_int64(json_object_object_get(res, "logged_out"));
		const char *why = json_object_get_string(json_object_object_get(res, "reason"));

		if (n > 0)
			desktop_logged_out(sup->srv, n, why ? why : "lock");
	}
	json_object_put(o);
}

/* Wait for pid to end, SIGKILL after ms; its wait status. */
static int
reap(pid_t pid, unsigned long ms)
{
	int status = 0;
	uint64_t end = sc_now_ms() + ms;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR))
			return status;
		if (sc_now_ms() >= end)
			break;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

/*
 * w's module did not load (sup->lock held, w reaped): not a crash. Logged
 * and told once, until the reason changes; tried again later.
 */
static void
module_absent(struct sc_sup *sup, struct worker *w, const char *reason)
{
	if (!w->absent || strcmp(w->last_error, reason) != 0) {
		json_object *f = json_object_new_object();

		sc_warn("module %s is absent: %s; it is tried again at `scagent refresh` and every "
		    "%d minutes", w->module, reason, ABSENT_RETRY_MS / 60000);
		json_object_object_add(f, "module", json_object_new_string(w->module));
		json_object_object_add(f, "reason", json_object_new_string(reason));
		sc_server_broadcast(sup->srv, "module-absent", f);
	} else
		sc_debug("module %s: still absent: %s", w->module, reason);
	snprintf(w->last_error, sizeof(w->last_error), "%s", reason);
	w->absent = 1;
	w->state = W_ABSENT;
	w->due = sc_now_ms() + ABSENT_RETRY_MS;
	pthread_cond_broadcast(&sup->cond);
}

/* w's event connection ended: so did w. Reap it, tell, schedule its restart (sup->lock held). */
static void
worker_died(struct sc_sup *sup, struct worker *w)
{
	uint64_t now;
	pid_t pid = w->pid;
	unsigned recent = 0;
	char said[256];
	ssize_t n;
	int status;

	/* What a worker whose module did not load said before it ended. */
	if ((n = recv(w->ctl, said, sizeof(said) - 1, MSG_DONTWAIT)) < 0 && errno == ECONNRESET)
		n = recv(w->ctl, said, sizeof(said) - 1, MSG_DONTWAIT);	/* the error came first */
	said[n > 0 ? n : 0] = '\0';
	close(w->ev);
	close(w->ctl);
	w->ev = w->ctl = -1;
	sc_linebuf_free(&w->evbuf);
	sc_linebuf_init(&w->evbuf, SC_PROTO_MAX_RESPONSE);
	w->nflights = 0;	/* what it ran went with it */
	w->state = W_DOWN;
	w->reaping = 1;
	pthread_mutex_unlock(&sup->lock);
	status = reap(pid, REAP_WAIT_MS);
	pthread_mutex_lock(&sup->lock);
	w->reaping = 0;
	w->pid = 0;
	if (w->kill_why[0] == '\0' && WIFEXITED(status) && WEXITSTATUS(status) == SC_WORKER_ABSENT) {
		module_absent(sup, w, said[0] ? said : "the module did not load");
		return;
	}
	if (w->kill_why[0] != '\0')
		snprintf(w->last_error, sizeof(w->last_error), "%s", w->kill_why);
	else if (WIFSIGNALED(status))
		snprintf(w->last_error, sizeof(w->last_error), "signal %d, %s", WTERMSIG(status),
		    strsignal(WTERMSIG(status)));
	else if (WIFEXITED(status) && WEXITSTATUS(status) == SC_WORKER_REINIT_TPM)
		snprintf(w->last_error, sizeof(w->last_error), "the TPM service restarted or failed "
		    "(tpm2-abrmd?): the TPM module is initialised again after a device error");
	else if (WIFEXITED(status) && WEXITSTATUS(status) == SC_WORKER_REINIT)
		snprintf(w->last_error, sizeof(w->last_error), "initialised again after a device "
		    "error (CKR_DEVICE_ERROR or CKR_GENERAL_ERROR)");
	else
		snprintf(w->last_error, sizeof(w->last_error), "exit status %d",
		    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	sc_warn("module %s: worker process %ld ended (%s)", w->module, (long)pid, w->last_error);
	/* Its tokens went with it, logins and all. */
	for (size_t i = 0; w->tokens != NULL && i < json_object_array_length(w->tokens); i++)
		sc_server_broadcast(sup->srv, "token-removed",
		    json_object_get(json_object_array_get_idx(w->tokens, i)));
	if (w->tokens != NULL && json_object_array_length(w->tokens) > 0)
		sc_server_broadcast(sup->srv, "changed", json_object_new_object());
	json_object_put(w->tokens);
	w->tokens = NULL;

	now = sc_now_ms();
	w->backoff_ms = w->deaths[0] != 0 && now - w->deaths[0] < DEATH_WINDOW_MS ?
	    (w->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : w->backoff_ms * 2) : BACKOFF_MIN_MS;
	memmove(&w->deaths[1], &w->deaths[0], (DEATH_LIMIT - 1) * sizeof(w->deaths[0]));
	w->deaths[0] = now;
	for (size_t i = 0; i < DEATH_LIMIT; i++)
		recent += w->deaths[i] != 0 && now - w->deaths[i] < DEATH_WINDOW_MS;
	if (recent >= DEATH_LIMIT && !sup->stopping) {
		json_object *f = json_object_new_object();
		size_t l = strlen(w->last_error);

		snprintf(w->last_error + l, sizeof(w->last_error) - l, "; it ended %d times within "
		    "%d s: not started again (fix the module, then run scagent refresh)", DEATH_LIMIT,
		    DEATH_WINDOW_MS / 1000);
		sc_error("module %s is broken: %s", w->module, w->last_error);
		w->state = W_BROKEN;
		json_object_object_add(f, "module", json_object_new_string(w->module));
		json_object_object_add(f, "reason", json_object_new_string(w->last_error));
		sc_server_broadcast(sup->srv, "module-broken", f);
	} else
		w->due = now + w->backoff_ms;
	pthread_cond_broadcast(&sup->cond);
}

static void
ev_input(struct sc_sup *sup, struct worker *w)
{
	char *line;
	size_t len;
	long r = sc_linebuf_read(&w->evbuf, w->ev);

	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (r <= 0) {
		worker_died(sup, w);
		return;
	}
	while (sc_linebuf_take(&w->evbuf, &line, &len) > 0) {
		ev_line(sup, w, line);
		free(line);
	}
}

static void *
sup_main(void *arg)
{
	struct sc_sup *sup = arg;
	struct pollfd *p = calloc(sup->n + 1, sizeof(*p));

	if (p == NULL)
		return NULL;
	pthread_mutex_lock(&sup->lock);
	while (!sup->stopping) {
		uint64_t now = sc_now_ms(), due = now + 60000;
		char buf[16];

		p[0] = (struct pollfd){ sup->wake[0], POLLIN, 0 };
		for (size_t i = 0; i < sup->n; i++) {
			struct worker *w = &sup->w[i];
			p[i + 1] = (struct pollfd){ w->ev, POLLIN, 0 };
			if ((w->state == W_DOWN || w->state == W_STARTING || w->state == W_ABSENT) &&
			    w->due != 0 && w->due < due)
				due = w->due;
		}
		pthread_mutex_unlock(&sup->lock);
		poll(p, sup->n + 1, due > now ? (int)(due - now) : 0);
		pthread_mutex_lock(&sup->lock);
		while (read(sup->wake[0], buf, sizeof(buf)) > 0)
			;
		if (sup->stopping)
			break;
		for (size_t i = 0; i < sup->n; i++)
			if (p[i + 1].fd >= 0 && p[i + 1].revents != 0 && sup->w[i].ev == p[i + 1].fd)
				ev_input(sup, &sup->w[i]);
		now = sc_now_ms();
		for (size_t i = 0; i < sup->n && !sup->stopping; i++) {
			struct worker *w = &sup->w[i];
			if (w->state == W_STARTING && w->due != 0 && now >= w->due) {
				snprintf(w->kill_why, sizeof(w->kill_why), "did not start within %lu s "
				    "(a module call that never returned)", sup->timeout_ms / 1000);
				w->due = 0;
				kill(w->pid, SIGKILL);	/* its event connection ends: worker_died */
			} else if ((w->state == W_DOWN || w->state == W_ABSENT) && w->due != 0 &&
			    now >= w->due && !w->reaping)
				spawn(sup, w);
		}
	}
	pthread_mutex_unlock(&sup->lock);
	free(p);
	return NULL;
}

/* Wait on sup->cond (sup->lock held) for at most ms. */
void
sup_cond_wait(struct sc_sup *sup, long ms)
{
	struct timespec ts = sc_deadline(CLOCK_REALTIME, ms);

	pthread_cond_timedwait(&sup->cond, &sup->lock, &ts);
}

void
sup_wake(struct sc_sup *sup)
{
	if (write(sup->wake[1], "x", 1) < 0) {
		/* full: a wake-up is pending */
	}
}

int
sc_sup_start(struct sc_sup *sup, struct sc_server *srv)
{
	uint64_t end = sc_now_ms() + sup->timeout_ms;
	int starting = 1;

	sup->srv = srv;
	pthread_mutex_lock(&sup->lock);
	for (size_t i = 0; i < sup->n; i++)
		spawn(sup, &sup->w[i]);
	if (pthread_create(&sup->th, NULL, sup_main, sup) == 0)
		sup->thread_started = 1;
	/* Serve once every module is up or known to fail, a signal or the limit first. */
	while (starting && sup->thread_started && !srv->stopping && sc_now_ms() < end) {
		starting = 0;
		for (size_t i = 0; i < sup->n; i++)
			starting |= (sup->w[i].state == W_STARTING || sup->w[i].reaping) &&
			    sup->w[i].restarts == 0;
		if (!starting)
			break;
		sup_cond_wait(sup, 100);
	}
	pthread_mutex_unlock(&sup->lock);
	return sup->thread_started ? SC_OK : SC_ERR_INTERNAL;
}

void
sc_sup_stop(struct sc_sup *sup)
{
	uint64_t end;
	int left;

	if (sup == NULL)
		return;
	pthread_mutex_lock(&sup->lock);
	sup->stopping = 1;
	pthread_mutex_unlock(&sup->lock);
	sup_wake(sup);
	if (sup->thread_started)
		pthread_join(sup->th, NULL);
	/* The supervisor is gone: nothing else touches the workers now. */
	for (size_t i = 0; i < sup->n; i++) {
		struct worker *w = &sup->w[i];
		if (w->ctl >= 0)
			close(w->ctl);	/* a worker ends when the agent's end closes */
		if (w->ev >= 0)
			close(w->ev);
		w->ctl = w->ev = -1;
		if (w->pid > 0)
			kill(w->pid, SIGTERM);
	}
	end = sc_now_ms() + STOP_GRACE_MS;
	do {
		left = 0;
		for (size_t i = 0; i < sup->n; i++) {
			struct worker *w = &sup->w[i];
			if (w->pid > 0 && waitpid(w->pid, NULL, WNOHANG) == w->pid)
				w->pid = 0;
			left += w->pid > 0;
		}
		if (left)
			usleep(10000);
	} while (left && sc_now_ms() < end);
	for (size_t i = 0; i < sup->n; i++) {
		struct worker *w = &sup->w[i];
		if (w->pid > 0) {
			sc_warn("module %s: its worker did not stop within %d s: killed", w->module,
			    STOP_GRACE_MS / 1000);
			kill(w->pid, SIGKILL);
			waitpid(w->pid, NULL, 0);
			w->pid = 0;
		}
	}
}
