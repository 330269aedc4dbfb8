/*
 * The agent on the desktop's buses (the agent only, docs/DESKTOP.md), through
 * sd-bus, each on a thread of its own so that no request ever waits for a bus:
 *
 *   notifier   org.freedesktop.Notifications.Notify on the session bus
 *              ($DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus): which
 *              program used which certificate (notify = once: once per
 *              program until the next logout; always; no), a card inserted
 *              or removed, a PIN at its last try, the agent logged out on
 *              lock. Notes wait in a queue of NOTE_QUEUE (more are dropped),
 *              each call has NOTE_TIMEOUT_US; no session bus, or nobody
 *              showing notifications (ServiceUnknown): silently nothing.
 *   lock watcher  logind's Session.Lock (of the agent's own session) and
 *              Manager.PrepareForSleep(true) on the system bus
 *              ($DBUS_SYSTEM_BUS_ADDRESS, else the system socket): the agent
 *              logs out of every token of every worker (logout-on-lock =
 *              yes, the default), `logout` events with reason lock or sleep.
 *              Signals are taken from logind's own name only; on a bus
 *              without logind (a test's private bus) from anyone, and Lock on
 *              any session. No system bus: nothing.
 *
 * desk->lock guards the queue, the programs seen and stopping; innermost
 * (taken under sup->lock and evlock by desktop_event, never around a call).
 */
#include "config.h"
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <systemd/sd-bus.h>
#include "common/log.h"
#include "daemon/server-private.h"

#define NOTE_QUEUE 16
#define NOTE_TIMEOUT_US (1000 * 1000ULL)	/* a Notify call's limit; the agent's stop waits for it */
#define SEEN_MAX 256
#define WATCH_WAIT_US (200 * 1000ULL)	/* the lock watcher looks at stopping this often */
#define LOGIND "org.freedesktop.login1"

struct note {
	char summary[128];
	char body[640];
};

struct sc_desktop {
	struct sc_server *srv;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct note q[NOTE_QUEUE];
	size_t qhead, qlen;
	char *seen[SEEN_MAX];		/* the programs that signed since the last logout */
	size_t nseen;
	int stopping;
	pthread_t notifier, watcher;
	int notifier_started, watcher_started;
};

/* ------------------------------------------------------------------ */
/* Notifications */

