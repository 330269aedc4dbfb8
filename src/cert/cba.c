/*
 * Whether a certificate suits certificate-based authentication (CBA): the
 * problem codes of INTERFACE.md (sc_cert_cba), the trust anchors of
 * --cafile (sc_cert_anchors_pem) and the chain to them. What the
 * certificate says is read with certinfo.c's helpers (cert-private.h).
 *
 * The chain check ignores only the leaf's own validity period (reported as
 * expired/not-yet-valid already); intermediates and roots are checked at
 * the same time as the leaf.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "cert/cert-private.h"
#include "cert/certinfo.h"
#include "common/err.h"
#include "common/log.h"

/*
 * The leaf's validity period and purpose (EKU, key usage) are reported on
 * their own: do not fail the chain on them. The CAs above it are checked for
 * client authentication as a TLS server checks them.
 */
static int
leaf_cb(int ok, X509_STORE_CTX *ctx)
{
	if (ok || X509_STORE_CTX_get_error_depth(ctx) != 0)
		return ok;
	switch (X509_STORE_CTX_get_error(ctx)) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
	case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
	case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
	case X509_V_ERR_INVALID_PURPOSE:
		return 1;
	default:
		return ok;
	}
}

int
sc_cert_anchors_pem(const char *pem, size_t len, X509_STORE **out, int *count)
{
	X509_STORE *store = NULL;
	BIO *b = NULL;
	X509 *x;
	unsigned long e;
	int n = 0, r = SC_ERR_NOMEM;

	*out = NULL;
	if (count != NULL)
		*count = 0;
	if (len > INT_MAX) {
		r = SC_ERR_TOO_LARGE;
		goto out;
	}
	if ((store = X509_STORE_new()) == NULL || (b = BIO_new_mem_buf(pem, (int)len)) == NULL)
		goto out;
	ERR_clear_error();
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		/* OpenSSL 3 takes a certificate given twice as once. */
		if (X509_STORE_add_cert(store, x) != 1) {
			X509_free(x);
			goto out;
		}
		X509_free(x);
		n++;
	}
	/* The loop ends at the text's end (no more blocks) or at a bad block. */
	e = ERR_peek_last_error();
	if (n == 0 || ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
		r = SC_ERR_CERT;
		goto out;
	}
	*out = store;
	store = NULL;
	if (count != NULL)
		*count = n;
	r = SC_OK;
out:
	ERR_clear_error();
	BIO_free(b);
	X509_STORE_free(store);
	return r;
}

/* The CBA problem code of a chain that failed with OpenSSL's err. */
static const char *
chain_code(int err)
{
	switch (err) {
	case X509_V_ERR_INVALID_PURPOSE:
		return "chain-purpose";
	case X509_V_ERR_INVALID_CA:
	case X509_V_ERR_KEYUSAGE_NO_CERTSIGN:
		return "chain-invalid-ca";
	default:
		return "chain-untrusted";
	}
}

/*
 * Why the chain failed: OpenSSL's reason, after the subject of the
 * certificate it concerns when that is not the leaf. Caller frees.
 */
static char *
chain_reason(X509_STORE_CTX *ctx, int ok)
{
	const char *why = "the certificate chain could not be verified";
	X509 *at = X509_STORE_CTX_get_current_cert(ctx);
	char *subject = NULL, *s;
	int err = X509_STORE_CTX_get_error(ctx);
	size_t n;

	if (ok == 0 && err != X509_V_OK)
		why = X509_verify_cert_error_string(err);
	if (err == X509_V_OK || X509_STORE_CTX_get_error_depth(ctx) <= 0 ||
	    at == NULL || cert_name_oneline(X509_get_subject_name(at), &subject) != 0)
		return strdup(why);
	n = strlen(subject) + strlen(why) + 3;
	if ((s = malloc(n)) != NULL)
		snprintf(s, n, "%s: %s", subject, why);
	free(subject);
	return s;
}

/*
 * 0: the certificate chains to an anchor of in->anchors for client
 * authentication; 1: it does not, *codep is the CBA problem code and
 * *reasonp says why (caller frees); negative: out of memory or internal error.
 */
