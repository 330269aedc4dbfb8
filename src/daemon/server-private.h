/*
 * The agent's server, inside: the structs its files share and the functions
 * they call in one another. Private to src/daemon.
 *
 *   server.c     accept, one thread per client, the client list, each
 *                client's output queue, events to the watchers (broadcast)
 *   dispatch.c   the table of operations, request checks, hello, status,
 *                the reply helpers
 *   ops-token.c  list, find, get-cert, login, logout, mechanisms, get-public-key
 *   ops-vsc.c    TPM virtual smart cards and enrolment: init-token,
 *                delete-token, vsc-list, keygen, import; a TPM's lockout message
 *   sign.c       sign and sign-key: one flow each, with confirmation, a login
 *                or a per-signature PIN through pinentry, and the messages
 *   monitor.c    the monitor thread: slot re-reads (after PC/SC events, on
 *                request, on a fallback interval) and idle logouts; refresh
 *   readers.c    the PC/SC watcher (src/token/pcsc.c) seen from the server
 *   audit.c      the audit log
 *   worker.c     a module's worker process: connections passed by the agent
 *   supervise.c  the agent: its workers started, watched, restarted, stopped
 *   route.c      the agent: requests passed on to the workers, answers merged
 *
 * One server, three modes, told apart by srv->sup and srv->o.worker:
 *
 *   agent    srv->sup set, srv->st NULL (scagentd): loads no module. It
 *            accepts clients, answers hello, watch and stop itself and passes
 *            every other request to its workers (route.c); it watches PC/SC
 *            and tells them. The store's code (ops-*.c, sign.c, the login
 *            deadlines of monitor.c) never runs here.
 *   worker   srv->o.worker, srv->st its one module (scagentd --worker
 *            MODULE): serves connections the agent passes with each client's
 *            identity (worker.c, sc_server_add_client with an ident); no
 *            PC/SC watcher; refuses stop (the whole agent's); a module call
 *            that failed for good ends it to be started again.
 *   direct   neither: the store served in-process by the same code a worker
 *            runs, to the clients of sc_server_add_client (NULL ident) or of
 *            listen_fd. The tests of the dispatcher (tests/unit/test-dispatch,
 *            tests/fuzz/fuzz-dispatch) use it with listen_fd -1; it is what a
 *            worker does, less the agent around it, and it answers stop.
 *
 * The operations do not look at the mode: what differs is in dispatch(),
 * reply_err, op_stop, server_refresh, the run loop and worker.c's hooks
 * (worker_pending, worker_check_reinit: nothing outside a worker). sup->lock
 * (supervise.c) comes before evlock.
 *
 * Threads: the main thread accepts (sc_server_run); each client has its own
 * thread (client_main: read, dispatch, answer); the monitor thread
 * (monitor_main); the PC/SC watcher thread calls readers.c's event callback.
 * Any of them may broadcast an event. No server lock is held across a call
 * into the token store or pinentry, or while waiting for a client's socket.
 *
 * srv->evlock: the client list as broadcasts walk it, and each client's
 * `watching`. Taken by sc_server_broadcast (any thread), op_watch, and around
 * srv->lock by sc_server_add_client and client_remove, which change the list. Order:
 * evlock before srv->lock, and evlock before a client's wlock (send_event).
 *
 * srv->lock: the client list and count (changed under evlock too, so either
 * lock lets one read it), the monitor's schedule (last_refresh, burst,
 * burst_at) and the audit file's writes. srv->cond goes with it: the client
 * count changed (sc_server_run waits for zero), or the monitor has something
 * new to schedule by (monitor_kick, a PC/SC event, stopping). Taken briefly
 * by accept, client_remove, status, refresh, the PC/SC callback and audit();
 * the monitor thread waits on cond with it and lets it go around every store
 * call. Nothing else is taken while it is held.
 *
 * c->wlock: one client's output queue (out, outlen, outoff, outcap, backlog,
 * queued, written, progress_at, dead). Taken by the client's own thread
 * (its answers, and writing queued events when the socket takes them) and by
 * broadcasters under evlock. Never held while waiting: send_line lets it go
 * around poll(). Innermost: nothing is taken while it is held.
 *
 * srv->stopping is set by sc_server_stop (a signal handler) and read
 * without a lock; c->hello belongs to the client's thread alone.
 */
#ifndef SC_SERVER_PRIVATE_H
#define SC_SERVER_PRIVATE_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <json-c/json.h>
#include <openssl/x509.h>
#include "daemon/server.h"

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
	struct wconn *wc;		/* the agent: its connections to the workers (route.c) */
	struct client *next;		/* in srv->clients */
};

