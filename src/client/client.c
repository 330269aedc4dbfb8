/* libscagent: talks the line-JSON protocol of docs/PROTOCOL.md to scagentd. */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>
#include "common/err.h"
#include "common/util.h"
#include "proto/proto.h"
#include "scagent/scagent.h"

#define EXPORT __attribute__((visibility("default")))

/* Why this thread's last scagent_connect() failed: scagent_error(NULL). */
static __thread char connect_err[512];

/*
 * How long a request waits for its answer (docs/PROTOCOL.md, "How long a
 * client waits"). The protocol has no keep-alive: an agent asking a person
 * through pinentry (up to 120 s a prompt, a login and a confirmation in one
 * signature) sends nothing until the person is done, so the operations that
 * may ask a person get the long bound. A stopped agent (SIGSTOP, a debugger)
 * is told apart by its state in /proc and waited for only the short bound,
 * whatever the operation. SCAGENT_TIMEOUT (seconds) or scagent_set_timeout()
 * replace all of these with one bound.
 */
#define WAIT_HELLO_MS	(10 * 1000)
#define WAIT_QUICK_MS	(30 * 1000)
#define WAIT_PERSON_MS	(300 * 1000)
#define WAIT_MAX_MS	(24 * 3600 * 1000)
#define STOPPED_CHECK_MS 1000	/* how often a long wait looks whether the agent is stopped */

/* Operations that may wait for a person (pinentry, a PIN pad) or a slow key generation. */
static const char *const person_ops[] = {
	"login", "sign", "sign-key", "keygen", "import", "init-token", "delete-token", NULL
};

struct scagent_client {
	int fd;
	int64_t next_id;
	struct sc_linebuf in;
	pthread_mutex_t lock;
	char *path;		/* the agent's socket, for messages */
	pid_t agent_pid;	/* 0 when unknown (e.g. socket activation) */
	int env_timeout_ms;	/* SCAGENT_TIMEOUT, 0 when unset */
	int timeout_ms;		/* one bound for every operation; 0: per operation */
	char err[512];
};

/* One request's wait: for op's answer, until start + bound_ms (stopped agent: start + stopped_ms). */
struct wait {
	const char *op;
	int64_t start;
	int bound_ms;
	int stopped_ms;
};

static int
fail(scagent_client *c, int code, const char *fmt, ...)
{
	va_list ap;

	if (c != NULL) {
		va_start(ap, fmt);
		vsnprintf(c->err, sizeof(c->err), fmt, ap);
		va_end(ap);
	}
	return code;
}

EXPORT char *
scagent_default_socket(const char *path)
{
	const char *env, *rt;
	char *s = NULL;

	if (path != NULL && *path)
		return strdup(path);
	if ((env = getenv("SCAGENT_SOCKET")) != NULL && *env)
		return strdup(env);
	if ((rt = getenv("XDG_RUNTIME_DIR")) != NULL && *rt) {
		if (asprintf(&s, "%s/scagent/agent.sock", rt) < 0)
			return NULL;
		return s;
	}
	if (asprintf(&s, "/run/user/%u/scagent/agent.sock", (unsigned)getuid()) < 0)
		return NULL;
	return s;
}

EXPORT const char *
scagent_strerror(int code)
{
	return sc_strerror(code);
}

EXPORT const char *
scagent_error(const scagent_client *c)
{
	return c ? c->err : connect_err;
}

EXPORT void
scagent_free(void *p)
{
	free(p);
}

