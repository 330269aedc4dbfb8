/*
 * One thread per client: a slow token only holds up the clients that use it.
 * A PC/SC watcher thread reports reader and card changes; a monitor thread
 * re-reads slots when told to (after a PC/SC event, in a short burst because
 * a module may need a moment to see a new card), when a client asks for the
 * inventory, and otherwise only on a long fallback interval (modules without
 * PC/SC, such as SoftHSM). It also logs idle tokens out. It sleeps until the
 * next of these is due: an idle agent uses no CPU.
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "cert/certinfo.h"
#include "common/err.h"
#include "common/log.h"
#include "common/secmem.h"
#include "common/text.h"
#include "common/util.h"
#include "daemon/pinentry.h"
#include "daemon/server.h"
#include "proto/proto.h"
#include "token/tpm.h"
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
#define FALLBACK_REFRESH_MS 30000	/* re-read slots this often without events */
#define STALE_REFRESH_MS 1000		/* a client's list re-reads slots older than this */

/* Slot re-reads after a PC/SC event, in ms after it. */
static const unsigned int burst_ms[] = { 0, 250, 1000, 3000 };
#define NBURST (sizeof(burst_ms) / sizeof(burst_ms[0]))

struct client {
	struct sc_server *srv;
	int fd;
	pid_t pid;
	uid_t uid;
	char exe[256];
	uint64_t accepted;		/* sc_now_ms() */
	int hello;
	int watching;			/* under srv->evlock */
	/*
	 * What the socket did not take yet: whole lines, answers and events in
	 * order, written without blocking by whichever thread comes next (the
	 * client's own, or one broadcasting an event). Under wlock, which is
	 * never held while waiting.
	 */
	pthread_mutex_t wlock;
	char *out;
	size_t outlen, outoff, outcap;	/* bytes in out, of them sent, allocated */
	size_t backlog;			/* event bytes that had to wait since out was last empty */
	uint64_t queued, written;	/* bytes put out, and taken by the socket, since accept */
	uint64_t progress_at;		/* the socket last took bytes, or out began to wait */
	int dead;			/* dropped: shut down, nothing more is written */
	struct client *next;		/* in srv->clients */
};

struct sc_server {
	struct sc_store *st;
	struct sc_server_opts o;
	int lfd;
	int stop_pipe[2];
	volatile sig_atomic_t stopping;
	/*
	 * The clients list changes under both locks, evlock first; a broadcast
	 * walks it under evlock alone and writes without blocking, so an event
	 * never holds up accept, status or the audit log (lock).
	 */
	pthread_mutex_t evlock;
	pthread_mutex_t lock;		/* clients list, count, refresh times, audit file */
	pthread_cond_t cond;		/* client count changes, monitor wakeups */
	struct client *clients;
	int nclients;
	pthread_t monitor;
	int monitor_started;
	uint64_t started;
	FILE *audit;
	struct sc_pcsc *pcsc;		/* PC/SC watcher */
	uint64_t last_refresh;		/* under lock */
	size_t burst;			/* next step of burst_ms; NBURST: none */
	uint64_t burst_at;		/* when the burst began */
};

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
	int r = send_nb(c, c->out + c->outoff, out_waiting(c), &done);

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
static int
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

static int
reply_ok(struct client *c, int64_t id, json_object *result)
{
	size_t len = 0;
	char *l = sc_proto_ok(id, result, &len);

	return send_line(c, l, len);
}

static int
reply_err(struct client *c, int64_t id, int code, const char *msg)
{
	size_t len = 0;
	char *l = sc_proto_error(id, code, msg, &len);

	return send_line(c, l, len);
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
	char *line = sc_proto_event(event, fields, &len);

	if (line == NULL)
		return;
	pthread_mutex_lock(&srv->evlock);
	for (struct client *c = srv->clients; c != NULL; c = c->next)
		if (c->watching)
			send_event(c, line, len);
	pthread_mutex_unlock(&srv->evlock);
	free(line);
}

/* Wake the monitor: something it schedules by has changed. */
static void
monitor_kick(struct sc_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	pthread_cond_broadcast(&srv->cond);
	pthread_mutex_unlock(&srv->lock);
}

/*
 * Re-read slots and tell watchers what appeared and vanished (token-added,
 * token-removed), then "changed" when anything visible changed.
 */
static int
server_refresh(struct sc_server *srv, int wait, int *changed_out)
{
	json_object *ev = NULL;
	int changed = 0, r;

	if (changed_out != NULL)
		*changed_out = 0;
	if (wait)
		r = sc_store_refresh_report(srv->st, &changed, &ev);
	else if ((r = sc_store_refresh_try(srv->st, &changed, &ev)) == SC_ERR_BUSY)
		return r;
	pthread_mutex_lock(&srv->lock);
	srv->last_refresh = sc_now_ms();
	pthread_mutex_unlock(&srv->lock);
	for (size_t i = 0; ev != NULL && i < json_object_array_length(ev); i++) {
		json_object *e = json_object_get(json_object_array_get_idx(ev, i));
		char name[32];

		snprintf(name, sizeof(name), "%s",
		    json_object_get_string(json_object_object_get(e, "event")));
		json_object_object_del(e, "event");
		sc_server_broadcast(srv, name, e);
	}
	json_object_put(ev);
	if (changed)
		sc_server_broadcast(srv, "changed", json_object_new_object());
	if (changed_out != NULL)
		*changed_out = changed;
	return r;
}

/*
 * A client wants the inventory: re-read slots unless that was just done or
 * is being done (then the client gets what is known rather than waiting for
 * a module that is busy with a card).
 */
static void
refresh_if_stale(struct sc_server *srv)
{
	uint64_t last;

	pthread_mutex_lock(&srv->lock);
	last = srv->last_refresh;
	pthread_mutex_unlock(&srv->lock);
	if (sc_now_ms() - last >= STALE_REFRESH_MS)
		server_refresh(srv, 0, NULL);
}

/* From the PC/SC watcher thread: pass the event on and re-read slots soon. */
static void
pcsc_event(void *arg, const char *event, json_object *fields)
{
	struct sc_server *srv = arg;

	sc_info("pcsc: %s %s", event, json_object_to_json_string_ext(fields, JSON_C_TO_STRING_PLAIN));
	sc_server_broadcast(srv, event, fields);
	pthread_mutex_lock(&srv->lock);
	srv->burst = 0;
	srv->burst_at = sc_now_ms();
	pthread_cond_broadcast(&srv->cond);
	pthread_mutex_unlock(&srv->lock);
}

