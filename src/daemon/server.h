/* The agent's socket server: accepts clients, runs their requests, pushes events. */
#ifndef SC_SERVER_H
#define SC_SERVER_H

#include <sys/types.h>
#include <json-c/json.h>
#include "token/token.h"

struct sc_server;

struct sc_server_opts {
	unsigned long idle_timeout_ms;	/* logins dropped after this long unused; 0 never */
	const char *pinentry;		/* pinentry program for logins without a PIN, or NULL */
	int confirm_sign;		/* ask through pinentry before each signature */
	const char *audit_log;		/* "syslog", a file, or NULL */
	unsigned long request_timeout_ms; /* a half-sent request is dropped after this */
	int max_clients;		/* connections served at once; 0: the default, 256 */
	int socket_kept;		/* the agent's socket is systemd's: it stays when the agent stops */
	/*
	 * A module's worker (scagentd --worker): listen_fd is the socketpair to
	 * the agent, over which connections arrive as passed fds with the
	 * client's identity (worker.c); no PC/SC watcher; ends when the agent's
	 * end closes, or to initialise its module again (sc_server_reinit).
	 */
	int worker;
	int notify;			/* the agent's desktop notifications: SC_NOTIFY_* */
	int logout_on_lock;		/* log out of every token when the screen locks or the machine sleeps */
};
enum { SC_NOTIFY_ONCE = 0, SC_NOTIFY_ALWAYS, SC_NOTIFY_NO };

/*
 * listen_fd may be -1: then only sc_server_add_client brings clients. st may
 * be NULL only for the agent that runs its modules in workers (set_sup).
 */
struct sc_server *sc_server_new(struct sc_store *st, int listen_fd, const struct sc_server_opts *o);
/*
 * Who a connection serves when that is not its socket's peer: a worker's
 * connections come from the agent, with the identity of the client each
 * serves (supervise.c sends it, worker.c receives it).
 */
struct sc_client_ident {
	pid_t pid;
	uid_t uid;
	const char *exe;
};
/*
 * Serve a connected socket fd (taken over: closed when the client goes, also
 * on failure). id NULL: the client is the socket's peer, checked as every
 * accepted one is (the agent's user or root, the client limit); the agent
 * calls it for each accept(), tests hand it one end of a socketpair. id set:
 * a connection the agent passed to its worker, already checked there.
 */
int sc_server_add_client(struct sc_server *srv, int fd, const struct sc_client_ident *id);
/* Serve until sc_server_stop() is called (from a signal handler: async-signal-safe). */
int sc_server_run(struct sc_server *srv);
void sc_server_stop(struct sc_server *srv);
void sc_server_free(struct sc_server *srv);
/*
 * The agent that runs each module in a worker process of its own (docs/
 * ARCHITECTURE.md): srv serves no store but passes requests on to sup's
 * workers. Before sc_server_run.
 */
struct sc_sup;
void sc_server_set_sup(struct sc_server *srv, struct sc_sup *sup);
/*
 * The agent on the desktop's buses (desktop.c): notifications on the session
 * bus, logind's Lock and PrepareForSleep on the system bus. After
 * sc_sup_start; stopped by sc_server_free. No bus: nothing.
 */
void desktop_start(struct sc_server *srv);
/*
 * A worker that stopped to have its module initialised again: its exit
 * status, SC_WORKER_REINIT (SC_WORKER_REINIT_TPM for the TPM's module); 0 not.
 */
int sc_server_reinit(struct sc_server *srv);
#define SC_WORKER_REINIT 75
#define SC_WORKER_REINIT_TPM 76
/* A worker whose module did not load (C_Initialize failed, no such file): absent, not a crash. */
#define SC_WORKER_ABSENT 77
/*
 * A worker whose module did not load tells the agent why on its socketpair
 * fd (one message) and ends with this, SC_WORKER_ABSENT (worker.c).
 */
int sc_worker_absent(struct sc_store *st, int fd);

/* The agent's workers: one `scagentd --worker MODULE` process per module (supervise.c). */
struct sc_sup_opts {
	const char *const *modules;	/* the modules, each once */
	size_t nmodules;
	const char *vsc_module;		/* one of them holds TPM virtual smart cards, or NULL */
	const char *const *args;	/* options every worker gets (NULL-terminated) */
	unsigned long timeout_ms;	/* a request's limit (module-timeout) */
	unsigned long slow_timeout_ms;	/* keygen, import, init-token, delete-token (keygen-timeout) */
};
struct sc_sup *sc_sup_new(const struct sc_sup_opts *o);
/* Start the workers and their supervisor; wait (up to timeout_ms) until they serve. */
int sc_sup_start(struct sc_sup *sup, struct sc_server *srv);
/* Stop every worker: SIGTERM, SIGKILL after 1 s; reaped. */
void sc_sup_stop(struct sc_sup *sup);
void sc_sup_free(struct sc_sup *sup);
/* Push an event to every watching client (fields stolen). */
void sc_server_broadcast(struct sc_server *srv, const char *event, json_object *fields);

#endif
