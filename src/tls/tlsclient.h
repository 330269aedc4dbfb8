/*
 * The mutual-TLS client shared by `scagent connect`, `probe` and `tunnel`:
 * name resolution (with curl's --resolve), TCP, an OpenSSL 3 handshake (TLS
 * 1.2 and 1.3, renegotiation and post-handshake authentication accepted),
 * server verification (trust store or --cafile, RFC 6125 host name, Outlook's
 * msstd: principal), the choice of a client certificate from the agent's
 * tokens when the server asks for one, a key that signs through the agent,
 * and a small HTTP/1.1 exchange. Library code: it never prints unless asked
 * to (verbose notes) and never exits. Built from net.c, tlsclient.c,
 * verify.c, choice.c and http.c (what they share: tls-private.h).
 */
#ifndef SC_TLS_TLSCLIENT_H
#define SC_TLS_TLSCLIENT_H

#include <netdb.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include "scagent/scagent.h"
#include "tls/provider.h"
#include "tls/sessions.h"

/* The agent, connected on first use; one handle shared by all connections. */
struct sc_tls_agent {
	const char *socket;		/* NULL: the default socket */
	scagent_client *client;
	pthread_mutex_t lock;
};

void sc_tls_agent_init(struct sc_tls_agent *ag, const char *socket);
void sc_tls_agent_clear(struct sc_tls_agent *ag);
/* 0 with *client, or SC_ERR_AGENT_UNREACHABLE (why says what to do). */
int sc_tls_agent_get(struct sc_tls_agent *ag, scagent_client **client, char *why, size_t whylen);

/* A certificate that fits a server's request, offered for a choice. */
struct sc_tls_cand {
	char sha256[65];
	char label[128];
	char token[128];
	char subject[256];
	char issuer[256];
	char expires[16];		/* YYYY-MM-DD */
};

/*
 * Who chooses when several certificates fit and no preference names one (a
 * person at the terminal, a picker program): the index into cands, or
 * SC_ERR_* with why ("" when nobody could be asked). Called from the
 * handshake of any connection, so from several threads in a tunnel.
 */
typedef int (*sc_tls_chooser)(void *arg, const char *host, const char *port,
    const struct sc_tls_cand *cands, int n, char *why, size_t whylen);

struct sc_tls_opts {
	const char *cert_ref;		/* --cert, or NULL: chosen automatically */
	char cert_fp[65];		/* --cert resolved up front (sc_tls_find_cert): its SHA-256; "" when not */
	const char *cafile;		/* --cafile, or NULL: the system store */
	const char *principal;		/* NAME of --principal msstd:NAME, or NULL */
	const char **resolve;		/* --resolve HOST:PORT:ADDR entries */
	int nresolve;
	int tls_max;			/* TLS1_2_VERSION or TLS1_3_VERSION */
	int verbose;
	int strict;			/* 1: a bad chain or name fails the handshake; 0: recorded only */
	int offer_cert;			/* 0: record a certificate request, send no certificate */
	int resume_only;		/* identity only from a kept session: a request is not answered */
	int timeout_ms;			/* connect, read and write timeout; 0: none */
	char *(*ask_pin)(const char *label);	/* a per-signature PIN (struct sc_tls_signer) */
	struct sc_tls_agent *agent;
	struct sc_tls_sessions *sessions;	/* sessions to resume and keep; NULL: none (see sessions.h) */
	const char *proxy;		/* --proxy http://[user:pass@]host:port; NULL: https_proxy, HTTPS_PROXY; "": none */
	sc_tls_chooser choose;		/* several fit, no preference: who chooses; NULL: nobody (an error) */
	void *choose_arg;
};

/* An HTTP proxy that CONNECTs to the server. */
struct sc_tls_proxy {
	char host[256];
	char port[8];
	char *auth;			/* "Basic base64(user:pass)", or NULL; wiped and freed by sc_tls_conn_free */
	char shown[300];		/* http://host:port: for logs, never with the credentials */
	const char *source;		/* "--proxy", "https_proxy", "HTTPS_PROXY" */
};

/* When the server asked for a client certificate. */
enum sc_tls_req_phase {
	SC_TLS_REQ_NONE = 0, SC_TLS_REQ_HANDSHAKE, SC_TLS_REQ_RENEGOTIATION, SC_TLS_REQ_PHA
};
const char *sc_tls_req_phase_text(int phase);

