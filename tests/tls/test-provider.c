/*
 * The scagent OpenSSL provider against a running agent: for each REF on the
 * command line (the agent at $SCAGENT_SOCKET, logged in), build the key,
 * sign with EVP_DigestSign and EVP_PKEY_sign in every scheme the key allows,
 * check which scheme reached the agent, and verify each signature with the
 * certificate's public key through the default provider. TAP output; run by
 * tests/tls/provider.sh.
 */
#include "config.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include "scagent/scagent.h"
#include "tls/provider.h"

static int n_test, n_fail;

static void ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
ok(int cond, const char *fmt, ...)
{
	va_list ap;

	n_test++;
	if (!cond)
		n_fail++;
	printf("%sok %d - ", cond ? "" : "not ", n_test);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static const unsigned char msg[] = "TLS 1.3, client CertificateVerify\0 and some more bytes";

/* Sign msg with pkey (pad: 0 ECDSA, else the RSA padding), verify with pub. */
static int
sign_verify(EVP_PKEY *pkey, EVP_PKEY *pub, const char *md, int pad, int saltlen,
    struct sc_tls_signer *sg, const char *want_alg)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new(), *v = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pc = NULL, *vc = NULL;
	unsigned char sig[1024];
	size_t siglen = sizeof(sig);
	int good = 0;

	sg->last_alg[0] = '\0';
	if (EVP_DigestSignInit_ex(m, &pc, md, NULL, NULL, pkey, NULL) != 1)
		goto out;
	if (pad && (EVP_PKEY_CTX_set_rsa_padding(pc, pad) <= 0 ||
	    (pad == RSA_PKCS1_PSS_PADDING && EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, saltlen) <= 0)))
		goto out;
	if (EVP_DigestSign(m, NULL, &siglen, msg, sizeof(msg)) != 1 || siglen > sizeof(sig))
		goto out;
	if (EVP_DigestSign(m, sig, &siglen, msg, sizeof(msg)) != 1)
		goto out;
	if (strcmp(sg->last_alg, want_alg) != 0) {
		fprintf(stderr, "# the agent got %s, not %s\n", sg->last_alg, want_alg);
		goto out;
	}
	if (EVP_DigestVerifyInit_ex(v, &vc, md, NULL, NULL, pub, NULL) != 1)
		goto out;
	if (pad && (EVP_PKEY_CTX_set_rsa_padding(vc, pad) <= 0 ||
	    (pad == RSA_PKCS1_PSS_PADDING && EVP_PKEY_CTX_set_rsa_pss_saltlen(vc, RSA_PSS_SALTLEN_DIGEST) <= 0)))
		goto out;
	good = EVP_DigestVerify(v, sig, siglen, msg, sizeof(msg)) == 1;
out:
	EVP_MD_CTX_free(m);
	EVP_MD_CTX_free(v);
	return good;
}

/* EVP_PKEY_sign of a digest computed here (the pre-hashed path). */
static int
sign_digest(EVP_PKEY *pkey, EVP_PKEY *pub, int pss, struct sc_tls_signer *sg)
{
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	EVP_PKEY_CTX *vc = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL);
	unsigned char dg[32], sig[1024];
	size_t siglen = sizeof(sig);
	unsigned int dl = 0;
	int good = 0;

	EVP_Digest(msg, sizeof(msg), dg, &dl, EVP_sha256(), NULL);
	if (pc == NULL || vc == NULL || EVP_PKEY_sign_init(pc) <= 0 ||
	    EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) <= 0)
		goto out;
	if (pss && (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) <= 0))
		goto out;
	if (EVP_PKEY_sign(pc, sig, &siglen, dg, dl) <= 0)
		goto out;
	if (EVP_PKEY_verify_init(vc) <= 0 || EVP_PKEY_CTX_set_signature_md(vc, EVP_sha256()) <= 0)
		goto out;
	if (pss && (EVP_PKEY_CTX_set_rsa_padding(vc, RSA_PKCS1_PSS_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(vc, RSA_PSS_SALTLEN_DIGEST) <= 0))
		goto out;
	good = EVP_PKEY_verify(vc, sig, siglen, dg, dl) == 1 &&
	    strcmp(sg->last_alg, pss ? "rsa-pss-sha256" : EVP_PKEY_is_a(pub, "EC") ?
	    "ecdsa-sha256" : "rsa-pkcs1-sha256") == 0;
out:
	EVP_PKEY_CTX_free(pc);
	EVP_PKEY_CTX_free(vc);
	return good;
}

