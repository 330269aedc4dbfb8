/*
 * The agent's requests, answered by its module workers (supervise.c): each
 * client has its own connection to each worker it uses, made when first
 * needed with the client's identity, so requests of different clients run
 * side by side as before. A request is passed on as it came, the answer as
 * it comes back.
 *
 *   list, refresh, status   every worker; the answers merged (list adds the
 *                           agent's PC/SC readers, status each worker process);
 *                           an absent module is an error with "state":"absent",
 *                           and refresh first tries absent modules again
 *   REF, key REF, token     the worker that has it: with one module that one;
 *                           else each is asked (find, get-public-key,
 *                           mechanisms) and the one that has it answers; two
 *                           that have it: ambiguous, with both candidates
 *                           (login, logout, pin-change, pin-unblock,
 *                           keygen, import, mechanisms: by token)
 *   init-token, delete-token, vsc-list
 *                           the worker that holds TPM virtual smart cards
 *
 * Every request has a limit (module-timeout; keygen-timeout for keygen,
 * import, init-token and delete-token; a worker about to wait for pinentry
 * says so with a line {"pending":"pinentry"}, and the limit starts again at
 * pinentry's own). A worker that does not answer in time
 * is killed and started again, and the request answers `timeout`; one that
 * ends while a request waits answers `device`. A worker busy with another
 * request still within its own limit (a module that serialises its calls
 * behind a key generation) is not hung: the request waits behind it
 * (wait_behind). A request never waits for a
 * worker past its limit, nor past the agent's stop.
 */
#include "config.h"
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "common/err.h"
#include "common/log.h"
#include "common/text.h"
#include "common/util.h"
#include "daemon/server-private.h"
#include "proto/proto.h"
#include "token/pcsc.h"

/* What a request may spend in pinentry (its own limit, pinentry.c), after the worker said so. */
#define PINENTRY_ALLOW_MS (120UL * 1000)

struct wconn {
	int fd;				/* -1: none */
	unsigned gen;			/* of the worker it was made to */
	struct sc_linebuf lb;
};

/* One request on its way to worker i and back (ask). */
struct flight_wait {
	struct sc_sup *sup;
	size_t i;
	const char *op;
	unsigned long limit_ms;		/* its own */
	uint64_t end;			/* sc_now_ms() time it gives up */
	uint64_t id;			/* in the supervisor's flights (0: not kept) */
	int behind;			/* it waited behind another's slow operation (said) */
};

enum route_kind { R_ALL, R_STATUS, R_CERT, R_KEY, R_TOKEN, R_VSC };

static const struct route {
	const char *op;
	enum route_kind kind;
	int slow;			/* keygen-timeout */
} routes[] = {
	{ "list", R_ALL, 0 }, { "refresh", R_ALL, 0 }, { "status", R_STATUS, 0 },
	{ "find", R_CERT, 0 }, { "get-cert", R_CERT, 0 }, { "sign", R_CERT, 0 },
	{ "get-public-key", R_KEY, 0 }, { "sign-key", R_KEY, 0 },
	{ "login", R_TOKEN, 0 }, { "logout", R_TOKEN, 0 }, { "mechanisms", R_TOKEN, 0 },
	{ "pin-change", R_TOKEN, 0 }, { "pin-unblock", R_TOKEN, 0 },
	{ "keygen", R_TOKEN, 1 }, { "import", R_TOKEN, 1 },
	{ "init-token", R_VSC, 1 }, { "delete-token", R_VSC, 1 }, { "vsc-list", R_VSC, 0 },
};

void
route_client_free(struct client *c)
{
	if (c->wc == NULL)
		return;
	for (size_t i = 0; i < sup_count(c->srv->sup); i++) {
		if (c->wc[i].fd >= 0)
			close(c->wc[i].fd);
		sc_linebuf_free(&c->wc[i].lb);
	}
	free(c->wc);
	c->wc = NULL;
}

static void
wconn_close(struct wconn *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	sc_linebuf_free(&w->lb);
	sc_linebuf_init(&w->lb, SC_PROTO_MAX_RESPONSE);
}

