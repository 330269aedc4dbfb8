/* TLS sessions kept per (server, certificate), one handshake in flight (see sessions.h). */
#include "config.h"
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "tls/sessions.h"

/* Sessions kept per (server, certificate): TLS 1.3 tickets are used once when others remain. */
#define PER_KEY 4
#define MAX_ENTRIES 256

struct entry {
	struct entry *next;
	char host[256];
	char port[8];
	struct sc_tls_sess_id id;
	SSL_SESSION *sess;
	time_t expires;			/* wall clock, as SSL_SESSION_get_time */
	int tls13;
	unsigned long seq;		/* newer is larger */
};

/* A full handshake in flight for (host, port, want). */
struct flight {
	struct flight *next;
	char host[256];
	char port[8];
	char want[65];
	unsigned long owner;		/* 0: none in flight */
	long long grace_until;		/* monotonic ms; 0: the handshake is still going */
	unsigned long failed;		/* the last owner whose connection failed (0: none) */
	struct sc_tls_sess_fail why;	/* how it failed */
};

struct sc_tls_sessions {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	long lifetime;
	struct entry *entries;
	struct flight *flights;
	unsigned long seq;
	unsigned long owners;
	unsigned long epoch;		/* counts forgets: a session made across one is not kept */
};

static long long
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct sc_tls_sessions *
sc_tls_sessions_new(long lifetime)
{
	struct sc_tls_sessions *s = calloc(1, sizeof(*s));
	pthread_condattr_t ca;

	if (s == NULL)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->changed, &ca);
	pthread_condattr_destroy(&ca);
	s->lifetime = lifetime > 0 ? lifetime : SC_TLS_SESSION_LIFETIME;
	return s;
}

static void
entry_free(struct entry *e)
{
	SSL_SESSION_free(e->sess);
	free(e);
}

void
sc_tls_sessions_free(struct sc_tls_sessions *s)
{
	if (s == NULL)
		return;
	while (s->entries != NULL) {
		struct entry *e = s->entries;
		s->entries = e->next;
		entry_free(e);
	}
	while (s->flights != NULL) {
		struct flight *f = s->flights;
		s->flights = f->next;
		free(f);
	}
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->changed);
	free(s);
}

long
sc_tls_sessions_lifetime(const struct sc_tls_sessions *s)
{
	return s->lifetime;
}

static int
same_server(const char *h1, const char *p1, const char *h2, const char *p2)
{
	return strcasecmp(h1, h2) == 0 && strcmp(p1, p2) == 0;
}

/* Drop expired entries (lock held). */
static void
expire(struct sc_tls_sessions *s)
{
	time_t now = time(NULL);

	for (struct entry **pp = &s->entries; *pp != NULL;) {
		struct entry *e = *pp;
		if (e->expires <= now) {
			*pp = e->next;
			entry_free(e);
		} else
			pp = &e->next;
	}
}

/* The newest entry for host:port and want ("" any certificate); *n how many (lock held). */
static struct entry *
newest(struct sc_tls_sessions *s, const char *host, const char *port, const char *want, int *n)
{
	struct entry *best = NULL;

	*n = 0;
	for (struct entry *e = s->entries; e != NULL; e = e->next) {
		if (!same_server(e->host, e->port, host, port) ||
		    (want[0] != '\0' && strcmp(e->id.sha256, want) != 0))
			continue;
		(*n)++;
		if (best == NULL || e->seq > best->seq)
			best = e;
	}
	return best;
}

static void
unlink_entry(struct sc_tls_sessions *s, struct entry *x)
{
	for (struct entry **pp = &s->entries; *pp != NULL; pp = &(*pp)->next)
		if (*pp == x) {
			*pp = x->next;
			return;
		}
}

static struct flight *
find_flight(struct sc_tls_sessions *s, const char *host, const char *port, const char *want)
{
	for (struct flight *f = s->flights; f != NULL; f = f->next)
		if (same_server(f->host, f->port, host, port) && strcmp(f->want, want) == 0)
			return f;
	return NULL;
}

