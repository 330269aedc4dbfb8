/*
 * PC/SC watcher. One thread holds its own PC/SC context and sleeps in
 * SCardGetStatusChange(INFINITE) on every reader plus the "\\?PnP?\Notification"
 * pseudo-reader, so it wakes only when a card or a reader comes or goes:
 * nothing is polled while idle. Each wake-up re-reads the state it was told
 * about and compares it with what it knew; the differences become events.
 *
 * When pcscd stops, the blocked call fails with SCARD_E_NO_SERVICE (or a
 * communication error): the context is released, the readers are forgotten
 * (reported as removed) and a new context is tried once a second until
 * pcscd is back.
 *
 * stop() cannot rely on one SCardCancel: pcsc-lite ignores a cancel that
 * arrives before the wait has begun, so it cancels until the thread says it
 * has left.
 */
#include "config.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <winscard.h>
#include "common/err.h"
#include "common/log.h"
#include "common/text.h"
#include "common/util.h"
#include "token/pcsc.h"

#define PNP_READER "\\\\?PnP?\\Notification"
#define RETRY_MS 1000			/* reconnecting to pcscd */
#define NO_PNP_RELIST_MS 5000		/* re-list readers when PnP is missing */
#define MAX_READERS 64
#define REASON_LEN 160

struct reader {
	char *name;
	DWORD state;			/* dwEventState: flags, event count in the high 16 bits */
	unsigned char atr[MAX_ATR_SIZE];
	DWORD atrlen;
};

struct sc_pcsc {
	sc_pcsc_event_fn fn;
	void *arg;
	pthread_mutex_t lock;		/* everything below */
	pthread_cond_t cond;		/* stop and thread exit */
	pthread_t th;
	int started, exited, stopping;
	SCARDCONTEXT ctx;
	int have_ctx;
	int available;			/* -1 not looked yet, 0 unreachable, 1 connected */
	char reason[REASON_LEN];
	struct reader *readers;
	size_t nreaders;
};

/* ------------------------------------------------------------------ */
/* Helpers */

static void
rv_reason(LONG rv, char *buf, size_t len)
{
	if (len == 0)
		return;
	if (rv == SCARD_E_NO_SERVICE)
		snprintf(buf, len, "the PC/SC service (pcscd) is not running");
	else if (rv == SCARD_E_SERVICE_STOPPED || rv == SCARD_F_COMM_ERROR)
		snprintf(buf, len, "the PC/SC service (pcscd) stopped");
	else
		snprintf(buf, len, "PC/SC: %s (0x%08lX)", pcsc_stringify_error(rv),
		    (unsigned long)rv);
}

static void
readers_free(struct reader *v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++)
		free(v[i].name);
	free(v);
}

static int
card_present(DWORD state)
{
	return (state & SCARD_STATE_PRESENT) != 0;
}

static json_object *
reader_json(const struct reader *r)
{
	json_object *j = json_object_new_object();
	int present = card_present(r->state);

	sc_json_add_text(j, "name", r->name);
	json_object_object_add(j, "card_present", json_object_new_boolean(present));
	if (present && r->atrlen > 0) {
		char *hex = sc_hex(r->atr, r->atrlen);
		json_object_object_add(j, "atr", json_object_new_string(hex ? hex : ""));
		free(hex);
	}
	json_object_object_add(j, "mute", json_object_new_boolean(
	    present && (r->state & SCARD_STATE_MUTE) != 0));
	json_object_object_add(j, "in_use", json_object_new_boolean(
	    (r->state & (SCARD_STATE_INUSE | SCARD_STATE_EXCLUSIVE)) != 0));
	return j;
}

/* Queue one event (the name kept under "event" until it is emitted). */
static json_object *
queue(json_object *q, const char *event, const char *reader)
{
	json_object *e = json_object_new_object();

	json_object_object_add(e, "event", json_object_new_string(event));
	if (reader != NULL)
		sc_json_add_text(e, "reader", reader);
	json_object_array_add(q, e);
	return e;
}

static void
queue_card_inserted(json_object *q, const struct reader *r)
{
	json_object *e = queue(q, "card-inserted", r->name);
	char *hex = sc_hex(r->atr, r->atrlen);

	json_object_object_add(e, "atr", json_object_new_string(hex ? hex : ""));
	free(hex);
}

