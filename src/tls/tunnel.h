/*
 * The tunnel engine of `scagent tunnel`: a local listener whose every
 * connection goes on to one server over mutual TLS, with a client
 * certificate whose key is on the card. Whoever reaches the listener signs
 * in as the card's owner, so it serves only its own user: a Unix socket of
 * mode 0600 (and SO_PEERCRED), or a loopback port where the connecting
 * socket's owner is looked up (common/peeruid.h). The CLI (cmd_tls.c)
 * parses the options into struct sc_tunnel_opts; the engine logs its
 * connections to stderr, one timestamped line each, and says what stops it
 * from starting through opts->say_err.
 */
#ifndef SC_TLS_TUNNEL_H
#define SC_TLS_TUNNEL_H

#include "tls/tlsclient.h"

/* --max-connections by default: connections served at once, beyond which new ones are refused. */
#define SC_TUNNEL_MAX_CONNECTIONS 64
#define SC_TUNNEL_MAX_CONNECTIONS_LIMIT 4096

struct sc_tunnel_opts {
	const struct sc_tls_opts *tls;	/* for each upstream connection (o->agent names the socket) */
	const char *listen;		/* "ADDR:PORT" or "unix:PATH" */
	const char *connect;		/* "HOST:PORT" */
	int allow_remote;		/* a listen address other than loopback is wanted */
	int max_connections;
	long session_lifetime;		/* --session-lifetime seconds; 0: no session is kept */
	int keep_on_removal;		/* --keep-on-removal: the agent's events do not end sessions */
	const char *allow_host;		/* --allow-host: more names a request may be for (comma-separated) */
	/* Says one error line (the CLI's "scagent: ..." on stderr). */
	void (*say_err)(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
};

/*
 * The syntax of --listen and --connect: SC_OK, or SC_ERR_INVALID (said
 * through o->say_err).
 */
int sc_tunnel_check(const struct sc_tunnel_opts *o);
/* "HOST:PORT" or "[V6]:PORT" into host and port: 0, or -1 when malformed. */
int sc_tunnel_split_hostport(const char *s, char *host, size_t hl, char *port, size_t pl);
/*
 * Runs until SIGTERM or SIGINT: SC_OK; SC_ERR_INVALID for a listen address
 * that cannot be used as given; another SC_ERR_* when it cannot start.
 * Errors said through o->say_err.
 */
int sc_tunnel_run(const struct sc_tunnel_opts *o);

#endif
