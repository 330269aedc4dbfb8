/*
 * The signature algorithms of INTERFACE.md in one table: for each, its name,
 * key type, digest, the PKCS#11 mechanisms for a digest input and for the
 * data, the RSA-PSS parameters and the PKCS#1 DigestInfo prefix. The token
 * store, the daemon, the PKCS#11 module and the CLI all read it; adding an
 * algorithm is one row in alg.c (and its enum value here).
 */
#ifndef SC_ALG_H
#define SC_ALG_H

#include <stddef.h>
#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

/* Signature algorithms of INTERFACE.md, in that order (the table's rows). */
enum sc_alg {
	SC_ALG_RSA_PKCS1_SHA256 = 0, SC_ALG_RSA_PKCS1_SHA384, SC_ALG_RSA_PKCS1_SHA512,
	SC_ALG_RSA_PSS_SHA256, SC_ALG_RSA_PSS_SHA384, SC_ALG_RSA_PSS_SHA512,
	SC_ALG_ECDSA_SHA256, SC_ALG_ECDSA_SHA384, SC_ALG_ECDSA_SHA512,
	SC_ALG_COUNT
};

/* How the digest becomes a signature. */
enum sc_alg_family {
	SC_ALG_PKCS1 = 1,		/* RSA PKCS#1 v1.5: DigestInfo + CKM_RSA_PKCS */
	SC_ALG_PSS = 2,			/* RSA-PSS: salt = hash length, MGF1 with the same hash */
	SC_ALG_ECDSA = 3,		/* ECDSA, DER output */
};

/* One row of the table. */
struct sc_alg_info {
	const char *name;		/* INTERFACE.md's ALG: "rsa-pss-sha256" */
	enum sc_alg_family family;
	CK_KEY_TYPE key_type;		/* CKK_RSA or CKK_EC */
	const EVP_MD *(*md)(void);	/* the digest: EVP_sha256 */
	int md_nid;			/* NID_sha256 */
	size_t md_len;			/* the digest's length in bytes */
	CK_MECHANISM_TYPE hash_mech;	/* the digest as a PKCS#11 mechanism: CKM_SHA256 */
	CK_MECHANISM_TYPE digest_mech;	/* over the digest (or DigestInfo): CKM_RSA_PKCS, ... */
	CK_MECHANISM_TYPE data_mech;	/* hash-and-sign over the data: CKM_SHA256_RSA_PKCS, ... */
	CK_RSA_PKCS_MGF_TYPE mgf;	/* SC_ALG_PSS: CKG_MGF1_SHA256; else 0 */
	const unsigned char *digestinfo; /* SC_ALG_PKCS1: DER prefix of the DigestInfo; else NULL */
	size_t digestinfo_len;
};

/* The row of alg; NULL when alg is not one. */
const struct sc_alg_info *sc_alg_info(int alg);
/* "rsa-pss-sha256" -> SC_ALG_RSA_PSS_SHA256; -1 when unknown. */
int sc_alg_parse(const char *name);
/* The name of alg, "unknown" when it is not one. */
const char *sc_alg_name(int alg);
/* The digest an algorithm hashes with; NULL when alg is not one. */
const EVP_MD *sc_alg_md(int alg);
/* The family of alg (enum sc_alg_family); 0 when alg is not one. */
int sc_alg_family(int alg);
/* The algorithm whose hash-and-sign mechanism is mech; -1 when none. */
int sc_alg_by_data_mech(CK_MECHANISM_TYPE mech);
/* The algorithm of family whose digest is the PKCS#11 mechanism hash; -1 when none. */
int sc_alg_by_hash_mech(int family, CK_MECHANISM_TYPE hash);
/* The algorithm of family whose digest has OpenSSL's nid; -1 when none. */
int sc_alg_by_nid(int family, int nid);
/* The algorithm of family whose digest is len bytes long; -1 when none. */
int sc_alg_by_md_len(int family, size_t len);
/* For messages: the names, "rsa-pkcs1-sha256|384|512, ... or ecdsa-sha256|384|512". */
const char *sc_alg_names_hint(void);

#endif