EXPORT int
scagent_fd(const scagent_client *c)
{
	return c ? c->fd : -1;
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Next line from the agent; deadline is an sc_now_ms() time, < 0 waits for ever. */
static int
read_line(scagent_client *c, int64_t deadline, char **line)
{
	size_t len;
	int r;

	for (;;) {
		if ((r = sc_linebuf_take(&c->in, line, &len)) != 0)
			return r < 0 ? fail(c, SC_ERR_PROTOCOL, "the agent sent a malformed line") : SC_OK;
		if (deadline >= 0) {
			int64_t left = deadline - (int64_t)sc_now_ms();
			struct pollfd p = { c->fd, POLLIN, 0 };
			int n = poll(&p, 1, left > 0 ? (int)left : 0);
			if (n == 0)
				return fail(c, SC_ERR_TIMEOUT, "no answer from the agent in time");
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return fail(c, SC_ERR_IO, "poll: %s", strerror(errno));
		}
		long n = sc_linebuf_read(&c->in, c->fd);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return fail(c, SC_ERR_AGENT_UNREACHABLE, "the agent closed the connection");
		if (n == SC_ERR_TOO_LARGE)
			return fail(c, SC_ERR_TOO_LARGE, "the agent's answer is over the size limit");
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			return fail(c, SC_ERR_IO, "reading from the agent: %s", strerror(errno));
	}
}

/* Whether process pid is stopped (SIGSTOP, a debugger): state T or t in /proc/PID/stat. */
static int
process_stopped(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* "PID (COMM) STATE ...": COMM may hold ')' itself. */
	if ((p = strrchr(buf, ')')) == NULL || p[1] != ' ')
		return 0;
	return p[2] == 'T' || p[2] == 't';
}

/*
 * The agent at the other end of fd, if it is an scagentd: with socket
 * activation the peer is systemd, which is not the agent.
 */
static pid_t
agent_pid(int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	char path[64], comm[32] = "";
	FILE *f;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)cr.pid);
	if ((f = fopen(path, "re")) == NULL)
		return 0;
	if (fgets(comm, sizeof(comm), f) == NULL)
		comm[0] = '\0';
	fclose(f);
	return strstr(comm, "scagentd") != NULL ? cr.pid : 0;
}

/* The bounds of a wait for op's answer, starting now. */
static void
wait_start(const scagent_client *c, const char *op, struct wait *w)
{
	int quick = c->timeout_ms > 0 ? c->timeout_ms : WAIT_QUICK_MS;

	w->op = op;
	w->start = (int64_t)sc_now_ms();
	w->bound_ms = WAIT_QUICK_MS;
	if (c->timeout_ms > 0)
		w->bound_ms = c->timeout_ms;
	else if (strcmp(op, "hello") == 0)
		w->bound_ms = WAIT_HELLO_MS;
	else
		for (int i = 0; person_ops[i] != NULL; i++)
			if (strcmp(op, person_ops[i]) == 0)
				w->bound_ms = WAIT_PERSON_MS;
	w->stopped_ms = quick < w->bound_ms ? quick : w->bound_ms;
}

/*
 * The wait w is over: the connection is closed, so that a late answer is
 * never taken for the next request's.
 */
static int
wait_expired(scagent_client *c, const struct wait *w)
{
	int stopped = process_stopped(c->agent_pid);
	double secs = (stopped ? w->stopped_ms : w->bound_ms) / 1000.0;
	char who[64] = "";

	if (c->agent_pid > 0)
		snprintf(who, sizeof(who), " (pid %d)", (int)c->agent_pid);
	if (stopped)
		fail(c, SC_ERR_TIMEOUT, "the agent at %s%s is stopped and did not answer `%s` within "
		    "%g s: resume it with `kill -CONT %d`, or restart it", c->path, who, w->op, secs,
		    (int)c->agent_pid);
	else
		fail(c, SC_ERR_TIMEOUT, "the agent at %s%s did not answer `%s` within %g s: is it "
		    "stopped or hung? check it with `scagent status` and restart it if it stays "
		    "silent (SCAGENT_TIMEOUT=SECONDS waits longer)", c->path, who, w->op, secs);
	close(c->fd);
	c->fd = -1;
	sc_linebuf_free(&c->in);
	sc_linebuf_init(&c->in, SC_PROTO_MAX_RESPONSE);
	return SC_ERR_TIMEOUT;
}