/*
 * f's own limit passed: whether the worker is busy with another request
 * still within its own (a slow operation the module makes this one wait
 * behind, a key generation on a TPM): f then waits until the latest of their
 * limits has passed and its own again after it (f->end moves; said). Once
 * only: a worker that hangs is found within a bounded time even while new
 * slow requests keep coming (each could excuse the one before).
 */
static int
wait_behind(struct client *c, struct flight_wait *f)
{
	uint64_t until = f->id != 0 && !f->behind ? sup_flight_excuse(f->sup, f->i, f->id) : 0;

	if (until == 0)
		return 0;
	sc_info("pid %ld (%s): the module %s did not answer %s within %lu s while "
	    "another request to it is within its own limit: it waits behind that "
	    "slow operation, %lu s more after it", (long)c->pid, c->exe,
	    sup_module(f->sup, f->i), f->op, f->limit_ms / 1000, f->limit_ms / 1000);
	f->behind = 1;
	/*
	 * Not written back to the flights: an extended wait excuses no other
	 * request, or two waiting ones (a hung key generation and a signature
	 * behind it) would excuse each other past the key generation's limit.
	 */
	f->end = until + f->limit_ms;
	return 1;
}

/*
 * Wait for fd (events ev) until f->end (sc_now_ms; it moves while the worker
 * is busy with another request within its limit: wait_behind), the agent's
 * stop, or the client's going: 1 ready, 0 timeout, -1 stop, -2 the client
 * closed its socket (POLLHUP: both ways; a client that only shut its sending
 * side still gets its answer).
 */
static int
wait_fd(struct client *c, int fd, short ev, struct flight_wait *f)
{
	for (;;) {
		struct pollfd p[3] = { { fd, ev, 0 }, { c->srv->stop_pipe[0], POLLIN, 0 },
			{ c->fd, 0, 0 } };
		uint64_t now = sc_now_ms();
		int n;

		if (c->srv->stopping)
			return -1;
		if (now >= f->end && !wait_behind(c, f))
			return 0;
		n = poll(p, 3, (int)(f->end - now > 1000 ? 1000 : f->end - now));
		if (n < 0 && errno != EINTR)
			return -1;
		if (n > 0 && p[1].revents)
			return -1;
		if (n > 0 && p[0].revents)
			return 1;
		if (n > 0 && (p[2].revents & (POLLHUP | POLLERR)))
			return -2;
	}
}

/* What wait_fd's k < 1 means as an SC_ERR_*. */
static int
wait_err(int k)
{
	return k == 0 ? SC_ERR_TIMEOUT : k == -2 ? SC_ERR_AGENT_UNREACHABLE : SC_ERR_CANCELLED;
}

/*
 * SC_OK, SC_ERR_TIMEOUT, SC_ERR_IO (the worker's end closed), SC_ERR_CANCELLED
 * (stopping), SC_ERR_AGENT_UNREACHABLE (the client went: wait_fd).
 */
static int
send_all(struct client *c, int fd, const char *p, size_t n, struct flight_wait *f)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		int k;

		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return SC_ERR_IO;
		if ((k = wait_fd(c, fd, POLLOUT, f)) <= 0)
			return wait_err(k);
	}
	return SC_OK;
}

/*
 * One answer line (malloc'd, no '\n'). Codes as send_all. A worker about to
 * wait for pinentry says so first: f->end moves by pinentry's own limit.
 */
static int
read_line(struct client *c, struct wconn *w, struct flight_wait *f, char **ans, size_t *anslen)
{
	for (;;) {
		int r = sc_linebuf_take(&w->lb, ans, anslen), k;
		long n;

		if (r > 0 && strncmp(*ans, "{\"pending\":", 11) == 0) {
			free(*ans);
			*ans = NULL;
			f->end += PINENTRY_ALLOW_MS;	/* the module's time is still left after it */
			sup_flight_move(f->sup, f->i, f->id, f->end);
			continue;
		}
		if (r > 0)
			return SC_OK;
		if (r < 0)
			return SC_ERR_IO;
		if ((k = wait_fd(c, w->fd, POLLIN, f)) <= 0)
			return wait_err(k);
		n = sc_linebuf_read(&w->lb, w->fd);
		if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
			return SC_ERR_IO;
	}
}

