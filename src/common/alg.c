/*
 * The signature algorithms of INTERFACE.md: one table and its lookups
 * (alg.h says what each column means).
 */
#include "config.h"
#include <string.h>
#include <openssl/objects.h>
#include "common/alg.h"

/* DigestInfo prefixes (RFC 8017, section 9.2, note 1). */
static const unsigned char di_sha256[] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86,
	0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
static const unsigned char di_sha384[] = { 0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86,
	0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30 };
static const unsigned char di_sha512[] = { 0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86,
	0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40 };

/* In the order of enum sc_alg; rows of one family stay together. */
static const struct sc_alg_info algs[SC_ALG_COUNT] = {
	{ "rsa-pkcs1-sha256", SC_ALG_PKCS1, CKK_RSA, EVP_sha256, NID_sha256, 32, CKM_SHA256,
	  CKM_RSA_PKCS, CKM_SHA256_RSA_PKCS, 0, di_sha256, sizeof(di_sha256) },
	{ "rsa-pkcs1-sha384", SC_ALG_PKCS1, CKK_RSA, EVP_sha384, NID_sha384, 48, CKM_SHA384,
	  CKM_RSA_PKCS, CKM_SHA384_RSA_PKCS, 0, di_sha384, sizeof(di_sha384) },
	{ "rsa-pkcs1-sha512", SC_ALG_PKCS1, CKK_RSA, EVP_sha512, NID_sha512, 64, CKM_SHA512,
	  CKM_RSA_PKCS, CKM_SHA512_RSA_PKCS, 0, di_sha512, sizeof(di_sha512) },
	{ "rsa-pss-sha256", SC_ALG_PSS, CKK_RSA, EVP_sha256, NID_sha256, 32, CKM_SHA256,
	  CKM_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS_PSS, CKG_MGF1_SHA256, NULL, 0 },
	{ "rsa-pss-sha384", SC_ALG_PSS, CKK_RSA, EVP_sha384, NID_sha384, 48, CKM_SHA384,
	  CKM_RSA_PKCS_PSS, CKM_SHA384_RSA_PKCS_PSS, CKG_MGF1_SHA384, NULL, 0 },
	{ "rsa-pss-sha512", SC_ALG_PSS, CKK_RSA, EVP_sha512, NID_sha512, 64, CKM_SHA512,
	  CKM_RSA_PKCS_PSS, CKM_SHA512_RSA_PKCS_PSS, CKG_MGF1_SHA512, NULL, 0 },
	{ "ecdsa-sha256", SC_ALG_ECDSA, CKK_EC, EVP_sha256, NID_sha256, 32, CKM_SHA256,
	  CKM_ECDSA, CKM_ECDSA_SHA256, 0, NULL, 0 },
	{ "ecdsa-sha384", SC_ALG_ECDSA, CKK_EC, EVP_sha384, NID_sha384, 48, CKM_SHA384,
	  CKM_ECDSA, CKM_ECDSA_SHA384, 0, NULL, 0 },
	{ "ecdsa-sha512", SC_ALG_ECDSA, CKK_EC, EVP_sha512, NID_sha512, 64, CKM_SHA512,
	  CKM_ECDSA, CKM_ECDSA_SHA512, 0, NULL, 0 },
};

const struct sc_alg_info *
sc_alg_info(int alg)
{
	return alg >= 0 && alg < SC_ALG_COUNT ? &algs[alg] : NULL;
}

int
sc_alg_parse(const char *name)
{
	for (int i = 0; name != NULL && i < SC_ALG_COUNT; i++)
		if (strcmp(algs[i].name, name) == 0)
			return i;
	return -1;
}

const char *
sc_alg_name(int alg)
{
	return alg >= 0 && alg < SC_ALG_COUNT ? algs[alg].name : "unknown";
}

const EVP_MD *
sc_alg_md(int alg)
{
	return alg >= 0 && alg < SC_ALG_COUNT ? algs[alg].md() : NULL;
}

int
sc_alg_family(int alg)
{
	return alg >= 0 && alg < SC_ALG_COUNT ? (int)algs[alg].family : 0;
}

int
sc_alg_by_data_mech(CK_MECHANISM_TYPE mech)
{
	for (int i = 0; i < SC_ALG_COUNT; i++)
		if (algs[i].data_mech == mech)
			return i;
	return -1;
}

int
sc_alg_by_hash_mech(int family, CK_MECHANISM_TYPE hash)
{
	for (int i = 0; i < SC_ALG_COUNT; i++)
		if ((int)algs[i].family == family && algs[i].hash_mech == hash)
			return i;
	return -1;
}

int
sc_alg_by_nid(int family, int nid)
{
	for (int i = 0; i < SC_ALG_COUNT; i++)
		if ((int)algs[i].family == family && algs[i].md_nid == nid)
			return i;
	return -1;
}

int
sc_alg_by_md_len(int family, size_t len)
{
	for (int i = 0; i < SC_ALG_COUNT; i++)
		if ((int)algs[i].family == family && algs[i].md_len == len)
			return i;
	return -1;
}

const char *
sc_alg_names_hint(void)
{
	/* Keep in step with the table (tests/unit/test-alg.c checks every row is named). */
	return "rsa-pkcs1-sha256|384|512, rsa-pss-sha256|384|512 or ecdsa-sha256|384|512";
}