/* After wait_expired(): the handle has no connection left. */
static int
closed_after_timeout(scagent_client *c)
{
	return fail(c, SC_ERR_AGENT_UNREACHABLE, "the connection to the agent at %s was closed "
	    "after a timeout: connect again", c->path);
}

/* Next line of the answer w waits for, within w's bounds. */
static int
await_line(scagent_client *c, const struct wait *w, char **line)
{
	int64_t deadline = w->start + w->bound_ms;
	int r;

	for (;;) {
		int64_t now = (int64_t)sc_now_ms(), until = w->start + w->stopped_ms;

		if (now >= until) {
			if (process_stopped(c->agent_pid))
				return wait_expired(c, w);
			until = now + STOPPED_CHECK_MS;
		}
		if (until > deadline)
			until = deadline;
		if ((r = read_line(c, until, line)) != SC_ERR_TIMEOUT)
			return r;
		if ((int64_t)sc_now_ms() >= deadline)
			return wait_expired(c, w);
	}
}

/*
 * An answer with a null id: the agent's word on the connection itself rather
 * than on one request (busy, no hello in time, too large). It answers
 * whatever request is waiting.
 */
static int
connection_error(json_object *resp)
{
	json_object *v;

	return json_object_object_get_ex(resp, "id", &v) && v == NULL &&
	    json_object_object_get_ex(resp, "error", NULL);
}

/*
 * The request could not be sent: the agent may have closed the connection
 * after saying why (busy). *resp gets that answer, if it came.
 */
static int
closed_before_send(scagent_client *c, json_object **resp)
{
	int e = errno;
	char *line = NULL;

	if (read_line(c, (int64_t)sc_now_ms(), &line) == SC_OK) {
		*resp = json_tokener_parse(line);
		free(line);
		if (*resp != NULL && connection_error(*resp))
			return SC_OK;
		json_object_put(*resp);
		*resp = NULL;
	}
	return fail(c, SC_ERR_AGENT_UNREACHABLE, "cannot send to the agent: %s", strerror(e));
}