/* Send a line to a worker's connection and read its answer. */
static int
round_trip(struct client *c, struct wconn *w, const char *line, size_t len, struct flight_wait *f,
    char **ans, size_t *anslen)
{
	int r;

	if ((r = send_all(c, w->fd, line, len, f)) != SC_OK ||
	    (r = send_all(c, w->fd, "\n", 1, f)) != SC_OK)
		return r;
	return read_line(c, w, f, ans, anslen);
}

/*
 * Ask worker i: line (a request, no '\n') and its one answer line in *ans.
 * On failure msg says what happened: the worker was killed (timeout), ended
 * (device), or does not serve now. The request is in the supervisor's
 * flights of the worker while it waits (wait_behind).
 */
static int
ask(struct client *c, size_t i, const char *op, const char *line, size_t len,
    unsigned long limit_ms, char **ans, size_t *anslen, char *msg, size_t msglen)
{
	struct sc_sup *sup = c->srv->sup;
	struct wconn *w;
	struct flight_wait f = { sup, i, op, limit_ms, sc_now_ms() + limit_ms, 0, 0 };
	char why[160], *hello = NULL;
	size_t hlen;
	int r, fd, fresh;

	*ans = NULL;
	if (c->wc == NULL) {
		if ((c->wc = calloc(sup_count(sup), sizeof(*c->wc))) == NULL)
			return SC_ERR_NOMEM;
		for (size_t k = 0; k < sup_count(sup); k++) {
			c->wc[k].fd = -1;
			sc_linebuf_init(&c->wc[k].lb, SC_PROTO_MAX_RESPONSE);
		}
	}
	w = &c->wc[i];
	if (w->fd >= 0 && w->gen != sup_gen(sup, i))
		wconn_close(w);		/* made to a worker that has since been restarted */
	fresh = w->fd < 0;
	if (fresh) {
		if ((fd = sup_connect(sup, i, c, &w->gen, msg, msglen)) < 0)
			return fd;
		w->fd = fd;
	}
	f.id = sup_flight_add(sup, i, w->gen, f.end);
	if (fresh) {
		r = round_trip(c, w, "{\"id\":0,\"op\":\"hello\",\"version\":1}",
		    strlen("{\"id\":0,\"op\":\"hello\",\"version\":1}"), &f, &hello, &hlen);
		free(hello);
		if (r != SC_OK)
			goto fail;
	}
	if ((r = round_trip(c, w, line, len, &f, ans, anslen)) == SC_OK) {
		sup_flight_end(sup, i, f.id, 0);
		return SC_OK;
	}
fail:
	/* A request whose client went is still run by the worker: kept until its deadline. */
	sup_flight_end(sup, i, f.id, r == SC_ERR_AGENT_UNREACHABLE);
	if (r == SC_ERR_TIMEOUT) {
		snprintf(why, sizeof(why), "did not answer within %lu s (%s)", limit_ms / 1000, op);
		sup_kill(sup, i, w->gen, why);
		snprintf(msg, msglen, "the module %s %s: its process is restarted and its tokens "
		    "are logged out: log in again", sup_module(sup, i), why);
	} else if (r == SC_ERR_CANCELLED)
		snprintf(msg, msglen, "the agent is stopping");
	else if (r == SC_ERR_AGENT_UNREACHABLE) {
		/*
		 * The client is gone: its connection to the worker closes (the
		 * worker finishes what the module is doing and drops the answer),
		 * and its thread and slot go now, not after the module's time.
		 */
		snprintf(msg, msglen, "the client closed its connection while %s waited for %s",
		    sup_module(sup, i), op);
		sc_info("pid %ld (%s): %s; its request is dropped", (long)c->pid, c->exe, msg);
		r = SC_ERR_CANCELLED;
	}
	else if (r == SC_ERR_IO) {
		sup_death_message(sup, i, w->gen, msg, msglen);
		r = SC_ERR_DEVICE;
	} else
		snprintf(msg, msglen, "%s", sc_strerror(r));
	free(*ans);
	*ans = NULL;
	wconn_close(w);
	return r;
}

/* An answer line from a worker, to the client as it is. */
static int
relay(struct client *c, char *ans, size_t len)
{
	char *l = realloc(ans, len + 1);

	if (l == NULL) {
		free(ans);
		return send_line(c, NULL, 0);
	}
	l[len] = '\n';
	return send_line(c, l, len + 1);
}

