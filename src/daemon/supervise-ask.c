/*
 * What the server and route.c ask of the supervisor: which workers there
 * are, a connection to one for a client, the requests in flight to each,
 * why one does not serve, status, refresh, and logging every token out. Each takes sup->lock for its look.
 */
#include "config.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/supervise-private.h"

size_t
sup_count(struct sc_sup *sup)
{
	return sup->n;
}

const char *
sup_module(struct sc_sup *sup, size_t i)
{
	return sup->w[i].module;
}

unsigned
sup_gen(struct sc_sup *sup, size_t i)
{
	unsigned g;

	pthread_mutex_lock(&sup->lock);
	g = sup->w[i].gen;
	pthread_mutex_unlock(&sup->lock);
	return g;
}

int
sup_running(struct sc_sup *sup, size_t i)
{
	int r;

	pthread_mutex_lock(&sup->lock);
	r = sup->w[i].state == W_RUNNING;
	pthread_mutex_unlock(&sup->lock);
	return r;
}

unsigned long
sup_timeout(struct sc_sup *sup, int slow)
{
	return slow ? sup->slow_timeout_ms : sup->timeout_ms;
}

/* Why w does not serve now (sup->lock held). */
static void
not_serving(const struct worker *w, char *msg, size_t len)
{
	if (w->state == W_BROKEN)
		snprintf(msg, len, "the module %s is broken: %s", w->module, w->last_error);
	else if (w->absent)
		snprintf(msg, len, "the module %s is absent: %s (`scagent refresh` tries it again)",
		    w->module, w->last_error);
	else if (w->restarts > 0 || w->last_error[0] != '\0')
		snprintf(msg, len, "the module %s is being restarted (it stopped: %s): try again in "
		    "a moment, then log in again", w->module, w->last_error);
	else
		snprintf(msg, len, "the module %s is still starting: try again in a moment", w->module);
}

int
sup_connect(struct sc_sup *sup, size_t i, struct client *c, unsigned *gen, char *msg, size_t len)
{
	struct worker *w = &sup->w[i];
	int fd;

	pthread_mutex_lock(&sup->lock);
	if (w->state != W_RUNNING) {
		not_serving(w, msg, len);
		pthread_mutex_unlock(&sup->lock);
		return SC_ERR_DEVICE;
	}
	if ((fd = sup_pass_conn(w, c->pid, c->uid, c->exe)) < 0) {
		if (errno == EMFILE || errno == ENFILE)
			snprintf(msg, len, "the agent has no file descriptor left to reach the module "
			    "%s (%s): try again when fewer clients are connected", w->module,
			    strerror(errno));
		else
			snprintf(msg, len, "the module %s takes no request now (its process is busy "
			    "or stopping): try again in a moment", w->module);
		pthread_mutex_unlock(&sup->lock);
		return SC_ERR_BUSY;
	}
	*gen = w->gen;
	pthread_mutex_unlock(&sup->lock);
	return fd;
}

void
sup_kill(struct sc_sup *sup, size_t i, unsigned gen, const char *why)
{
	struct worker *w = &sup->w[i];

	pthread_mutex_lock(&sup->lock);
	if (w->gen == gen && w->pid > 0 && w->state == W_RUNNING && w->kill_why[0] == '\0') {
		snprintf(w->kill_why, sizeof(w->kill_why), "%s", why);
		sc_warn("module %s: %s: its worker process %ld is killed", w->module, why, (long)w->pid);
		kill(w->pid, SIGKILL);
	}
	pthread_mutex_unlock(&sup->lock);
}

