/*
 * One signature: the mechanism a token gets for an algorithm of
 * common/alg.c (DigestInfo + CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_ECDSA, or
 * the hash-and-sign variant over the data), C_SignInit/C_Sign on a pooled
 * session, a per-signature PIN for CKA_ALWAYS_AUTHENTICATE keys, ECDSA to
 * DER, and the signature verified against the public key before it is
 * returned. A key handle the token refuses as stale: the token's objects
 * read again and the signature tried once more.
 */

#include "config.h"
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include "common/err.h"
#include "common/log.h"
#include "common/text.h"
#include "common/util.h"
#include "token/store-private.h"

/* ------------------------------------------------------------------ */
/* Signing */

static int
ecdsa_raw_to_der(const unsigned char *raw, size_t len, unsigned char **der, size_t *derlen)
{
	ECDSA_SIG *sig = NULL;
	BIGNUM *r = NULL, *s = NULL;
	unsigned char *p = NULL;
	int n;

	*der = NULL;
	if (len == 0 || len % 2 != 0)
		return SC_ERR_DEVICE;
	if ((sig = ECDSA_SIG_new()) == NULL ||
	    (r = BN_bin2bn(raw, (int)(len / 2), NULL)) == NULL ||
	    (s = BN_bin2bn(raw + len / 2, (int)(len / 2), NULL)) == NULL ||
	    !ECDSA_SIG_set0(sig, r, s)) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(sig);
		return SC_ERR_NOMEM;
	}
	if ((n = i2d_ECDSA_SIG(sig, &p)) <= 0) {
		ECDSA_SIG_free(sig);
		return SC_ERR_NOMEM;
	}
	ECDSA_SIG_free(sig);
	*der = p;
	*derlen = (size_t)n;
	return SC_OK;
}