/* Hand queued events to the callback; called with no lock held. */
static void
emit(struct sc_pcsc *p, json_object *q)
{
	size_t n = q ? json_object_array_length(q) : 0;

	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_get(json_object_array_get_idx(q, i));
		char name[32];

		snprintf(name, sizeof(name), "%s",
		    json_object_get_string(json_object_object_get(e, "event")));
		json_object_object_del(e, "event");
		if (p->fn != NULL)
			p->fn(p->arg, name, e);
		else
			json_object_put(e);
	}
	json_object_put(q);
}

/* ------------------------------------------------------------------ */
/* Reading PC/SC */

/* Reader names (a NULL-terminated array of copies); SCARD_S_SUCCESS with none. */
static LONG
list_readers(SCARDCONTEXT ctx, char ***names, size_t *n)
{
	char *buf = NULL, **v = NULL;
	DWORD len = 0;
	LONG rv;
	size_t cnt = 0;

	*names = NULL;
	*n = 0;
	rv = SCardListReaders(ctx, NULL, NULL, &len);
	if (rv == SCARD_E_NO_READERS_AVAILABLE)
		return SCARD_S_SUCCESS;
	if (rv != SCARD_S_SUCCESS)
		return rv;
	if (len == 0 || len > 1 << 20 || (buf = calloc(1, (size_t)len + 1)) == NULL)
		return SCARD_E_NO_MEMORY;
	rv = SCardListReaders(ctx, NULL, buf, &len);
	if (rv == SCARD_E_NO_READERS_AVAILABLE)
		rv = SCARD_S_SUCCESS;
	if (rv != SCARD_S_SUCCESS) {
		free(buf);
		return rv;
	}
	if ((v = calloc(MAX_READERS + 1, sizeof(*v))) == NULL) {
		free(buf);
		return SCARD_E_NO_MEMORY;
	}
	for (char *s = buf; s < buf + len && *s != '\0' && cnt < MAX_READERS; s += strlen(s) + 1) {
		if ((v[cnt] = strdup(s)) == NULL) {
			rv = SCARD_E_NO_MEMORY;
			break;
		}
		cnt++;
	}
	free(buf);
	if (rv != SCARD_S_SUCCESS) {
		for (size_t i = 0; i < cnt; i++)
			free(v[i]);
		free(v);
		return rv;
	}
	*names = v;
	*n = cnt;
	return SCARD_S_SUCCESS;
}

static void
names_free(char **v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++)
		free(v[i]);
	free(v);
}

/* Readers from the first n entries of a state array (copies). */
static struct reader *
readers_from_states(const SCARD_READERSTATE *st, size_t n)
{
	struct reader *v = calloc(n + 1, sizeof(*v));

	if (v == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if ((v[i].name = strdup(st[i].szReader)) == NULL) {
			readers_free(v, i);
			return NULL;
		}
		v[i].state = (DWORD)st[i].dwEventState;
		v[i].atrlen = st[i].cbAtr <= MAX_ATR_SIZE ? (DWORD)st[i].cbAtr : 0;
		memcpy(v[i].atr, st[i].rgbAtr, v[i].atrlen);
	}
	return v;
}

/* ------------------------------------------------------------------ */
/* State changes */