static void
test_ref(scagent_client *cl, const char *ref)
{
	static const char *mds[] = { "SHA256", "SHA384", "SHA512" };
	static const char *sfx[] = { "sha256", "sha384", "sha512" };
	struct sc_tls_signer sg;
	unsigned char *der = NULL;
	const unsigned char *p;
	size_t len = 0;
	X509 *x;
	EVP_PKEY *pkey = NULL, *pub;
	OSSL_PARAM *params = NULL;
	char want[64];
	int r, is_ec;

	r = scagent_get_cert(cl, ref, &der, &len, NULL);
	ok(r == 0, "%s: certificate from the agent", ref);
	if (r != 0)
		return;
	p = der;
	x = d2i_X509(NULL, &p, (long)len);
	scagent_free(der);
	pub = X509_get0_pubkey(x);
	is_ec = EVP_PKEY_is_a(pub, "EC");
	memset(&sg, 0, sizeof(sg));
	sg.client = cl;
	snprintf(sg.ref, sizeof(sg.ref), "%s", ref);
	ok(sc_tls_agent_pkey(x, &sg, &pkey) == 0 && pkey != NULL, "%s: provider key", ref);
	if (pkey == NULL) {
		X509_free(x);
		return;
	}
	ok(EVP_PKEY_is_a(pkey, is_ec ? "EC" : "RSA"), "%s: key type %s", ref, is_ec ? "EC" : "RSA");
	ok(EVP_PKEY_eq(pkey, pub) == 1, "%s: key matches the certificate", ref);
	ok(EVP_PKEY_get_bits(pkey) == EVP_PKEY_get_bits(pub) &&
	    EVP_PKEY_get_security_bits(pkey) == EVP_PKEY_get_security_bits(pub) &&
	    EVP_PKEY_get_size(pkey) == EVP_PKEY_get_size(pub), "%s: bits, security bits, size", ref);
	ok(EVP_PKEY_todata(pkey, EVP_PKEY_KEYPAIR, &params) <= 0,
	    "%s: the private half cannot be exported", ref);
	OSSL_PARAM_free(params);
	if (is_ec) {
		char g[64] = "";
		ok(EVP_PKEY_get_group_name(pkey, g, sizeof(g), NULL) == 1 && strcmp(g, "prime256v1") == 0,
		    "%s: group name %s", ref, g);
		for (int i = 0; i < 3; i++) {
			snprintf(want, sizeof(want), "ecdsa-%s", sfx[i]);
			ok(sign_verify(pkey, pub, mds[i], 0, 0, &sg, want), "%s: %s signs and verifies", ref, want);
		}
	} else {
		for (int i = 0; i < 3; i++) {
			snprintf(want, sizeof(want), "rsa-pkcs1-%s", sfx[i]);
			ok(sign_verify(pkey, pub, mds[i], RSA_PKCS1_PADDING, 0, &sg, want),
			    "%s: %s signs and verifies", ref, want);
			snprintf(want, sizeof(want), "rsa-pss-%s", sfx[i]);
			ok(sign_verify(pkey, pub, mds[i], RSA_PKCS1_PSS_PADDING, RSA_PSS_SALTLEN_DIGEST, &sg, want),
			    "%s: %s signs and verifies", ref, want);
		}
		ok(!sign_verify(pkey, pub, "SHA256", RSA_PKCS1_PSS_PADDING, RSA_PSS_SALTLEN_MAX, &sg, "rsa-pss-sha256"),
		    "%s: PSS with a maximal salt is refused (the token uses salt = hash)", ref);
		ok(!sign_verify(pkey, pub, "SHA256", RSA_NO_PADDING, 0, &sg, "none"),
		    "%s: raw RSA is refused", ref);
		ok(sign_digest(pkey, pub, 1, &sg), "%s: EVP_PKEY_sign of a digest, PSS", ref);
	}
	ok(sign_digest(pkey, pub, 0, &sg), "%s: EVP_PKEY_sign of a digest", ref);
	ok(sg.nsigs > 0, "%s: signatures counted", ref);
	EVP_PKEY_free(pkey);
	X509_free(x);
}

int
main(int argc, char **argv)
{
	scagent_client *cl = NULL;
	int r;

	if ((r = scagent_connect(NULL, &cl)) != 0) {
		printf("Bail out! no agent: %s\n", scagent_strerror(r));
		return 1;
	}
	for (int i = 1; i < argc; i++)
		test_ref(cl, argv[i]);
	scagent_close(cl);
	sc_tls_provider_cleanup();
	printf("1..%d\n", n_test);
	return n_fail ? 1 : 0;
}
