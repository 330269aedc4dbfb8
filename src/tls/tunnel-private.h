/*
 * What the tunnel's files share: tunnel.c (threads, admission, the agent's
 * events), tunnel-conn.c (a connection's life: gate, handshake, relay) and
 * tunnel-listen.c (the listener). The threads and what the lock of
 * struct tunnel guards are written at that struct; the listener is the
 * main thread's alone.
 */
#ifndef SC_TLS_TUNNEL_PRIVATE_H
#define SC_TLS_TUNNEL_PRIVATE_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/un.h>
#include "tls/tunnel.h"
#include "tls/tunnel-gate.h"

/* The listening socket. */
struct listener {
	int fd;
	int is_unix;
	int loopback;			/* a loopback address (or a Unix socket) */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];	/* is_unix: removed at the end */
	dev_t dev;			/* the socket file made, so that only it is removed */
	ino_t ino;
};

/* Listen as --listen says: SC_OK, or SC_ERR_INVALID / SC_ERR_IO (said through o->say_err). */
int sc_tunnel_listen(const struct sc_tunnel_opts *o, struct listener *l);
/* Close the listener; a Unix socket's file goes too, if it is still the one made. */
void sc_tunnel_listener_close(struct listener *l);

/*
 * Threads: the main thread accepts, admits and joins finished connection
 * threads; a thread per connection opens its upstream and relays; the
 * watch thread (kept sessions, no --keep-on-removal) follows the agent's
 * events. lock guards active, served, done/ndone/capdone (threads to be
 * joined), the open list and stopping; idle is signalled when active
 * drops. Kept sessions have the cache's own lock (sessions.c); each
 * connection has its own agent handle (struct sc_tls_agent).
 */
struct tunnel {
	const struct sc_tunnel_opts *o;
	char host[256];
	char port[8];
	uid_t uid;			/* the one user served (unless remote clients are allowed) */
	int check_uid;			/* 0 only for --allow-remote on an address other than loopback */
	int stop_rd, stop_wr;		/* self-pipe: SIGTERM/SIGINT */
	int done_rd, done_wr;		/* a byte per finished connection thread */
	pthread_mutex_t lock;
	pthread_cond_t idle;
	int active;			/* connection threads not yet finished */
	unsigned long served;
	pthread_t *done;		/* finished threads, to be joined */
	size_t ndone, capdone;
	struct sc_tls_sessions *sessions;	/* kept sessions, shared by the connections; NULL: none */
	struct tconn *open;		/* connections whose upstream is up (under lock) */
	int stopping;			/* the watch thread ends (under lock) */
	unsigned long forgets;		/* tunnel_forget calls so far (under lock) */
	int watch_up;			/* the watch thread follows the agent's events (under lock; idle signalled) */
	int gated;			/* a TCP listener: requests pass the browser gate */
	struct sc_gate_hosts gh;	/* what the gate lets through */
	/* refusals logged one by one in this window, and those counted only (under lock) */
	uint64_t refusal_window;
	unsigned long refusals, refusals_unsaid;
};

struct tconn {
	struct tunnel *t;
	unsigned long id;
	int fd;
	char peer[96];
	/* while in t->open: */
	struct tconn *next;
	int upfd;			/* the upstream socket */
	int has_identity;		/* a client certificate authenticates it */
	char token[128];		/* that certificate's token ("" unknown) */
	struct sc_gate gate;		/* t->gated: the first request, held until judged */
	unsigned long forgets0;		/* t->forgets when it was accepted */
};

/* One timestamped line on stderr; peers' and servers' words escaped (text.h). */
void sc_tunnel_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * A refused connection or request, logged as sc_tunnel_log while no more than
 * SC_TUNNEL_REFUSALS_SAID were in the last SC_TUNNEL_REFUSAL_WINDOW_MS; the
 * rest are counted and said in one line (tunnel_refusals_said): a flood of
 * them, another user's or a web page's, cannot flood the log.
 */
#define SC_TUNNEL_REFUSALS_SAID 20
#define SC_TUNNEL_REFUSAL_WINDOW_MS 10000
void sc_tunnel_refused(struct tunnel *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The refusals counted and not yet said, said now (at the end). */
void sc_tunnel_refusals_said(struct tunnel *t);
/* A connection's thread (tunnel-conn.c): it owns tc and frees it. */
void *sc_tunnel_conn_main(void *arg);

#endif