static int
chain_check(X509 *x, const struct sc_cba_input *in, time_t now,
    const char **codep, char **reasonp)
{
	X509_STORE_CTX *ctx = NULL;
	char *reason = NULL;
	int r = SC_ERR_INTERNAL, ok;

	*codep = "chain-untrusted";
	*reasonp = NULL;
	if ((ctx = X509_STORE_CTX_new()) == NULL ||
	    X509_STORE_CTX_init(ctx, in->anchors, x, in->untrusted) != 1) {
		r = SC_ERR_NOMEM;
		goto out;
	}
	/*
	 * The purpose a TLS server checks a client's chain for (OpenSSL's
	 * "ssl_client", as `openssl verify -purpose sslclient`): every CA's
	 * EKU must allow clientAuth. No partial chains.
	 */
	if (X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) != 1) {
		r = SC_ERR_INTERNAL;
		goto out;
	}
	X509_STORE_CTX_set_time(ctx, 0, now);
	X509_STORE_CTX_set_verify_cb(ctx, leaf_cb);
	if ((ok = X509_verify_cert(ctx)) == 1) {
		r = 0;
		goto out;
	}
	if (ok == 0)
		*codep = chain_code(X509_STORE_CTX_get_error(ctx));
	if ((reason = chain_reason(ctx, ok)) == NULL) {
		r = SC_ERR_NOMEM;
		goto out;
	}
	r = 1;
 out:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	if (r == 1)
		*reasonp = reason;
	else
		free(reason);
	return r;
}

json_object *
sc_cert_cba(X509 *x, const struct sc_cba_input *in, char **chain_reason)
{
	static const struct sc_cba_input defaults = { -1, NULL, NULL, 0 };
	EXTENDED_KEY_USAGE *eku = NULL;
	ASN1_BIT_STRING *ku = NULL;
	json_object *arr = NULL, *upns = NULL, *ret = NULL;
	const char *code;
	char *reason = NULL;
	time_t now;
	int present, cmp, c;

	if (chain_reason != NULL)
		*chain_reason = NULL;
	if (in == NULL)
		in = &defaults;
	if (x == NULL || (arr = json_object_new_array()) == NULL)
		goto out;
	now = in->now != 0 ? in->now : time(NULL);

	/* EKU: absent means any purpose; anyExtendedKeyUsage is fine too. */
	eku = cert_eku_get(x, &present);
	if (present) {
		int client = 0;

		for (int i = 0; i < sk_ASN1_OBJECT_num(eku); i++) {
			int nid = OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i));

			if (nid == NID_client_auth || nid == NID_anyExtendedKeyUsage)
				client = 1;
		}
		if (!client && cert_json_push_str(arr, "no-client-auth-eku") != 0)
			goto out;
	}

	if ((upns = sc_cert_upns(x, NULL)) == NULL)
		goto out;
	if (json_object_array_length(upns) == 0 &&
	    cert_json_push_str(arr, "no-upn") != 0)
		goto out;

	/* A validity time that does not parse (-2) fails closed. */
	cmp = ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), now);
	if ((cmp == -1 || cmp == -2) && cert_json_push_str(arr, "expired") != 0)
		goto out;
	cmp = ASN1_TIME_cmp_time_t(X509_get0_notBefore(x), now);
	if ((cmp == 1 || cmp == -2) && cert_json_push_str(arr, "not-yet-valid") != 0)
		goto out;
	ERR_clear_error();

	ku = cert_ku_get(x, &present);
	if (present && (ku == NULL || !ASN1_BIT_STRING_get_bit(ku, 0)) &&
	    cert_json_push_str(arr, "no-digital-signature") != 0)
		goto out;

	if (in->private_key == 0 && cert_json_push_str(arr, "no-private-key") != 0)
		goto out;

	if (cert_key_weak(x) && cert_json_push_str(arr, "weak-key") != 0)
		goto out;

	if (in->anchors != NULL) {
		if ((c = chain_check(x, in, now, &code, &reason)) < 0)
			goto out;
		if (c == 1) {
			sc_debug("chain not accepted (%s): %s", code, reason);
			if (cert_json_push_str(arr, code) != 0)
				goto out;
			if (chain_reason != NULL) {
				*chain_reason = reason;
				reason = NULL;
			}
		}
	}
	ret = arr;
	arr = NULL;
 out:
	EXTENDED_KEY_USAGE_free(eku);
	ASN1_BIT_STRING_free(ku);
	json_object_put(upns);
	json_object_put(arr);
	free(reason);
	if (ret == NULL && chain_reason != NULL) {
		free(*chain_reason);
		*chain_reason = NULL;
	}
	return ret;
}