SSL_SESSION *
sc_tls_sessions_get(struct sc_tls_sessions *s, const char *host, const char *port,
    const char *want, struct sc_tls_sess_id *id, unsigned long *flight, int max_wait_ms,
    struct sc_tls_sess_fail *failed)
{
	long long give_up = mono_ms() + (max_wait_ms > 0 ? max_wait_ms : 0);
	SSL_SESSION *copy = NULL;
	unsigned long waited = 0;	/* the owner whose handshake this caller waits for */
	struct flight *f;
	struct entry *e;
	int n;

	*flight = 0;
	memset(id, 0, sizeof(*id));
	memset(failed, 0, sizeof(*failed));
	pthread_mutex_lock(&s->lock);
	for (;;) {
		long long now = mono_ms(), until;
		struct timespec ts;

		expire(s);
		if ((e = newest(s, host, port, want, &n)) != NULL) {
			/*
			 * The connection gets its own copy: OpenSSL marks a session
			 * not resumable when a connection using it ends without
			 * close_notify, which must not spoil the one kept.
			 */
			if ((copy = SSL_SESSION_dup(e->sess)) == NULL)
				break;
			*id = e->id;
			if (e->tls13 && n > 1) {
				/* A TLS 1.3 ticket is meant for one use: spend it while others remain. */
				unlink_entry(s, e);
				entry_free(e);
			}
			break;
		}
		if ((f = find_flight(s, host, port, want)) == NULL) {
			if ((f = calloc(1, sizeof(*f))) == NULL)
				break;
			snprintf(f->host, sizeof(f->host), "%s", host);
			snprintf(f->port, sizeof(f->port), "%s", port);
			snprintf(f->want, sizeof(f->want), "%s", want);
			f->next = s->flights;
			s->flights = f;
		}
		/* The handshake waited for failed: so does this one, without the card. */
		if (waited != 0 && f->failed == waited) {
			*failed = f->why;
			break;
		}
		/* Nobody in flight, or the one in flight kept nothing in its grace time: ours. */
		if (f->owner == 0 || (f->grace_until != 0 && now >= f->grace_until)) {
			f->owner = ++s->owners;
			f->grace_until = 0;
			*flight = f->owner;
			break;
		}
		if (now >= give_up)
			break;	/* waited long enough: a handshake of its own */
		waited = f->owner;
		until = give_up;
		if (f->grace_until != 0 && f->grace_until < until)
			until = f->grace_until;
		ts.tv_sec = (time_t)(until / 1000);
		ts.tv_nsec = (long)(until % 1000) * 1000000L;
		pthread_cond_timedwait(&s->changed, &s->lock, &ts);
	}
	pthread_mutex_unlock(&s->lock);
	return copy;
}

long
sc_tls_sessions_put(struct sc_tls_sessions *s, const char *host, const char *port,
    const struct sc_tls_sess_id *id, SSL_SESSION *sess, unsigned long epoch)
{
	struct entry *e, *old;
	long timeout, hint;
	int n, total = 0;

	if (sess == NULL || !SSL_SESSION_is_resumable(sess) || id->sha256[0] == '\0')
		return 0;
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return 0;
	if ((e->sess = SSL_SESSION_dup(sess)) == NULL) {
		free(e);
		return 0;
	}
	snprintf(e->host, sizeof(e->host), "%s", host);
	snprintf(e->port, sizeof(e->port), "%s", port);
	e->id = *id;
	e->tls13 = SSL_SESSION_get_protocol_version(sess) >= TLS1_3_VERSION;
	/*
	 * The server's lifetime (TLS 1.3 ticket_lifetime, a TLS 1.2 ticket's
	 * hint; 0 says none), at most ours. OpenSSL keeps it apart: the
	 * session's own timeout is the client context's, our cap.
	 */
	timeout = SSL_SESSION_get_timeout(sess);
	if (timeout <= 0 || timeout > s->lifetime)
		timeout = s->lifetime;
	hint = SSL_SESSION_has_ticket(sess) ? (long)SSL_SESSION_get_ticket_lifetime_hint(sess) : 0;
	if (hint > 0 && hint < timeout)
		timeout = hint;
	e->expires = (time_t)SSL_SESSION_get_time(sess) + timeout;
	pthread_mutex_lock(&s->lock);
	if (s->epoch != epoch) {
		/* a forget came while it was made: the card may be gone (its flights end with the connection) */
		pthread_mutex_unlock(&s->lock);
		entry_free(e);
		return 0;
	}
	expire(s);
	e->seq = ++s->seq;
	e->next = s->entries;
	s->entries = e;
	/* At most PER_KEY for this server and certificate, MAX_ENTRIES in all: the oldest go. */
	while (newest(s, host, port, id->sha256, &n) != NULL && n > PER_KEY) {
		old = NULL;
		for (struct entry *x = s->entries; x != NULL; x = x->next)
			if (same_server(x->host, x->port, host, port) && strcmp(x->id.sha256, id->sha256) == 0 &&
			    (old == NULL || x->seq < old->seq))
				old = x;
		unlink_entry(s, old);
		entry_free(old);
	}
	for (struct entry *x = s->entries; x != NULL; x = x->next)
		total++;
	while (total-- > MAX_ENTRIES) {
		old = s->entries;
		for (struct entry *x = s->entries; x != NULL; x = x->next)
			if (x->seq < old->seq)
				old = x;
		unlink_entry(s, old);
		entry_free(old);
	}
	/* The flights this answers are over: their waiters resume it. */
	for (struct flight *f = s->flights; f != NULL; f = f->next)
		if (same_server(f->host, f->port, host, port) &&
		    (f->want[0] == '\0' || strcmp(f->want, id->sha256) == 0))
			f->owner = 0;
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
	return timeout;
}

