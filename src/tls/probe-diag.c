/* probe's findings for Exchange administrators (see probe-diag.h). */
#include "config.h"
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include "cert/certinfo.h"
#include "tls/probe-diag.h"

static void
finding(struct sc_tls_finding *f, const char *status, const char *code, const char *advice,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
finding(struct sc_tls_finding *f, const char *status, const char *code, const char *advice,
    const char *fmt, ...)
{
	va_list ap;

	f->status = status;
	f->code = code;
	va_start(ap, fmt);
	vsnprintf(f->detail, sizeof(f->detail), fmt, ap);
	va_end(ap);
	snprintf(f->advice, sizeof(f->advice), "%s", advice ? advice : "");
}

static void
subject_of(X509 *x, char *buf, size_t len)
{
	char *s = x ? sc_name_oneline(X509_get_subject_name(x)) : NULL;

	snprintf(buf, len, "%s", s ? s : "(none)");
	free(s);
}

static void
issuer_of(X509 *x, char *buf, size_t len)
{
	char *s = x ? sc_name_oneline(X509_get_issuer_name(x)) : NULL;

	snprintf(buf, len, "%s", s ? s : "(none)");
	free(s);
}

/* ---------------------------------------------------------------- chain */

static const struct {
	const char *code;
	const char *advice;
} chain_advice[] = {
	{ "incomplete-chain", "the server does not send its intermediate CA certificate: install it "
	    "on the server so that it goes with the server certificate (IIS/Exchange: import it into "
	    "the computer's Intermediate Certification Authorities store and restart IIS; nginx: "
	    "append it to the ssl_certificate file; Apache: SSLCertificateChainFile). Phones and "
	    "other machines without that certificate fail to trust the server" },
	{ "untrusted-root", "the chain leads to a root CA this machine does not trust (a private "
	    "AD CS root is trusted on domain-joined Windows machines only, from group policy): "
	    "install that root in the system store (update-ca-certificates) or pass it with --cafile FILE" },
	{ "self-signed", "the server presents a self-signed certificate (as Exchange's default "
	    "\"Microsoft Exchange\" certificate): assign a certificate from a CA to IIS "
	    "(Enable-ExchangeCertificate -Services IIS), or trust this one with --cafile FILE" },
	{ "expired", "a certificate of the server's chain has expired: renew it and assign the new "
	    "one on the server (IIS: the site's HTTPS binding; Exchange: Enable-ExchangeCertificate)" },
	{ "not-yet-valid", "a certificate of the server's chain is not valid yet: check the clocks "
	    "of this machine and of the server, or wait for its start date" },
	{ "invalid-chain", "fix the server's certificate chain (it should send its intermediates), "
	    "or give the right trust anchors with --cafile" },
	{ "no-certificate", "the server must send its certificate" },
	{ "wrong-name", "connect with a name the certificate lists (--resolve NAME:PORT:ADDR keeps "
	    "the address), or reissue the server certificate with this name in its SAN (Exchange: "
	    "the namespace of every virtual directory's external URL and autodiscover.DOMAIN)" },
};

const char *
sc_tls_chain_advice(const char *code)
{
	for (size_t i = 0; i < sizeof(chain_advice) / sizeof(chain_advice[0]); i++)
		if (code != NULL && strcmp(code, chain_advice[i].code) == 0)
			return chain_advice[i].advice;
	return "";
}

const char *
sc_tls_chain_code(const struct sc_tls_conn *c)
{
	switch (c->verify_err) {
	case X509_V_OK:
		return "";
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
		/*
		 * The issuer of the last certificate sent is nowhere. When that
		 * certificate is no CA, the server sent no intermediate: the
		 * missing one is an intermediate (or, rarely, a root issuing
		 * server certificates itself). When it is a CA, the server sent
		 * its intermediates and the root is what is not trusted here.
		 */
		return c->sent_last_is_ca ? "untrusted-root" : "incomplete-chain";
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		return "untrusted-root";
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
		return "self-signed";
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return "expired";
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return "not-yet-valid";
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		return "wrong-name";
	default:
		return "invalid-chain";
	}
}

/* The trust anchors' source, for details. */
static const char *
store_text(const struct sc_tls_conn *c)
{
	return c->o->cafile != NULL ? "--cafile" : "the system store";
}

/* Certificates of the verified path that the server did not send (leaf and anchor aside). */
static int
missing_from_sent(STACK_OF(X509) *sent, STACK_OF(X509) *verified, char *names, size_t len)
{
	int n = 0;

	names[0] = '\0';
	for (int i = 1; i < sk_X509_num(verified) - 1; i++) {
		X509 *x = sk_X509_value(verified, i);
		int found = 0;
		for (int k = 0; k < sk_X509_num(sent) && !found; k++)
			found = X509_cmp(x, sk_X509_value(sent, k)) == 0;
		if (!found) {
			char s[256];
			size_t off = strlen(names);
			subject_of(x, s, sizeof(s));
			if (off < len)
				snprintf(names + off, len - off, "%s%s", off ? "; " : "", s);
			n++;
		}
	}
	return n;
}

void
sc_tls_diag_chain(const struct sc_tls_conn *c, struct sc_tls_finding *f)
{
	STACK_OF(X509) *sk = c->ssl ? SSL_get_peer_cert_chain(c->ssl) : NULL;
	STACK_OF(X509) *vc = c->ssl ? SSL_get0_verified_chain(c->ssl) : NULL;
	const char *code;
	char anchor[256], missing[512], iss[256];
	int nsent = sk ? sk_X509_num(sk) : 0;

	if (nsent == 0) {
		finding(f, "fail", "no-certificate", sc_tls_chain_advice("no-certificate"),
		    "the server sent no certificate");
		return;
	}
	if (c->verify_err == X509_V_OK && vc != NULL && sk_X509_num(vc) > 0) {
		subject_of(sk_X509_value(vc, sk_X509_num(vc) - 1), anchor, sizeof(anchor));
		if (missing_from_sent(sk, vc, missing, sizeof(missing)) > 0)
			finding(f, "warn", "incomplete-chain", sc_tls_chain_advice("incomplete-chain"),
			    "%d certificate%s sent; the path to the trust anchor %s needs %s, which the "
			    "server did not send: it completes only from %s", nsent, nsent == 1 ? "" : "s",
			    anchor, missing, store_text(c));
		else
			finding(f, "pass", "", NULL, "%d certificate%s sent, verified to the trust anchor %s",
			    nsent, nsent == 1 ? "" : "s", anchor);
		return;
	}
	code = sc_tls_chain_code(c);
	if (strcmp(code, "incomplete-chain") == 0) {
		issuer_of(sk_X509_value(sk, nsent - 1), iss, sizeof(iss));
		finding(f, "fail", code, sc_tls_chain_advice(code), "%d certificate%s sent, no "
		    "intermediate CA among them; the issuer of %s, %s, is neither sent nor in %s (%s)",
		    nsent, nsent == 1 ? "" : "s", c->verify_subject, iss, store_text(c),
		    X509_verify_cert_error_string(c->verify_err));
	} else if (strcmp(code, "untrusted-root") == 0) {
		issuer_of(sk_X509_value(sk, nsent - 1), iss, sizeof(iss));
		finding(f, "fail", code, sc_tls_chain_advice(code), "%d certificate%s sent, up to %s; "
		    "its root %s is not trusted by %s (%s)", nsent, nsent == 1 ? "" : "s",
		    c->verify_subject, iss, store_text(c), X509_verify_cert_error_string(c->verify_err));
	} else
		finding(f, "fail", code, sc_tls_chain_advice(code), "%d certificate%s sent; the path "
		    "breaks at depth %d (%s): %s", nsent, nsent == 1 ? "" : "s", c->verify_depth,
		    c->verify_subject, X509_verify_cert_error_string(c->verify_err));
}

void
sc_tls_diag_name(const struct sc_tls_conn *c, struct sc_tls_finding *f)
{
	X509 *peer = c->ssl ? SSL_get0_peer_certificate(c->ssl) : NULL;
	char names[512];

	if (peer == NULL) {
		finding(f, "skip", "", NULL, "no server certificate");
		return;
	}
	sc_tls_principal_matches(peer, "", names, sizeof(names));
	if (sc_tls_host_matches(peer, c->host))
		finding(f, "pass", "", NULL, "the certificate is valid for %s", c->host);
	else
		finding(f, "fail", "wrong-name", sc_tls_chain_advice("wrong-name"),
		    "the certificate is for %s, not %s", names[0] ? names : "no DNS name", c->host);
}

/* ---------------------------------------------------------------- HTTP */

int
sc_http_substatus(const struct sc_http_resp *r)
{
	const char *b = r->body ? (const char *)r->body : "", *p;
	char want[8];

	snprintf(want, sizeof(want), "%d.", r->status);
	for (p = strstr(b, want); p != NULL; p = strstr(p + 1, want)) {
		const char *d = p + strlen(want);
		if ((p == b || !isdigit((unsigned char)p[-1])) && isdigit((unsigned char)*d))
			return atoi(d);
	}
	return -1;
}

static const struct {
	int status, sub;
	const char *code;
	const char *what;
	const char *advice;
} http_codes[] = {
	{ 403, 7, "cert-required", "403.7, client certificate required",
	    "IIS wants a client certificate and did not get a usable one: check that the server "
	    "trusts the issuing CA (the CA names of client-cert-request) and that the certificate "
	    "reached it (`scagent -v probe`)" },
	{ 403, 13, "cert-revoked", "403.13, client certificate revoked",
	    "the server found the certificate revoked: enrol a new certificate on the card; if it "
	    "should be valid, check the CA's CRL the server reads" },
	{ 403, 16, "cert-untrusted", "403.16, client certificate untrusted or invalid",
	    "the server does not trust the certificate's chain or cannot check its revocation: "
	    "install the issuing CA in the server's Intermediate store and the root in its Trusted "
	    "Root store, publish the CA in NTAuth (certutil -dspublish -f CA.cer NTAuthCA), and "
	    "make sure the server reaches the CRL" },
	{ 403, 17, "cert-expired", "403.17, client certificate expired or not yet valid",
	    "the certificate on the card is expired or not yet valid: enrol a new one (`scagent "
	    "list` shows its dates), or check the server's clock" },
	{ 401, -1, "not-mapped", "401 after the certificate",
	    "the server took the certificate at TLS but mapped it to no account: check that the UPN "
	    "in the certificate's SAN is the account's UPN (userPrincipalName), and that client "
	    "certificate mapping is enabled on the virtual directory (IIS: clientCertificateMapping"
	    "Authentication, Exchange: Set-*VirtualDirectory -CertificateAuthentication $true); if "
	    "this directory also wants a password, that is expected" },
};

void
sc_tls_diag_http(const struct sc_tls_conn *c, const struct sc_http_resp *r,
    struct sc_tls_finding *f)
{
	int sub = sc_http_substatus(r);

	for (size_t i = 0; i < sizeof(http_codes) / sizeof(http_codes[0]); i++) {
		if (http_codes[i].status != r->status || (http_codes[i].sub >= 0 && http_codes[i].sub != sub))
			continue;
		if (r->status == 401 && !c->cert_sent)
			break;
		finding(f, "fail", http_codes[i].code, http_codes[i].advice, "HTTP %d %s (%s)%s",
		    r->status, r->reason, http_codes[i].what, c->cert_sent ? "" :
		    "; no certificate was sent");
		return;
	}
	if (c->cert_sent && (r->status == 403 || r->status == 400 || r->status == 495 ||
	    r->status == 496) && sc_http_refuses_without_cert(r)) {
		finding(f, "fail", "cert-refused", sc_http_advice(c, r)[0] ? sc_http_advice(c, r) :
		    "the server refused the certificate: check its trust of the issuing CA and its logs",
		    "HTTP %d %s after the certificate was sent", r->status, r->reason);
		return;
	}
	finding(f, r->status >= 400 ? "fail" : "pass", "", NULL, "HTTP %d %s", r->status, r->reason);
}

int
sc_http_refuses_without_cert(const struct sc_http_resp *r)
{
	const char *b = r->body ? (const char *)r->body : "";

	return r->status == 403 || r->status == 495 || r->status == 496 ||
	    (r->status == 400 && (strcasestr(b, "SSL certificate") || strcasestr(b, "client certificate")));
}

/* ---------------------------------------------------------------- Accept or Require */

void
sc_tls_diag_required(const struct sc_tls_conn *c, int hs_ok, int http_ok,
    const struct sc_http_resp *r, struct sc_tls_finding *f)
{
	if (c->requests == 0)
		finding(f, "skip", "", NULL, "no certificate was asked for");
	else if (!hs_ok)
		finding(f, "pass", "", NULL, "the server ended the handshake when no certificate came "
		    "(%s)", c->alert[0] ? c->alert : "no alert");
	else if (!http_ok)
		finding(f, "pass", "", NULL, "the server refused to go on without a certificate: %s",
		    c->alert[0] ? c->alert : c->err);
	else if (sc_http_refuses_without_cert(r))
		finding(f, "pass", "", NULL, "without a certificate the server answered HTTP %d %s",
		    r->status, r->reason);
	else
		finding(f, "warn", "cert-optional", "the server accepts but does not require a "
		    "certificate: IIS SSL Settings of this site or virtual directory, Client "
		    "certificates 'Accept' -> 'Require' (only 'Require' makes certificate-based "
		    "authentication work); nginx ssl_verify_client on; Apache SSLVerifyClient require",
		    "the server asked for a certificate %s, got none, and answered HTTP %d %s anyway",
		    sc_tls_req_phase_text(c->req_phase), r->status, r->reason);
}

/* ---------------------------------------------------------------- requests */

static const struct {
	uint16_t code;
	const char *name;
} schemes[] = {
	{ 0x0401, "rsa_pkcs1_sha256" }, { 0x0501, "rsa_pkcs1_sha384" }, { 0x0601, "rsa_pkcs1_sha512" },
	{ 0x0201, "rsa_pkcs1_sha1" }, { 0x0203, "ecdsa_sha1" },
	{ 0x0804, "rsa_pss_rsae_sha256" }, { 0x0805, "rsa_pss_rsae_sha384" },
	{ 0x0806, "rsa_pss_rsae_sha512" }, { 0x0809, "rsa_pss_pss_sha256" },
	{ 0x080a, "rsa_pss_pss_sha384" }, { 0x080b, "rsa_pss_pss_sha512" },
	{ 0x0403, "ecdsa_secp256r1_sha256" }, { 0x0503, "ecdsa_secp384r1_sha384" },
	{ 0x0603, "ecdsa_secp521r1_sha512" }, { 0x0807, "ed25519" }, { 0x0808, "ed448" },
	/* legacy code points TLS 1.2 servers still list (RFC 5246's hash and signature pairs) */
	{ 0x0202, "dsa_sha1" }, { 0x0301, "rsa_pkcs1_sha224" }, { 0x0302, "dsa_sha224" },
	{ 0x0303, "ecdsa_sha224" }, { 0x0402, "dsa_sha256" }, { 0x0502, "dsa_sha384" },
	{ 0x0602, "dsa_sha512" },
};

/* Append to buf what fits (buf always ends in NUL). */
static void
append(char *buf, size_t len, const char *a, const char *b)
{
	size_t off = strlen(buf);

	if (off < len)
		snprintf(buf + off, len - off, "%s%s", a, b);
}

/*
 * What the server asked for: the TLS version, the CAs it named (first: the
 * part a person acts on, and what a long scheme list must not push out of a
 * one-line message), then its signature schemes.
 */
void
sc_tls_req_text(const struct sc_tls_req *req, char *buf, size_t len)
{
	snprintf(buf, len, "%s; CAs ", req->version >= TLS1_3_VERSION ? "TLS 1.3" : "TLS 1.2");
	if (sk_X509_NAME_num(req->ca_names) == 0)
		append(buf, len, "any (empty list)", "");
	for (int i = 0; i < sk_X509_NAME_num(req->ca_names); i++) {
		char *s = sc_name_oneline(sk_X509_NAME_value(req->ca_names, i));
		append(buf, len, i ? "; " : "", s ? s : "?");
		free(s);
	}
	append(buf, len, "; signature schemes ", req->nsigalgs == 0 ? "(none listed)" : "");
	for (int i = 0; i < req->nsigalgs; i++) {
		const char *nm = NULL;
		char hex[8];
		for (size_t k = 0; k < sizeof(schemes) / sizeof(schemes[0]) && nm == NULL; k++)
			if (schemes[k].code == req->sigalgs[i])
				nm = schemes[k].name;
		if (nm == NULL) {
			snprintf(hex, sizeof(hex), "0x%04x", req->sigalgs[i]);
			nm = hex;
		}
		append(buf, len, i ? ", " : "", nm);
	}
}

static int
req_has_pss(const struct sc_tls_req *req)
{
	for (int i = 0; i < req->nsigalgs; i++)
		if (req->sigalgs[i] >= 0x0804 && req->sigalgs[i] <= 0x0806)
			return 1;
	return 0;
}

const char *
sc_tls_nocert_advice(const struct sc_tls_req *req, const char *why)
{
	if (req->version >= TLS1_3_VERSION && !req_has_pss(req) && strstr(why, "RSA") != NULL)
		return "the server accepts no RSA-PSS signature over TLS 1.3, and TLS 1.3 signs with "
		    "RSA keys only in RSA-PSS: use --tls-max 1.2, an EC key, or allow "
		    "rsa_pss_rsae_sha256 on the server";
	if (sk_X509_NAME_num(req->ca_names) > 0)
		return "the server accepts certificates issued under the CAs it names only: enrol a "
		    "certificate from one of them, or add your issuing CA to the server's list "
		    "(IIS: the computer's Trusted Root / Intermediate stores, nginx "
		    "ssl_client_certificate, Apache SSLCACertificateFile); `scagent -v list` shows yours";
	return "run `scagent -v list` to see your certificates; the server must trust their "
	    "issuing CA, or pick one with --cert REF";
}