static const struct reader *
find_reader(const struct reader *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

/*
 * Replace what is known with nv (taken) and queue the differences. Called
 * with p->lock held.
 */
static void
apply_locked(struct sc_pcsc *p, struct reader *nv, size_t nn, json_object *q)
{
	if (p->available != 1) {
		json_object *e = queue(q, "pcsc-available", NULL);
		json_object_object_add(e, "readers", json_object_new_int((int)nn));
		sc_info("PC/SC available: %zu reader%s", nn, nn == 1 ? "" : "s");
		p->available = 1;
		p->reason[0] = '\0';
	}
	for (size_t i = 0; i < p->nreaders; i++) {
		const struct reader *o = &p->readers[i];
		if (find_reader(nv, nn, o->name) != NULL)
			continue;
		if (card_present(o->state))
			queue(q, "card-removed", o->name);
		queue(q, "reader-removed", o->name);
	}
	for (size_t i = 0; i < nn; i++) {
		const struct reader *r = &nv[i];
		const struct reader *o = find_reader(p->readers, p->nreaders, r->name);
		int was = o != NULL && card_present(o->state), is = card_present(r->state);

		if (o == NULL)
			queue(q, "reader-added", r->name);
		if (was && is && ((o->state >> 16) != (r->state >> 16) || o->atrlen != r->atrlen ||
		    memcmp(o->atr, r->atr, r->atrlen) != 0)) {
			/* Removed and inserted again between two looks. */
			queue(q, "card-removed", r->name);
			queue_card_inserted(q, r);
		} else if (was && !is)
			queue(q, "card-removed", r->name);
		else if (!was && is)
			queue_card_inserted(q, r);
	}
	readers_free(p->readers, p->nreaders);
	p->readers = nv;
	p->nreaders = nn;
}

/* PC/SC went away (or never came): forget the readers and say so. */
static void
set_unavailable(struct sc_pcsc *p, LONG rv)
{
	json_object *q = json_object_new_array(), *e;

	pthread_mutex_lock(&p->lock);
	if (p->have_ctx) {
		SCardReleaseContext(p->ctx);
		p->have_ctx = 0;
	}
	if (p->available != 0) {
		rv_reason(rv, p->reason, sizeof(p->reason));
		sc_info("PC/SC unavailable: %s; retrying every %d ms", p->reason, RETRY_MS);
		e = queue(q, "pcsc-unavailable", NULL);
		json_object_object_add(e, "reason", json_object_new_string(p->reason));
		/* The readers cannot be seen any more: report them gone. */
		for (size_t i = 0; i < p->nreaders; i++) {
			if (card_present(p->readers[i].state))
				queue(q, "card-removed", p->readers[i].name);
			queue(q, "reader-removed", p->readers[i].name);
		}
		readers_free(p->readers, p->nreaders);
		p->readers = NULL;
		p->nreaders = 0;
		p->available = 0;
	}
	pthread_mutex_unlock(&p->lock);
	emit(p, q);
}

static int
is_stopping(struct sc_pcsc *p)
{
	int s;

	pthread_mutex_lock(&p->lock);
	s = p->stopping;
	pthread_mutex_unlock(&p->lock);
	return s;
}

/* Sleep ms or until stop; no busy loop. */
static void
pause_ms(struct sc_pcsc *p, long ms)
{
	struct timespec ts = sc_deadline(CLOCK_MONOTONIC, ms);

	pthread_mutex_lock(&p->lock);
	while (!p->stopping) {
		if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&p->lock);
}

/*
 * One connected session: read the readers, then wait for changes until the
 * service goes away or we are stopped. Returns the PC/SC code that ended it.
 */
static LONG
watch_session(struct sc_pcsc *p, SCARDCONTEXT ctx)
{
	SCARD_READERSTATE st[MAX_READERS + 1];
	char **names = NULL;
	size_t n = 0;
	int relist = 1, pnp = 1, idle_wakeups = 0;
	LONG rv = SCARD_S_SUCCESS;

	for (;;) {
		if (is_stopping(p)) {
			rv = SCARD_E_CANCELLED;
			break;
		}
		if (relist) {
			struct reader *nv;
			json_object *q;

			names_free(names, n);
			names = NULL;
			n = 0;
			if ((rv = list_readers(ctx, &names, &n)) == SCARD_E_INSUFFICIENT_BUFFER) {
				pause_ms(p, 50);	/* the list changed between two calls */
				continue;
			}
			if (rv != SCARD_S_SUCCESS)
				break;
			memset(st, 0, sizeof(st));
			for (size_t i = 0; i < n; i++) {
				st[i].szReader = names[i];
				st[i].dwCurrentState = SCARD_STATE_UNAWARE;
			}
			st[n].szReader = PNP_READER;
			st[n].dwCurrentState = pnp ? SCARD_STATE_UNAWARE : SCARD_STATE_IGNORE;
			rv = SCardGetStatusChange(ctx, 0, st, (DWORD)n + 1);
			if (rv == SCARD_E_TIMEOUT)
				rv = SCARD_S_SUCCESS;
			if (rv == SCARD_E_UNKNOWN_READER) {
				/* A reader left while we listed: look again shortly. */
				pause_ms(p, 100);
				continue;
			}
			if (rv != SCARD_S_SUCCESS)
				break;
			if (pnp && (st[n].dwEventState & SCARD_STATE_UNKNOWN)) {
				sc_info("PC/SC: no reader plug-and-play notification; re-listing "
				    "readers every %d s", NO_PNP_RELIST_MS / 1000);
				pnp = 0;
			}
			if ((nv = readers_from_states(st, n)) == NULL && n > 0) {
				rv = SCARD_E_NO_MEMORY;
				break;
			}
			q = json_object_new_array();
			pthread_mutex_lock(&p->lock);
			apply_locked(p, nv, n, q);
			pthread_mutex_unlock(&p->lock);
			emit(p, q);
			relist = 0;
		}
		for (size_t i = 0; i <= n; i++)
			st[i].dwCurrentState = st[i].dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
		if (!pnp)
			st[n].dwCurrentState = SCARD_STATE_IGNORE;
		rv = SCardGetStatusChange(ctx, pnp ? INFINITE : NO_PNP_RELIST_MS, st, (DWORD)n + 1);
		if (rv == SCARD_E_TIMEOUT) {
			relist = !pnp;
			continue;
		}
		if (rv == SCARD_E_CANCELLED)
			continue;	/* the loop's top tells a stop from a stray cancel */
		if (rv == SCARD_E_UNKNOWN_READER || rv == SCARD_E_NO_READERS_AVAILABLE) {
			relist = 1;
			continue;
		}
		if (rv != SCARD_S_SUCCESS)
			break;
		if (pnp && (st[n].dwEventState & SCARD_STATE_CHANGED)) {
			relist = 1;
			continue;
		}
		{
			struct reader *nv = readers_from_states(st, n);
			json_object *q = json_object_new_array();
			size_t nq;

			if (nv == NULL && n > 0) {
				json_object_put(q);
				rv = SCARD_E_NO_MEMORY;
				break;
			}
			pthread_mutex_lock(&p->lock);
			apply_locked(p, nv, n, q);
			pthread_mutex_unlock(&p->lock);
			nq = json_object_array_length(q);
			emit(p, q);
			/*
			 * A wake-up that changed nothing we report (in-use flags
			 * move when a program connects): fine once in a while, but
			 * never let a reader that flaps turn this into a busy loop.
			 */
			if (nq == 0 && ++idle_wakeups > 20) {
				pause_ms(p, 200);
				idle_wakeups = 0;
			} else if (nq > 0)
				idle_wakeups = 0;
		}
	}
	names_free(names, n);
	return rv;
}

static void *
watch_main(void *arg)
{
	struct sc_pcsc *p = arg;

	while (!is_stopping(p)) {
		SCARDCONTEXT ctx;
		LONG rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);

		if (rv != SCARD_S_SUCCESS) {
			set_unavailable(p, rv);
			pause_ms(p, RETRY_MS);
			continue;
		}
		pthread_mutex_lock(&p->lock);
		p->ctx = ctx;
		p->have_ctx = 1;
		if (p->stopping) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		pthread_mutex_unlock(&p->lock);
		rv = watch_session(p, ctx);
		if (rv == SCARD_E_CANCELLED && is_stopping(p))
			break;
		sc_debug("PC/SC watch ended: %s (0x%08lX)", pcsc_stringify_error(rv), (unsigned long)rv);
		set_unavailable(p, rv);
		pause_ms(p, RETRY_MS);
	}
	pthread_mutex_lock(&p->lock);
	if (p->have_ctx) {
		SCardReleaseContext(p->ctx);
		p->have_ctx = 0;
	}
	p->exited = 1;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Public */

struct sc_pcsc *
sc_pcsc_new(sc_pcsc_event_fn fn, void *arg)
{
	struct sc_pcsc *p;
	pthread_condattr_t ca;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->fn = fn;
	p->arg = arg;
	p->available = -1;
	snprintf(p->reason, sizeof(p->reason), "PC/SC has not been looked at yet");
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	return p;
}

int
sc_pcsc_start(struct sc_pcsc *p)
{
	if (p->started)
		return SC_ERR_ALREADY;
	if (pthread_create(&p->th, NULL, watch_main, p) != 0)
		return SC_ERR_NOMEM;
	p->started = 1;
	return SC_OK;
}

void
sc_pcsc_stop(struct sc_pcsc *p)
{
	if (p == NULL || !p->started)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	pthread_cond_broadcast(&p->cond);
	while (!p->exited) {
		struct timespec ts = sc_deadline(CLOCK_MONOTONIC, 50);

		if (p->have_ctx)
			SCardCancel(p->ctx);
		pthread_cond_timedwait(&p->cond, &p->lock, &ts);
	}
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->th, NULL);
	p->started = 0;
}

