/*
 * PKCS#11 signature mechanisms on top of the agent's "sign" operation,
 * which takes a hash and an algorithm name (rsa-pkcs1-sha256, rsa-pss-sha256,
 * ecdsa-sha256, ... of INTERFACE.md):
 *
 * - CKM_RSA_PKCS: the input is a DigestInfo; it is parsed (strict DER) and
 *   its SHA-256/384/512 hash goes to the agent. Anything else, SHA-1 and
 *   SHA-224 DigestInfos included, is CKR_DATA_INVALID: the agent signs
 *   only what it can name.
 * - CKM_RSA_PKCS_PSS: the input is the hash; the parameters must be what
 *   the agent makes: MGF1 with the same hash and a salt as long as the hash.
 * - CKM_ECDSA: the input is the hash, 32, 48 or 64 bytes; a shorter one
 *   (SHA-1, SHA-224) is left-padded with zeros to 32 bytes, which is the
 *   same integer and so the same signature for curves of 256 bits or more.
 *   The agent answers in DER; PKCS#11 wants r || s.
 * - CKM_SHA*_RSA_PKCS, CKM_SHA*_RSA_PKCS_PSS, CKM_ECDSA_SHA*: hashed here
 *   (single- or multi-part), then as above.
 */
#include "config.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include "common/alg.h"
#include "common/err.h"
#include "pkcs11/p11mod.h"
#include "scagent/scagent.h"

/* Largest single-part input kept: a DigestInfo of SHA-512 is 83 bytes. */
#define RAW_MAX 512

/*
 * The mechanisms, from common/alg.c's table: for each family its mechanism
 * over the digest (input: the hash or DigestInfo), then its algorithms'
 * hash-and-sign mechanisms, in the table's order.
 */
static struct p11_mech_spec mechs[2 * SC_ALG_COUNT];
static size_t nmechs;
static pthread_once_t mechs_once = PTHREAD_ONCE_INIT;

static void
mechs_build(void)
{
	const struct sc_alg_info *ai;

	for (int a = 0; a < SC_ALG_COUNT; a++) {
		ai = sc_alg_info(a);
		if (a == 0 || sc_alg_family(a - 1) != (int)ai->family)
			mechs[nmechs++] = (struct p11_mech_spec){ ai->digest_mech, ai->key_type,
			    ai->digest_mech, -1 };
		mechs[nmechs++] = (struct p11_mech_spec){ ai->data_mech, ai->key_type,
		    ai->digest_mech, a };
	}
}

const struct p11_mech_spec *
p11_mech_list(size_t *n)
{
	pthread_once(&mechs_once, mechs_build);
	*n = nmechs;
	return mechs;
}

const struct p11_mech_spec *
p11_mech_find(CK_MECHANISM_TYPE type)
{
	size_t n;
	const struct p11_mech_spec *list = p11_mech_list(&n);

	for (size_t i = 0; i < n; i++)
		if (list[i].type == type)
			return &list[i];
	return NULL;
}

void
p11_signop_clear(struct p11_signop *op)
{
	if (op == NULL)
		return;
	p11_cert_unref(op->cert);
	free(op->ref);
	EVP_MD_CTX_free(op->md);
	if (op->buf != NULL)
		OPENSSL_cleanse(op->buf, op->buflen);
	free(op->buf);
	if (op->ctx_pin != NULL)
		OPENSSL_cleanse(op->ctx_pin, strlen(op->ctx_pin));
	free(op->ctx_pin);
	memset(op, 0, sizeof(*op));
}

