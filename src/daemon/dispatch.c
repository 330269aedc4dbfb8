/*
 * Requests: the table of operations, the checks every request passes (its
 * shape in src/proto, hello first), the agent's own operations (hello,
 * status, stop), and the reply helpers every operation answers with.
 */
#include "config.h"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/server-private.h"
#include "proto/proto.h"
#include "token/token.h"

int
reply_ok(struct client *c, int64_t id, json_object *result)
{
	size_t len = 0;
	char *l = sc_proto_ok(id, result, &len);

	return send_line(c, l, len);
}

int
reply_err(struct client *c, int64_t id, int code, const char *msg)
{
	size_t len = 0;
	char buf[2560], *l;

	if (c->srv->o.worker && sc_ckr_fatal_count() != c->srv->fatal_base) {
		/* A worker whose module failed for good: say it starts afresh. */
		snprintf(buf, sizeof(buf) - 400, "%s", msg != NULL ? msg : sc_strerror(code));
		worker_check_reinit(c->srv, buf, sizeof(buf));
		msg = buf;
	}
	l = sc_proto_error(id, code, msg, &len);

	return send_line(c, l, len);
}

const char *
arg_str(json_object *req, const char *name)
{
	json_object *v;

	return json_object_object_get_ex(req, name, &v) ? json_object_get_string(v) : NULL;
}

int
arg_bool(json_object *req, const char *name)
{
	json_object *v;

	return json_object_object_get_ex(req, name, &v) && json_object_get_boolean(v);
}

int
ref_error(struct client *c, int64_t id, int r, const char *ref, json_object *cand)
{
	char msg[2048];
	size_t off;

	if (r == SC_ERR_AMBIGUOUS)
		off = (size_t)snprintf(msg, sizeof(msg),
		    "\"%s\" matches more than one certificate; use a longer fingerprint or a pkcs11: URI. Candidates:", ref);
	else if (r == SC_ERR_NOT_FOUND)
		off = (size_t)snprintf(msg, sizeof(msg), "no certificate matches \"%s\"; available:", ref);
	else if (r == SC_ERR_INVALID)
		off = (size_t)snprintf(msg, sizeof(msg), "\"%s\" is not a valid pkcs11: URI", ref);
	else
		off = (size_t)snprintf(msg, sizeof(msg), "%s", sc_strerror(r));
	if (cand != NULL && (r == SC_ERR_AMBIGUOUS || r == SC_ERR_NOT_FOUND)) {
		size_t n = json_object_array_length(cand);
		if (n == 0 && off < sizeof(msg))
			off += (size_t)snprintf(msg + off, sizeof(msg) - off, " none");
		for (size_t i = 0; i < n && off < sizeof(msg); i++)
			off += (size_t)snprintf(msg + off, sizeof(msg) - off, "%s %s",
			    i ? ";" : "", json_object_get_string(json_object_array_get_idx(cand, i)));
	}
	json_object_put(cand);
	return reply_err(c, id, r, msg);
}

int
key_ref_error(struct client *c, int64_t id, int r, const char *ref, json_object *cand)
{
	char msg[2048];
	size_t off;

	if (r != SC_ERR_NOT_FOUND && r != SC_ERR_AMBIGUOUS)
		return ref_error(c, id, r, ref, cand);
	off = (size_t)snprintf(msg, sizeof(msg), r == SC_ERR_AMBIGUOUS ?
	    "\"%s\" matches more than one key; use its pkcs11: URI. Candidates:" :
	    "no key matches \"%s\" (a key is named by label, hex ID or pkcs11: URI); keys:", ref);
	for (size_t i = 0; cand != NULL && i < json_object_array_length(cand) && off < sizeof(msg); i++)
		off += (size_t)snprintf(msg + off, sizeof(msg) - off, "%s %s", i ? ";" : "",
		    json_object_get_string(json_object_array_get_idx(cand, i)));
	if ((cand == NULL || json_object_array_length(cand) == 0) && off < sizeof(msg))
		snprintf(msg + off, sizeof(msg) - off, " none (log in to see keys that hide until then)");
	json_object_put(cand);
	return reply_err(c, id, r, msg);
}

json_object *
status_head(struct sc_server *srv)
{
	json_object *res = json_object_new_object();

	json_object_object_add(res, "agent", json_object_new_string("scagentd " PACKAGE_VERSION));
	json_object_object_add(res, "protocol", json_object_new_int(SC_PROTO_VERSION));
	json_object_object_add(res, "pid", json_object_new_int64((int64_t)getpid()));
	json_object_object_add(res, "uptime", json_object_new_int64(
	    (int64_t)((sc_now_ms() - srv->started) / 1000)));
	pthread_mutex_lock(&srv->lock);
	json_object_object_add(res, "clients", json_object_new_int(srv->nclients));
	pthread_mutex_unlock(&srv->lock);
	return res;
}