/* An answer's parts: 1 ok (*res its result), 0 error (*code, *msg). */
static int
answer_parts(json_object *a, json_object **res, int *code, const char **msg)
{
	json_object *v, *e;

	*res = NULL;
	*code = SC_ERR_PROTOCOL;
	*msg = "the module's worker sent an answer that does not parse";
	if (a == NULL)
		return 0;
	if (json_object_object_get_ex(a, "ok", &v) && json_object_get_boolean(v)) {
		json_object_object_get_ex(a, "result", res);
		return 1;
	}
	if (json_object_object_get_ex(a, "error", &e)) {
		if (json_object_object_get_ex(e, "code", &v))
			*code = sc_errcode(json_object_get_string(v));
		if (json_object_object_get_ex(e, "message", &v))
			*msg = json_object_get_string(v);
	}
	return 0;
}

/* op's route, or NULL: an operation added without one. */
static const struct route *
route_of(const char *op)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (strcmp(routes[i].op, op) == 0)
			return &routes[i];
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Every worker */

static int
route_all(struct client *c, int64_t id, const char *op, const char *line, size_t len)
{
	struct sc_sup *sup = c->srv->sup;
	json_object *out = json_object_new_object(), *toks = json_object_new_array();
	json_object *errs = json_object_new_array(), *readers;
	int is_list = strcmp(op, "list") == 0, changed = 0;
	char msg[1024], reason[256];

	if (!is_list)
		changed = sup_retry_stopped(sup) > 0;	/* refresh: an absent or broken module is tried again */
	for (size_t i = 0; i < sup_count(sup); i++) {
		json_object *a, *res, *v;
		const char *emsg;
		char *ans;
		size_t alen;
		int code, r, absent = sup_absent(sup, i, msg, sizeof(msg));

		/* An absent module is an error marked as such: human lists leave it out. */
		if (absent || (r = ask(c, i, op, line, len, sup_timeout(sup, 0), &ans, &alen, msg,
		    sizeof(msg))) != SC_OK) {
			json_object *e = json_object_new_object();
			json_object_object_add(e, "module", json_object_new_string(sup_module(sup, i)));
			json_object_object_add(e, "error", json_object_new_string(msg));
			if (absent)
				json_object_object_add(e, "state", json_object_new_string("absent"));
			json_object_array_add(errs, e);
			continue;
		}
		a = json_tokener_parse(ans);
		free(ans);
		if (!answer_parts(a, &res, &code, &emsg)) {
			json_object *e = json_object_new_object();
			json_object_object_add(e, "module", json_object_new_string(sup_module(sup, i)));
			json_object_object_add(e, "error", json_object_new_string(emsg));
			json_object_array_add(errs, e);
		}
		if (json_object_object_get_ex(res, "tokens", &v))
			for (size_t k = 0; k < json_object_array_length(v); k++)
				json_object_array_add(toks, json_object_get(json_object_array_get_idx(v, k)));
		if (json_object_object_get_ex(res, "errors", &v))
			for (size_t k = 0; k < json_object_array_length(v); k++)
				json_object_array_add(errs, json_object_get(json_object_array_get_idx(v, k)));
		if (json_object_object_get_ex(res, "changed", &v))
			changed |= json_object_get_boolean(v);
		json_object_put(a);
	}
	if (!is_list) {
		json_object_put(toks);
		json_object_object_add(out, "changed", json_object_new_boolean(changed));
		if (json_object_array_length(errs) > 0) {
			json_object *e = json_object_array_get_idx(errs, 0);
			const char *err = json_object_get_string(json_object_object_get(e, "error"));
			const char *mod = json_object_get_string(json_object_object_get(e, "module"));

			/* An absent module's error is its reason alone. */
			if (json_object_object_get_ex(e, "state", NULL))
				snprintf(msg, sizeof(msg), "the module %s is still absent: %s", mod, err);
			else
				snprintf(msg, sizeof(msg), "%s", err);
			json_object_object_add(out, "warning", json_object_new_string(msg));
		}
		json_object_put(errs);
		return reply_ok(c, id, out);
	}
	json_object_object_add(out, "tokens", toks);
	if (json_object_array_length(errs) > 0)
		json_object_object_add(out, "errors", errs);
	else
		json_object_put(errs);
	readers = sc_pcsc_readers(c->srv->pcsc, reason, sizeof(reason));
	sc_pcsc_list_add_readers(out, readers, reason);
	return reply_ok(c, id, out);
}