CK_RV
p11_signop_init(struct p11_signop *op, const CK_MECHANISM *mech, const struct p11_object *key)
{
	const struct p11_mech_spec *spec = p11_mech_find(mech->mechanism);
	const struct sc_alg_info *ai;
	int a;

	memset(op, 0, sizeof(*op));
	if (spec == NULL)
		return CKR_MECHANISM_INVALID;
	if (spec->key_type != key->cert->key_type)
		return CKR_KEY_TYPE_INCONSISTENT;
	if (spec->token_mech == CKM_RSA_PKCS_PSS) {
		if (mech->pParameter == NULL || mech->ulParameterLen != sizeof(CK_RSA_PKCS_PSS_PARAMS))
			return CKR_MECHANISM_PARAM_INVALID;
		memcpy(&op->pss, mech->pParameter, sizeof(op->pss));
		a = sc_alg_by_hash_mech(SC_ALG_PSS, op->pss.hashAlg);
		if ((ai = sc_alg_info(a)) == NULL || op->pss.mgf != ai->mgf ||
		    op->pss.sLen != ai->md_len)
			return CKR_MECHANISM_PARAM_INVALID;
		if (spec->alg >= 0 && a != spec->alg)
			return CKR_MECHANISM_PARAM_INVALID;
	} else if (mech->ulParameterLen != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	if (spec->alg >= 0) {
		if ((op->md = EVP_MD_CTX_new()) == NULL)
			return CKR_HOST_MEMORY;
		if (!EVP_DigestInit_ex(op->md, sc_alg_md(spec->alg), NULL)) {
			p11_signop_clear(op);
			ERR_clear_error();
			return CKR_GENERAL_ERROR;
		}
	}
	if ((op->ref = strdup(key->ref)) == NULL) {
		p11_signop_clear(op);
		return CKR_HOST_MEMORY;
	}
	op->spec = spec;
	op->key = key->handle;
	op->always_auth = key->always_auth;
	op->cert = key->cert;
	__atomic_add_fetch(&op->cert->refs, 1, __ATOMIC_ACQ_REL);
	return CKR_OK;
}

CK_RV
p11_signop_update(struct p11_signop *op, const unsigned char *data, size_t len)
{
	unsigned char *nb;

	if (op->md != NULL)
		return EVP_DigestUpdate(op->md, data, len) ? CKR_OK : CKR_GENERAL_ERROR;
	if (len > RAW_MAX || op->buflen + len > RAW_MAX)
		return CKR_DATA_LEN_RANGE;
	if (len == 0)
		return CKR_OK;
	if ((nb = malloc(op->buflen + len)) == NULL)
		return CKR_HOST_MEMORY;
	if (op->buf != NULL) {
		memcpy(nb, op->buf, op->buflen);
		OPENSSL_cleanse(op->buf, op->buflen);
		free(op->buf);
	}
	memcpy(nb + op->buflen, data, len);
	op->buf = nb;
	op->buflen += len;
	return CKR_OK;
}

/* The hash inside a DigestInfo (RFC 8017 9.2) of a PKCS#1 algorithm's digest (*h). */
static CK_RV
parse_digestinfo(const unsigned char *in, size_t inlen, int *h, unsigned char *dgst, size_t *dlen)
{
	const unsigned char *p = in;
	X509_SIG *sig;
	const X509_ALGOR *alg;
	const ASN1_OCTET_STRING *os;
	const ASN1_OBJECT *oid;
	const void *pval;
	unsigned char *re = NULL;
	const struct sc_alg_info *ai;
	int ptype, n, a;
	CK_RV rv = CKR_DATA_INVALID;

	if ((sig = d2i_X509_SIG(NULL, &p, (long)inlen)) == NULL || p != in + inlen)
		goto out;
	/* Strict DER: what we parsed encodes back to exactly the input. */
	if ((n = i2d_X509_SIG(sig, &re)) <= 0 || (size_t)n != inlen || memcmp(re, in, inlen) != 0)
		goto out;
	X509_SIG_get0(sig, &alg, &os);
	X509_ALGOR_get0(&oid, &ptype, &pval, alg);
	if (ptype != V_ASN1_NULL && ptype != V_ASN1_UNDEF)
		goto out;
	a = sc_alg_by_nid(SC_ALG_PKCS1, OBJ_obj2nid(oid));
	if ((ai = sc_alg_info(a)) != NULL && (size_t)ASN1_STRING_length(os) == ai->md_len) {
		*h = a;
		memcpy(dgst, ASN1_STRING_get0_data(os), ai->md_len);
		*dlen = ai->md_len;
		rv = CKR_OK;
	}
out:
	OPENSSL_free(re);
	X509_SIG_free(sig);
	ERR_clear_error();
	return rv;
}

CK_RV
p11_signop_prepare(struct p11_signop *op, int *alg, unsigned char *dgst, size_t *dlen)
{
	const struct p11_mech_spec *spec = op->spec;
	unsigned int mdlen = 0;
	EVP_MD_CTX *tmp;
	int h = -1;
	CK_RV rv;

	*alg = -1;
	*dlen = 0;
	if (op->md != NULL) {
		/* Finish a copy: a failed size check keeps the operation going. */
		if ((tmp = EVP_MD_CTX_new()) == NULL)
			return CKR_HOST_MEMORY;
		if (!EVP_MD_CTX_copy_ex(tmp, op->md) || !EVP_DigestFinal_ex(tmp, dgst, &mdlen)) {
			EVP_MD_CTX_free(tmp);
			return CKR_GENERAL_ERROR;
		}
		EVP_MD_CTX_free(tmp);
		*dlen = mdlen;
		h = spec->alg;
	} else if (spec->token_mech == CKM_RSA_PKCS) {
		if (op->buflen + 11 > op->cert->siglen)
			return CKR_DATA_LEN_RANGE;
		if ((rv = parse_digestinfo(op->buf, op->buflen, &h, dgst, dlen)) != CKR_OK)
			return rv;
	} else if (spec->token_mech == CKM_RSA_PKCS_PSS) {
		h = sc_alg_by_hash_mech(SC_ALG_PSS, op->pss.hashAlg);
		if (h < 0 || op->buflen != sc_alg_info(h)->md_len)
			return CKR_DATA_LEN_RANGE;
		memcpy(dgst, op->buf, op->buflen);
		*dlen = op->buflen;
	} else {
		/* CKM_ECDSA */
		if ((h = sc_alg_by_md_len(SC_ALG_ECDSA, op->buflen)) >= 0) {
			memcpy(dgst, op->buf, op->buflen);
			*dlen = op->buflen;
		} else if (op->buflen > 0 && op->buflen < 32 && op->cert->bits >= 256) {
			memset(dgst, 0, 32 - op->buflen);
			memcpy(dgst + 32 - op->buflen, op->buf, op->buflen);
			*dlen = 32;
			h = sc_alg_by_md_len(SC_ALG_ECDSA, 32);
		} else
			return CKR_DATA_LEN_RANGE;
	}
	if (h < 0)
		return CKR_GENERAL_ERROR;
	*alg = h;
	return CKR_OK;
}

CK_RV
p11_signop_finish(const struct p11_signop *op, const unsigned char *sig, size_t siglen,
    unsigned char *out, CK_ULONG *outlen)
{
	const unsigned char *p = sig;
	ECDSA_SIG *es;
	const BIGNUM *r, *s;
	int half = (int)(op->cert->siglen / 2);
	CK_RV rv = CKR_DEVICE_ERROR;

	if (op->spec->key_type == CKK_RSA) {
		if (siglen != op->cert->siglen)
			return CKR_DEVICE_ERROR;
		memcpy(out, sig, siglen);
		*outlen = (CK_ULONG)siglen;
		return CKR_OK;
	}
	if ((es = d2i_ECDSA_SIG(NULL, &p, (long)siglen)) == NULL || p != sig + siglen)
		goto out;
	ECDSA_SIG_get0(es, &r, &s);
	if (BN_bn2binpad(r, out, half) != half || BN_bn2binpad(s, out + half, half) != half)
		goto out;
	*outlen = op->cert->siglen;
	rv = CKR_OK;
out:
	ECDSA_SIG_free(es);
	ERR_clear_error();
	return rv;
}

/*
 * C_Verify and C_VerifyFinal: sig (PKCS#11 form: RSA as long as the modulus,
 * ECDSA r||s) over what op was given, checked in-process with the public key
 * of op's certificate; the token is not involved.
 */
CK_RV
p11_signop_verify(struct p11_signop *op, const unsigned char *sig, size_t siglen)
{
	const unsigned char *p = op->cert->spki;
	unsigned char dgst[EVP_MAX_MD_SIZE], *der = NULL;
	int alg;
	const EVP_MD *md;
	EVP_PKEY *pk = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *s = NULL;
	size_t dlen = 0, half = siglen / 2;
	int derlen = 0, ok = 0;
	CK_RV rv;

	if (siglen != op->cert->siglen)
		return CKR_SIGNATURE_LEN_RANGE;
	if ((rv = p11_signop_prepare(op, &alg, dgst, &dlen)) != CKR_OK)
		return rv;
	md = sc_alg_md(alg);
	if ((pk = d2i_PUBKEY(NULL, &p, (long)op->cert->spkilen)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new(pk, NULL)) == NULL || EVP_PKEY_verify_init(ctx) <= 0) {
		rv = CKR_GENERAL_ERROR;
		goto out;
	}
	if (op->spec->token_mech == CKM_ECDSA) {
		/* r||s, each half the length, to the DER that OpenSSL checks. */
		if ((es = ECDSA_SIG_new()) == NULL ||
		    (r = BN_bin2bn(sig, (int)half, NULL)) == NULL ||
		    (s = BN_bin2bn(sig + half, (int)half, NULL)) == NULL || !ECDSA_SIG_set0(es, r, s)) {
			BN_free(r);
			BN_free(s);
			rv = CKR_HOST_MEMORY;
			goto out;
		}
		if ((derlen = i2d_ECDSA_SIG(es, &der)) <= 0) {
			rv = CKR_HOST_MEMORY;
			goto out;
		}
		ok = EVP_PKEY_verify(ctx, der, (size_t)derlen, dgst, dlen) == 1;
	} else {
		int pss = op->spec->token_mech == CKM_RSA_PKCS_PSS;

		if (md == NULL || EVP_PKEY_CTX_set_signature_md(ctx, md) <= 0 ||
		    EVP_PKEY_CTX_set_rsa_padding(ctx, pss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING) <= 0 ||
		    (pss && (EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) <= 0 ||
		    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) <= 0))) {
			rv = CKR_GENERAL_ERROR;
			goto out;
		}
		ok = EVP_PKEY_verify(ctx, sig, siglen, dgst, dlen) == 1;
	}
	rv = ok ? CKR_OK : CKR_SIGNATURE_INVALID;