static void __attribute__((format(printf, 3, 4)))
note(struct sc_desktop *d, const char *summary, const char *fmt, ...)
{
	struct note *n;
	va_list ap;

	if (d == NULL || d->srv->o.notify == SC_NOTIFY_NO)
		return;
	pthread_mutex_lock(&d->lock);
	if (d->qlen == NOTE_QUEUE || d->stopping) {
		pthread_mutex_unlock(&d->lock);
		sc_debug("desktop notification dropped (queue full): %s", summary);
		return;
	}
	n = &d->q[(d->qhead + d->qlen++) % NOTE_QUEUE];
	snprintf(n->summary, sizeof(n->summary), "%s", summary);
	va_start(ap, fmt);
	vsnprintf(n->body, sizeof(n->body), fmt, ap);
	va_end(ap);
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

/* One Notify call on a fresh session bus connection; every failure is silent (debug). */
static void
send_note(const struct note *n)
{
	sd_bus *bus = NULL;
	sd_bus_message *m = NULL, *reply = NULL;
	sd_bus_error e = SD_BUS_ERROR_NULL;
	int r;

	if ((r = sd_bus_open_user(&bus)) < 0)
		goto out;	/* no session bus */
	if ((r = sd_bus_message_new_method_call(bus, &m, "org.freedesktop.Notifications",
	    "/org/freedesktop/Notifications", "org.freedesktop.Notifications", "Notify")) < 0 ||
	    (r = sd_bus_message_append(m, "susssasa{sv}i", "scagent", (uint32_t)0, "security-high",
	    n->summary, n->body, 0, 0, (int32_t)-1)) < 0)
		goto out;
	r = sd_bus_call(bus, m, NOTE_TIMEOUT_US, &e, &reply);
out:
	if (r < 0)
		sc_debug("desktop notification not shown (%s): %s", n->summary,
		    e.message != NULL ? e.message : strerror(-r));
	sd_bus_error_free(&e);
	sd_bus_message_unref(reply);
	sd_bus_message_unref(m);
	sd_bus_flush_close_unref(bus);
}

static void *
notifier_main(void *arg)
{
	struct sc_desktop *d = arg;
	struct note n;

	pthread_mutex_lock(&d->lock);
	for (;;) {
		while (d->qlen == 0 && !d->stopping)
			pthread_cond_wait(&d->cond, &d->lock);
		if (d->stopping)
			break;
		n = d->q[d->qhead];
		d->qhead = (d->qhead + 1) % NOTE_QUEUE;
		d->qlen--;
		pthread_mutex_unlock(&d->lock);
		send_note(&n);
		pthread_mutex_lock(&d->lock);
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

static void
forget_programs(struct sc_desktop *d)
{
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->nseen; i++)
		free(d->seen[i]);
	d->nseen = 0;
	pthread_mutex_unlock(&d->lock);
}

/* notify = once: 1 when exe signed before, since the last logout; else remembered. */
static int
seen_before(struct sc_desktop *d, const char *exe)
{
	int seen = 0;

	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->nseen && !seen; i++)
		seen = strcmp(d->seen[i], exe) == 0;
	if (!seen && d->nseen < SEEN_MAX && (d->seen[d->nseen] = strdup(exe)) != NULL)
		d->nseen++;
	pthread_mutex_unlock(&d->lock);
	return seen;
}

void
desktop_signed(struct client *c, const char *cert)
{
	struct sc_desktop *d = c->srv->desk;
	const char *name = strrchr(c->exe, '/') != NULL ? strrchr(c->exe, '/') + 1 : c->exe;

	if (d == NULL || c->srv->o.notify == SC_NOTIFY_NO)
		return;
	if (c->srv->o.notify == SC_NOTIFY_ONCE && seen_before(d, c->exe))
		return;
	note(d, "Smart card used", "%s (pid %ld, %s) signed with the certificate \"%s\"",
	    *name ? name : "a program", (long)c->pid, *c->exe ? c->exe : "?", cert ? cert : "?");
}

void
desktop_pin_final(struct sc_server *srv, const char *token)
{
	note(srv->desk, "Smart card PIN: last try", "The PIN of token \"%s\" has one try left: "
	    "one more wrong PIN locks it", token ? token : "?");
}

void
desktop_event(struct sc_server *srv, const char *event, json_object *fields)
{
	struct sc_desktop *d = srv->desk;
	const char *reader = json_object_get_string(json_object_object_get(fields, "reader"));

	if (d == NULL)
		return;
	if (strcmp(event, "logout") == 0 || strcmp(event, "token-removed") == 0)
		forget_programs(d);	/* "once" is once per program per login */
	else if (strcmp(event, "card-inserted") == 0)
		note(d, "Smart card inserted", "in \"%s\"", reader ? reader : "a reader");
	else if (strcmp(event, "card-removed") == 0)
		note(d, "Smart card removed", "from \"%s\"", reader ? reader : "a reader");
}

void
desktop_logged_out(struct sc_server *srv, long count, const char *reason)
{
	note(srv->desk, "scagent logged out of your cards", "%s: logged out of %ld token%s",
	    strcmp(reason, "sleep") == 0 ? "the machine goes to sleep" : "screen locked", count,
	    count == 1 ? "" : "s");
}

/* ------------------------------------------------------------------ */
/* Lock and sleep */

static void
locked(struct sc_desktop *d, const char *reason)
{
	sc_info("%s: %s", reason[0] == 'l' ? "the screen locked" : "the machine goes to sleep",
	    d->srv->o.logout_on_lock ? "logging out of every token" :
	    "the logins stay (logout-on-lock = no)");
	if (!d->srv->o.logout_on_lock)
		return;
	forget_programs(d);
	sup_logout_all(d->srv->sup, reason);
}

static int
on_lock(sd_bus_message *m, void *ud, sd_bus_error *e)
{
	locked(ud, "lock");
	return 0;
}

static int
on_sleep(sd_bus_message *m, void *ud, sd_bus_error *e)
{
	int going = 0;

	if (sd_bus_message_read(m, "b", &going) >= 0 && going)
		locked(ud, "sleep");
	return 0;
}

/*
 * Where logind's Lock for the agent's session comes from: *path the session's
 * object path (NULL: any session), *sender logind's name (NULL: anyone, when
 * the bus has no logind).
 */
static void
lock_source(sd_bus *bus, char **path, const char **sender)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	const char *p = NULL, *sid = getenv("XDG_SESSION_ID");
	char *esc = NULL;

	*path = NULL;
	*sender = LOGIND;
	if (sd_bus_call_method(bus, LOGIND, "/org/freedesktop/login1", LOGIND ".Manager",
	    "GetSessionByPID", &e, &reply, "u", (uint32_t)getpid()) >= 0 &&
	    sd_bus_message_read(reply, "o", &p) >= 0 && p != NULL)
		*path = strdup(p);
	else if (sd_bus_error_has_name(&e, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
	    sd_bus_error_has_name(&e, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
		*sender = NULL;		/* no logind on this bus */
	else if (sid != NULL && *sid && sd_bus_path_encode("/org/freedesktop/login1/session", sid,
	    &esc) >= 0)
		*path = esc;		/* a user service: the session it was started from */
	sd_bus_error_free(&e);
	sd_bus_message_unref(reply);
}

static void *
watcher_main(void *arg)
{
	struct sc_desktop *d = arg;
	sd_bus *bus = NULL;
	const char *sender;
	char *path = NULL;
	int stop = 0;

	if (sd_bus_open_system(&bus) < 0) {
		sc_debug("no system bus: the agent does not log out when the screen locks");
		return NULL;
	}
	sd_bus_set_method_call_timeout(bus, NOTE_TIMEOUT_US);
	lock_source(bus, &path, &sender);
	if (sd_bus_match_signal(bus, NULL, sender, path, LOGIND ".Session", "Lock", on_lock, d) < 0 ||
	    sd_bus_match_signal(bus, NULL, sender, "/org/freedesktop/login1", LOGIND ".Manager",
	    "PrepareForSleep", on_sleep, d) < 0) {
		sc_debug("cannot watch logind's Lock and PrepareForSleep");
		goto out;
	}
	sc_debug("watching logind for %s%s", path ? path : "any session",
	    sender ? "" : " (no logind on the system bus: Lock of any sender)");
	while (!stop) {
		int r;

		while ((r = sd_bus_process(bus, NULL)) > 0)
			;
		if (r < 0 || sd_bus_wait(bus, WATCH_WAIT_US) < 0)
			break;		/* the bus went away */
		pthread_mutex_lock(&d->lock);
		stop = d->stopping;
		pthread_mutex_unlock(&d->lock);
	}
out:
	free(path);
	sd_bus_flush_close_unref(bus);
	return NULL;
}

/* ------------------------------------------------------------------ */

void
desktop_start(struct sc_server *srv)
{
	struct sc_desktop *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return;
	d->srv = srv;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	srv->desk = d;
	d->notifier_started = pthread_create(&d->notifier, NULL, notifier_main, d) == 0;
	d->watcher_started = pthread_create(&d->watcher, NULL, watcher_main, d) == 0;
}

void
desktop_stop(struct sc_server *srv)
{
	struct sc_desktop *d = srv->desk;

	if (d == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	d->stopping = 1;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	if (d->notifier_started)
		pthread_join(d->notifier, NULL);
	if (d->watcher_started)
		pthread_join(d->watcher, NULL);
	srv->desk = NULL;
	forget_programs(d);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cond);
	free(d);
}