/* What a CertificateRequest asked for. */
struct sc_tls_req {
	STACK_OF(X509_NAME) *ca_names;	/* empty: any CA */
	int version;			/* TLS1_2_VERSION, TLS1_3_VERSION */
	uint16_t sigalgs[64];		/* TLS SignatureScheme codes */
	int nsigalgs;
};

/* The certificate chosen for a request. */
struct sc_tls_choice {
	char sha256[65];
	char label[128];
	char token[128];
	char subject[256];
	char matched_ca[256];		/* the acceptable CA name it chains to */
	X509 *cert;
	STACK_OF(X509) *chain;		/* intermediates to send */
	int candidates;			/* certificates looked at */
	int matches;			/* certificates that fit */
	char how[360];			/* how it was chosen among several ("" when only one fits) */
	char why[1024];			/* no choice: why, with what to do */
};

/* Failure kinds, for advice. */
enum sc_tls_fail {
	SC_TLS_OK = 0,
	SC_TLS_E_USAGE,			/* bad URL or option */
	SC_TLS_E_RESOLVE,
	SC_TLS_E_TCP,
	SC_TLS_E_HANDSHAKE,		/* TLS negotiation failed */
	SC_TLS_E_CHAIN,			/* server certificate untrusted */
	SC_TLS_E_NAME,			/* server certificate for another name */
	SC_TLS_E_PRINCIPAL,		/* --principal does not match */
	SC_TLS_E_NOCERT,		/* asked for a certificate, none fits */
	SC_TLS_E_SIGN,			/* the agent could not sign */
	SC_TLS_E_REJECTED,		/* alert after the client certificate */
	SC_TLS_E_CLOSED,		/* server closed after the client certificate */
	SC_TLS_E_IO,			/* other failure after the handshake */
	SC_TLS_E_AGENT,			/* the agent is unreachable */
	SC_TLS_E_TIMEOUT,
	SC_TLS_E_PROXY			/* the HTTP proxy refused or failed the CONNECT */
};

struct sc_tls_conn {
	const struct sc_tls_opts *o;
	char host[256];
	char port[8];
	char addr[64];			/* numeric address connected to */
	char logprefix[32];		/* verbose notes start with this */
	int fd;
	int via_proxy;			/* proxy below is used */
	struct sc_tls_proxy proxy;
	char proxy_answer[128];		/* the proxy's status line */
	SSL_CTX *ctx;
	SSL *ssl;
	int handshake_done;
	/* the client certificate */
	int req_phase;			/* first request's enum sc_tls_req_phase */
	int requests;			/* CertificateRequests seen */
	struct sc_tls_req req;		/* the last request */
	int cert_sent;			/* a certificate was given to OpenSSL */
	struct sc_tls_choice choice;
	int resumed;			/* a kept session was resumed: no certificate sent, nothing signed */
	struct sc_tls_sess_id sess_id;	/* the certificate of the session resumed */
	unsigned long flight;		/* this connection makes the handshake others wait for */
	unsigned long sess_epoch;	/* the kept sessions' forgets when it began (sessions.h) */
	int choice_err;			/* SC_ERR_* of the last choice, 0 when one was made */
	EVP_PKEY *pkey;
	struct sc_tls_signer signer;
	/* the server certificate */
	long verify_err;		/* first verification error (X509_V_OK: none) */
	int verify_depth;
	char verify_subject[256];
	int sent_certs;			/* certificates the server sent (leaf first) */
	int sent_last_is_ca;		/* the last of them is a CA: it sent intermediates */
	char peer_names[512];		/* CN and DNS names of the server certificate */
	int principal_bad;		/* --principal matched none of them (found in verification) */
	char refused[512];		/* why no certificate was offered to this server; "" when not refused */
	int refused_kind;		/* its enum sc_tls_fail */
	/* failure */
	int fail;			/* enum sc_tls_fail */
	char err[1024];			/* one line: what failed */
	char alert[96];			/* fatal alert the server sent, "" when none */
	int alert_after_cert;
};

/* https://host[:port][/path]: 0, or SC_ERR_INVALID with why. */
int sc_tls_parse_url(const char *url, char *host, size_t hostlen, char *port, size_t portlen,
    char **path, char *why, size_t whylen);

void sc_tls_conn_init(struct sc_tls_conn *c, const struct sc_tls_opts *o,
    const char *host, const char *port);
void sc_tls_conn_free(struct sc_tls_conn *c);