static EVP_PKEY_CTX *
verify_ctx_new(EVP_PKEY *pk, int alg)
{
	EVP_PKEY_CTX *ctx;

	if ((ctx = EVP_PKEY_CTX_new(pk, NULL)) == NULL)
		return NULL;
	if (EVP_PKEY_verify_init(ctx) <= 0 ||
	    EVP_PKEY_CTX_set_signature_md(ctx, sc_alg_md(alg)) <= 0 ||
	    (sc_alg_family(alg) == SC_ALG_PKCS1 &&
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0) ||
	    (sc_alg_family(alg) == SC_ALG_PSS &&
	    (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, sc_alg_md(alg)) <= 0))) {
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Check sig over digest with the public key pk. */
static int
verify_sig(EVP_PKEY *pk, int alg, const unsigned char *dgst, size_t dlen,
    const unsigned char *sig, size_t siglen)
{
	EVP_PKEY_CTX *ctx;
	int ok = 0;

	if (pk == NULL)
		return SC_ERR_NOMEM;
	if ((ctx = verify_ctx_new(pk, alg)) != NULL)
		ok = EVP_PKEY_verify(ctx, sig, siglen, dgst, dlen) == 1;
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return ok ? SC_OK : SC_ERR_BAD_SIGNATURE;
}

/*
 * Whether to sign over the data with the hash-and-sign mechanism DATA_MECH
 * instead of the raw mechanism MECH: only when the token lists DATA_MECH and
 * not MECH, and the data was given (not a digest) and fits.  Otherwise the
 * raw mechanism is tried even when it is not listed: the list is advisory,
 * and tpm2-pkcs11 leaves out the PSS mechanisms it makes itself (PSS padding
 * in software, raw RSA on the TPM) when the TPM is not in FIPS mode, although
 * the key's CKA_ALLOWED_MECHANISMS has them and C_Sign works.  A token that
 * really lacks the mechanism answers C_SignInit with CKR_MECHANISM_INVALID,
 * which is SC_ERR_MECHANISM.
 */
static int
sign_over_data(struct sc_token *t, CK_MECHANISM_TYPE mech, CK_MECHANISM_TYPE data_mech,
    int is_digest, size_t inlen, size_t tbsmax)
{
	if (t->nmechs == 0 || token_has_mech(t, mech))
		return 0;
	return !is_digest && inlen <= tbsmax && token_has_mech(t, data_mech);
}

/*
 * Sign rq on token t with the private key object key: the mechanism the token
 * supports (DigestInfo + CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_ECDSA, or the
 * hash-and-sign variant over the data), ECDSA converted to DER, and, when
 * check is not NULL, the signature verified against it before it is returned.
 * ctx_pin (a key with CKA_ALWAYS_AUTHENTICATE) is given to C_Login as
 * CKU_CONTEXT_SPECIFIC between C_SignInit and C_Sign, once.
 *
 * *stale is set when the token refused the key's handle (CKR_KEY_HANDLE_INVALID,
 * CKR_OBJECT_HANDLE_INVALID) before any PIN went to it for this signature:
 * the token numbered its objects anew (PKCS#11 allows it), and the caller
 * may read them again and sign once more.
 */
static int
token_sign(struct sc_token *t, CK_OBJECT_HANDLE key, const struct sc_sign_req *rq,
    EVP_PKEY *check, const char *ctx_pin, unsigned char **sig, size_t *siglen, int *stale)
{
	int alg = rq->alg, is_digest = rq->is_digest;
	const unsigned char *in = rq->in;
	size_t inlen = rq->inlen;
	CK_FUNCTION_LIST_PTR f = t->mod->f;
	CK_RSA_PKCS_PSS_PARAMS pss = { 0, 0, 0 };
	CK_MECHANISM mech = { 0, NULL, 0 };
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	unsigned char dgst[EVP_MAX_MD_SIZE], tbs[EVP_MAX_MD_SIZE + 32], out[1024];
	unsigned int dlen = 0;
	CK_ULONG outlen = sizeof(out), tbslen = 0;
	const struct sc_alg_info *ai = sc_alg_info(alg);
	const EVP_MD *md = sc_alg_md(alg);
	int r, family = sc_alg_family(alg), bad = 0, pin_sent = 0;
	CK_RV rv;

	*sig = NULL;
	*siglen = 0;
	*stale = 0;
	if (ai == NULL || md == NULL || (is_digest && inlen != (size_t)EVP_MD_get_size(md)))
		return SC_ERR_INVALID;
	if (is_digest) {
		memcpy(dgst, in, inlen);
		dlen = (unsigned int)inlen;
	} else if (!EVP_Digest(in, inlen, dgst, &dlen, md, NULL))
		return SC_ERR_NOMEM;
	memcpy(tbs, dgst, dlen);
	tbslen = dlen;
	mech.mechanism = ai->digest_mech;
	if (family == SC_ALG_PKCS1) {
		memcpy(tbs, ai->digestinfo, ai->digestinfo_len);
		memcpy(tbs + ai->digestinfo_len, dgst, dlen);
		tbslen = ai->digestinfo_len + dlen;
	} else if (family == SC_ALG_PSS) {
		pss.hashAlg = ai->hash_mech;
		pss.mgf = ai->mgf;
		pss.sLen = dlen;
		mech.pParameter = &pss;
		mech.ulParameterLen = sizeof(pss);
	}
	if (sign_over_data(t, mech.mechanism, ai->data_mech, is_digest, inlen, sizeof(tbs))) {
		mech.mechanism = ai->data_mech;
		memcpy(tbs, in, inlen);
		tbslen = inlen;
	}
	if ((r = session_get(t, &s)) != SC_OK)
		goto out;
	rv = f->C_SignInit(s, &mech, key);
	if (rv == CKR_OK && ctx_pin != NULL) {
		pin_sent = 1;
		rv = f->C_Login(s, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)ctx_pin, strlen(ctx_pin));
		if (rv != CKR_OK) {
			/*
			 * The PIN was refused: the signing operation is still
			 * active on the session, which therefore is closed, not
			 * pooled. The token's PIN flags changed.
			 */
			sc_info("PIN for a signature on \"%s\" refused: %s", t->label, sc_ckr_name(rv));
			r = rv == CKR_USER_NOT_LOGGED_IN ? SC_ERR_NOT_LOGGED_IN : sc_err_from_ckr_known(rv);
			bad = 1;
			token_update_info(t);
			goto out;
		}
	}
	if (rv == CKR_OK)
		rv = f->C_Sign(s, tbs, tbslen, out, &outlen);
	if (rv != CKR_OK) {
		sc_info("signature on \"%s\" failed: %s", t->label, sc_ckr_name(rv));
		bad = ckr_session_bad(rv);
		r = sc_err_from_ckr_known(rv);
		/*
		 * A refused handle is worth another try only while no PIN went to
		 * the card for this signature: C_SignInit refused it before the
		 * context login. After that login, another try would send the
		 * PIN again (never done on the user's behalf): the error stands.
		 */
		*stale = (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID) &&
		    !pin_sent;
		if (rv == CKR_USER_NOT_LOGGED_IN) {
			/* The token forgot us (removed and reinserted, or logged out outside). */
			pthread_mutex_lock(&t->lock);
			login_forget_locked(t);
			pthread_mutex_unlock(&t->lock);
		}
		goto out;
	}
	pthread_mutex_lock(&t->lock);
	t->last_use = sc_now_ms();
	pthread_mutex_unlock(&t->lock);
	if (family == SC_ALG_ECDSA) {
		if ((r = ecdsa_raw_to_der(out, outlen, sig, siglen)) != SC_OK)
			goto out;
	} else {
		if ((*sig = malloc(outlen)) == NULL) {
			r = SC_ERR_NOMEM;
			goto out;
		}
		memcpy(*sig, out, outlen);
		*siglen = outlen;
	}
	if (check != NULL && (r = verify_sig(check, alg, dgst, dlen, *sig, *siglen)) != SC_OK) {
		sc_error("token \"%s\" returned a signature that does not verify: discarded", t->label);
		free(*sig);
		*sig = NULL;
		*siglen = 0;
		goto out;
	}
	r = SC_OK;
out:
	if (s != CK_INVALID_HANDLE)
		session_put(t, s, bad);
	OPENSSL_cleanse(dgst, sizeof(dgst));
	OPENSSL_cleanse(tbs, sizeof(tbs));
	return r;
}