struct sc_server {
	struct sc_store *st;
	struct sc_server_opts o;
	int lfd;
	int spare_fd;			/* /dev/null, given up to answer a newcomer when no fd is left */
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
	size_t burst;			/* next step of monitor.c's burst_ms; NBURST: none */
	uint64_t burst_at;		/* when the burst began */
	struct sc_sup *sup;		/* the agent: the module workers; NULL in a worker */
	struct sc_desktop *desk;	/* the agent: its desktop buses (desktop.c), or NULL */
	volatile sig_atomic_t reinit;	/* a worker: stopping to initialise its module again */
	unsigned long fatal_base;	/* a worker: sc_ckr_fatal_count() when it started */
};

/* An operation: answers the request (reply_ok/reply_err); SC_ERR_IO drops the client. */
typedef int sc_op_fn(struct client *c, int64_t id, json_object *req);

/* server.c */
/* An answer, from the client's own thread: frees line; waits until the socket took it. */
int send_line(struct client *c, char *line, size_t len);
sc_op_fn op_watch;

/* dispatch.c */
/* One request line: parse, check, run its operation. SC_ERR_IO: drop the client. */
int dispatch(struct client *c, char *line, size_t len);
int reply_ok(struct client *c, int64_t id, json_object *result);
int reply_err(struct client *c, int64_t id, int code, const char *msg);
const char *arg_str(json_object *req, const char *name);
int arg_bool(json_object *req, const char *name);
/* status's first fields, the same in every mode: agent, protocol, pid, uptime, clients. */
json_object *status_head(struct sc_server *srv);
/* A certificate REF that names none, several, or is invalid: the error with the candidates (stolen). */
int ref_error(struct client *c, int64_t id, int r, const char *ref, json_object *cand);
/* The same for a key REF. */
int key_ref_error(struct client *c, int64_t id, int r, const char *ref, json_object *cand);

/* ops-token.c */
sc_op_fn op_list, op_find, op_get_cert, op_login, op_logout, op_mechanisms, op_get_public_key;
sc_op_fn op_pin_change, op_pin_unblock, op_logout_all;
/* Fields of a login/logout event. */
json_object *token_fields(const char *token, const char *reason);
/* A logout event (reason) for each token of labels, which it frees (NULL: none). */
void tell_logouts(struct sc_server *srv, json_object *labels, const char *reason);
/* Ask for the PIN through pinentry and log in once. */
int login_with_pinentry(struct client *c, const char *token, int confirm, json_object **flags);

/* ops-vsc.c */
sc_op_fn op_init_token, op_delete_token, op_vsc_list, op_keygen, op_import;
/* A TPM token's PIN error with its dictionary-attack state in msg; 0: not a TPM's. */
int tpm_login_message(struct client *c, int r, const char *token, char *msg, size_t len);

/* sign.c */
sc_op_fn op_sign, op_sign_key;

/* monitor.c */
sc_op_fn op_refresh;
/* The schedule of a new server: slots just read, no burst. */
void monitor_init(struct sc_server *srv);
void *monitor_main(void *arg);
/* Wake the monitor: something it schedules by has changed. */
void monitor_kick(struct sc_server *srv);
/* A PC/SC event: re-read slots in a burst from now (burst_ms). */
void monitor_burst(struct sc_server *srv);
/* Re-read slots (wait 0: not while another re-read runs) and send the events. */
int server_refresh(struct sc_server *srv, int wait, int *changed_out);
/* Re-read slots unless that was just done or is being done. */
void refresh_if_stale(struct sc_server *srv);

/* readers.c */
/* Start the PC/SC watcher (a warning when it cannot: slots are still re-read). */
void readers_start(struct sc_server *srv);
/* status's "pcsc": {"available", "readers" (a count) or "reason"}. */
json_object *readers_status(struct sc_server *srv);

/* What the agent sends with each connection it passes to a worker. */
struct worker_ident {
	int32_t pid;
	uint32_t uid;
	char exe[256];
};

/* worker.c: a module's worker process */
/* A connection the agent passed on the worker's socketpair; SC_ERR_IO: the agent is gone. */
int worker_accept(struct sc_server *srv);
/*
 * A module call failed with CKR_DEVICE_ERROR or CKR_GENERAL_ERROR since the
 * worker started: it stops, to be started again (its module initialised
 * again). msg (may be NULL) gets what to tell the user appended.
 */