static int
route_status(struct client *c, int64_t id)
{
	struct sc_sup *sup = c->srv->sup;
	json_object *res, *toks = json_object_new_array(), *procs;
	const char *line = "{\"id\":1,\"op\":\"status\"}";
	size_t loaded = 0;
	char msg[512];

	for (size_t i = 0; i < sup_count(sup); i++) {
		json_object *a, *r, *v;
		const char *emsg;
		char *ans;
		size_t alen;
		int code;

		if (!sup_running(sup, i) ||
		    ask(c, i, "status", line, strlen(line), sup_timeout(sup, 0), &ans, &alen, msg,
		    sizeof(msg)) != SC_OK)
			continue;
		a = json_tokener_parse(ans);
		free(ans);
		if (answer_parts(a, &r, &code, &emsg) && json_object_object_get_ex(r, "tokens", &v))
			for (size_t k = 0; k < json_object_array_length(v); k++)
				json_object_array_add(toks, json_object_get(json_object_array_get_idx(v, k)));
		json_object_put(a);
	}
	procs = sup_status_json(sup, &loaded);
	res = status_head(c->srv);
	json_object_object_add(res, "modules", json_object_new_int64((int64_t)loaded));
	json_object_object_add(res, "tokens", toks);
	json_object_object_add(res, "pcsc", readers_status(c->srv));
	json_object_object_add(res, "processes", procs);
	return reply_ok(c, id, res);
}

/* ------------------------------------------------------------------ */
/* The worker that has it */

/*
 * The request that asks a worker whether it has what req names. cached: a
 * certificate is looked for in what the worker knows, without reading its
 * slots again (find's "cached").
 */
static char *
probe_line(enum route_kind kind, json_object *req, int cached, size_t *len)
{
	json_object *p = json_object_new_object(), *v;
	char *s;

	json_object_object_add(p, "id", json_object_new_int(1));
	switch (kind) {
	case R_CERT:
	case R_KEY:
		json_object_object_add(p, "op", json_object_new_string(kind == R_CERT ? "find" :
		    "get-public-key"));
		if (json_object_object_get_ex(req, "ref", &v))
			json_object_object_add(p, "ref", json_object_get(v));
		if (cached && kind == R_CERT)
			json_object_object_add(p, "cached", json_object_new_boolean(1));
		break;
	case R_TOKEN:
		json_object_object_add(p, "op", json_object_new_string("mechanisms"));
		if (json_object_object_get_ex(req, "token", &v))
			json_object_object_add(p, "token", json_object_get(v));
		break;
	default:
		json_object_object_add(p, "op", json_object_new_string("vsc-list"));
	}
	s = strdup(sc_json_text(p));
	json_object_put(p);
	*len = s != NULL ? strlen(s) : 0;
	return s;
}

/* "a; b" of each not-found message after marker, after the first's text up to it. */
static void
merge_not_found(char **msgs, size_t n, const char *marker, char *out, size_t len)
{
	const char *m = strstr(msgs[0], marker);
	size_t off, parts = 0;

	if (m == NULL) {
		snprintf(out, len, "%s", msgs[0]);
		return;
	}
	off = (size_t)snprintf(out, len, "%.*s", (int)(m - msgs[0] + strlen(marker)), msgs[0]);
	for (size_t i = 0; i < n && off < len; i++) {
		const char *p = strstr(msgs[i], marker);
		if (p == NULL || strncmp(p + strlen(marker), " none", 5) == 0)
			continue;
		off += (size_t)snprintf(out + off, len - off, "%s%s", parts++ ? ";" : "",
		    p + strlen(marker));
	}
	if (parts == 0)
		snprintf(out, len, "%s", msgs[0]);
}