/* Whether audit() writes anything: when not, its details need not be gathered. */
static int
audit_on(const struct sc_server *srv)
{
	return srv->audit != NULL || sc_log_get_level() >= SC_LOG_INFO;
}

static void
audit(struct sc_server *srv, struct client *c, const char *what, const char *detail, int r)
{
	char line[1024];
	time_t now = time(NULL);
	struct tm tm;
	char ts[32];

	char exe[3 * sizeof(c->exe)];
	size_t o = 0;

	if (!audit_on(srv))
		return;		/* nowhere to write it: spare the signing path the formatting */

	/* One field per word: blanks, controls and '%' in the path are %XX. */
	for (const unsigned char *p = (const unsigned char *)c->exe; *p && o + 4 < sizeof(exe); p++) {
		if (*p <= 0x20 || *p == 0x7f || *p == '%')
			o += (size_t)snprintf(exe + o, sizeof(exe) - o, "%%%02X", *p);
		else
			exe[o++] = (char)*p;
	}
	exe[o] = '\0';
	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(line, sizeof(line), "%s pid=%ld uid=%lu exe=%s %s result=%s",
	    what, (long)c->pid, (unsigned long)c->uid, exe, detail, sc_errname(r));
	if (srv->audit != NULL) {
		pthread_mutex_lock(&srv->lock);
		fprintf(srv->audit, "%s %s\n", ts, line);
		fflush(srv->audit);
		pthread_mutex_unlock(&srv->lock);
	} else
		sc_info("audit: %s", line);
}

/* ------------------------------------------------------------------ */
/* Operations */

static const char *
arg_str(json_object *req, const char *name)
{
	json_object *v;

	return json_object_object_get_ex(req, name, &v) ? json_object_get_string(v) : NULL;
}

static int
arg_bool(json_object *req, const char *name)
{
	json_object *v;

	return json_object_object_get_ex(req, name, &v) && json_object_get_boolean(v);
}

static int
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

/*
 * The trust anchors a list or find request sends as "cas" (PEM text), in
 * *anchors (NULL without "cas"). The client reads its CA file itself: the
 * agent opens no file a client names. SC_OK, or the error, with *why.
 */
static int
cas_anchors(json_object *req, X509_STORE **anchors, const char **why)
{
	json_object *v;
	int r;

	*anchors = NULL;
	*why = NULL;
	if (!json_object_object_get_ex(req, "cas", &v))
		return SC_OK;
	if ((size_t)json_object_get_string_len(v) > SC_PROTO_MAX_CAS) {
		*why = "\"cas\" is over 224 KiB: send only the CA certificates the chains need";
		return SC_ERR_INVALID;
	}
	r = sc_cert_anchors_pem(json_object_get_string(v), (size_t)json_object_get_string_len(v),
	    anchors, NULL);
	if (r == SC_ERR_CERT) {
		*why = "\"cas\" holds no PEM certificate, or one that does not parse: send the CA "
		    "certificates as PEM text";
		return SC_ERR_INVALID;
	}
	return r;
}

static int
op_list(struct client *c, int64_t id, json_object *req)
{
	json_object *j, *readers;
	X509_STORE *anchors;
	const char *why;
	char reason[256];
	int r;

	if ((r = cas_anchors(req, &anchors, &why)) != SC_OK)
		return reply_err(c, id, r, why);
	refresh_if_stale(c->srv);
	j = sc_store_list_json(c->srv->st, anchors);
	X509_STORE_free(anchors);
	readers = sc_pcsc_readers(c->srv->pcsc, reason, sizeof(reason));
	sc_pcsc_list_add_readers(j, readers, reason);
	return reply_ok(c, id, j);
}

static int
op_find(struct client *c, int64_t id, json_object *req)
{
	json_object *out = NULL, *cand = NULL;
	const char *ref = arg_str(req, "ref");
	X509_STORE *anchors;
	const char *why;
	int r;

	if ((r = cas_anchors(req, &anchors, &why)) != SC_OK)
		return reply_err(c, id, r, why);
	refresh_if_stale(c->srv);
	r = sc_store_find_cert(c->srv->st, ref, anchors, &out, &cand);
	X509_STORE_free(anchors);
	if (r != SC_OK)
		return ref_error(c, id, r, ref, cand);
	return reply_ok(c, id, out);
}

static int
op_get_cert(struct client *c, int64_t id, json_object *req)
{
	unsigned char *der = NULL;
	size_t derlen = 0;
	json_object *chain = NULL, *res, *cand = NULL, *dummy = NULL;
	const char *ref = arg_str(req, "ref");
	char *b;
	int r;

	r = sc_store_get_cert(c->srv->st, ref, &der, &derlen, arg_bool(req, "chain") ? &chain : NULL);
	if (r != SC_OK) {
		/* For the candidates list in the message. */
		if (r == SC_ERR_NOT_FOUND || r == SC_ERR_AMBIGUOUS)
			sc_store_find_cert(c->srv->st, ref, NULL, &dummy, &cand);
		json_object_put(dummy);
		return ref_error(c, id, r, ref, cand);
	}
	res = json_object_new_object();
	b = sc_b64(der, derlen);
	json_object_object_add(res, "der", json_object_new_string(b ? b : ""));
	free(b);
	free(der);
	if (chain != NULL)
		json_object_object_add(res, "chain", chain);
	return reply_ok(c, id, res);
}

static int
is_token_uri(const char *token)
{
	return token != NULL && strncmp(token, "pkcs11:", 7) == 0;
}

static int tpm_login_message(struct client *c, int r, const char *token, char *msg, size_t len);