void
sc_pcsc_free(struct sc_pcsc *p)
{
	if (p == NULL)
		return;
	sc_pcsc_stop(p);
	readers_free(p->readers, p->nreaders);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}

json_object *
sc_pcsc_readers(struct sc_pcsc *p, char *reason, size_t reasonlen)
{
	json_object *a = NULL;

	if (reason != NULL && reasonlen > 0)
		reason[0] = '\0';
	if (p == NULL) {
		if (reason != NULL && reasonlen > 0)
			snprintf(reason, reasonlen, "the agent does not watch PC/SC");
		return NULL;
	}
	pthread_mutex_lock(&p->lock);
	if (p->available == 1) {
		a = json_object_new_array();
		for (size_t i = 0; i < p->nreaders; i++)
			json_object_array_add(a, reader_json(&p->readers[i]));
	} else if (reason != NULL && reasonlen > 0)
		snprintf(reason, reasonlen, "%s", p->reason);
	pthread_mutex_unlock(&p->lock);
	return a;
}

int
sc_pcsc_snapshot(json_object **readers, char *reason, size_t reasonlen)
{
	SCARD_READERSTATE st[MAX_READERS];
	SCARDCONTEXT ctx;
	struct reader *v = NULL;
	char **names = NULL;
	size_t n = 0;
	LONG rv;
	int r = SC_ERR_DEVICE;

	*readers = NULL;
	if (reason != NULL && reasonlen > 0)
		reason[0] = '\0';
	if ((rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx)) != SCARD_S_SUCCESS) {
		rv_reason(rv, reason, reason ? reasonlen : 0);
		return SC_ERR_DEVICE;
	}
	if ((rv = list_readers(ctx, &names, &n)) != SCARD_S_SUCCESS)
		goto out;
	memset(st, 0, sizeof(st));
	for (size_t i = 0; i < n; i++) {
		st[i].szReader = names[i];
		st[i].dwCurrentState = SCARD_STATE_UNAWARE;
	}
	if (n > 0 && (rv = SCardGetStatusChange(ctx, 0, st, (DWORD)n)) != SCARD_S_SUCCESS &&
	    rv != SCARD_E_TIMEOUT)
		goto out;
	rv = SCARD_S_SUCCESS;
	if ((v = readers_from_states(st, n)) == NULL) {
		r = SC_ERR_NOMEM;
		goto out;
	}
	*readers = json_object_new_array();
	for (size_t i = 0; i < n; i++)
		json_object_array_add(*readers, reader_json(&v[i]));
	r = SC_OK;
