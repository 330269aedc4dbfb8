/*
 * The algorithm table (src/common/alg.c): every name and mechanism maps back
 * to its row, every row agrees with OpenSSL's digest, and what a row tells a
 * token to sign (a DigestInfo for CKM_RSA_PKCS, the PSS parameters, the bare
 * digest for CKM_ECDSA) makes a signature OpenSSL verifies as that algorithm.
 * (tests/integration/agent-sign.sh signs with every row through SoftHSM.)
 */
#include "config.h"
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include "common/alg.h"

static void
test_names_round_trip(void **state)
{
	(void)state;
	for (int a = 0; a < SC_ALG_COUNT; a++) {
		assert_non_null(sc_alg_info(a));
		assert_int_equal(sc_alg_parse(sc_alg_name(a)), a);
		assert_string_equal(sc_alg_info(a)->name, sc_alg_name(a));
	}
	assert_int_equal(sc_alg_parse("rsa-pss-sha256"), SC_ALG_RSA_PSS_SHA256);
	assert_int_equal(sc_alg_parse("ecdsa-sha512"), SC_ALG_ECDSA_SHA512);
	assert_int_equal(sc_alg_parse("rsa-pkcs1-sha1"), -1);
	assert_int_equal(sc_alg_parse("RSA-PSS-SHA256"), -1);
	assert_int_equal(sc_alg_parse(""), -1);
	assert_int_equal(sc_alg_parse(NULL), -1);
	assert_string_equal(sc_alg_name(-1), "unknown");
	assert_string_equal(sc_alg_name(SC_ALG_COUNT), "unknown");
	assert_null(sc_alg_info(SC_ALG_COUNT));
	assert_null(sc_alg_md(-1));
	assert_int_equal(sc_alg_family(SC_ALG_COUNT), 0);
}

static void
test_mechanisms_map_back(void **state)
{
	(void)state;
	for (int a = 0; a < SC_ALG_COUNT; a++) {
		const struct sc_alg_info *ai = sc_alg_info(a);
		int fam = (int)ai->family;

		assert_int_equal(sc_alg_family(a), fam);
		assert_int_equal(sc_alg_by_data_mech(ai->data_mech), a);
		assert_int_equal(sc_alg_by_hash_mech(fam, ai->hash_mech), a);
		assert_int_equal(sc_alg_by_nid(fam, ai->md_nid), a);
		assert_int_equal(sc_alg_by_md_len(fam, ai->md_len), a);
		/* The family fixes the key type and the mechanism over the digest. */
		switch (ai->family) {
		case SC_ALG_PKCS1:
			assert_int_equal(ai->key_type, CKK_RSA);
			assert_int_equal(ai->digest_mech, CKM_RSA_PKCS);
			assert_int_equal(ai->mgf, 0);
			break;
		case SC_ALG_PSS:
			assert_int_equal(ai->key_type, CKK_RSA);
			assert_int_equal(ai->digest_mech, CKM_RSA_PKCS_PSS);
			assert_null(ai->digestinfo);
			break;
		case SC_ALG_ECDSA:
			assert_int_equal(ai->key_type, CKK_EC);
			assert_int_equal(ai->digest_mech, CKM_ECDSA);
			assert_int_equal(ai->mgf, 0);
			assert_null(ai->digestinfo);
			break;
		default:
			fail_msg("row %d has no family", a);
		}
	}
	/* The PKCS#11 names of the hashes and MGFs agree with each other. */
	for (int a = 0; a < SC_ALG_COUNT; a++) {
		const struct sc_alg_info *ai = sc_alg_info(a);
		CK_MECHANISM_TYPE hm = ai->md_nid == NID_sha256 ? CKM_SHA256 :
		    ai->md_nid == NID_sha384 ? CKM_SHA384 : CKM_SHA512;
		CK_RSA_PKCS_MGF_TYPE mgf = ai->md_nid == NID_sha256 ? CKG_MGF1_SHA256 :
		    ai->md_nid == NID_sha384 ? CKG_MGF1_SHA384 : CKG_MGF1_SHA512;

		assert_int_equal(ai->hash_mech, hm);
		if (ai->family == SC_ALG_PSS)
			assert_int_equal(ai->mgf, mgf);
	}
	assert_int_equal(sc_alg_by_data_mech(CKM_SHA1_RSA_PKCS), -1);
	assert_int_equal(sc_alg_by_data_mech(CKM_RSA_PKCS), -1);
	assert_int_equal(sc_alg_by_hash_mech(SC_ALG_PSS, CKM_SHA_1), -1);
	assert_int_equal(sc_alg_by_nid(SC_ALG_PKCS1, NID_sha1), -1);
	assert_int_equal(sc_alg_by_md_len(SC_ALG_ECDSA, 20), -1);
	assert_int_equal(sc_alg_by_nid(0, NID_sha256), -1);
}

static void
test_digests_are_openssls(void **state)
{
	(void)state;
	for (int a = 0; a < SC_ALG_COUNT; a++) {
		const struct sc_alg_info *ai = sc_alg_info(a);
		const EVP_MD *md = sc_alg_md(a);
		char suffix[16];

		assert_non_null(md);
		assert_ptr_equal(md, ai->md());
		assert_int_equal(EVP_MD_get_size(md), (int)ai->md_len);
		assert_int_equal(EVP_MD_get_type(md), ai->md_nid);
		/* The name ends in OpenSSL's long name of the digest. */
		snprintf(suffix, sizeof(suffix), "-%s", OBJ_nid2ln(ai->md_nid));
		assert_non_null(strstr(ai->name, suffix));
		assert_string_equal(strstr(ai->name, suffix), suffix);
	}
}