/* A send to the agent blocks for at most ms (a stopped agent takes nothing). */
static void
send_timeout(int fd, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/*
 * Send msg (one request line with '\n', for id) and wait for its answer, as
 * long as w allows: *resp is the parsed answer. c->lock is held.
 */
static int
roundtrip(scagent_client *c, const struct wait *w, int64_t id, const char *msg, size_t len,
    json_object **resp)
{
	json_object *v;
	char *line = NULL;
	int r;

	*resp = NULL;
	send_timeout(c->fd, w->bound_ms);
	/* One write per request: the agent wakes once. */
	if (write_all(c->fd, msg, len) < 0)
		return errno == EAGAIN ? wait_expired(c, w) : closed_before_send(c, resp);
	for (;;) {
		free(line);
		line = NULL;
		json_object_put(*resp);
		*resp = NULL;
		if ((r = await_line(c, w, &line)) != SC_OK)
			return r;
		if ((*resp = json_tokener_parse(line)) == NULL) {
			free(line);
			return fail(c, SC_ERR_PROTOCOL, "the agent sent something that is not JSON");
		}
		if (json_object_object_get_ex(*resp, "event", NULL))
			continue;	/* events are only for scagent_next_event() */
		if (connection_error(*resp) ||
		    (json_object_object_get_ex(*resp, "id", &v) && json_object_get_int64(v) == id))
			break;
	}
	free(line);
	return r;
}

/* The answer resp (stolen): *result gets its "result" (new ref), or the error is c's. */
static int
answer(scagent_client *c, json_object *resp, json_object **result)
{
	json_object *v, *e;
	int r;

	if (json_object_object_get_ex(resp, "ok", &v) && json_object_get_boolean(v)) {
		if (json_object_object_get_ex(resp, "result", &v))
			*result = json_object_get(v);
		else
			*result = json_object_new_object();
		c->err[0] = '\0';
		r = SC_OK;
	} else if (json_object_object_get_ex(resp, "error", &e)) {
		json_object *code = NULL, *text_o = NULL;
		json_object_object_get_ex(e, "code", &code);
		json_object_object_get_ex(e, "message", &text_o);
		r = fail(c, sc_errcode(code ? json_object_get_string(code) : NULL), "%s",
		    text_o ? json_object_get_string(text_o) : "the agent reported an error");
		if (r == SC_OK)
			r = SC_ERR_INTERNAL;
	} else
		r = fail(c, SC_ERR_PROTOCOL, "the agent's answer has neither result nor error");
	json_object_put(resp);
	return r;
}

/* Send op with args (stolen), wait for its answer; *result gets "result" (new ref). */
static int
call(scagent_client *c, const char *op, json_object *args, json_object **result)
{
	json_object *req = args ? args : json_object_new_object(), *resp = NULL;
	const char *text = NULL;
	char *msg = NULL;
	struct wait w;
	size_t len = 0;
	int64_t id;
	int r;

	*result = NULL;
	if (req == NULL)
		return fail(c, SC_ERR_NOMEM, "out of memory");
	pthread_mutex_lock(&c->lock);
	if (c->fd < 0) {
		r = closed_after_timeout(c);
		goto out;
	}
	wait_start(c, op, &w);
	id = c->next_id++;
	json_object_object_add(req, "id", json_object_new_int64(id));
	json_object_object_add(req, "op", json_object_new_string(op));
	text = sc_proto_text(req);
	len = strlen(text);
	if ((msg = malloc(len + 1)) == NULL)
		r = fail(c, SC_ERR_NOMEM, "out of memory");
	else {
		memcpy(msg, text, len);
		msg[len] = '\n';
		if ((r = roundtrip(c, &w, id, msg, len + 1, &resp)) == SC_OK)
			r = answer(c, resp, result);
	}
out:
	pthread_mutex_unlock(&c->lock);
	/* The request may carry a PIN: wipe every copy we made of it. */
	if (msg != NULL)
		explicit_bzero(msg, len + 1);
	free(msg);
	if (text != NULL)
		explicit_bzero((char *)text, strlen(text));
	sc_proto_wipe_pins(req);
	json_object_put(req);
	return r;
}

/* SCAGENT_TIMEOUT in ms into *ms (0 when unset); SC_ERR_INVALID when it is not a number of seconds. */
static int
env_timeout(int *ms)
{
	const char *s = getenv("SCAGENT_TIMEOUT");
	char *end = NULL;
	double secs;

	*ms = 0;
	if (s == NULL || *s == '\0')
		return SC_OK;
	errno = 0;
	secs = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(secs > 0))
		return SC_ERR_INVALID;
	*ms = secs * 1000 >= WAIT_MAX_MS ? WAIT_MAX_MS : (int)(secs * 1000);
	if (*ms == 0)
		*ms = 1;
	return SC_OK;
}

/*
 * Connect to the socket at c->path within ms. A blocking connect() waits
 * while the agent's queue of new connections is full (a stopped agent
 * accepts none); SO_SNDTIMEO bounds it on a Unix socket.
 */
static int
connect_bounded(scagent_client *c, int ms)
{
	struct sockaddr_un sa;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(c->path) >= sizeof(sa.sun_path))
		return fail(c, SC_ERR_INVALID, "the socket path is too long: %s", c->path);
	strcpy(sa.sun_path, c->path);
	if ((c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return fail(c, SC_ERR_AGENT_UNREACHABLE, "cannot connect to %s: %s", c->path, strerror(errno));
	send_timeout(c->fd, ms);
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EAGAIN)
			return fail(c, SC_ERR_TIMEOUT, "the agent at %s accepted no connection within %g s: "
			    "is it stopped or hung? restart it", c->path, ms / 1000.0);
		return fail(c, SC_ERR_AGENT_UNREACHABLE, "cannot connect to %s: %s", c->path, strerror(errno));
	}
	c->agent_pid = agent_pid(c->fd);
	return SC_OK;
}