static int
login_error(struct client *c, int64_t id, int r, const char *token, json_object *flags)
{
	char msg[512];
	json_object *v;
	int low = flags && json_object_object_get_ex(flags, "pin_count_low", &v) && json_object_get_boolean(v);
	int final = flags && json_object_object_get_ex(flags, "pin_final_try", &v) && json_object_get_boolean(v);
	int in = flags && json_object_object_get_ex(flags, "logged_in", &v) && json_object_get_boolean(v);

	if (r == SC_ERR_PIN_INCORRECT && in)
		return reply_err(c, id, r, "wrong PIN: it is not the PIN the agent is logged in to "
		    "this token with (checked by the agent; the card was not asked and its retry "
		    "counter is unchanged)");
	if (tpm_login_message(c, r, token, msg, sizeof(msg)))
		return reply_err(c, id, r, msg);	/* a TPM says how its lockout stands */
	switch (r) {
	case SC_ERR_PIN_INCORRECT:
		snprintf(msg, sizeof(msg), "wrong PIN for token \"%s\"%s", token,
		    final ? "; one try is left before the PIN locks" :
		    low ? "; few tries are left before the PIN locks" :
		    "; the token counts failed tries and locks after too many");
		break;
	case SC_ERR_PIN_LOCKED:
		snprintf(msg, sizeof(msg), "the PIN of token \"%s\" is locked; unblock it with the "
		    "SO PIN or PUK (for a TPM card, wait for or clear the dictionary-attack lockout)", token);
		break;
	case SC_ERR_PIN_FINAL_TRY:
		snprintf(msg, sizeof(msg), "token \"%s\" has one PIN try left; if you are sure of the "
		    "PIN, confirm with --confirm-final-try", token);
		break;
	case SC_ERR_NOT_FOUND:
		snprintf(msg, sizeof(msg), "no token %s \"%s\"; see `scagent list`",
		    is_token_uri(token) ? "matches" : "labelled", token);
		break;
	case SC_ERR_AMBIGUOUS:
		snprintf(msg, sizeof(msg), "more than one token %s \"%s\": name one with a token URI "
		    "(pkcs11:token=LABEL;serial=SERIAL, serials in `scagent list`)",
		    is_token_uri(token) ? "matches" : "is labelled", token);
		break;
	case SC_ERR_INVALID:
		snprintf(msg, sizeof(msg), "\"%s\" is not a valid token URI (RFC 7512: "
		    "pkcs11:token=LABEL;serial=SERIAL)", token);
		break;
	case SC_ERR_ALREADY:
		snprintf(msg, sizeof(msg), "already logged in to token \"%s\" (with this PIN)", token);
		break;
	case SC_ERR_DENIED:
		snprintf(msg, sizeof(msg), "the agent is logged in to token \"%s\" without a PIN it "
		    "can check (the token was logged in when the agent logged in): log out with "
		    "`scagent logout --token %s` and log in again", token, token);
		break;
	case SC_ERR_NOT_LOGGED_IN:
		snprintf(msg, sizeof(msg), "not logged in to token \"%s\"", token);
		break;
	default:
		snprintf(msg, sizeof(msg), "login to token \"%s\" failed: %s", token, sc_strerror(r));
	}
	return reply_err(c, id, r, msg);
}

/* A token's label for an event, also when the request named it by URI. */
static const char *
event_label(struct client *c, const char *token, char *label, size_t len)
{
	if (!is_token_uri(token) || sc_store_token_label(c->srv->st, token, label, len) != SC_OK)
		snprintf(label, len, "%s", token);
	return label;
}

/* Fields of a login/logout event. */
static json_object *
token_fields(const char *token, const char *reason)
{
	json_object *o = json_object_new_object();

	if (token != NULL)
		sc_json_add_text(o, "token", token);
	if (reason != NULL)
		json_object_object_add(o, "reason", json_object_new_string(reason));
	return o;
}

/* Ask for the PIN through pinentry and log in once. */
static int
login_with_pinentry(struct client *c, const char *token, int confirm, json_object **flags)
{
	char *pin = NULL;
	char desc[512];
	int r;

	if (c->srv->o.pinentry == NULL)
		return SC_ERR_NOT_LOGGED_IN;
	snprintf(desc, sizeof(desc), "Enter the PIN of smart card \"%s\" for %s", token, c->exe);
	if ((r = sc_pinentry_getpin(c->srv->o.pinentry, desc, &pin)) != SC_OK)
		return r;
	r = sc_store_login(c->srv->st, token, pin, confirm, flags);
	sc_secstr_free(pin);
	if (r == SC_OK)
		monitor_kick(c->srv);	/* a new idle-logout deadline */
	return r;
}

static int
op_login(struct client *c, int64_t id, json_object *req)
{
	const char *token = arg_str(req, "token"), *pin = arg_str(req, "pin");
	json_object *flags = NULL, *res;
	char detail[256], label[256];
	int r;

	refresh_if_stale(c->srv);	/* a token that just arrived can be logged in to */
	if (pin == NULL && c->srv->o.pinentry == NULL)
		return reply_err(c, id, SC_ERR_INVALID, "login needs \"pin\": this agent has no "
		    "pinentry program to ask for it (scagentd --pinentry PROGRAM)");
	if (pin != NULL)
		r = sc_store_login(c->srv->st, token, pin, arg_bool(req, "confirm_final_try"), &flags);
	else
		r = login_with_pinentry(c, token, arg_bool(req, "confirm_final_try"), &flags);
	snprintf(detail, sizeof(detail), "token=\"%s\"", token);
	audit(c->srv, c, "login", detail, r);
	if (r != SC_OK) {
		r = login_error(c, id, r, token, flags);
		json_object_put(flags);
		return r;
	}
	res = json_object_new_object();
	json_object_object_add(res, "flags", flags);
	monitor_kick(c->srv);	/* a new idle-logout deadline */
	sc_server_broadcast(c->srv, "login", token_fields(event_label(c, token, label, sizeof(label)), NULL));
	return reply_ok(c, id, res);
}

static int
op_logout(struct client *c, int64_t id, json_object *req)
{
	const char *token = arg_str(req, "token");
	char label[256];
	int r = sc_store_logout(c->srv->st, token);

	if (r != SC_OK)
		return login_error(c, id, r, token, NULL);
	sc_server_broadcast(c->srv, "logout", token_fields(event_label(c, token, label, sizeof(label)), NULL));
	return reply_ok(c, id, NULL);
}

/* The certificate REF names, for messages and the audit log. */
struct sign_facts {
	char sha[80];			/* fingerprint, "?" when unknown */
	char tok[128];			/* token label, "LABEL" when unknown */
	char keytype[16];		/* "rsa", "ec", "?" */
	char label[128];		/* the certificate's label, "" when unknown */
};

static void
sign_facts(struct client *c, const char *ref, struct sign_facts *f)
{
	json_object *found = NULL, *v, *key;

	snprintf(f->sha, sizeof(f->sha), "?");
	snprintf(f->tok, sizeof(f->tok), "LABEL");
	snprintf(f->keytype, sizeof(f->keytype), "?");
	f->label[0] = '\0';
	if (sc_store_find_cert(c->srv->st, ref, NULL, &found, NULL) != SC_OK)
		return;
	if (json_object_object_get_ex(found, "sha256", &v))
		snprintf(f->sha, sizeof(f->sha), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(found, "token", &v))
		snprintf(f->tok, sizeof(f->tok), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(found, "label", &v))
		snprintf(f->label, sizeof(f->label), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(found, "key", &key) && json_object_object_get_ex(key, "type", &v))
		snprintf(f->keytype, sizeof(f->keytype), "%s", json_object_get_string(v));
	json_object_put(found);
}