/* The candidates of a name that more than one worker has. */
static int
ambiguous(struct client *c, int64_t id, enum route_kind kind, json_object *req, json_object **found,
    size_t n)
{
	const char *name = arg_str(req, kind == R_TOKEN ? "token" : "ref");
	char msg[2048];
	size_t off;

	if (kind == R_TOKEN)
		off = (size_t)snprintf(msg, sizeof(msg), "more than one token is labelled \"%s\": "
		    "name one with a token URI (pkcs11:token=LABEL;serial=SERIAL, serials in "
		    "`scagent list`)", name);
	else
		off = (size_t)snprintf(msg, sizeof(msg), kind == R_CERT ?
		    "\"%s\" matches more than one certificate; use a longer fingerprint or a pkcs11: "
		    "URI. Candidates:" : "\"%s\" matches more than one key; use its pkcs11: URI. "
		    "Candidates:", name);
	for (size_t i = 0; kind != R_TOKEN && i < n && off < sizeof(msg); i++) {
		const char *label = json_object_get_string(json_object_object_get(found[i], "label"));
		const char *sha = json_object_get_string(json_object_object_get(found[i], "sha256"));
		const char *tok = json_object_get_string(json_object_object_get(found[i], "token"));

		if (kind == R_CERT)
			off += (size_t)snprintf(msg + off, sizeof(msg) - off, "%s %s (%.16s) on %s",
			    i ? ";" : "", label ? label : "", sha ? sha : "", tok ? tok : "");
		else
			off += (size_t)snprintf(msg + off, sizeof(msg) - off, "%s %s on %s", i ? ";" : "",
			    label ? label : "", tok ? tok : "");
	}
	return reply_err(c, id, SC_ERR_AMBIGUOUS, msg);
}

/*
 * Which worker has what req names: *owner, or the request is answered here
 * (*answered, and the reply's result is returned). cached: the workers look
 * in what they know; when none has it, *again is set and nothing answered
 * (ask again, reading slots: a card that just came).
 */
static int
find_owner_in(struct client *c, int64_t id, enum route_kind kind, json_object *req, int cached,
    size_t *owner, int *answered, int *again)
{
	struct sc_sup *sup = c->srv->sup;
	size_t n = sup_count(sup), nfound = 0, nnf = 0, plen = 0;
	json_object **ans = calloc(n, sizeof(*ans)), **found = calloc(n, sizeof(*found));
	char **nf = calloc(n, sizeof(*nf)), *probe = probe_line(kind, req, cached, &plen);
	char msg[2048], other[2048] = "";
	int other_code = SC_OK, amb = -1, r = SC_OK;

	*answered = 0;
	*owner = 0;
	if (ans == NULL || found == NULL || nf == NULL || probe == NULL) {
		*answered = 1;
		r = reply_err(c, id, SC_ERR_NOMEM, NULL);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_object *res, *v;
		const char *emsg;
		char *line;
		size_t llen;
		int code;

		if (!sup_running(sup, i))
			continue;
		if ((code = ask(c, i, kind == R_VSC ? "vsc-list" : "lookup", probe, plen,
		    sup_timeout(sup, 0), &line, &llen, msg, sizeof(msg))) != SC_OK) {
			if (code == SC_ERR_CANCELLED) {
				/* the client went or the agent stops: no other worker is asked */
				*answered = 1;
				r = reply_err(c, id, code, msg);
				goto out;
			}
			if (other_code == SC_OK)
				snprintf(other, sizeof(other), "%s", msg);
			other_code = SC_ERR_DEVICE;
			continue;
		}
		ans[i] = json_tokener_parse(line);
		free(line);
		if (answer_parts(ans[i], &res, &code, &emsg)) {
			if (kind == R_VSC && (!json_object_object_get_ex(res, "module", &v) ||
			    json_object_get_string(v) == NULL))
				continue;	/* no TPM module in this one */
			found[nfound++] = res;
			*owner = i;
		} else if (code == SC_ERR_NOT_FOUND)
			nf[nnf++] = (char *)emsg;
		else if (code == SC_ERR_AMBIGUOUS && amb < 0)
			amb = (int)i;
		else if (other_code == SC_OK) {
			other_code = code;
			snprintf(other, sizeof(other), "%s", emsg);
		}
	}
	if (nfound == 1 || kind == R_VSC)
		goto out;		/* that one; without a TPM module, the first says so */
	*answered = 1;
	if (nfound > 1)
		r = ambiguous(c, id, kind, req, found, nfound);
	else if (amb >= 0) {
		json_object *res;
		const char *emsg;
		int code;

		answer_parts(ans[amb], &res, &code, &emsg);
		r = reply_err(c, id, code, emsg);
	} else if (other_code != SC_OK)
		r = reply_err(c, id, other_code, other);
	else if (nnf > 0 && cached) {
		*answered = 0;
		*again = 1;
	} else if (nnf > 0) {
		merge_not_found(nf, nnf, kind == R_KEY ? "keys:" : "available:", msg, sizeof(msg));
		r = reply_err(c, id, SC_ERR_NOT_FOUND, msg);
	} else
		*answered = 0;		/* no worker serves: the first says why */
out:
	for (size_t i = 0; ans != NULL && i < n; i++)
		json_object_put(ans[i]);
	free(ans);
	free(found);
	free(nf);
	free(probe);
	return r;
}

