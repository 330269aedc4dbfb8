/*
 * The server certificate's checks, where OpenSSL verifies it: the chain,
 * the host name (RFC 6125, no partial wildcards; IP addresses), Outlook's
 * msstd: principal, and whether a certificate may be offered to this server.
 */
#include "config.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "cert/certinfo.h"
#include "common/err.h"
#include "common/util.h"
#include "tls/probe-diag.h"
#include "tls/tlsclient.h"
#include "tls/tls-private.h"

int
sc_tls_verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct sc_tls_conn *c = ssl ? sc_tls_conn_of(ssl) : NULL;

	if (c != NULL && c->peer_names[0] == '\0' && X509_STORE_CTX_get0_cert(xs) != NULL)
		sc_tls_principal_matches(X509_STORE_CTX_get0_cert(xs), "", c->peer_names,
		    sizeof(c->peer_names));
	if (!ok && c != NULL && c->verify_err == X509_V_OK) {
		X509 *x = X509_STORE_CTX_get_current_cert(xs);
		c->verify_err = X509_STORE_CTX_get_error(xs);
		c->verify_depth = X509_STORE_CTX_get_error_depth(xs);
		sc_tls_name_text(x ? X509_get_subject_name(x) : NULL, c->verify_subject, sizeof(c->verify_subject));
	}
	return c != NULL && !c->o->strict ? 1 : ok;
}

/*
 * The whole check of the server certificate, where OpenSSL verifies it: the
 * chain (and, strict, the host name) by X509_verify_cert, then --principal.
 * A strict handshake with a server for another principal ends here, before
 * the server's CertificateRequest can be answered; not strict, the failure
 * is only recorded (cert_cb then offers no certificate).
 */
int
sc_tls_cert_verify_cb(X509_STORE_CTX *xs, void *arg)
{
	struct sc_tls_conn *c = arg;
	X509 *leaf = X509_STORE_CTX_get0_cert(xs);
	STACK_OF(X509) *sent = X509_STORE_CTX_get0_untrusted(xs);
	int ok;

	/* What the server sent, for probe-diag's incomplete-chain. */
	c->sent_certs = sent ? sk_X509_num(sent) : 0;
	c->sent_last_is_ca = c->sent_certs > 0 && X509_check_ca(sk_X509_value(sent, c->sent_certs - 1)) > 0;
	ok = X509_verify_cert(xs);

	if (ok > 0 && c->o->principal != NULL &&
	    (leaf == NULL || !sc_tls_principal_matches(leaf, c->o->principal, NULL, 0))) {
		c->principal_bad = 1;
		if (c->o->strict) {
			X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
			ok = 0;
		}
	}
	return c->o->strict ? ok : 1;
}

/*
 * 1 when the server passed its checks (trusted chain, host name, principal);
 * else 0 with c->refused and c->refused_kind saying which failed.
 */
int
sc_tls_server_passed(struct sc_tls_conn *c, SSL *ssl)
{
	X509 *peer = SSL_get0_peer_certificate(ssl);
	long v = SSL_get_verify_result(ssl);
	char names[512];

	if (peer == NULL) {
		c->refused_kind = SC_TLS_E_CHAIN;
		snprintf(c->refused, sizeof(c->refused), "the server sent no certificate");
	} else if (c->verify_err != X509_V_OK || (v != X509_V_OK && !c->principal_bad)) {
		c->refused_kind = SC_TLS_E_CHAIN;
		snprintf(c->refused, sizeof(c->refused), "its certificate is not trusted: %s",
		    X509_verify_cert_error_string(c->verify_err != X509_V_OK ? c->verify_err : v));
	} else if (!sc_tls_host_matches(peer, c->host)) {
		sc_tls_principal_matches(peer, "", names, sizeof(names));
		c->refused_kind = SC_TLS_E_NAME;
		snprintf(c->refused, sizeof(c->refused), "its certificate is not for %.200s (it names %.250s)",
		    c->host, names[0] ? names : "no DNS name");
	} else if (c->o->principal != NULL &&
	    (c->principal_bad || !sc_tls_principal_matches(peer, c->o->principal, names, sizeof(names)))) {
		sc_tls_principal_matches(peer, "", names, sizeof(names));
		c->refused_kind = SC_TLS_E_PRINCIPAL;
		snprintf(c->refused, sizeof(c->refused), "--principal msstd:%.150s does not match its "
		    "certificate, which names %.250s", c->o->principal, names[0] ? names : "nothing");
	} else
		return 1;
	return 0;
}

/* ---------------------------------------------------------------- principal */

void
sc_tls_append_name(char *names, size_t len, const char *n)
{
	size_t off = strlen(names);

	if (off < len)
		snprintf(names + off, len - off, "%s%s", off ? ", " : "", n);
}

int
sc_tls_principal_matches(X509 *x, const char *name, char *names, size_t nameslen)
{
	X509_NAME *subj = X509_get_subject_name(x);
	GENERAL_NAMES *gens;
	int match = 0, i = -1;

	if (names && nameslen)
		names[0] = '\0';
	while ((i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0) {
		ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
		unsigned char *u = NULL;
		int n = ASN1_STRING_to_UTF8(&u, d);
		if (n > 0 && memchr(u, '\0', (size_t)n) == NULL) {
			if (strcasecmp((char *)u, name) == 0)
				match = 1;
			if (names)
				sc_tls_append_name(names, nameslen, (char *)u);
		}
		OPENSSL_free(u);
	}
	if ((gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL)) != NULL) {
		for (int k = 0; k < sk_GENERAL_NAME_num(gens); k++) {
			GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, k);
			const char *s;
			int n;
			if (g->type != GEN_DNS)
				continue;
			s = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
			n = ASN1_STRING_length(g->d.dNSName);
			if (n <= 0 || memchr(s, '\0', (size_t)n) != NULL)
				continue;
			if ((size_t)n == strlen(name) && strncasecmp(s, name, (size_t)n) == 0)
				match = 1;
			if (names) {
				char tmp[256];
				snprintf(tmp, sizeof(tmp), "%.*s", n, s);
				sc_tls_append_name(names, nameslen, tmp);
			}
		}
		GENERAL_NAMES_free(gens);
	}
	return match;
}

int
sc_tls_host_matches(X509 *x, const char *host)
{
	unsigned char tmp[16];

	if (inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1)
		return X509_check_ip_asc(x, host, 0) == 1;
	return X509_check_host(x, host, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
}

int
sc_tls_check_principal(struct sc_tls_conn *c)
{
	X509 *peer;
	char names[512];

	if (c->o->principal == NULL)
		return SC_OK;
	if ((peer = SSL_get0_peer_certificate(c->ssl)) == NULL)
		return sc_tls_fail(c, SC_TLS_E_PRINCIPAL, SC_ERR_TLS, "the server sent no certificate to "
		    "check --principal against");
	if (!sc_tls_principal_matches(peer, c->o->principal, names, sizeof(names)))
		return sc_tls_fail(c, SC_TLS_E_PRINCIPAL, SC_ERR_TLS, "--principal msstd:%s does not match "
		    "the server certificate, which names %s", c->o->principal,
		    names[0] ? names : "nothing (no CN, no DNS name)");
	sc_tls_note(c, "principal msstd:%s matches the server certificate", c->o->principal);
	return SC_OK;
}