/* The arguments of sign and sign-key: alg, and exactly one of data and digest. */
static int
sign_args(json_object *req, int *alg, unsigned char **in, size_t *inlen, int *is_digest,
    char *msg, size_t msglen)
{
	const char *algname = arg_str(req, "alg");
	const char *data = arg_str(req, "data"), *digest = arg_str(req, "digest");

	*in = NULL;
	*inlen = 0;
	if ((*alg = sc_alg_parse(algname)) < 0) {
		snprintf(msg, msglen, "unknown algorithm \"%.64s\"; use rsa-pkcs1-sha256|384|512, "
		    "rsa-pss-sha256|384|512 or ecdsa-sha256|384|512", algname);
		return SC_ERR_INVALID;
	}
	if ((data == NULL) == (digest == NULL)) {
		snprintf(msg, msglen, "give exactly one of \"data\" and \"digest\"");
		return SC_ERR_INVALID;
	}
	if (sc_unb64(data ? data : digest, in, inlen) != SC_OK) {
		snprintf(msg, msglen, "\"data\"/\"digest\" is not valid base64");
		return SC_ERR_INVALID;
	}
	*is_digest = digest != NULL;
	if (*is_digest && *inlen != (size_t)EVP_MD_get_size(sc_alg_md(*alg))) {
		snprintf(msg, msglen, "\"digest\" has %zu bytes; %s wants a %d-byte hash",
		    *inlen, algname, EVP_MD_get_size(sc_alg_md(*alg)));
		free(*in);
		*in = NULL;
		return SC_ERR_INVALID;
	}
	return SC_OK;
}

/*
 * A key that needs its PIN for every signature (CKA_ALWAYS_AUTHENTICATE)
 * and got none in the request: ask pinentry once. *pin is locked memory.
 */
static int
key_pin_from_pinentry(struct client *c, const char *what, const char *token, char **pin)
{
	char desc[1024];

	*pin = NULL;
	if (c->srv->o.pinentry == NULL)
		return SC_ERR_PIN_REQUIRED;
	snprintf(desc, sizeof(desc), "Enter the PIN for one signature with %s on smart card \"%s\" "
	    "for %s (this key asks for it every time)", what, token, c->exe);
	return sc_pinentry_getpin(c->srv->o.pinentry, desc, pin);
}

/* The message of a PIN error of a per-signature PIN (key on token). */
static void
key_pin_message(int r, const char *key, const char *token, int asked, char *msg, size_t len)
{
	switch (r) {
	case SC_ERR_PIN_REQUIRED:
		snprintf(msg, len, "%s on token \"%s\" needs its PIN for every signature "
		    "(CKA_ALWAYS_AUTHENTICATE): give it with --pin-stdin (protocol: \"pin\") or run "
		    "scagentd with --pinentry; no PIN was tried", key, token);
		break;
	case SC_ERR_PIN_INCORRECT:
		snprintf(msg, len, "wrong PIN for %s on token \"%s\"%s (tried once): nothing was "
		    "signed", key, token, asked ? ", asked through pinentry" : "");
		break;
	case SC_ERR_PIN_LOCKED:
		snprintf(msg, len, "the PIN of token \"%s\" is locked: nothing was tried; unblock it "
		    "with the SO PIN or PUK", token);
		break;
	case SC_ERR_PIN_FINAL_TRY:
		snprintf(msg, len, "token \"%s\" has one PIN try left: nothing was tried; if you are "
		    "sure of the PIN, repeat with --confirm-final-try (protocol: "
		    "\"confirm_final_try\")", token);
		break;
	case SC_ERR_PIN_INVALID:
		snprintf(msg, len, "the PIN for %s on token \"%s\" has an invalid length or "
		    "characters: nothing was signed", key, token);
		break;
	case SC_ERR_CANCELLED:
		snprintf(msg, len, "the PIN entry for %s on token \"%s\" was cancelled: nothing was "
		    "signed", key, token);
		break;
	default:
		snprintf(msg, len, "signing with %s failed: %s", key, sc_strerror(r));
	}
}

static int
is_key_pin_error(int r)
{
	return r == SC_ERR_PIN_REQUIRED || r == SC_ERR_PIN_INCORRECT || r == SC_ERR_PIN_LOCKED ||
	    r == SC_ERR_PIN_FINAL_TRY || r == SC_ERR_PIN_INVALID;
}

/* {"signature": base64}; frees sig. */
static int
reply_signature(struct client *c, int64_t id, unsigned char *sig, size_t siglen)
{
	json_object *res;
	char *b64 = sc_b64(sig, siglen);

	free(sig);
	if (b64 == NULL)
		return reply_err(c, id, SC_ERR_NOMEM, NULL);
	res = json_object_new_object();
	json_object_object_add(res, "signature", json_object_new_string(b64));
	free(b64);
	return reply_ok(c, id, res);
}

