/* The agent's socket server: accepts clients, runs their requests, pushes events. */
#ifndef SC_SERVER_H
#define SC_SERVER_H

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
	int socket_kept;		/* the socket is systemd's: it stays when the agent stops */
};

/* listen_fd may be -1: then only sc_server_add_client brings clients. */
struct sc_server *sc_server_new(struct sc_store *st, int listen_fd, const struct sc_server_opts *o);
/*
 * Serve a connected socket fd (taken over: closed when the client goes) as
 * an accepted one: the same peer check, client limit and thread. The agent
 * calls it for each accept(); tests hand it one end of a socketpair.
 */
int sc_server_add_client(struct sc_server *srv, int fd);
/* Serve until sc_server_stop() is called (from a signal handler: async-signal-safe). */
int sc_server_run(struct sc_server *srv);
void sc_server_stop(struct sc_server *srv);
void sc_server_free(struct sc_server *srv);
/* Push an event to every watching client (fields stolen). */
void sc_server_broadcast(struct sc_server *srv, const char *event, json_object *fields);

#endif
