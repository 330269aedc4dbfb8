/*
 * scagent tunnel: a local listener whose every connection goes on to one
 * server over mutual TLS, with a client certificate whose key is on the card.
 * Whoever reaches the listener signs in as the card's owner, so it serves only
 * its own user: a Unix socket of mode 0600 (and SO_PEERCRED), or a loopback
 * port where the connecting socket's owner is looked up (common/peeruid.h).
 */
#ifndef SC_CLI_TUNNEL_H
#define SC_CLI_TUNNEL_H

#include "tls/tlsclient.h"

/* --max-connections by default: connections served at once, beyond which new ones are refused. */
#define TUNNEL_MAX_CONNECTIONS 64
#define TUNNEL_MAX_CONNECTIONS_LIMIT 4096

struct tunnel_opts {
	const struct sc_tls_opts *tls;	/* for each upstream connection (o->agent names the socket) */
	const char *listen;		/* "ADDR:PORT" or "unix:PATH" */
	const char *connect;		/* "HOST:PORT" */
	int allow_remote;		/* a listen address other than loopback is wanted */
	int max_connections;
	long session_lifetime;		/* --session-lifetime seconds; 0: no session is kept */
	int keep_on_removal;		/* --keep-on-removal: the agent's events do not end sessions */
};

/* The syntax of --listen and --connect: EX_SC_OK, or EX_SC_USAGE (said on stderr). */
int tunnel_check(const struct tunnel_opts *o);
/* Runs until SIGTERM or SIGINT; the exit status (EX_SC_*), errors said on stderr. */
int tunnel_run(const struct tunnel_opts *o);

#endif