static int
op_sign(struct client *c, int64_t id, json_object *req)
{
	const char *ref = arg_str(req, "ref"), *algname = arg_str(req, "alg");
	unsigned char *in = NULL, *sig = NULL;
	size_t inlen = 0, siglen = 0;
	json_object *cand = NULL, *dummy = NULL;
	struct sc_sign_pin sp = { arg_str(req, "pin"), arg_bool(req, "confirm_final_try") };
	struct sc_sign_req rq;
	struct sc_sign_info info = { "" };
	char msg[1024], detail[512], what[300];
	struct sign_facts sf = { .sha = "?", .tok = "LABEL", .keytype = "?" };
	char *asked = NULL;
	int alg, is_digest = 0, via_pinentry = 0, login_failed = 0, r;

	if ((r = sign_args(req, &alg, &in, &inlen, &is_digest, msg, sizeof(msg))) != SC_OK)
		return reply_err(c, id, r, msg);
	rq = (struct sc_sign_req){ ref, alg, is_digest, in, inlen, &sp };
	if (c->srv->o.confirm_sign && c->srv->o.pinentry != NULL) {
		sign_facts(c, ref, &sf);
		snprintf(detail, sizeof(detail), "cert=%s alg=%s", sf.sha, algname);
		snprintf(msg, sizeof(msg), "Allow %s (pid %ld) to sign with \"%s\"?", c->exe, (long)c->pid, ref);
		if ((r = sc_pinentry_confirm(c->srv->o.pinentry, msg)) != SC_OK) {
			free(in);
			audit(c->srv, c, "sign", detail, SC_ERR_DENIED);
			return reply_err(c, id, SC_ERR_DENIED, "the signature was not confirmed");
		}
	}
	/* The fingerprint for the audit line comes with the signature, if it is wanted. */
	r = sc_store_sign(c->srv->st, &rq, &sig, &siglen, audit_on(c->srv) ? &info : NULL);
	/* Facts for the audit line and the messages (looked up again only on failure). */
	if (r != SC_OK)
		sign_facts(c, ref, &sf);
	if (r == SC_ERR_NOT_LOGGED_IN && c->srv->o.pinentry != NULL && strcmp(sf.sha, "?") != 0) {
		/* Ask once for the PIN of the key's token, then sign once more. */
		int lr = login_with_pinentry(c, sf.tok, 0, NULL);
		char ldetail[200];

		snprintf(ldetail, sizeof(ldetail), "token=\"%s\" via=pinentry", sf.tok);
		if (lr != SC_ERR_NOT_LOGGED_IN)
			audit(c->srv, c, "login", ldetail, lr);
		if (lr == SC_OK) {
			sc_server_broadcast(c->srv, "login", token_fields(sf.tok, NULL));
			r = sc_store_sign(c->srv->st, &rq, &sig, &siglen, &info);
		} else if (lr != SC_ERR_NOT_LOGGED_IN) {
			r = lr;
			login_failed = 1;	/* the token's PIN, not the key's */
		}
	}
	snprintf(what, sizeof(what), "the key of \"%s\"", sf.label[0] ? sf.label : ref);
	if (r == SC_ERR_PIN_REQUIRED && c->srv->o.pinentry != NULL) {
		/* The key wants a PIN for this signature and the client gave none: ask once. */
		via_pinentry = 1;
		if ((r = key_pin_from_pinentry(c, what, sf.tok, &asked)) == SC_OK) {
			sp.pin = asked;
			r = sc_store_sign(c->srv->st, &rq, &sig, &siglen, &info);
		}
	}
	sc_secstr_free(asked);
	free(in);
	if (info.sha256[0] != '\0')
		snprintf(sf.sha, sizeof(sf.sha), "%s", info.sha256);
	snprintf(detail, sizeof(detail), "cert=%s alg=%s", sf.sha, algname);
	audit(c->srv, c, "sign", detail, r);
	if (r != SC_OK) {
		if (r == SC_ERR_NOT_FOUND || r == SC_ERR_AMBIGUOUS || r == SC_ERR_INVALID) {
			if (r != SC_ERR_INVALID)
				sc_store_find_cert(c->srv->st, ref, NULL, &dummy, &cand);
			json_object_put(dummy);
			return ref_error(c, id, r, ref, cand);
		}
		if (!login_failed && (is_key_pin_error(r) || (r == SC_ERR_CANCELLED && via_pinentry))) {
			key_pin_message(r, what, sf.tok, via_pinentry, msg, sizeof(msg));
			return reply_err(c, id, r, msg);
		}
		switch (r) {
		case SC_ERR_NOT_LOGGED_IN:
			snprintf(msg, sizeof(msg), "the token \"%s\" holding \"%s\" needs a login: run "
			    "`scagent login --token %s` first", sf.tok, ref, sf.tok);
			break;
		case SC_ERR_PIN_INCORRECT:
			snprintf(msg, sizeof(msg), "wrong PIN for token \"%s\" (asked through pinentry, "
			    "tried once): nothing was signed", sf.tok);
			break;
		case SC_ERR_CANCELLED:
			snprintf(msg, sizeof(msg), "the PIN entry for token \"%s\" was cancelled: "
			    "nothing was signed", sf.tok);
			break;
		case SC_ERR_KEY:
			if (strcmp(sf.keytype, "ec") == 0 && sc_alg_family(alg) != 3)
				snprintf(msg, sizeof(msg), "the key of \"%s\" is an EC key and cannot make "
				    "a %s signature; use ecdsa-sha256|384|512", ref, algname);
			else if (strcmp(sf.keytype, "rsa") == 0 && sc_alg_family(alg) == 3)
				snprintf(msg, sizeof(msg), "the key of \"%s\" is an RSA key and cannot make "
				    "a %s signature; use rsa-pkcs1-* or rsa-pss-*", ref, algname);
			else
				snprintf(msg, sizeof(msg), "the key of \"%s\" cannot make a %s signature "
				    "(no private key with its ID on the token)", ref, algname);
			break;
		case SC_ERR_MECHANISM:
			snprintf(msg, sizeof(msg), "the token holding \"%s\" does not support %s", ref, algname);
			break;
		case SC_ERR_TOKEN_REMOVED:
			snprintf(msg, sizeof(msg), "the token \"%s\" was removed or reset while signing "
			    "with \"%s\"; insert it and log in again", sf.tok, ref);
			break;
		case SC_ERR_BAD_SIGNATURE:
			snprintf(msg, sizeof(msg), "the token \"%s\" returned a signature with \"%s\" that "
			    "does not verify; it was discarded (the token may be faulty)", sf.tok, ref);
			break;
		default:
			snprintf(msg, sizeof(msg), "signing with \"%s\" failed: %s", ref, sc_strerror(r));
		}
		return reply_err(c, id, r, msg);
	}
	return reply_signature(c, id, sig, siglen);
}

static int
op_status(struct client *c, int64_t id, json_object *req)
{
	json_object *res = json_object_new_object(), *list, *toks, *out = json_object_new_array();
	json_object *readers, *pcsc;
	char reason[256];

	json_object_object_add(res, "agent", json_object_new_string("scagentd " PACKAGE_VERSION));
	json_object_object_add(res, "protocol", json_object_new_int(SC_PROTO_VERSION));
	json_object_object_add(res, "pid", json_object_new_int64((int64_t)getpid()));
	json_object_object_add(res, "uptime", json_object_new_int64(
	    (int64_t)((sc_now_ms() - c->srv->started) / 1000)));
	pthread_mutex_lock(&c->srv->lock);
	json_object_object_add(res, "clients", json_object_new_int(c->srv->nclients));
	pthread_mutex_unlock(&c->srv->lock);
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
	pcsc = json_object_new_object();
	readers = sc_pcsc_readers(c->srv->pcsc, reason, sizeof(reason));
	json_object_object_add(pcsc, "available", json_object_new_boolean(readers != NULL));
	if (readers != NULL)
		json_object_object_add(pcsc, "readers", json_object_new_int(
		    (int)json_object_array_length(readers)));
	else
		json_object_object_add(pcsc, "reason", json_object_new_string(reason));
	json_object_put(readers);
	json_object_object_add(res, "pcsc", pcsc);
	return reply_ok(c, id, res);
}

static int
op_watch(struct client *c, int64_t id, json_object *req)
{
	int r = reply_ok(c, id, NULL);

	pthread_mutex_lock(&c->srv->evlock);
	c->watching = 1;
	pthread_mutex_unlock(&c->srv->evlock);
	return r;
}

