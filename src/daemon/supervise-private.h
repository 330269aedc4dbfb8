/*
 * The supervisor's state (supervise.c), shared with supervise-ask.c, which
 * answers what the server and route.c ask of it. sup->lock guards every
 * worker's fields (see supervise.c).
 */
#ifndef SCAGENT_DAEMON_SUPERVISE_PRIVATE_H
#define SCAGENT_DAEMON_SUPERVISE_PRIVATE_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>
#include <json-c/json.h>
#include "daemon/server-private.h"
#include "proto/proto.h"

#define DEATH_WINDOW_MS 60000		/* this many ends within this window: broken */
#define DEATH_LIMIT 5
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 30000
#define REAP_WAIT_MS 2000		/* a worker whose connections closed has this long to exit */
#define STOP_GRACE_MS 1000		/* SIGTERM, then SIGKILL */
#define ABSENT_RETRY_MS (5 * 60 * 1000)	/* an absent module is tried again this often */

/* Request ids on a worker's event connection. */
enum { EV_HELLO = 1, EV_WATCH, EV_LIST, EV_REFRESH, EV_LOGOUT };

enum wstate { W_DOWN, W_STARTING, W_RUNNING, W_BROKEN, W_ABSENT };

/*
 * A request in flight to a worker (route.c's ask, sup_flight_*): until its
 * answer comes, or, when its client went away, until its deadline (the
 * worker still runs it). A request past its own deadline while another is
 * still within its own waits behind it instead of killing the worker.
 */
struct flight {
	uint64_t id;
	unsigned gen;			/* of the worker it went to */
	uint64_t deadline;		/* sc_now_ms() time its own limit ends */
	int gone;			/* its client went: kept until deadline */
};

struct worker {
	char *module;
	const char **argv;		/* execv's, built once */
	size_t retry_arg;		/* argv's slot for --worker-retry (a retry of an absent module) */
	pid_t pid;			/* 0: none */
	int ctl, ev;			/* socketpair to it, its event connection; -1: none */
	struct sc_linebuf evbuf;
	unsigned gen;			/* counts its starts */
	enum wstate state;
	int reaping;			/* ended, being reaped */
	uint64_t due;			/* W_DOWN: start at (0 never); W_STARTING: give up at */
	uint64_t started;
	unsigned restarts;
	uint64_t deaths[DEATH_LIMIT];	/* when it last ended, newest first */
	unsigned backoff_ms;
	char last_error[256];
	char kill_why[200];		/* why the agent killed it, "" when it did not */
	json_object *tokens;		/* its tokens as event fields */
	int loaded;			/* its module loaded (its list had no "errors") */
	int absent;			/* its module did not load; last_error says why (W_ABSENT, or a retry) */
	struct flight *flights;		/* requests in flight to it; emptied when it ends */
	size_t nflights, capflights;
};

struct sc_sup {
	struct sc_server *srv;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct worker *w;
	size_t n;
	char **args;			/* the workers' common options */
	unsigned long timeout_ms, slow_timeout_ms;
	int wake[2];
	pthread_t th;
	int thread_started, stopping;
	uint64_t last_flight;		/* the last flight id given */
};

/* A new connection to w for a client (sup->lock held): the agent's end, or -1. */
int sup_pass_conn(struct worker *w, pid_t pid, uid_t uid, const char *exe);
/* Ask w something on its event connection (never waits). */
void sup_ev_send(struct worker *w, int id, const char *op);
/* Wait on sup->cond (sup->lock held) for at most ms. */
void sup_cond_wait(struct sc_sup *sup, long ms);
/* Wake the supervisor thread. */
void sup_wake(struct sc_sup *sup);

#endif