uint64_t
sup_flight_add(struct sc_sup *sup, size_t i, unsigned gen, uint64_t deadline)
{
	struct worker *w = &sup->w[i];
	uint64_t now = sc_now_ms(), id = 0;
	size_t k = 0;

	pthread_mutex_lock(&sup->lock);
	/* Those whose client went and whose time is up, and those of an earlier worker, go. */
	for (size_t j = 0; j < w->nflights; j++)
		if (w->flights[j].gen == w->gen && !(w->flights[j].gone && w->flights[j].deadline <= now))
			w->flights[k++] = w->flights[j];
	w->nflights = k;
	if (w->nflights == w->capflights) {
		size_t cap = w->capflights ? w->capflights * 2 : 8;
		struct flight *f = realloc(w->flights, cap * sizeof(*f));

		if (f == NULL)
			goto out;	/* not kept: it excuses no other, none excuses it */
		w->flights = f;
		w->capflights = cap;
	}
	id = ++sup->last_flight;
	w->flights[w->nflights++] = (struct flight){ id, gen, deadline, 0 };
out:
	pthread_mutex_unlock(&sup->lock);
	return id;
}

/* Flight id's entry in w (sup->lock held), or NULL (ended, or emptied by a restart). */
static struct flight *
flight_find(struct worker *w, uint64_t id)
{
	for (size_t j = 0; id != 0 && j < w->nflights; j++)
		if (w->flights[j].id == id)
			return &w->flights[j];
	return NULL;
}

void
sup_flight_move(struct sc_sup *sup, size_t i, uint64_t id, uint64_t deadline)
{
	struct flight *f;

	pthread_mutex_lock(&sup->lock);
	if ((f = flight_find(&sup->w[i], id)) != NULL)
		f->deadline = deadline;
	pthread_mutex_unlock(&sup->lock);
}

void
sup_flight_end(struct sc_sup *sup, size_t i, uint64_t id, int gone)
{
	struct worker *w = &sup->w[i];
	struct flight *f;

	pthread_mutex_lock(&sup->lock);
	if ((f = flight_find(w, id)) != NULL) {
		if (gone)
			f->gone = 1;
		else
			*f = w->flights[--w->nflights];
	}
	pthread_mutex_unlock(&sup->lock);
}

uint64_t
sup_flight_excuse(struct sc_sup *sup, size_t i, uint64_t id)
{
	struct worker *w = &sup->w[i];
	uint64_t now = sc_now_ms(), until = 0;
	struct flight *me;

	pthread_mutex_lock(&sup->lock);
	if ((me = flight_find(w, id)) != NULL)
		for (size_t j = 0; j < w->nflights; j++)
			if (w->flights[j].id != id && w->flights[j].gen == me->gen &&
			    w->flights[j].deadline > now && w->flights[j].deadline > until)
				until = w->flights[j].deadline;
	pthread_mutex_unlock(&sup->lock);
	return until;
}

void
sup_death_message(struct sc_sup *sup, size_t i, unsigned gen, char *msg, size_t len)
{
	struct worker *w = &sup->w[i];
	uint64_t end = sc_now_ms() + REAP_WAIT_MS + 1000;

	pthread_mutex_lock(&sup->lock);
	while (w->gen == gen && (w->state == W_RUNNING || w->reaping) && sc_now_ms() < end &&
	    !sup->stopping && !sup->srv->stopping)
		sup_cond_wait(sup, 50);
	if (sup->stopping || sup->srv->stopping)
		snprintf(msg, len, "the agent is stopping");
	else if (w->gen == gen && (w->state == W_RUNNING || w->reaping))
		snprintf(msg, len, "the module %s's process closed the connection: try again", w->module);
	else
		snprintf(msg, len, "the module %s stopped (%s): %s; its tokens are logged out: "
		    "log in again", w->module, w->last_error,
		    w->state == W_BROKEN ? "it is not started again" : "it is being restarted");
	pthread_mutex_unlock(&sup->lock);
}