static int
op_refresh(struct client *c, int64_t id, json_object *req)
{
	int changed = 0, r = server_refresh(c->srv, 1, &changed);
	json_object *res = json_object_new_object();

	json_object_object_add(res, "changed", json_object_new_boolean(changed));
	if (r != SC_OK)
		json_object_object_add(res, "warning", json_object_new_string(sc_strerror(r)));
	return reply_ok(c, id, res);
}

static int
op_mechanisms(struct client *c, int64_t id, json_object *req)
{
	const char *token = arg_str(req, "token");
	json_object *res = NULL;
	int r = sc_store_mechanisms(c->srv->st, token, &res);

	if (r != SC_OK)
		return login_error(c, id, r, token, NULL);
	return reply_ok(c, id, res);
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

/* ------------------------------------------------------------------ */
/* TPM virtual smart cards and enrolment */

/*
 * For a token on a TPM: the PIN error with the TPM's dictionary-attack
 * state. Returns 0 when the token is not on a TPM or the TPM cannot be read.
 */
static int
tpm_login_message(struct client *c, int r, const char *token, char *msg, size_t len)
{
	json_object *l = NULL, *v;
	unsigned long counter, max, interval;
	char d1[32], d2[32];

	if (r != SC_ERR_PIN_INCORRECT && r != SC_ERR_PIN_LOCKED && r != SC_ERR_PIN_FINAL_TRY)
		return 0;
	if (sc_store_tpm_lockout(c->srv->st, token, &l) != SC_OK)
		return 0;
	counter = json_object_object_get_ex(l, "counter", &v) ? (unsigned long)json_object_get_int64(v) : 0;
	max = json_object_object_get_ex(l, "max_tries", &v) ? (unsigned long)json_object_get_int64(v) : 0;
	interval = json_object_object_get_ex(l, "interval", &v) ? (unsigned long)json_object_get_int64(v) : 0;
	json_object_put(l);
	sc_tpm_duration(interval, d1, sizeof(d1));
	switch (r) {
	case SC_ERR_PIN_INCORRECT:
		snprintf(msg, len, "wrong PIN for TPM token \"%s\"; the TPM has counted %lu of %lu failed "
		    "tries before its dictionary-attack lockout (it forgives one every %s)",
		    token, counter, max, d1);
		break;
	case SC_ERR_PIN_FINAL_TRY:
		snprintf(msg, len, "TPM token \"%s\": %lu of %lu failed tries are counted, one more wrong "
		    "PIN locks the TPM for at least %s; if you are sure of the PIN, confirm with "
		    "--confirm-final-try", token, counter, max, d1);
		break;
	default:
		if (interval == 0)
			snprintf(msg, len, "the TPM holding token \"%s\" is in dictionary-attack lockout "
			    "(%lu failed tries, the limit is %lu) and does not recover by itself: the TPM "
			    "owner must clear it (tpm2_dictionarylockout --clear-lockout)", token, counter, max);
		else
			snprintf(msg, len, "the TPM holding token \"%s\" is in dictionary-attack lockout "
			    "(%lu failed tries, the limit is %lu): no PIN was tried. It forgives one failed "
			    "try every %s, so a PIN can be tried again in at most %s (all forgiven in %s); "
			    "the TPM owner can clear the lockout at once (tpm2_dictionarylockout "
			    "--clear-lockout)", token, counter, max, d1, d1,
			    sc_tpm_duration(counter * interval, d2, sizeof(d2)));
	}
	return 1;
}

static int
op_init_token(struct client *c, int64_t id, json_object *req)
{
	const char *label = arg_str(req, "label");
	json_object *res;
	char why[512], detail[256];
	int r;

	r = sc_store_init_token(c->srv->st, label, arg_str(req, "so_pin"), arg_str(req, "pin"),
	    why, sizeof(why));
	snprintf(detail, sizeof(detail), "token=\"%s\"", label);
	audit(c->srv, c, "init-token", detail, r);
	/* Also after a failure: the token may exist without its user PIN. */
	server_refresh(c->srv, 1, NULL);	/* token-added, changed */
	if (r != SC_OK)
		return reply_err(c, id, r, *why ? why : sc_strerror(r));
	res = json_object_new_object();
	sc_json_add_text(res, "label", label);
	json_object_object_add(res, "module", json_object_new_string(sc_store_vsc_module(c->srv->st)));
	return reply_ok(c, id, res);
}

static int
op_delete_token(struct client *c, int64_t id, json_object *req)
{
	const char *label = arg_str(req, "label");
	char why[512], detail[256];
	int r;

	r = sc_store_delete_token(c->srv->st, label, why, sizeof(why));
	snprintf(detail, sizeof(detail), "token=\"%s\"", label);
	audit(c->srv, c, "delete-token", detail, r);
	server_refresh(c->srv, 1, NULL);	/* token-removed, changed */
	if (r != SC_OK)
		return reply_err(c, id, r, *why ? why : sc_strerror(r));
	return reply_ok(c, id, NULL);
}

static int
op_vsc_list(struct client *c, int64_t id, json_object *req)
{
	return reply_ok(c, id, sc_store_vsc_list_json(c->srv->st));
}

static int
op_keygen(struct client *c, int64_t id, json_object *req)
{
	const char *token = arg_str(req, "token"), *type = arg_str(req, "type");
	const char *hexid = arg_str(req, "key_id");
	unsigned char *kid = NULL;
	size_t kidlen = 0;
	json_object *out = NULL;
	char why[512], detail[256];
	int kt = sc_keytype_parse(type), r;

	if (kt < 0) {
		snprintf(why, sizeof(why), "unknown key type \"%.32s\"; use rsa:2048, rsa:3072 or ec:p256", type);
		return reply_err(c, id, SC_ERR_INVALID, why);
	}
	if (hexid != NULL && sc_unhex(hexid, &kid, &kidlen) != SC_OK)
		return reply_err(c, id, SC_ERR_INVALID, "\"key_id\" must be an even number of hex digits");
	r = sc_store_keygen(c->srv->st, token, kt, arg_str(req, "label"), kid, kidlen, &out,
	    why, sizeof(why));
	free(kid);
	snprintf(detail, sizeof(detail), "token=\"%s\" type=%s", token, type);
	audit(c->srv, c, "keygen", detail, r);
	if (r != SC_OK)
		return reply_err(c, id, r, *why ? why : sc_strerror(r));
	sc_server_broadcast(c->srv, "changed", json_object_new_object());
	return reply_ok(c, id, out);
}

static int
op_import(struct client *c, int64_t id, json_object *req)
{
	const char *token = arg_str(req, "token"), *chain64 = arg_str(req, "chain");
	unsigned char *der = NULL, *chain = NULL;
	size_t derlen = 0, chainlen = 0;
	json_object *out = NULL;
	char why[1024], detail[256];
	int r;

	if (sc_unb64(arg_str(req, "cert"), &der, &derlen) != SC_OK ||
	    (chain64 != NULL && sc_unb64(chain64, &chain, &chainlen) != SC_OK)) {
		free(der);
		return reply_err(c, id, SC_ERR_INVALID, "\"cert\"/\"chain\" is not valid base64");
	}
	r = sc_store_import_cert(c->srv->st, token, der, derlen, chain, chainlen, &out,
	    why, sizeof(why));
	free(der);
	free(chain);
	snprintf(detail, sizeof(detail), "token=\"%s\"", token);
	audit(c->srv, c, "import", detail, r);
	if (r != SC_OK)
		return reply_err(c, id, r, *why ? why : sc_strerror(r));
	sc_server_broadcast(c->srv, "changed", json_object_new_object());
	return reply_ok(c, id, out);
}

static int
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

static int
op_get_public_key(struct client *c, int64_t id, json_object *req)
{
	const char *ref = arg_str(req, "ref");
	json_object *out = NULL, *cand = NULL;
	int r = sc_store_find_key(c->srv->st, ref, &out, &cand);

	if (r != SC_OK)
		return key_ref_error(c, id, r, ref, cand);
	json_object_put(cand);
	return reply_ok(c, id, out);
}

static int
op_sign_key(struct client *c, int64_t id, json_object *req)
{
	const char *ref = arg_str(req, "ref"), *algname = arg_str(req, "alg");
	unsigned char *in = NULL, *sig = NULL;
	size_t inlen = 0, siglen = 0;
	json_object *cand = NULL, *dummy = NULL, *found = NULL, *v;
	struct sc_sign_pin sp = { arg_str(req, "pin"), arg_bool(req, "confirm_final_try") };
	struct sc_sign_req rq;
	char msg[1024], detail[512], what[300], tok[128];
	char *asked = NULL;
	int alg, is_digest = 0, via_pinentry = 0, r;

	if ((r = sign_args(req, &alg, &in, &inlen, &is_digest, msg, sizeof(msg))) != SC_OK)
		return reply_err(c, id, r, msg);
	rq = (struct sc_sign_req){ ref, alg, is_digest, in, inlen, &sp };
	if (c->srv->o.confirm_sign && c->srv->o.pinentry != NULL) {
		snprintf(msg, sizeof(msg), "Allow %s (pid %ld) to sign with key \"%s\"?", c->exe,
		    (long)c->pid, ref);
		if (sc_pinentry_confirm(c->srv->o.pinentry, msg) != SC_OK) {
			free(in);
			snprintf(detail, sizeof(detail), "key=\"%s\" alg=%s", ref, algname);
			audit(c->srv, c, "sign-key", detail, SC_ERR_DENIED);
			return reply_err(c, id, SC_ERR_DENIED, "the signature was not confirmed");
		}
	}
	r = sc_store_sign_key(c->srv->st, &rq, &sig, &siglen, NULL);
	snprintf(what, sizeof(what), "key \"%s\"", ref);
	snprintf(tok, sizeof(tok), "LABEL");
	if (is_key_pin_error(r) && sc_store_find_key(c->srv->st, ref, &found, NULL) == SC_OK &&
	    json_object_object_get_ex(found, "token", &v))
		snprintf(tok, sizeof(tok), "%s", json_object_get_string(v));
	json_object_put(found);
	if (r == SC_ERR_PIN_REQUIRED && c->srv->o.pinentry != NULL) {
		/* The key wants a PIN for this signature and the client gave none: ask once. */
		via_pinentry = 1;
		if ((r = key_pin_from_pinentry(c, what, tok, &asked)) == SC_OK) {
			sp.pin = asked;
			r = sc_store_sign_key(c->srv->st, &rq, &sig, &siglen, NULL);
		}
	}
	sc_secstr_free(asked);
	free(in);
	snprintf(detail, sizeof(detail), "key=\"%s\" alg=%s", ref, algname);
	audit(c->srv, c, "sign-key", detail, r);
	if (r == SC_ERR_NOT_FOUND || r == SC_ERR_AMBIGUOUS) {
		sc_store_find_key(c->srv->st, ref, &dummy, &cand);
		json_object_put(dummy);
		return key_ref_error(c, id, r, ref, cand);
	}
	if (is_key_pin_error(r) || (r == SC_ERR_CANCELLED && via_pinentry)) {
		key_pin_message(r, what, tok, via_pinentry, msg, sizeof(msg));
		return reply_err(c, id, r, msg);
	}
	if (r != SC_OK) {
		if (r == SC_ERR_NOT_LOGGED_IN)
			snprintf(msg, sizeof(msg), "the token holding key \"%s\" needs a login: run "
			    "`scagent login --token LABEL` first", ref);
		else if (r == SC_ERR_KEY)
			snprintf(msg, sizeof(msg), "key \"%s\" cannot make a %s signature (no private key, "
			    "or the wrong key type)", ref, algname);
		else
			snprintf(msg, sizeof(msg), "signing with key \"%s\" failed: %s", ref, sc_strerror(r));
		return reply_err(c, id, r, msg);
	}
	return reply_signature(c, id, sig, siglen);
}

static const struct {
	const char *name;
	int (*fn)(struct client *, int64_t, json_object *);
} handlers[] = {
	{ "hello", op_hello }, { "list", op_list }, { "find", op_find },
	{ "get-cert", op_get_cert }, { "login", op_login }, { "logout", op_logout },
	{ "sign", op_sign }, { "status", op_status }, { "watch", op_watch },
	{ "refresh", op_refresh },
	{ "init-token", op_init_token }, { "delete-token", op_delete_token },
	{ "vsc-list", op_vsc_list }, { "keygen", op_keygen }, { "import", op_import },
	{ "get-public-key", op_get_public_key }, { "sign-key", op_sign_key },
	{ "mechanisms", op_mechanisms },
};

static int
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
	for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
		if (strcmp(handlers[i].name, op->name) == 0) {
			r = handlers[i].fn(c, id, req);
			break;
		}
	/* Whatever the handler did, no PIN stays behind in the freed request. */
	sc_proto_wipe_pins(req);
	json_object_put(req);
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
		if (n <= 0) {
			if (partial_since && now - partial_since > c->srv->o.request_timeout_ms) {
				sc_info("client pid %ld: request not completed in time, disconnected", (long)c->pid);
				break;
			}
			if (!c->watching && now - last > CLIENT_IDLE_MS)
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
	client_remove(c);
	return NULL;
}

/*
 * Every client slot is taken: tell the newcomer why before closing, so that
 * it says "busy" and not "no agent". One line that fits any socket buffer,
 * written without waiting; the connection has sent nothing yet, so the
 * answer's id is null.
 */
static void
refuse_busy(struct sc_server *srv, int fd, pid_t pid)
{
	char msg[200], *line;
	size_t len = 0;

	snprintf(msg, sizeof(msg), "the agent is serving %d clients, its maximum: try again later, "
	    "or raise scagentd --max-clients", srv->o.max_clients);
	sc_warn("refused a connection from pid %ld: %d clients already", (long)pid, srv->o.max_clients);
	if ((line = sc_proto_error(-1, SC_ERR_BUSY, msg, &len)) != NULL &&
	    send(fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		sc_debug("could not tell pid %ld the agent is busy: %s", (long)pid, strerror(errno));
	free(line);
	close(fd);
}

static void
accept_client(struct sc_server *srv)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct client *c;
	pthread_attr_t attr;
	pthread_t th;
	char path[64];
	ssize_t n;
	int fd;

	if ((fd = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
		sc_warn("cannot check the peer of a connection: %s", strerror(errno));
		close(fd);
		return;
	}
	if (cred.uid != getuid() && cred.uid != 0) {
		sc_warn("refused a connection from uid %lu (pid %ld): not the agent's user",
		    (unsigned long)cred.uid, (long)cred.pid);
		close(fd);
		return;
	}
	pthread_mutex_lock(&srv->lock);
	if (srv->nclients >= srv->o.max_clients) {
		pthread_mutex_unlock(&srv->lock);
		refuse_busy(srv, fd, cred.pid);
		return;
	}
	pthread_mutex_unlock(&srv->lock);
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return;
	}
	c->srv = srv;
	c->fd = fd;
	c->pid = cred.pid;
	c->uid = cred.uid;
	c->accepted = sc_now_ms();
	snprintf(path, sizeof(path), "/proc/%ld/exe", (long)cred.pid);
	if ((n = readlink(path, c->exe, sizeof(c->exe) - 1)) > 0)
		c->exe[n] = '\0';
	else
		strcpy(c->exe, "?");
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
	if (pthread_create(&th, &attr, client_main, c) != 0) {
		sc_warn("cannot start a thread for a client");
		client_remove(c);
	}
	pthread_attr_destroy(&attr);
}

/* ------------------------------------------------------------------ */
/* Monitor */

/* Wait on srv->cond (lock held) until due (sc_now_ms() time) or a wake-up. */
static void
monitor_wait(struct sc_server *srv, uint64_t due)
{
	uint64_t now = sc_now_ms(), ms = due > now ? due - now : 0;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&srv->cond, &srv->lock, &ts);
}

static void *
monitor_main(void *arg)
{
	struct sc_server *srv = arg;

	pthread_mutex_lock(&srv->lock);
	while (!srv->stopping) {
		uint64_t now = sc_now_ms(), due, login_due = 0;
		int refresh = 0, expire = 0, changed = 0;
		uint64_t burst_at = srv->burst_at;

		due = srv->last_refresh + FALLBACK_REFRESH_MS;
		if (srv->burst < NBURST && srv->burst_at + burst_ms[srv->burst] < due)
			due = srv->burst_at + burst_ms[srv->burst];
		if (srv->o.idle_timeout_ms > 0) {
			pthread_mutex_unlock(&srv->lock);
			login_due = sc_store_login_deadline(srv->st, srv->o.idle_timeout_ms);
			pthread_mutex_lock(&srv->lock);
			if (srv->stopping)
				break;
			if (login_due != 0 && login_due < due)
				due = login_due;
		}
		if (now < due) {
			monitor_wait(srv, due);
			continue;	/* look again: woken early, or now due */
		}
		if (srv->burst < NBURST && srv->burst_at + burst_ms[srv->burst] <= now) {
			/* Steps that are already past collapse into this one. */
			while (srv->burst < NBURST && srv->burst_at + burst_ms[srv->burst] <= now)
				srv->burst++;
			refresh = 1;
		}
		if (srv->last_refresh + FALLBACK_REFRESH_MS <= now)
			refresh = 1;
		expire = login_due != 0 && login_due <= now;
		pthread_mutex_unlock(&srv->lock);
		if (expire && sc_store_expire_logins(srv->st, srv->o.idle_timeout_ms) > 0)
			sc_server_broadcast(srv, "logout", token_fields(NULL, "idle-timeout"));
		if (refresh)
			server_refresh(srv, 1, &changed);
		pthread_mutex_lock(&srv->lock);
		if (changed && burst_at == srv->burst_at)
			srv->burst = NBURST;	/* the card's token came or went: done */
	}
	pthread_mutex_unlock(&srv->lock);
	return NULL;
}

/* ------------------------------------------------------------------ */

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
	srv->started = sc_now_ms();
	srv->last_refresh = srv->started;	/* the caller has just read the slots */
	srv->burst = NBURST;
	pthread_mutex_init(&srv->evlock, NULL);
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->cond, NULL);
	if (pipe2(srv->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		free(srv);
		return NULL;
	}
	if (o->audit_log != NULL && strcmp(o->audit_log, "syslog") != 0) {
		int afd = open(o->audit_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (afd < 0 || (srv->audit = fdopen(afd, "a")) == NULL)
			sc_warn("cannot open the audit log %s: %s", o->audit_log, strerror(errno));
	}
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

int
sc_server_run(struct sc_server *srv)
{
	if ((srv->pcsc = sc_pcsc_new(pcsc_event, srv)) == NULL ||
	    sc_pcsc_start(srv->pcsc) != SC_OK)
		sc_warn("cannot start the PC/SC watcher: card and reader changes are "
		    "seen only when slots are re-read");
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
		if (p[0].revents & POLLIN)
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
	/* Wake clients out of poll() and wait for them to go. */
	for (struct client *c = srv->clients; c; c = c->next)
		shutdown(c->fd, SHUT_RDWR);
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
	close(srv->stop_pipe[0]);
	close(srv->stop_pipe[1]);
	if (srv->audit)
		fclose(srv->audit);
	sc_pcsc_free(srv->pcsc);
	pthread_mutex_destroy(&srv->lock);
	pthread_mutex_destroy(&srv->evlock);
	pthread_cond_destroy(&srv->cond);
	free(srv);
}
