/*
 * The monitor thread re-reads slots when told to (after a PC/SC event, in a
 * short burst because a module may need a moment to see a new card), when a
 * client asks for the inventory, and otherwise only on a long fallback
 * interval (modules without PC/SC, such as SoftHSM). It also logs idle
 * tokens out, and those whose login lifetime is over. It sleeps until the
 * next of these is due: an idle agent uses no CPU. Also here: refresh, the
 * re-read a client asks for.
 */
#include "config.h"
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include "common/err.h"
#include "common/util.h"
#include "daemon/server-private.h"
#include "token/token.h"

#define FALLBACK_REFRESH_MS 30000	/* re-read slots this often without events */
#define STALE_REFRESH_MS 1000		/* a client's list re-reads slots older than this */

/* Slot re-reads after a PC/SC event, in ms after it. */
static const unsigned int burst_ms[] = { 0, 250, 1000, 3000 };
#define NBURST (sizeof(burst_ms) / sizeof(burst_ms[0]))

/* Wake the monitor: something it schedules by has changed. */
void
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
int
server_refresh(struct sc_server *srv, int wait, int *changed_out)
{
	json_object *ev = NULL;
	int changed = 0, r;

	if (changed_out != NULL)
		*changed_out = 0;
	if (srv->sup != NULL) {
		/* The agent: its workers re-read their slots and send the events. */
		sup_refresh_all(srv->sup);
		pthread_mutex_lock(&srv->lock);
		srv->last_refresh = sc_now_ms();
		pthread_mutex_unlock(&srv->lock);
		return SC_OK;
	}
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
	worker_check_reinit(srv, NULL, 0);	/* a module call failed for good: start afresh */
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
void
refresh_if_stale(struct sc_server *srv)
{
	uint64_t last;

	pthread_mutex_lock(&srv->lock);
	last = srv->last_refresh;
	pthread_mutex_unlock(&srv->lock);
	if (sc_now_ms() - last >= STALE_REFRESH_MS)
		server_refresh(srv, 0, NULL);
}

int
op_refresh(struct client *c, int64_t id, json_object *req)
{
	int changed = 0, r = server_refresh(c->srv, 1, &changed);
	json_object *res = json_object_new_object();

	json_object_object_add(res, "changed", json_object_new_boolean(changed));
	if (r != SC_OK)
		json_object_object_add(res, "warning", json_object_new_string(sc_strerror(r)));
	return reply_ok(c, id, res);
}

/* ------------------------------------------------------------------ */
/* The thread */

/* Logins at the end of their lifetime, then idle ones: one event each. */
static void
expire_logins(struct sc_server *srv)
{
	json_object *labels = NULL;

	sc_store_expire_lifetimes(srv->st, &labels);
	tell_logouts(srv, labels, "lifetime");
	sc_store_expire_logins(srv->st, srv->o.idle_timeout_ms, &labels);
	tell_logouts(srv, labels, "idle-timeout");
}

void
monitor_init(struct sc_server *srv)
{
	srv->last_refresh = srv->started;	/* the caller has just read the slots */
	srv->burst = NBURST;
}

void
monitor_burst(struct sc_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	srv->burst = 0;
	srv->burst_at = sc_now_ms();
	pthread_cond_broadcast(&srv->cond);
	pthread_mutex_unlock(&srv->lock);
}

/* Wait on srv->cond (lock held) until due (sc_now_ms() time) or a wake-up. */
static void
monitor_wait(struct sc_server *srv, uint64_t due)
{
	uint64_t now = sc_now_ms(), ms = due > now ? due - now : 0;
	struct timespec ts = sc_deadline(CLOCK_REALTIME, (long)ms);

	pthread_cond_timedwait(&srv->cond, &srv->lock, &ts);
}

void *
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
		/*
		 * Idle logins (with an idle timeout) and logins with a lifetime: a
		 * store's (a worker, or a server in-process); the agent has none.
		 */
		if (srv->st != NULL) {
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
		if (expire)
			expire_logins(srv);
		if (refresh)
			server_refresh(srv, 1, &changed);
		pthread_mutex_lock(&srv->lock);
		if (changed && burst_at == srv->burst_at)
			srv->burst = NBURST;	/* the card's token came or went: done */
	}
	pthread_mutex_unlock(&srv->lock);
	return NULL;
}