/*
 * Sign rq on token t with the private key object key (of key type type):
 * the algorithm fits the key, a key with CKA_ALWAYS_AUTHENTICATE gets the
 * request's PIN if the lockout rules allow it, and check (may be NULL) is
 * the public key the signature is verified with. *stale: as token_sign's.
 */
static int
sign_with_key(struct sc_store *st, struct sc_token *t, CK_OBJECT_HANDLE key, CK_KEY_TYPE type,
    int always_auth, EVP_PKEY *check, const struct sc_sign_req *rq, unsigned char **sig,
    size_t *siglen, int *stale)
{
	int r;

	*stale = 0;
	if ((sc_alg_family(rq->alg) == SC_ALG_ECDSA) != (type == CKK_EC))
		return SC_ERR_KEY;	/* an RSA algorithm for an EC key or the reverse */
	if (always_auth && (r = ctx_pin_check(st, t, rq->pin)) != SC_OK)
		return r;
	return token_sign(t, key, rq, check, always_auth ? rq->pin->pin : NULL, sig, siglen, stale);
}

/*
 * The token refused the key handle the agent knows: read its objects again
 * (keys, and certificates when theirs changed too: what a login does) for
 * the REF to be resolved anew. Signatures themselves read nothing from the
 * token; this is the one exception, and it involves no PIN.
 */
static int
stale_reread(struct sc_token *t, const char *ref)
{
	sc_info("key handle of \"%s\" on \"%s\" went stale: token read again", ref, t->label);
	return token_reload(t, 1);
}

/* The handle read again was refused too: once is enough, the token is at fault. */
static int
stale_again(struct sc_token *t, const char *ref)
{
	sc_error("token \"%s\" refused the key handle of \"%s\" again after it was read again: "
	    "not tried a third time; remove and insert the token", t->label, ref);
	return SC_ERR_DEVICE;
}