out:
	if (rv != SCARD_S_SUCCESS)
		rv_reason(rv, reason, reason ? reasonlen : 0);
	readers_free(v, n);
	names_free(names, n);
	SCardReleaseContext(ctx);
	return r;
}

/* Does a token's "reader" (a PKCS#11 slot description, 64 bytes at most) name this reader? */
static int
same_reader(const char *reader, const char *slot_desc)
{
	size_t n = strlen(slot_desc);

	if (strcmp(reader, slot_desc) == 0)
		return 1;
	/* Slot descriptions are cut at 64 characters and their blanks trimmed. */
	return n >= 48 && strncmp(reader, slot_desc, n) == 0;
}

void
sc_pcsc_list_add_readers(json_object *list, json_object *readers, const char *reason)
{
	json_object *toks = NULL;

	if (readers == NULL) {
		if (reason != NULL)
			json_object_object_add(list, "readers_error", json_object_new_string(reason));
		return;
	}
	json_object_object_get_ex(list, "tokens", &toks);
	for (size_t i = 0; i < json_object_array_length(readers); i++) {
		json_object *r = json_object_array_get_idx(readers, i), *labels, *v;
		const char *name = json_object_get_string(json_object_object_get(r, "name"));
		int present = json_object_object_get_ex(r, "card_present", &v) &&
		    json_object_get_boolean(v);

		labels = json_object_new_array();
		for (size_t k = 0; present && toks != NULL && k < json_object_array_length(toks); k++) {
			json_object *t = json_object_array_get_idx(toks, k), *tr, *tl;
			if (json_object_object_get_ex(t, "reader", &tr) &&
			    json_object_object_get_ex(t, "label", &tl) &&
			    same_reader(name, json_object_get_string(tr)))
				json_object_array_add(labels, json_object_get(tl));
		}
		json_object_object_add(r, "token", json_object_array_length(labels) > 0 ?
		    json_object_get(json_object_array_get_idx(labels, 0)) : NULL);
		json_object_object_add(r, "tokens", labels);
		json_object_object_add(r, "recognized", json_object_new_boolean(
		    present && json_object_array_length(labels) > 0));
	}
	json_object_object_add(list, "readers", readers);
}
