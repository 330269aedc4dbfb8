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

/* Why the handshake a connection waited for failed: it fails the same way, without the card. */
struct sc_tls_sess_fail {
	int kind;			/* enum sc_tls_fail of tlsclient.h; 0: no failure */
	int sign_err;			/* the signer's SC_ERR_* (0: none) */
	char token[128];		/* the token of the certificate chosen ("" none) */
	char why[1024];			/* the failing connection's one line */
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
 * it waited max_wait_ms for another's in vain and goes on alone, or when
 * the handshake it waited for failed: then failed->kind is set, and the
 * caller fails with it instead of asking the card again (the card was just
 * removed, the PIN was wrong, or the server refused the certificate: asking
 * once per waiting connection would cost a signature, or a prompt, each).
 * Waits while another caller's handshake for the key is in flight.
 */
SSL_SESSION *sc_tls_sessions_get(struct sc_tls_sessions *s, const char *host, const char *port,
    const char *want, struct sc_tls_sess_id *id, unsigned long *flight, int max_wait_ms,
    struct sc_tls_sess_fail *failed);

/*
 * Keep a copy of sess, made with certificate id, for host:port: the seconds
 * it is kept for (the server's ticket lifetime, at most the cap), or 0 when
 * it is not (not resumable, no memory, or a forget came after epoch, the
 * sc_tls_sessions_epoch its connection began under: the card may be gone).
 * Ends the flights it answers.
 */
long sc_tls_sessions_put(struct sc_tls_sessions *s, const char *host, const char *port,
    const struct sc_tls_sess_id *id, SSL_SESSION *sess, unsigned long epoch);

/*
 * The flight's handshake is done: waiters resume what it kept, or, when
 * nothing comes within grace_ms (a TLS 1.3 ticket arrives after the
 * handshake), one of them makes the next handshake.
 */
void sc_tls_sessions_done(struct sc_tls_sessions *s, unsigned long flight, int grace_ms);
/* The flight is over without a session (its connection ended, or sent no certificate). 0: no-op. */
void sc_tls_sessions_end(struct sc_tls_sessions *s, unsigned long flight);
/* The flight's connection failed (how: *why): its waiters fail so too. 0: no-op. */
void sc_tls_sessions_fail(struct sc_tls_sessions *s, unsigned long flight,
    const struct sc_tls_sess_fail *why);

/* Forget the sessions made with certificates of token (NULL: all): how many (s NULL: 0). */
int sc_tls_sessions_forget(struct sc_tls_sessions *s, const char *token);
/* Counts the forgets so far: taken when a connection begins, given to _put. */
unsigned long sc_tls_sessions_epoch(struct sc_tls_sessions *s);
/* Sessions kept now. */
int sc_tls_sessions_count(struct sc_tls_sessions *s);

#endif