/* Each PKCS#1 row's DigestInfo prefix + a digest is DER for that digest. */
static void
test_digestinfo_prefixes(void **state)
{
	(void)state;
	for (int a = 0; a < SC_ALG_COUNT; a++) {
		const struct sc_alg_info *ai = sc_alg_info(a);
		unsigned char buf[128];
		const unsigned char *p = buf;
		const X509_ALGOR *alg;
		const ASN1_OCTET_STRING *os;
		const ASN1_OBJECT *oid;
		X509_SIG *sig;
		size_t len;

		if (ai->family != SC_ALG_PKCS1)
			continue;
		assert_non_null(ai->digestinfo);
		len = ai->digestinfo_len + ai->md_len;
		assert_true(len <= sizeof(buf));
		memcpy(buf, ai->digestinfo, ai->digestinfo_len);
		memset(buf + ai->digestinfo_len, 0xa5, ai->md_len);
		assert_non_null(sig = d2i_X509_SIG(NULL, &p, (long)len));
		assert_ptr_equal(p, buf + len);
		X509_SIG_get0(sig, &alg, &os);
		X509_ALGOR_get0(&oid, NULL, NULL, alg);
		assert_int_equal(OBJ_obj2nid(oid), ai->md_nid);
		assert_int_equal(ASN1_STRING_length(os), (int)ai->md_len);
		X509_SIG_free(sig);
	}
}

/*
 * Sign as the token store asks a token to (the row's mechanism over the
 * digest), in software, and verify as the algorithm with OpenSSL.
 */
static void
sign_and_verify(EVP_PKEY *pk, int a)
{
	const struct sc_alg_info *ai = sc_alg_info(a);
	const EVP_MD *md = sc_alg_md(a);
	static const unsigned char data[] = "the algorithm table";
	unsigned char dgst[EVP_MAX_MD_SIZE], tbs[128], sig[1024];
	unsigned int dlen = 0;
	size_t tbslen, siglen = sizeof(sig);
	EVP_PKEY_CTX *ctx;

	assert_int_equal(EVP_Digest(data, sizeof(data), dgst, &dlen, md, NULL), 1);
	assert_non_null(ctx = EVP_PKEY_CTX_new(pk, NULL));
	assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
	if (ai->family == SC_ALG_PKCS1) {
		/* CKM_RSA_PKCS: raw PKCS#1 v1.5 padding over DigestInfo || digest. */
		memcpy(tbs, ai->digestinfo, ai->digestinfo_len);
		memcpy(tbs + ai->digestinfo_len, dgst, dlen);
		tbslen = ai->digestinfo_len + dlen;
		assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0);
	} else {
		memcpy(tbs, dgst, dlen);
		tbslen = dlen;
		assert_true(EVP_PKEY_CTX_set_signature_md(ctx, ai->md()) > 0);
		if (ai->family == SC_ALG_PSS) {
			/* CK_RSA_PKCS_PSS_PARAMS: hashAlg, mgf, sLen = digest length. */
			assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) > 0);
			assert_true(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)ai->md_len) > 0);
			assert_true(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, ai->md()) > 0);
		}
	}
	assert_int_equal(EVP_PKEY_sign(ctx, sig, &siglen, tbs, tbslen), 1);
	EVP_PKEY_CTX_free(ctx);

	/* Verified as the algorithm: the digest set, the padding the family's. */
	assert_non_null(ctx = EVP_PKEY_CTX_new(pk, NULL));
	assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
	assert_true(EVP_PKEY_CTX_set_signature_md(ctx, md) > 0);
	if (ai->family == SC_ALG_PKCS1)
		assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0);
	if (ai->family == SC_ALG_PSS) {
		assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) > 0);
		assert_true(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) > 0);
		assert_true(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) > 0);
	}
	assert_int_equal(EVP_PKEY_verify(ctx, sig, siglen, dgst, dlen), 1);
	dgst[0] ^= 1;
	assert_int_not_equal(EVP_PKEY_verify(ctx, sig, siglen, dgst, dlen), 1);
	EVP_PKEY_CTX_free(ctx);
}

static void
test_every_row_signs(void **state)
{
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

	(void)state;
	assert_non_null(rsa);
	assert_non_null(ec);
	for (int a = 0; a < SC_ALG_COUNT; a++)
		sign_and_verify(sc_alg_info(a)->key_type == CKK_EC ? ec : rsa, a);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
}

/* The names in messages name every row: its family's prefix and its hash. */
static void
test_hint_names_every_row(void **state)
{
	const char *hint = sc_alg_names_hint();

	(void)state;
	for (int a = 0; a < SC_ALG_COUNT; a++) {
		const char *name = sc_alg_name(a), *sha = strstr(name, "sha");
		char prefix[32], *pfx;

		assert_non_null(sha);
		snprintf(prefix, sizeof(prefix), "%.*s", (int)(sha - name), name);
		assert_non_null(pfx = strstr(hint, prefix));
		/* Its hash's digits follow, before the next family. */
		assert_non_null(strstr(pfx, sha + 3));
		assert_true(strcspn(pfx, ",") >= (size_t)(strstr(pfx, sha + 3) - pfx));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_round_trip),
		cmocka_unit_test(test_mechanisms_map_back),
		cmocka_unit_test(test_digests_are_openssls),
		cmocka_unit_test(test_digestinfo_prefixes),
		cmocka_unit_test(test_every_row_signs),
		cmocka_unit_test(test_hint_names_every_row),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