out:
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	ERR_clear_error();
	return rv;
}

/* ------------------------------------------------------------------ */
/* Signing */

static void
sign_end(struct p11_session *s)
{
	p11_signop_clear(&s->sign);
	s->signing = 0;
	s->sign_busy = 0;
}

/*
 * C_SignInit (a private key) and C_VerifyInit (a public key): the same
 * mechanisms and checks, into the session's sign or verify operation.
 */
static CK_RV
op_init(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey, int verify)
{
	struct p11_session *s;
	struct p11_slot *slot;
	struct p11_object *o;
	CK_SLOT_ID slot_id = 0;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, &slot)) == CKR_OK)
		slot_id = slot->id;
	pthread_mutex_unlock(&g.lock);
	if (rv != CKR_OK)
		return rv;
	if ((rv = slot_load_mechs(slot_id)) != CKR_OK)
		return rv;
	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, &slot)) != CKR_OK)
		goto out;
	if (pMechanism == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else if (verify ? s->verifying : s->signing)
		rv = CKR_OPERATION_ACTIVE;
	else if ((o = session_object(slot, hKey)) == NULL || o->cls == CKO_CERTIFICATE)
		rv = CKR_KEY_HANDLE_INVALID;
	else if (o->cls != (verify ? CKO_PUBLIC_KEY : CKO_PRIVATE_KEY))
		rv = CKR_KEY_FUNCTION_NOT_PERMITTED;	/* a private key signs, its public key verifies */
	else if (!slot_has_mech(slot, pMechanism->mechanism))
		rv = CKR_MECHANISM_INVALID;
	else if ((rv = p11_signop_init(verify ? &s->verify : &s->sign, pMechanism, o)) == CKR_OK)
		*(verify ? &s->verifying : &s->signing) = 1;
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

CK_RV
p11_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	return op_init(hSession, pMechanism, hKey, 0);
}