/* Steps; each returns 0 or sets c->fail / c->err and returns SC_ERR_*. */
/*
 * The proxy for this connection, as curl chooses it: --proxy, else
 * https_proxy or HTTPS_PROXY, unless no_proxy (NO_PROXY) names the host
 * ("*", a name, a domain suffix, or for an address an address or ADDR/BITS). 0 (c->via_proxy says whether one is
 * used), or SC_ERR_INVALID with c->err for a malformed proxy URL.
 */
int sc_tls_proxy_choose(struct sc_tls_conn *c);
/* sc_tls_resolve and sc_tls_tcp reach the proxy when one is used; then this asks it to CONNECT. */
int sc_tls_proxy_connect(struct sc_tls_conn *c);
int sc_tls_resolve(struct sc_tls_conn *c, struct addrinfo **res);
int sc_tls_tcp(struct sc_tls_conn *c, struct addrinfo *res);
int sc_tls_handshake(struct sc_tls_conn *c);
/* --principal against the server certificate (0 when no --principal). */
int sc_tls_check_principal(struct sc_tls_conn *c);
/* All of the above. */
int sc_tls_open(struct sc_tls_conn *c);

/* 1 when the certificate is for host (a DNS name, RFC 6125 without partial wildcards, or an IP address). */
int sc_tls_host_matches(X509 *x, const char *host);

/* 1 when name (msstd: NAME) is the certificate's subject CN or a DNS SAN; names gets them all. */
int sc_tls_principal_matches(X509 *x, const char *name, char *names, size_t nameslen);

/*
 * --cert REF resolved once, before any connection, through the agent's find:
 * 0 with o->cert_fp set (0 and nothing done without --cert); SC_ERR_NOT_FOUND
 * or SC_ERR_AMBIGUOUS with why naming the candidates; SC_ERR_AGENT_UNREACHABLE.
 */
int sc_tls_find_cert(struct sc_tls_opts *o, char *why, size_t whylen);

/*
 * Choose a certificate for req of the server host:port among the agent's
 * (or --cert). When several fit: the preference remembered for the server
 * (prefs.h), else o->choose, else SC_ERR_AMBIGUOUS with the candidates in
 * ch->why. 0, or SC_ERR_* with ch->why.
 */
int sc_tls_choose_cert(const struct sc_tls_opts *o, const char *host, const char *port,
    const struct sc_tls_req *req, struct sc_tls_choice *ch, const char *logprefix);
void sc_tls_choice_clear(struct sc_tls_choice *ch);

/* I/O on the TLS connection: bytes, 0 at end of stream, or SC_ERR_* with c->fail set. */
long sc_tls_read(struct sc_tls_conn *c, void *buf, size_t len);
int sc_tls_write_all(struct sc_tls_conn *c, const void *buf, size_t len);

/* Record an OpenSSL failure in c (after SSL_connect/SSL_read/SSL_write returned ret). */
void sc_tls_record_failure(struct sc_tls_conn *c, int ret, const char *during);
/* One line of advice for c->fail (may be ""). */
const char *sc_tls_advice(const struct sc_tls_conn *c);
/* What to do when --principal does not match (SC_TLS_E_PRINCIPAL's advice). */
extern const char sc_tls_principal_advice[];

/*
 * The certificate this connection authenticates with: sent in its handshake,
 * or that of the session it resumed; NULL when none. token may be NULL.
 */
const char *sc_tls_identity(const struct sc_tls_conn *c, const char **token);

/* A description of the negotiated session: "TLSv1.3, TLS_AES_256_GCM_SHA384". */
void sc_tls_describe(const struct sc_tls_conn *c, char *buf, size_t len);

/* Verbose note (to stderr, when o->verbose). */
void sc_tls_note(const struct sc_tls_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- HTTP/1.1 ---- */

struct sc_http_resp {
	int status;
	char reason[128];
	char *head;			/* status line and headers, as received */
	size_t headlen;
	unsigned char *body;
	size_t bodylen;
	int req_phase_before;		/* c->req_phase when the request was sent */
};

/*
 * Send method path with extra headers ("Name: value") and body, read the
 * response (Content-Length, chunked, or until the server closes).
 * 0, or SC_ERR_* with c->fail and c->err.
 */
int sc_http_exchange(struct sc_tls_conn *c, const char *method, const char *path,
    const char **headers, int nheaders, const unsigned char *body, size_t bodylen,
    size_t maxbody, struct sc_http_resp *resp);
void sc_http_resp_free(struct sc_http_resp *resp);
/* Advice for an HTTP status after this connection's story ("" when none). */
const char *sc_http_advice(const struct sc_tls_conn *c, const struct sc_http_resp *resp);

#endif