/* Sign rq with the key of the certificate m names. */
static int
sign_cert(struct sc_store *st, const struct match *m, const struct sc_sign_req *rq,
    unsigned char **sig, size_t *siglen, struct sc_sign_info *info, int *stale)
{
	const struct sc_cert *c = &m->objs->certs[m->idx];
	const struct sc_key *k;
	int r, family = sc_alg_family(rq->alg);

	*stale = 0;
	if (key_status(m->objs, c, &k) != 1)
		return m->objs->keys_hidden ? SC_ERR_NOT_LOGGED_IN : SC_ERR_KEY;
	/* RSA signatures are always checked (RSA-CRT faults leak the key); ECDSA on request. */
	r = sign_with_key(st, m->tok, k->handle, k->type, k->always_auth,
	    c->x509 != NULL && (family != SC_ALG_ECDSA || st->opts.verify_ecdsa) ?
	    X509_get0_pubkey(c->x509) : NULL,
	    rq, sig, siglen, stale);
	if (r == SC_OK && info)
		memcpy(info->sha256, c->sha256, sizeof(info->sha256));
	return r;
}

/*
 * A signature uses the handles the agent read at the last login, logout,
 * import, list or refresh. When the token refuses one as stale, the token is
 * read again and the REF resolved again, and the signature tried once more.
 */
int
sc_store_sign(struct sc_store *st, const struct sc_sign_req *rq, unsigned char **sig,
    size_t *siglen, struct sc_sign_info *info)
{
	struct match m;
	int r, stale;

	*sig = NULL;
	*siglen = 0;
	if (info)
		memset(info, 0, sizeof(*info));
	if ((r = store_resolve(st, rq->ref, &m, NULL)) != SC_OK)
		return r;
	if ((r = sign_cert(st, &m, rq, sig, siglen, info, &stale)) == SC_OK || !stale)
		goto out;
	r = stale_reread(m.tok, rq->ref);
	match_clear(&m);
	if (r != SC_OK || (r = store_resolve(st, rq->ref, &m, NULL)) != SC_OK)
		return r;
	if ((r = sign_cert(st, &m, rq, sig, siglen, info, &stale)) != SC_OK && stale)
		r = stale_again(m.tok, rq->ref);
out:
	match_clear(&m);
	return r;
}

/* Sign rq with the key pair m names. */
static int
sign_kp(struct sc_store *st, const struct kmatch *m, const struct sc_sign_req *rq,
    unsigned char **sig, size_t *siglen, int *stale)
{
	int hidden;

	*stale = 0;
	if (m->kp.priv == CK_INVALID_HANDLE) {
		pthread_mutex_lock(&m->tok->lock);
		hidden = (m->tok->info.flags & CKF_LOGIN_REQUIRED) && !m->tok->logged_in;
		pthread_mutex_unlock(&m->tok->lock);
		return hidden ? SC_ERR_NOT_LOGGED_IN : SC_ERR_KEY;
	}
	/* Key REFs serve enrolment: every signature is checked, ECDSA too. */
	return sign_with_key(st, m->tok, m->kp.priv, m->kp.type, m->kp.always_auth, m->kp.pk,
	    rq, sig, siglen, stale);
}

int
sc_store_sign_key(struct sc_store *st, const struct sc_sign_req *rq, unsigned char **sig,
    size_t *siglen, struct sc_sign_info *info)
{
	struct kmatch m;
	int r, stale;

	*sig = NULL;
	*siglen = 0;
	if (info)
		memset(info, 0, sizeof(*info));
	if ((r = key_resolve(st, rq->ref, &m, NULL)) != SC_OK)
		return r;
	if ((r = sign_kp(st, &m, rq, sig, siglen, &stale)) == SC_OK || !stale)
		goto out;
	r = stale_reread(m.tok, rq->ref);
	kmatch_clear(&m);
	if (r != SC_OK || (r = key_resolve(st, rq->ref, &m, NULL)) != SC_OK)
		return r;
	if ((r = sign_kp(st, &m, rq, sig, siglen, &stale)) != SC_OK && stale)
		r = stale_again(m.tok, rq->ref);
out:
	kmatch_clear(&m);
	return r;
}