int worker_check_reinit(struct sc_server *srv, char *msg, size_t len);
/*
 * About to wait for pinentry (a PIN, a confirmation): a worker tells the
 * agent, whose limit for the request grows by pinentry's own.
 */
void worker_pending(struct client *c);


/* supervise.c: the agent's workers (lock order: sup->lock before evlock) */
size_t sup_count(struct sc_sup *sup);
const char *sup_module(struct sc_sup *sup, size_t i);
/* How many times worker i was started: a connection to an earlier one is void. */
unsigned sup_gen(struct sc_sup *sup, size_t i);
/* 1 while worker i serves. */
int sup_running(struct sc_sup *sup, size_t i);
/*
 * A new connection to worker i for client c (its identity goes with it):
 * the fd, and *gen the worker's generation; or an error with msg.
 */
int sup_connect(struct sc_sup *sup, size_t i, struct client *c, unsigned *gen, char *msg, size_t len);
/*
 * The requests in flight to worker i. A request to generation gen whose own
 * limit ends at deadline (sc_now_ms): its id (0: not kept, nothing else
 * fails). Move: its deadline moved (pinentry). End: its answer came or it
 * failed; gone: its client went while the worker still runs it, kept until
 * its deadline.
 */
uint64_t sup_flight_add(struct sc_sup *sup, size_t i, unsigned gen, uint64_t deadline);
void sup_flight_move(struct sc_sup *sup, size_t i, uint64_t id, uint64_t deadline);
void sup_flight_end(struct sc_sup *sup, size_t i, uint64_t id, int gone);
/*
 * Flight id's own limit passed: the latest deadline still ahead among the
 * other requests in flight to the same worker (it may wait behind one of
 * them, a slow operation within its own limit), or 0: the worker hangs.
 */
uint64_t sup_flight_excuse(struct sc_sup *sup, size_t i, uint64_t id);
/* Worker i of generation gen did not answer in time: SIGKILL, restart. */
void sup_kill(struct sc_sup *sup, size_t i, unsigned gen, const char *why);
/* Worker i of generation gen ended: what happened (waits briefly for it to be reaped). */
void sup_death_message(struct sc_sup *sup, size_t i, unsigned gen, char *msg, size_t len);
/* The limit for a request: module-timeout, or keygen-timeout (slow). */
unsigned long sup_timeout(struct sc_sup *sup, int slow);
/* status's "processes": one entry per worker. */
json_object *sup_status_json(struct sc_sup *sup, size_t *loaded);
/* Ask every worker to read its slots again (a PC/SC event); not waited for. */
void sup_refresh_all(struct sc_sup *sup);
/* 1 while worker i's module is absent (did not load): reason says why. */
int sup_absent(struct sc_sup *sup, size_t i, char *reason, size_t len);
/*
 * Try every absent or broken module again now (a broken one with its count
 * of ends started afresh); wait (up to module-timeout) until each serves or
 * failed again. How many serve now.
 */
int sup_retry_stopped(struct sc_sup *sup);

/* route.c: the agent's requests to its workers */
/* Any operation but hello and watch, in the agent. */
int route_request(struct client *c, int64_t id, const char *op, json_object *req,
    const char *line, size_t len);
void route_client_free(struct client *c);

/* desktop.c: the agent's notifications and lock watcher (desk->lock innermost) */
void desktop_stop(struct sc_server *srv);
/* A signature for client c succeeded with cert (its REF): notify = once/always. */
void desktop_signed(struct client *c, const char *cert);
/* A wrong PIN left token at its last try. */
void desktop_pin_final(struct sc_server *srv, const char *token);
/* An event going out (sc_server_broadcast): cards, and logouts that end "once". */
void desktop_event(struct sc_server *srv, const char *event, json_object *fields);
/* A worker logged out of count tokens for reason ("lock", "sleep"). */
void desktop_logged_out(struct sc_server *srv, long count, const char *reason);
/* supervise.c: every running worker logs out of every token, for reason; not waited for. */
void sup_logout_all(struct sc_sup *sup, const char *reason);

/* audit.c */
/* Open the audit log of o->audit_log (a file; "syslog" and NULL: none). */
void audit_open(struct sc_server *srv, const char *path);
void audit_close(struct sc_server *srv);
/* Whether audit() writes anything: when not, its details need not be gathered. */
int audit_on(const struct sc_server *srv);
void audit(struct sc_server *srv, struct client *c, const char *what, const char *detail, int r);

#endif
