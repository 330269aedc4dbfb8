/*
 * The sweep of scagent probe --exchange HOST (exchange.c): Exchange's
 * virtual directories and extra paths, each without and with a client
 * certificate. The CLI (cmd_exchange.c) prints the result as a table or
 * JSON.
 */
#ifndef SC_TLS_EXCHANGE_H
#define SC_TLS_EXCHANGE_H

#include "tls/probe-diag.h"
#include "tls/tlsclient.h"

/* One path's findings. */
struct sc_exchange_endpoint {
	const char *path;
	const char *client_cert;	/* require, accept, none */
	const char *requested;		/* handshake, renegotiation, post-handshake, never */
	int without, with;		/* HTTP status; -1: none */
	const char *result;		/* pass, warn, fail */
	const char *code;		/* a finding's code, or "" */
	char advice[640];
};

/* The server as the first connection saw it: chain, name, principal. */
struct sc_exchange_server {
	int checked;
	struct sc_tls_finding chain, name;
	char principal[512];		/* "" when it matches or was not asked */
	char desc[128];
};

/* A sweep: what it carries from one path to the next, and what it found. */
struct sc_exchange {
	const struct sc_tls_opts *o;
	char host[256], port[8];
	int signatures;			/* card signatures the sweep cost */
	struct sc_exchange_server sv;
	struct sc_exchange_endpoint *ep;	/* the paths tried (n; 0 when the server failed its checks) */
	int n;
	const char *result;		/* pass, warn, fail: the worst of them */
};

/*
 * The sweep of TARGET (HOST, HOST:PORT or an https:// URL whose path is
 * ignored) with o: 0, or SC_ERR_* (why says what is wrong with TARGET; ""
 * when memory ran out).
 */
int sc_exchange_init(struct sc_exchange *sw, const struct sc_tls_opts *o, const char *target,
    char *why, size_t whylen);
/* Sweep Exchange's paths and the extra ones: 0, or SC_ERR_NOMEM. */
int sc_exchange_run(struct sc_exchange *sw, const char **extra, int nextra);
void sc_exchange_free(struct sc_exchange *sw);

#endif
