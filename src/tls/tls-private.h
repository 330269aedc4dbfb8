/*
 * What the parts of the TLS client share (net.c, tlsclient.c, verify.c,
 * choice.c, http.c); not for the rest of the project, which includes
 * tlsclient.h.
 *
 * Threads and locks: a struct sc_tls_conn belongs to one thread (the
 * command's, or one tunnel connection's). What connections share has its
 * own lock: struct sc_tls_agent's lock guards its one agent connection
 * (connected on first use, sc_tls_agent_get); the session cache's lock
 * (sessions.c) guards the kept sessions and the full handshakes in flight,
 * and its condition variable wakes the connections that wait for one; the
 * provider's prov_lock (provider.c) guards its library context, loaded
 * once. The SSL ex_data index that finds a connection from OpenSSL's
 * callbacks is made once, under pthread_once (tlsclient.c). The tunnel's
 * threads and lock are written at its struct tunnel (tunnel.c).
 */
#ifndef SC_TLS_PRIVATE_H
#define SC_TLS_PRIVATE_H

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include "tls/tlsclient.h"

/* c->fail = kind and c->err = the formatted line; returns code (an SC_ERR_*). */
int sc_tls_fail(struct sc_tls_conn *c, int kind, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* A verbose note (to stderr when verbose), after "scagent: " and prefix. */
void sc_tls_note_prefix(int verbose, const char *prefix, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void sc_tls_x509s_free(STACK_OF(X509) *sk);
/* A name in one line, "(none)" for NULL. */
void sc_tls_name_text(const X509_NAME *n, char *buf, size_t len);

/* The connection an SSL belongs to (tlsclient.c). */
struct sc_tls_conn *sc_tls_conn_of(const SSL *ssl);

/* verify.c: OpenSSL's verification callbacks, and whether a certificate may go to this server. */
int sc_tls_verify_cb(int ok, X509_STORE_CTX *xs);
int sc_tls_cert_verify_cb(X509_STORE_CTX *xs, void *arg);
/* 1 when the server passed chain, name and principal; else 0 with c->refused and c->refused_kind. */
int sc_tls_server_passed(struct sc_tls_conn *c, SSL *ssl);
/* Append n to the list in names (", " between). */
void sc_tls_append_name(char *names, size_t len, const char *n);

/* choice.c: the request's signature schemes the agent can make, by name. */
void sc_tls_sigalgs_text(const struct sc_tls_req *req, char *buf, size_t len);

#endif