json_object *
sup_status_json(struct sc_sup *sup, size_t *loaded)
{
	static const char *const names[] = { "restarting", "starting", "running", "broken", "absent" };
	json_object *a = json_object_new_array();
	uint64_t now = sc_now_ms();

	*loaded = 0;
	pthread_mutex_lock(&sup->lock);
	for (size_t i = 0; i < sup->n; i++) {
		struct worker *w = &sup->w[i];
		json_object *o = json_object_new_object();

		*loaded += w->state == W_RUNNING && w->loaded;
		json_object_object_add(o, "module", json_object_new_string(w->module));
		json_object_object_add(o, "pid", w->pid > 0 ? json_object_new_int64(w->pid) : NULL);
		json_object_object_add(o, "state", json_object_new_string(w->absent ? "absent" :
		    w->state == W_DOWN && w->gen == 0 ? "starting" : names[w->state]));
		json_object_object_add(o, "restarts", json_object_new_int64(w->restarts));
		json_object_object_add(o, "uptime", w->state == W_RUNNING ?
		    json_object_new_int64((int64_t)((now - w->started) / 1000)) : NULL);
		json_object_object_add(o, "last_error", w->last_error[0] ?
		    json_object_new_string(w->last_error) : NULL);
		json_object_array_add(a, o);
	}
	pthread_mutex_unlock(&sup->lock);
	return a;
}

void
sup_refresh_all(struct sc_sup *sup)
{
	pthread_mutex_lock(&sup->lock);
	for (size_t i = 0; i < sup->n; i++)
		if (sup->w[i].state == W_RUNNING)
			sup_ev_send(&sup->w[i], EV_REFRESH, "refresh");
	pthread_mutex_unlock(&sup->lock);
}

int
sup_absent(struct sc_sup *sup, size_t i, char *reason, size_t len)
{
	int r;

	pthread_mutex_lock(&sup->lock);
	if ((r = sup->w[i].absent) != 0)
		snprintf(reason, len, "%s", sup->w[i].last_error);
	pthread_mutex_unlock(&sup->lock);
	return r;
}

int
sup_retry_stopped(struct sc_sup *sup)
{
	uint64_t now = sc_now_ms(), end = now + sup->timeout_ms;
	unsigned char *tried = calloc(sup->n ? sup->n : 1, 1);
	int busy = 1, serve = 0;

	if (tried == NULL)
		return 0;
	pthread_mutex_lock(&sup->lock);
	for (size_t i = 0; i < sup->n; i++) {
		struct worker *w = &sup->w[i];

		if (w->state == W_BROKEN) {
			/* The user says it is fixed: a fresh start, its ends counted anew. */
			sc_info("module %s: started again (refresh), after it was broken", w->module);
			memset(w->deaths, 0, sizeof(w->deaths));
			w->backoff_ms = 0;
			w->state = W_DOWN;
		} else if (w->state != W_ABSENT)
			continue;
		w->due = now;
		tried[i] = 1;
	}
	sup_wake(sup);
	/*
	 * Until each serves or failed again (absent again, or down waiting out
	 * its back-off): the refresh's list then has its tokens.
	 */
	while (busy && !sup->stopping && !sup->srv->stopping && sc_now_ms() < end) {
		busy = 0;
		for (size_t i = 0; i < sup->n; i++)
			busy |= tried[i] && (sup->w[i].state == W_STARTING ||
			    ((sup->w[i].state == W_DOWN || sup->w[i].state == W_ABSENT) &&
			    sup->w[i].due != 0 && sup->w[i].due <= now));
		if (!busy)
			break;
		sup_cond_wait(sup, 50);
	}
	for (size_t i = 0; i < sup->n; i++)
		serve += tried[i] && sup->w[i].state == W_RUNNING;
	pthread_mutex_unlock(&sup->lock);
	free(tried);
	return serve;
}

void
sup_logout_all(struct sc_sup *sup, const char *reason)
{
	char line[96];
	int n = snprintf(line, sizeof(line), "{\"id\":%d,\"op\":\"logout-all\",\"reason\":\"%s\"}\n",
	    EV_LOGOUT, strcmp(reason, "sleep") == 0 ? "sleep" : "lock");

	pthread_mutex_lock(&sup->lock);
	for (size_t i = 0; i < sup->n; i++) {
		struct worker *w = &sup->w[i];
		if (w->state == W_RUNNING && w->ev >= 0 &&
		    send(w->ev, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) != n)
			sc_warn("module %s: could not ask its worker to log out", w->module);
	}
	pthread_mutex_unlock(&sup->lock);
}
