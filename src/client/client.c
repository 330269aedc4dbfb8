/* libscagent: talks the line-JSON protocol of docs/PROTOCOL.md to scagentd. */
#include "config.h"
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <json-c/json.h>
#include "common/err.h"
#include "common/util.h"
#include "proto/proto.h"
#include "scagent/scagent.h"

#define EXPORT __attribute__((visibility("default")))

/* Why this thread's last scagent_connect() failed: scagent_error(NULL). */
static __thread char connect_err[512];

struct scagent_client {
	int fd;
	int64_t next_id;
	struct sc_linebuf in;
	pthread_mutex_t lock;
	char err[512];
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

/* Next line from the agent; timeout_ms < 0 waits forever. */
static int
read_line(scagent_client *c, int timeout_ms, char **line)
{
	size_t len;
	int r;

	for (;;) {
		if ((r = sc_linebuf_take(&c->in, line, &len)) != 0)
			return r < 0 ? fail(c, SC_ERR_PROTOCOL, "the agent sent a malformed line") : SC_OK;
		if (timeout_ms >= 0) {
			struct pollfd p = { c->fd, POLLIN, 0 };
			int n = poll(&p, 1, timeout_ms);
			if (n == 0)
				return fail(c, SC_ERR_TIMEOUT, "no answer from the agent in time");
			if (n < 0 && errno != EINTR)
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

	if (read_line(c, 0, &line) == SC_OK) {
		*resp = json_tokener_parse(line);
		free(line);
		if (*resp != NULL && connection_error(*resp))
			return SC_OK;
		json_object_put(*resp);
		*resp = NULL;
	}
	return fail(c, SC_ERR_AGENT_UNREACHABLE, "cannot send to the agent: %s", strerror(e));
}

/*
 * Send msg (one request line with '\n', for id) and wait for its answer:
 * *resp is the parsed answer. c->lock is held.
 */
static int
roundtrip(scagent_client *c, int64_t id, const char *msg, size_t len, json_object **resp)
{
	json_object *v;
	char *line = NULL;
	int r;

	*resp = NULL;
	/* One write per request: the agent wakes once. */
	if (write_all(c->fd, msg, len) < 0)
		return closed_before_send(c, resp);
	for (;;) {
		free(line);
		line = NULL;
		json_object_put(*resp);
		*resp = NULL;
		if ((r = read_line(c, -1, &line)) != SC_OK)
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
	size_t len = 0;
	int64_t id;
	int r;

	*result = NULL;
	if (req == NULL)
		return fail(c, SC_ERR_NOMEM, "out of memory");
	pthread_mutex_lock(&c->lock);
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
		if ((r = roundtrip(c, id, msg, len + 1, &resp)) == SC_OK)
			r = answer(c, resp, result);
	}
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

EXPORT int
scagent_connect(const char *path, scagent_client **out)
{
	struct sockaddr_un sa;
	scagent_client *c;
	json_object *args, *res = NULL;
	char *p;
	int r;

	*out = NULL;
	connect_err[0] = '\0';
	if ((p = scagent_default_socket(path)) == NULL)
		return SC_ERR_NOMEM;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		free(p);
		return SC_ERR_NOMEM;
	}
	c->fd = -1;
	pthread_mutex_init(&c->lock, NULL);
	sc_linebuf_init(&c->in, SC_PROTO_MAX_RESPONSE);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(p) >= sizeof(sa.sun_path)) {
		r = fail(c, SC_ERR_INVALID, "the socket path is too long: %s", p);
		goto fail;
	}
	strcpy(sa.sun_path, p);
	if ((c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = fail(c, SC_ERR_AGENT_UNREACHABLE, "cannot connect to %s: %s", p, strerror(errno));
		goto fail;
	}
	args = json_object_new_object();
	json_object_object_add(args, "version", json_object_new_int(SC_PROTO_VERSION));
	json_object_object_add(args, "client", json_object_new_string("libscagent " PACKAGE_VERSION));
	if ((r = call(c, "hello", args, &res)) != SC_OK)
		goto fail;
	json_object_put(res);
	free(p);
	*out = c;
	return SC_OK;
fail:
	/* The handle goes: its message stays for scagent_error(NULL) (the agent's "busy" says how many). */
	snprintf(connect_err, sizeof(connect_err), "%s", c->err);
	free(p);
	scagent_close(c);
	return r;
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
	r = read_line(c, timeout_ms, &line);
	pthread_mutex_unlock(&c->lock);
	if (r != SC_OK)
		return r;
	*event_json = line;
	return SC_OK;
}