/*
 * find_owner_in, first in what the workers know: a signature on one card
 * costs no slot re-reading of every other module's (their cards are re-read
 * on PC/SC events, login, logout and the periodic check). Only when no
 * worker has it are slots read again, for a card that just came.
 */
static int
find_owner(struct client *c, int64_t id, enum route_kind kind, json_object *req, size_t *owner,
    int *answered)
{
	int again = 0, r = find_owner_in(c, id, kind, req, kind == R_CERT, owner, answered, &again);

	return again ? find_owner_in(c, id, kind, req, 0, owner, answered, &again) : r;
}

/*
 * What the desktop is told of an answer (desktop.c): a signature made (the
 * program, its pid, the certificate), a wrong PIN that left one try.
 */
static void
tell_desktop(struct client *c, const char *op, json_object *req, const char *ans)
{
	json_object *a, *res;
	const char *emsg;
	int code;

	/* only these answers can make a note: others are not parsed again */
	if (c->srv->o.notify == SC_NOTIFY_NO || (strcmp(op, "sign") != 0 &&
	    strcmp(op, "sign-key") != 0 && strcmp(op, "login") != 0 && strcmp(op, "pin-change") != 0))
		return;
	a = json_tokener_parse(ans);
	if (answer_parts(a, &res, &code, &emsg)) {
		if (strcmp(op, "sign") == 0 || strcmp(op, "sign-key") == 0)
			desktop_signed(c, arg_str(req, "ref"));
	} else if (code == SC_ERR_PIN_FINAL_TRY || (code == SC_ERR_PIN_INCORRECT &&
	    strstr(emsg, "one try is left") != NULL))
		desktop_pin_final(c->srv, arg_str(req, "token") ? arg_str(req, "token") :
		    arg_str(req, "ref"));
	json_object_put(a);
}

int
route_request(struct client *c, int64_t id, const char *op, json_object *req,
    const char *line, size_t len)
{
	struct sc_sup *sup = c->srv->sup;
	const struct route *rt = route_of(op);
	size_t owner = 0;
	char msg[1024], *ans;
	size_t alen;
	int answered = 0, r;

	if (rt == NULL)		/* an operation added without a route: never to every worker */
		return reply_err(c, id, SC_ERR_UNSUPPORTED, "the agent does not pass this operation "
		    "on to its module workers");
	if (rt->kind == R_STATUS)
		return route_status(c, id);
	if (rt->kind == R_ALL)
		return route_all(c, id, op, line, len);
	if (sup_count(sup) == 0)
		return reply_err(c, id, SC_ERR_NOT_FOUND, "the agent has no PKCS#11 module: configure "
		    "one (scagentd --module PATH, or modules.d)");
	if (sup_count(sup) > 1) {
		r = find_owner(c, id, rt->kind, req, &owner, &answered);
		if (answered)
			return r;
	}
	if ((r = ask(c, owner, op, line, len, sup_timeout(sup, rt->slow), &ans, &alen, msg,
	    sizeof(msg))) != SC_OK)
		return reply_err(c, id, r, msg);
	if (c->srv->desk != NULL)
		tell_desktop(c, op, req, ans);
	return relay(c, ans, alen);
}