static struct flight *
flight_of(struct sc_tls_sessions *s, unsigned long owner)
{
	for (struct flight *f = s->flights; f != NULL && owner != 0; f = f->next)
		if (f->owner == owner)
			return f;
	return NULL;
}

void
sc_tls_sessions_done(struct sc_tls_sessions *s, unsigned long flight, int grace_ms)
{
	struct flight *f;

	pthread_mutex_lock(&s->lock);
	if ((f = flight_of(s, flight)) != NULL) {
		f->grace_until = mono_ms() + (grace_ms > 0 ? grace_ms : 0);
		pthread_cond_broadcast(&s->changed);
	}
	pthread_mutex_unlock(&s->lock);
}

void
sc_tls_sessions_end(struct sc_tls_sessions *s, unsigned long flight)
{
	struct flight *f;

	if (s == NULL || flight == 0)
		return;
	pthread_mutex_lock(&s->lock);
	if ((f = flight_of(s, flight)) != NULL) {
		f->owner = 0;
		pthread_cond_broadcast(&s->changed);
	}
	pthread_mutex_unlock(&s->lock);
}

void
sc_tls_sessions_fail(struct sc_tls_sessions *s, unsigned long flight, const struct sc_tls_sess_fail *why)
{
	struct flight *f;

	if (s == NULL || flight == 0)
		return;
	pthread_mutex_lock(&s->lock);
	if ((f = flight_of(s, flight)) != NULL) {
		f->failed = f->owner;
		f->why = *why;
		f->owner = 0;
		pthread_cond_broadcast(&s->changed);
	}
	pthread_mutex_unlock(&s->lock);
}

int
sc_tls_sessions_forget(struct sc_tls_sessions *s, const char *token)
{
	int n = 0;

	if (s == NULL)
		return 0;	/* none kept (--session-lifetime 0) */
	pthread_mutex_lock(&s->lock);
	s->epoch++;
	for (struct entry **pp = &s->entries; *pp != NULL;) {
		struct entry *e = *pp;
		if (token == NULL || e->id.token[0] == '\0' || strcmp(e->id.token, token) == 0) {
			*pp = e->next;
			entry_free(e);
			n++;
		} else
			pp = &e->next;
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

unsigned long
sc_tls_sessions_epoch(struct sc_tls_sessions *s)
{
	unsigned long e;

	if (s == NULL)
		return 0;
	pthread_mutex_lock(&s->lock);
	e = s->epoch;
	pthread_mutex_unlock(&s->lock);
	return e;
}

int
sc_tls_sessions_count(struct sc_tls_sessions *s)
{
	int n = 0;

	pthread_mutex_lock(&s->lock);
	expire(s);
	for (struct entry *e = s->entries; e != NULL; e = e->next)
		n++;
	pthread_mutex_unlock(&s->lock);
	return n;
}