/*
 * The end of C_Sign and C_SignFinal: size rules, then the agent. Called with
 * g.lock held and s signing; returns with g.lock released.
 */
static CK_RV
sign_complete(struct p11_session *s, CK_SESSION_HANDLE h, CK_BYTE_PTR pSignature,
    CK_ULONG_PTR pulSignatureLen)
{
	struct agent_conn *ac;
	struct p11_signop op;
	struct p11_session *again;
	unsigned char dgst[EVP_MAX_MD_SIZE], *sig = NULL;
	size_t dlen = 0, siglen = 0;
	int alg;
	char *ref = NULL, *pin = NULL;
	CK_ULONG need = s->sign.cert->siglen;
	int r = SC_ERR_AGENT_UNREACHABLE;
	CK_RV rv;

	if (pSignature == NULL) {
		*pulSignatureLen = need;
		pthread_mutex_unlock(&g.lock);
		return CKR_OK;
	}
	if (*pulSignatureLen < need) {
		*pulSignatureLen = need;
		pthread_mutex_unlock(&g.lock);
		return CKR_BUFFER_TOO_SMALL;
	}
	if ((rv = p11_signop_prepare(&s->sign, &alg, dgst, &dlen)) != CKR_OK ||
	    (ref = strdup(s->sign.ref)) == NULL ||
	    (s->sign.ctx_pin != NULL && (pin = strdup(s->sign.ctx_pin)) == NULL)) {
		sign_end(s);
		pthread_mutex_unlock(&g.lock);
		OPENSSL_cleanse(dgst, sizeof(dgst));
		free(ref);
		return rv != CKR_OK ? rv : CKR_HOST_MEMORY;
	}
	/* What finishing needs, kept while the agent works without the lock. */
	memset(&op, 0, sizeof(op));
	op.spec = s->sign.spec;
	op.cert = s->sign.cert;
	__atomic_add_fetch(&op.cert->refs, 1, __ATOMIC_ACQ_REL);
	s->sign_busy = 1;
	pthread_mutex_unlock(&g.lock);

	if ((ac = conn_get()) != NULL)
		r = scagent_sign_pin(ac->c, ref, sc_alg_name(alg), 1, dgst, dlen, pin, 0, &sig, &siglen);
	conn_put(ac, r);
	OPENSSL_cleanse(dgst, sizeof(dgst));
	if (pin != NULL)
		OPENSSL_cleanse(pin, strlen(pin));
	free(pin);
	free(ref);
	rv = ckr_from_agent(r);
	if (r == SC_ERR_NOT_FOUND || r == SC_ERR_KEY || r == SC_ERR_MECHANISM)
		rv = CKR_FUNCTION_FAILED;
	if (r == SC_ERR_INVALID)
		rv = CKR_DATA_LEN_RANGE;
	if (rv == CKR_OK)
		rv = p11_signop_finish(&op, sig, siglen, pSignature, pulSignatureLen);
	scagent_free(sig);
	p11_cert_unref(op.cert);

	pthread_mutex_lock(&g.lock);
	if (!g.initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	else if (session_get(h, &again, NULL) == CKR_OK && again->signing && again->sign_busy)
		sign_end(again);
	pthread_mutex_unlock(&g.lock);
	if (r == SC_ERR_NOT_LOGGED_IN)
		refresh(1);	/* the agent lost its login: so did we */
	return rv;
}

CK_RV
p11_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
    CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	struct p11_session *s;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, NULL)) != CKR_OK)
		goto out;
	if (!s->signing) {
		rv = CKR_OPERATION_NOT_INITIALIZED;
		goto out;
	}
	if (s->sign_busy || s->sign.multi) {
		rv = CKR_OPERATION_ACTIVE;
		goto out;
	}
	if (pulSignatureLen == NULL || (pData == NULL && ulDataLen > 0)) {
		sign_end(s);
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	if (pSignature != NULL && *pulSignatureLen >= s->sign.cert->siglen) {
		/* Only a call that signs consumes the data. */
		if ((rv = p11_signop_update(&s->sign, pData, ulDataLen)) != CKR_OK) {
			sign_end(s);
			goto out;
		}
	}
	return sign_complete(s, hSession, pSignature, pulSignatureLen);
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

static void verify_end(struct p11_session *s);

/* C_SignUpdate and C_VerifyUpdate: a part of the data; an error ends the operation. */
static CK_RV
op_update(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, int verify)
{
	struct p11_session *s;
	struct p11_signop *op;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, NULL)) != CKR_OK)
		goto out;
	op = verify ? &s->verify : &s->sign;
	if (!(verify ? s->verifying : s->signing))
		rv = CKR_OPERATION_NOT_INITIALIZED;
	else if (!verify && s->sign_busy)
		rv = CKR_OPERATION_ACTIVE;
	else if ((pPart == NULL && ulPartLen > 0) ||
	    (rv = p11_signop_update(op, pPart, ulPartLen)) != CKR_OK) {
		if (rv == CKR_OK)
			rv = CKR_ARGUMENTS_BAD;
		if (verify)
			verify_end(s);
		else
			sign_end(s);
	} else
		op->multi = 1;
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

