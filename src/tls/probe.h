/*
 * scagent probe URL, its checks: what a server does with client
 * certificates, found in up to three connections (see docs/TLS.md "probe").
 * The CLI parses the options into struct sc_probe_opts and prints the
 * checks of struct sc_probe_result as text or JSON (INTERFACE.md).
 */
#ifndef SC_TLS_PROBE_H
#define SC_TLS_PROBE_H

#include <json-c/json.h>
#include "tls/tlsclient.h"

/* The checks, in the order they are made and printed. */
enum {
	SC_PROBE_RESOLVE, SC_PROBE_TCP, SC_PROBE_PROXY, SC_PROBE_HANDSHAKE, SC_PROBE_CHAIN,
	SC_PROBE_NAME, SC_PROBE_PRINCIPAL, SC_PROBE_REQUEST, SC_PROBE_REQUIRED, SC_PROBE_MATCH,
	SC_PROBE_AUTH, SC_PROBE_HTTP, SC_PROBE_COUNT
};

/* Their ids ("resolve", "tcp", ...). */
extern const char *const sc_probe_check_ids[SC_PROBE_COUNT];

struct sc_probe_check {
	const char *status;		/* pass, warn, fail, skip; "absent": proxy, when none is used */
	const char *code;		/* a finding's code (probe-diag.h), or NULL */
	char detail[1024];
	char advice[512];
	json_object *extra;		/* server-chain: its certificates */
	int resumption;			/* client-auth: 1 resumed, -1 not, 0 not tried */
};

struct sc_probe_opts {
	const struct sc_tls_opts *tls;	/* --cert resolved; sessions for the run */
	const char *host;
	const char *port;
	const char *path;
	/* A verbose line (the CLI's "scagent: ..." on stderr); called only with tls->verbose. */
	void (*say)(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
};

struct sc_probe_result {
	struct sc_probe_check checks[SC_PROBE_COUNT];
};

/* Run the checks into res (every one set). */
void sc_probe_run(const struct sc_probe_opts *o, struct sc_probe_result *res);
/* 1 when a check failed. */
int sc_probe_failed(const struct sc_probe_result *res);
void sc_probe_result_free(struct sc_probe_result *res);

#endif