static int
op_status(struct client *c, int64_t id, json_object *req)
{
	json_object *res = status_head(c->srv), *list, *toks, *out = json_object_new_array();

	json_object_object_add(res, "modules", json_object_new_int64((int64_t)sc_store_nmodules(c->srv->st)));
	list = sc_store_list_json(c->srv->st, NULL);
	if (json_object_object_get_ex(list, "tokens", &toks)) {
		for (size_t i = 0; i < json_object_array_length(toks); i++) {
			json_object *t = json_object_array_get_idx(toks, i), *s = json_object_new_object(), *f, *v;
			json_object_object_add(s, "label", json_object_get(json_object_object_get(t, "label")));
			if (json_object_object_get_ex(t, "flags", &f) && json_object_object_get_ex(f, "logged_in", &v))
				json_object_object_add(s, "logged_in", json_object_get(v));
			json_object_array_add(out, s);
		}
	}
	json_object_put(list);
	json_object_object_add(res, "tokens", out);
	json_object_object_add(res, "pcsc", readers_status(c->srv));
	return reply_ok(c, id, res);
}

/*
 * `scagent stop`: the answer goes out first, then the agent stops as on
 * SIGTERM (clients closed, its workers stopped and so its modules finalised,
 * its socket removed; a socket systemd made is systemd's and stays:
 * "socket_kept"). The whole agent's: the agent answers it, never a worker.
 */
static int
op_stop(struct client *c, int64_t id, json_object *req)
{
	json_object *res;
	int r;

	if (c->srv->o.worker)
		/* Only the agent passes requests to a worker, and it answers stop itself. */
		return reply_err(c, id, SC_ERR_UNSUPPORTED, "a module's worker does not stop on "
		    "request: stop the agent (scagent stop)");
	res = json_object_new_object();
	json_object_object_add(res, "pid", json_object_new_int64((int64_t)getpid()));
	json_object_object_add(res, "socket_kept", json_object_new_boolean(c->srv->o.socket_kept));
	sc_info("stopping: asked by pid %ld (%s)", (long)c->pid, c->exe);
	r = reply_ok(c, id, res);
	sc_server_stop(c->srv);
	return r;
}

static int
op_hello(struct client *c, int64_t id, json_object *req)
{
	json_object *v, *res, *ops;
	char msg[128];

	json_object_object_get_ex(req, "version", &v);
	if (json_object_get_int64(v) != SC_PROTO_VERSION) {
		snprintf(msg, sizeof(msg), "protocol version %lld is not supported; this agent speaks %d",
		    (long long)json_object_get_int64(v), SC_PROTO_VERSION);
		return reply_err(c, id, SC_ERR_UNSUPPORTED, msg);
	}
	c->hello = 1;
	res = json_object_new_object();
	ops = json_object_new_array();
	for (const struct sc_op_spec *s = sc_proto_ops; s->name; s++)
		json_object_array_add(ops, json_object_new_string(s->name));
	json_object_object_add(res, "protocol", json_object_new_int(SC_PROTO_VERSION));
	json_object_object_add(res, "agent", json_object_new_string("scagentd " PACKAGE_VERSION));
	json_object_object_add(res, "ops", ops);
	return reply_ok(c, id, res);
}

/*
 * own: the agent answers it itself, in whichever of the three modes it runs
 * (server-private.h); the rest are a store's, which the agent passes on to
 * its workers (route.c).
 */
static const struct {
	const char *name;
	int (*fn)(struct client *, int64_t, json_object *);
	int own;
} handlers[] = {
	{ "hello", op_hello, 1 }, { "watch", op_watch, 1 }, { "stop", op_stop, 1 },
	{ "list", op_list, 0 }, { "find", op_find, 0 },
	{ "get-cert", op_get_cert, 0 }, { "login", op_login, 0 }, { "logout", op_logout, 0 },
	{ "sign", op_sign, 0 }, { "status", op_status, 0 },
	{ "refresh", op_refresh, 0 },
	{ "init-token", op_init_token, 0 }, { "delete-token", op_delete_token, 0 },
	{ "vsc-list", op_vsc_list, 0 }, { "keygen", op_keygen, 0 }, { "import", op_import, 0 },
	{ "get-public-key", op_get_public_key, 0 }, { "sign-key", op_sign_key, 0 },
	{ "mechanisms", op_mechanisms, 0 },
	{ "pin-change", op_pin_change, 0 }, { "pin-unblock", op_pin_unblock, 0 },
	{ "logout-all", op_logout_all, 0 },	/* the agent sends it to its workers itself */
};

int
dispatch(struct client *c, char *line, size_t len)
{
	json_object *req = NULL;
	const struct sc_op_spec *op;
	char why[256];
	int64_t id;
	int r;

	r = sc_proto_parse_request(line, len, &req, &id, &op, why, sizeof(why));
	if (r != SC_OK)
		return reply_err(c, id, r, why);
	if (!c->hello && strcmp(op->name, "hello") != 0) {
		json_object_put(req);
		return reply_err(c, id, SC_ERR_PROTOCOL, "send {\"id\":0,\"op\":\"hello\",\"version\":1} first");
	}
	r = SC_ERR_UNSUPPORTED;
	for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
		if (strcmp(handlers[i].name, op->name) != 0)
			continue;
		if (c->srv->sup != NULL && !handlers[i].own)
			r = route_request(c, id, op->name, req, line, len);	/* a worker answers */
		else
			r = handlers[i].fn(c, id, req);
		break;
	}
	worker_check_reinit(c->srv, NULL, 0);
	/* Whatever the handler did, no PIN stays behind in the freed request. */
	sc_proto_wipe_pins(req);
	json_object_put(req);
	return r;
}

