/*
 * TLS sessions kept in memory, so that the card signs once per server and
 * certificate, not once per connection (issue 22): TLS 1.2 session ids and
 * tickets, TLS 1.3 tickets, each with the certificate it was made with, for
 * the server's lifetime of it, at most a cap. One full handshake in flight
 * per (server, certificate): a connection that finds no session while
 * another is being made waits for that one and resumes it instead of asking
 * the card in parallel. Only sessions in which the client certificate was
 * sent are kept: resuming one costs no signature and carries the identity.
 * Thread-safe; one mutex and one condition variable guard everything.
 */
#ifndef SC_TLS_SESSIONS_H
#define SC_TLS_SESSIONS_H

#include <openssl/ssl.h>

/* Default of --session-lifetime: Schannel's client cache keeps sessions 10 hours. */
#define SC_TLS_SESSION_LIFETIME (10 * 3600L)

struct sc_tls_sessions;

/* The certificate a session was made with. */
struct sc_tls_sess_id {
	char sha256[65];
	char label[128];
	char token[128];		/* the token's label ("" unknown) */
};

/* lifetime: seconds a session is kept at most (the server's own lifetime may be shorter). */
struct sc_tls_sessions *sc_tls_sessions_new(long lifetime);
void sc_tls_sessions_free(struct sc_tls_sessions *s);
long sc_tls_sessions_lifetime(const struct sc_tls_sessions *s);

/*
 * Before a handshake with host:port for the certificate want ("": any):
 * a session to resume (the caller's copy, SSL_SESSION_free it) with *id, or
 * NULL. With NULL, *flight is non-zero when this caller now makes the one
 * handshake in flight for that key (end it with sc_tls_sessions_end), 0 when
 * it waited max_wait_ms for another's in vain and goes on alone.
 * Waits while another caller's handshake for the key is in flight.
 */
SSL_SESSION *sc_tls_sessions_get(struct sc_tls_sessions *s, const char *host, const char *port,
    const char *want, struct sc_tls_sess_id *id, unsigned long *flight, int max_wait_ms);

/*
 * Keep a copy of sess, made with certificate id, for host:port: 1 kept,
 * 0 not (not resumable, expired, or no memory). Ends the flights it answers.
 */
int sc_tls_sessions_put(struct sc_tls_sessions *s, const char *host, const char *port,
    const struct sc_tls_sess_id *id, SSL_SESSION *sess);

/*
 * The flight's handshake is done: waiters resume what it kept, or, when
 * nothing comes within grace_ms (a TLS 1.3 ticket arrives after the
 * handshake), one of them makes the next handshake.
 */
void sc_tls_sessions_done(struct sc_tls_sessions *s, unsigned long flight, int grace_ms);
/* The flight is over (its handshake failed, or its connection ended). 0: no-op. */
void sc_tls_sessions_end(struct sc_tls_sessions *s, unsigned long flight);

/* Forget the sessions made with certificates of token (NULL: all): how many. */
int sc_tls_sessions_forget(struct sc_tls_sessions *s, const char *token);
/* Sessions kept now. */
int sc_tls_sessions_count(struct sc_tls_sessions *s);

#endif