CK_RV
p11_SignUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
	return op_update(hSession, pPart, ulPartLen, 0);
}

CK_RV
p11_SignFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	struct p11_session *s;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, NULL)) != CKR_OK)
		goto out;
	if (!s->signing) {
		rv = CKR_OPERATION_NOT_INITIALIZED;
		goto out;
	}
	if (s->sign_busy) {
		rv = CKR_OPERATION_ACTIVE;
		goto out;
	}
	if (pulSignatureLen == NULL) {
		sign_end(s);
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	return sign_complete(s, hSession, pSignature, pulSignatureLen);
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

/* ------------------------------------------------------------------ */
/* Verifying: in-process, with the public key of the certificate */

static void
verify_end(struct p11_session *s)
{
	p11_signop_clear(&s->verify);
	s->verifying = 0;
}

CK_RV
p11_VerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	return op_init(hSession, pMechanism, hKey, 1);
}

/*
 * C_Verify (single: the data, then the signature) and C_VerifyFinal (the
 * signature after C_VerifyUpdate): either ends the operation.
 */
static CK_RV
verify_finish(CK_SESSION_HANDLE hSession, int single, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
    CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
	struct p11_session *s;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, NULL)) != CKR_OK)
		goto out;
	if (!s->verifying) {
		rv = CKR_OPERATION_NOT_INITIALIZED;
		goto out;
	}
	if (single && s->verify.multi) {
		rv = CKR_OPERATION_ACTIVE;
		goto out;
	}
	if (pSignature == NULL || (single && pData == NULL && ulDataLen > 0))
		rv = CKR_ARGUMENTS_BAD;
	else if (!single || (rv = p11_signop_update(&s->verify, pData, ulDataLen)) == CKR_OK)
		rv = p11_signop_verify(&s->verify, pSignature, ulSignatureLen);
	verify_end(s);
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

CK_RV
p11_Verify(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
    CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
	return verify_finish(hSession, 1, pData, ulDataLen, pSignature, ulSignatureLen);
}

CK_RV
p11_VerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
	return op_update(hSession, pPart, ulPartLen, 1);
}

CK_RV
p11_VerifyFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
	return verify_finish(hSession, 0, NULL, 0, pSignature, ulSignatureLen);
}