EXPORT int
scagent_connect(const char *path, scagent_client **out)
{
	scagent_client *c;
	json_object *args, *res = NULL;
	struct wait w;
	int r;

	*out = NULL;
	connect_err[0] = '\0';
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return SC_ERR_NOMEM;
	c->fd = -1;
	pthread_mutex_init(&c->lock, NULL);
	sc_linebuf_init(&c->in, SC_PROTO_MAX_RESPONSE);
	if ((c->path = scagent_default_socket(path)) == NULL) {
		r = fail(c, SC_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if ((r = env_timeout(&c->env_timeout_ms)) != SC_OK) {
		fail(c, r, "SCAGENT_TIMEOUT=%s is not a number of seconds greater than 0",
		    getenv("SCAGENT_TIMEOUT"));
		goto fail;
	}
	c->timeout_ms = c->env_timeout_ms;
	wait_start(c, "hello", &w);
	if ((r = connect_bounded(c, w.bound_ms)) != SC_OK)
		goto fail;
	args = json_object_new_object();
	json_object_object_add(args, "version", json_object_new_int(SC_PROTO_VERSION));
	json_object_object_add(args, "client", json_object_new_string("libscagent " PACKAGE_VERSION));
	if ((r = call(c, "hello", args, &res)) != SC_OK)
		goto fail;
	json_object_put(res);
	*out = c;
	return SC_OK;
fail:
	/* The handle goes: its message stays for scagent_error(NULL) (the agent's "busy" says how many). */
	snprintf(connect_err, sizeof(connect_err), "%s", c->err);
	scagent_close(c);
	return r;
}

EXPORT int
scagent_set_timeout(scagent_client *c, int ms)
{
	if (c == NULL || ms < 0)
		return SC_ERR_INVALID;
	pthread_mutex_lock(&c->lock);
	c->timeout_ms = ms == 0 ? c->env_timeout_ms : ms > WAIT_MAX_MS ? WAIT_MAX_MS : ms;
	pthread_mutex_unlock(&c->lock);
	return SC_OK;
}

EXPORT void
scagent_close(scagent_client *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	sc_linebuf_free(&c->in);
	pthread_mutex_destroy(&c->lock);
	free(c->path);
	free(c);
}

static int
result_text(json_object *res, char **json)
{
	const char *t = sc_json_text(res);

	*json = strdup(t);
	json_object_put(res);
	return *json ? SC_OK : SC_ERR_NOMEM;
}

EXPORT int
scagent_call(scagent_client *c, const char *op, const char *args_json, char **result_json)
{
	json_object *args = NULL, *res = NULL;
	int r;

	*result_json = NULL;
	if (args_json != NULL) {
		args = sc_proto_parse_text(args_json);
		if (args == NULL || !json_object_is_type(args, json_type_object)) {
			sc_proto_wipe_pins(args);
			json_object_put(args);
			return fail(c, SC_ERR_INVALID, "arguments must be a JSON object");
		}
	}
	if ((r = call(c, op, args, &res)) != SC_OK)
		return r;
	return result_text(res, result_json);
}

EXPORT int
scagent_list(scagent_client *c, char **json)
{
	return scagent_call(c, "list", NULL, json);
}

EXPORT int
scagent_get_cert(scagent_client *c, const char *ref, unsigned char **der, size_t *derlen,
    char **chain_json)
{
	json_object *args = json_object_new_object(), *res = NULL, *v;
	int r;

	*der = NULL;
	*derlen = 0;
	if (chain_json)
		*chain_json = NULL;
	json_object_object_add(args, "ref", json_object_new_string(ref));
	json_object_object_add(args, "chain", json_object_new_boolean(chain_json != NULL));
	if ((r = call(c, "get-cert", args, &res)) != SC_OK)
		return r;
	if (!json_object_object_get_ex(res, "der", &v) ||
	    sc_unb64(json_object_get_string(v), der, derlen) != SC_OK) {
		json_object_put(res);
		return fail(c, SC_ERR_PROTOCOL, "the agent sent no certificate");
	}
	if (chain_json && json_object_object_get_ex(res, "chain", &v))
		*chain_json = strdup(sc_json_text(v));
	json_object_put(res);
	return SC_OK;
}

EXPORT int
scagent_login(scagent_client *c, const char *token, const char *pin, int confirm_final_try)
{
	json_object *args = json_object_new_object(), *res = NULL;
	int r;

	json_object_object_add(args, "token", json_object_new_string(token));
	if (pin != NULL)
		json_object_object_add(args, "pin", json_object_new_string(pin));
	if (confirm_final_try)
		json_object_object_add(args, "confirm_final_try", json_object_new_boolean(1));
	r = call(c, "login", args, &res);
	json_object_put(res);
	return r;
}

EXPORT int
scagent_logout(scagent_client *c, const char *token)
{
	json_object *args = json_object_new_object(), *res = NULL;
	int r;

	json_object_object_add(args, "token", json_object_new_string(token));
	r = call(c, "logout", args, &res);
	json_object_put(res);
	return r;
}

EXPORT int
scagent_sign(scagent_client *c, const char *ref, const char *alg, int is_digest,
    const unsigned char *in, size_t inlen, unsigned char **sig, size_t *siglen)
{
	return scagent_sign_pin(c, ref, alg, is_digest, in, inlen, NULL, 0, sig, siglen);
}

EXPORT int
scagent_sign_pin(scagent_client *c, const char *ref, const char *alg, int is_digest,
    const unsigned char *in, size_t inlen, const char *pin, int confirm_final_try,
    unsigned char **sig, size_t *siglen)
{
	json_object *args = json_object_new_object(), *res = NULL, *v;
	char *b;
	int r;

	*sig = NULL;
	*siglen = 0;
	if ((b = sc_b64(in, inlen)) == NULL) {
		json_object_put(args);
		return fail(c, SC_ERR_TOO_LARGE, "data to sign too large");
	}
	json_object_object_add(args, "ref", json_object_new_string(ref));
	json_object_object_add(args, "alg", json_object_new_string(alg));
	json_object_object_add(args, is_digest ? "digest" : "data", json_object_new_string(b));
	free(b);
	if (pin != NULL)
		json_object_object_add(args, "pin", json_object_new_string(pin));
	if (confirm_final_try)
		json_object_object_add(args, "confirm_final_try", json_object_new_boolean(1));
	if ((r = call(c, "sign", args, &res)) != SC_OK)
		return r;
	if (!json_object_object_get_ex(res, "signature", &v) ||
	    sc_unb64(json_object_get_string(v), sig, siglen) != SC_OK)
		r = fail(c, SC_ERR_PROTOCOL, "the agent sent no signature");
	json_object_put(res);
	return r;
}

EXPORT int
scagent_watch(scagent_client *c)
{
	json_object *res = NULL;
	int r = call(c, "watch", NULL, &res);

	json_object_put(res);
	return r;
}

EXPORT int
scagent_next_event(scagent_client *c, int timeout_ms, char **event_json)
{
	char *line = NULL;
	int r;

	*event_json = NULL;
	pthread_mutex_lock(&c->lock);
	if (c->fd < 0)
		r = closed_after_timeout(c);
	else
		r = read_line(c, timeout_ms < 0 ? -1 : (int64_t)sc_now_ms() + timeout_ms, &line);
	pthread_mutex_unlock(&c->lock);
	if (r != SC_OK)
		return r;
	*event_json = line;
	return SC_OK;
}
