/*
 * What probe tells an Exchange administrator: a finding (status, a stable
 * `code`, one line of detail and one of advice) for the server's chain and
 * name, for a server that asks for a client certificate but carries on
 * without one ("Accept" instead of "Require"), for the HTTP answer after the
 * certificate (IIS's 403.x substatus in its error page, a 401 when the
 * certificate maps to no account), and why no certificate fitted a request.
 * Library code: it reads a connection's story and never prints.
 */
#ifndef SC_TLS_PROBE_DIAG_H
#define SC_TLS_PROBE_DIAG_H

#include <stddef.h>
#include "tls/tlsclient.h"

struct sc_tls_finding {
	const char *status;		/* "pass", "warn", "fail" */
	const char *code;		/* "" when nothing is wrong */
	char detail[1024];
	char advice[640];
};

/*
 * server-chain: pass; warn incomplete-chain (verified, but only with an
 * intermediate the server did not send); fail incomplete-chain,
 * untrusted-root, self-signed, expired, not-yet-valid, invalid-chain,
 * no-certificate. Needs the connection's handshake to have reached the
 * server's Certificate.
 */
void sc_tls_diag_chain(const struct sc_tls_conn *c, struct sc_tls_finding *f);

/* server-name: pass, or fail wrong-name. */
void sc_tls_diag_name(const struct sc_tls_conn *c, struct sc_tls_finding *f);

/* The advice for a chain failure code (static text; "" for an unknown code). */
const char *sc_tls_chain_advice(const char *code);
/* The code of c's chain failure (c->verify_err and what the server sent). */
const char *sc_tls_chain_code(const struct sc_tls_conn *c);

/*
 * The substatus IIS writes in its error page ("HTTP Error 403.16 -
 * Forbidden"): 16 for 403.16; -1 when the body has none for this status.
 */
int sc_http_substatus(const struct sc_http_resp *r);

/*
 * An HTTP answer on a connection that sent a client certificate (or, when
 * cert_sent is 0, did not): code cert-required (403.7), cert-revoked
 * (403.13), cert-untrusted (403.16), cert-expired (403.17), not-mapped (401
 * after the certificate), cert-refused (another 403 or 400 about the
 * certificate); status fail with advice; "" and pass when the answer is not
 * about the certificate.
 */
void sc_tls_diag_http(const struct sc_tls_conn *c, const struct sc_http_resp *r,
    struct sc_tls_finding *f);

/*
 * 1 when an HTTP answer to a connection without a certificate refuses to go
 * on without one (nginx's 400 "No required SSL certificate", IIS 403.7,
 * Apache's 403 after a failed renegotiation, 495/496).
 */
int sc_http_refuses_without_cert(const struct sc_http_resp *r);

/*
 * client-cert-required, from a connection that sent no certificate: hs_ok
 * says whether its handshake completed, http_ok whether r holds the answer
 * to the request sent after it. skip when no certificate was asked for;
 * pass when the server refused to go on without one (a failed handshake,
 * an alert or a closed connection after the request, a refusing answer);
 * warn with code cert-optional when it answered anyway ("Accept").
 */
void sc_tls_diag_required(const struct sc_tls_conn *c, int hs_ok, int http_ok,
    const struct sc_http_resp *r, struct sc_tls_finding *f);

/*
 * What a CertificateRequest asked for, in words, always said where no
 * certificate fitted: "TLS 1.3; signature schemes rsa_pkcs1_sha256,
 * ecdsa_secp256r1_sha256; CAs CN=...; CN=...".
 */
void sc_tls_req_text(const struct sc_tls_req *req, char *buf, size_t len);
/* Advice when no certificate fitted req (TLS 1.3 without RSA-PSS, CA list, ...). */
const char *sc_tls_nocert_advice(const struct sc_tls_req *req, const char *why);

#endif
