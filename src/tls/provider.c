/*
 * The "scagent" OpenSSL 3 provider: KEYMGMT for RSA and EC keys whose
 * private half stays on a token, and SIGNATURE that hashes in-process (the
 * default provider's digests) and sends the digest to the agent with the
 * scheme the caller set: PKCS#1 v1.5 or PSS padding (salt length = digest
 * length, MGF1 with the same digest, as TLS uses), or ECDSA.
 *
 * It is registered as a built-in provider of a private OSSL_LIB_CTX, so that
 * nothing in the default library context (server signature checks, digests)
 * can ever pick it. libssl reaches it through the key: EVP_DigestSignInit
 * first tries the default provider's RSA/ECDSA with an export of the key,
 * which this keymgmt refuses for the private half, and then uses the key's
 * own provider.
 */
#include "config.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include "common/err.h"
#include "common/secmem.h"
#include "tls/provider.h"

#define SC_PARAM_SIGNER "scagent-signer"
#define SC_PROV_NAME "scagent"

struct sc_pkey {
	int is_ec;
	EVP_PKEY *pub;				/* default-provider public key */
	struct sc_tls_signer *signer;		/* NULL: public only */
};

struct sc_sigctx {
	struct sc_pkey *key;
	EVP_MD *md;
	EVP_MD_CTX *mdctx;			/* digest_sign_* */
	int pad;				/* RSA_PKCS1_PADDING or RSA_PKCS1_PSS_PADDING */
	int saltlen;				/* RSA_PSS_SALTLEN_* or a length */
	EVP_MD *mgf1;				/* NULL: same as md */
};

/* ---------------------------------------------------------------- keymgmt */

static void *
km_new_rsa(void *provctx)
{
	(void)provctx;
	return calloc(1, sizeof(struct sc_pkey));
}

static void *
km_new_ec(void *provctx)
{
	struct sc_pkey *k = calloc(1, sizeof(*k));

	(void)provctx;
	if (k != NULL)
		k->is_ec = 1;
	return k;
}

static void
km_free(void *kd)
{
	struct sc_pkey *k = kd;

	if (k == NULL)
		return;
	EVP_PKEY_free(k->pub);
	free(k);
}

static int
km_has(const void *kd, int selection)
{
	const struct sc_pkey *k = kd;

	if (k == NULL)
		return 0;
	if ((selection & (OSSL_KEYMGMT_SELECT_PUBLIC_KEY |
	    OSSL_KEYMGMT_SELECT_ALL_PARAMETERS)) != 0 && k->pub == NULL)
		return 0;
	if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 && k->signer == NULL)
		return 0;
	return 1;
}

static int
km_match(const void *a, const void *b, int selection)
{
	const struct sc_pkey *ka = a, *kb = b;

	if (ka == NULL || kb == NULL || ka->pub == NULL || kb->pub == NULL)
		return 0;
	if ((selection & (OSSL_KEYMGMT_SELECT_PUBLIC_KEY |
	    OSSL_KEYMGMT_SELECT_ALL_PARAMETERS)) == 0)
		return 1;
	return EVP_PKEY_eq(ka->pub, kb->pub) == 1;
}

/* Public key parameters (as the default provider takes them) and our signer. */
static int
km_import(void *kd, int selection, const OSSL_PARAM params[])
{
	struct sc_pkey *k = kd;
	EVP_PKEY_CTX *pc = NULL;
	EVP_PKEY *pub = NULL;
	const OSSL_PARAM *p;
	void *ptr = NULL;
	size_t len = 0;
	int ok = 0;

	if (k == NULL || (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) == 0)
		return 0;
	if ((pc = EVP_PKEY_CTX_new_from_name(NULL, k->is_ec ? "EC" : "RSA", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(pc) <= 0 ||
	    EVP_PKEY_fromdata(pc, &pub, EVP_PKEY_PUBLIC_KEY, (OSSL_PARAM *)params) <= 0)
		goto out;
	if ((p = OSSL_PARAM_locate_const(params, SC_PARAM_SIGNER)) != NULL) {
		if (!OSSL_PARAM_get_octet_ptr(p, (const void **)&ptr, &len) ||
		    len != sizeof(struct sc_tls_signer))
			goto out;
		k->signer = ptr;
	}
	EVP_PKEY_free(k->pub);
	k->pub = pub;
	pub = NULL;
	ok = 1;
out:
	EVP_PKEY_free(pub);
	EVP_PKEY_CTX_free(pc);
	return ok;
}

/* The public half only: the private key never leaves the token. */
static int
km_export(void *kd, int selection, OSSL_CALLBACK *cb, void *cbarg)
{
	struct sc_pkey *k = kd;
	OSSL_PARAM *params = NULL;
	int ok;

	if (k == NULL || k->pub == NULL)
		return 0;
	if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 && k->signer != NULL)
		return 0;
	if (EVP_PKEY_todata(k->pub, EVP_PKEY_PUBLIC_KEY, &params) <= 0)
		return 0;
	ok = cb(params, cbarg);
	OSSL_PARAM_free(params);
	return ok;
}

static const OSSL_PARAM rsa_types[] = {
	OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
	OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
	OSSL_PARAM_octet_ptr(SC_PARAM_SIGNER, NULL, 0),
	OSSL_PARAM_END
};

static const OSSL_PARAM ec_types[] = {
	OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
	OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
	OSSL_PARAM_octet_ptr(SC_PARAM_SIGNER, NULL, 0),
	OSSL_PARAM_END
};

static const OSSL_PARAM *
km_rsa_types(int selection)
{
	return (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) ? rsa_types : NULL;
}

static const OSSL_PARAM *
km_ec_types(int selection)
{
	return (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) ? ec_types : NULL;
}

/* bits, security-bits, max-size, default digest, EC group and point: the public key's. */
static int
km_get_params(void *kd, OSSL_PARAM params[])
{
	struct sc_pkey *k = kd;

	if (k == NULL || k->pub == NULL)
		return 0;
	return EVP_PKEY_get_params(k->pub, params);
}

static const OSSL_PARAM *
default_gettable(const char *name)
{
	EVP_KEYMGMT *km = EVP_KEYMGMT_fetch(NULL, name, NULL);
	const OSSL_PARAM *p = km ? EVP_KEYMGMT_gettable_params(km) : NULL;

	/* The table is static data of the default provider, which stays loaded. */
	EVP_KEYMGMT_free(km);
	return p;
}

static const OSSL_PARAM *
km_rsa_gettable(void *provctx)
{
	(void)provctx;
	return default_gettable("RSA");
}

static const OSSL_PARAM *
km_ec_gettable(void *provctx)
{
	(void)provctx;
	return default_gettable("EC");
}

static const char *
km_ec_opname(int op)
{
	return op == OSSL_OP_SIGNATURE ? "ECDSA" : NULL;
}

static const char *
km_rsa_opname(int op)
{
	return op == OSSL_OP_SIGNATURE ? "RSA" : NULL;
}

#define KM_COMMON \
	{ OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))km_free }, \
	{ OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))km_has }, \
	{ OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))km_match }, \
	{ OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))km_import }, \
	{ OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))km_export }, \
	{ OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))km_get_params }

static const OSSL_DISPATCH km_rsa_fns[] = {
	{ OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))km_new_rsa },
	KM_COMMON,
	{ OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))km_rsa_types },
	{ OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))km_rsa_types },
	{ OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))km_rsa_gettable },
	{ OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))km_rsa_opname },
	{ 0, NULL }
};

static const OSSL_DISPATCH km_ec_fns[] = {
	{ OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))km_new_ec },
	KM_COMMON,
	{ OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))km_ec_types },
	{ OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))km_ec_types },
	{ OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))km_ec_gettable },
	{ OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))km_ec_opname },
	{ 0, NULL }
};

/* ---------------------------------------------------------------- signature */

static void *
sig_newctx(void *provctx, const char *propq)
{
	struct sc_sigctx *s = calloc(1, sizeof(*s));

	(void)provctx;
	(void)propq;
	if (s != NULL) {
		s->pad = RSA_PKCS1_PADDING;
		s->saltlen = RSA_PSS_SALTLEN_DIGEST;
	}
	return s;
}

static void
sig_freectx(void *ctx)
{
	struct sc_sigctx *s = ctx;

	if (s == NULL)
		return;
	EVP_MD_free(s->md);
	EVP_MD_free(s->mgf1);
	EVP_MD_CTX_free(s->mdctx);
	free(s);
}

static void *
sig_dupctx(void *ctx)
{
	struct sc_sigctx *s = ctx, *d;

	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	*d = *s;
	d->md = d->mgf1 = NULL;
	d->mdctx = NULL;
	if ((s->md != NULL && !EVP_MD_up_ref(s->md)) ||
	    (s->mgf1 != NULL && !EVP_MD_up_ref(s->mgf1))) {
		free(d);
		return NULL;
	}
	d->md = s->md;
	d->mgf1 = s->mgf1;
	if (s->mdctx != NULL && ((d->mdctx = EVP_MD_CTX_new()) == NULL ||
	    !EVP_MD_CTX_copy_ex(d->mdctx, s->mdctx))) {
		sig_freectx(d);
		return NULL;
	}
	return d;
}

static int
set_md(EVP_MD **slot, const char *name)
{
	EVP_MD *md = EVP_MD_fetch(NULL, name, NULL);

	if (md == NULL)
		return 0;
	EVP_MD_free(*slot);
	*slot = md;
	return 1;
}

static int
sig_set_ctx_params(void *ctx, const OSSL_PARAM params[])
{
	struct sc_sigctx *s = ctx;
	const OSSL_PARAM *p;
	const char *str;

	if (s == NULL)
		return 0;
	if (params == NULL)
		return 1;
	if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL &&
	    (!OSSL_PARAM_get_utf8_string_ptr(p, &str) || !set_md(&s->md, str)))
		return 0;
	if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL) {
		if (p->data_type == OSSL_PARAM_UTF8_STRING) {
			if (!OSSL_PARAM_get_utf8_string_ptr(p, &str))
				return 0;
			if (strcmp(str, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0)
				s->pad = RSA_PKCS1_PADDING;
			else if (strcmp(str, OSSL_PKEY_RSA_PAD_MODE_PSS) == 0)
				s->pad = RSA_PKCS1_PSS_PADDING;
			else
				return 0;
		} else {
			int pad;
			if (!OSSL_PARAM_get_int(p, &pad) ||
			    (pad != RSA_PKCS1_PADDING && pad != RSA_PKCS1_PSS_PADDING))
				return 0;	/* raw RSA never goes to the token */
			s->pad = pad;
		}
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL) {
		if (p->data_type == OSSL_PARAM_UTF8_STRING) {
			if (!OSSL_PARAM_get_utf8_string_ptr(p, &str))
				return 0;
			if (strcmp(str, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) == 0)
				s->saltlen = RSA_PSS_SALTLEN_DIGEST;
			else if (strcmp(str, OSSL_PKEY_RSA_PSS_SALT_LEN_MAX) == 0)
				s->saltlen = RSA_PSS_SALTLEN_MAX;
			else if (strcmp(str, OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO) == 0)
				s->saltlen = RSA_PSS_SALTLEN_AUTO;
			else
				s->saltlen = atoi(str);
		} else if (!OSSL_PARAM_get_int(p, &s->saltlen))
			return 0;
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) != NULL &&
	    (!OSSL_PARAM_get_utf8_string_ptr(p, &str) || !set_md(&s->mgf1, str)))
		return 0;
	return 1;
}

static const OSSL_PARAM sig_settable[] = {
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_PROPERTIES, NULL, 0),
	OSSL_PARAM_END
};

static const OSSL_PARAM *
sig_settable_ctx_params(void *ctx, void *provctx)
{
	(void)ctx;
	(void)provctx;
	return sig_settable;
}

static int
sig_get_ctx_params(void *ctx, OSSL_PARAM params[])
{
	struct sc_sigctx *s = ctx;
	OSSL_PARAM *p;

	if (s == NULL)
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL &&
	    !OSSL_PARAM_set_utf8_string(p, s->md ? EVP_MD_get0_name(s->md) : ""))
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL) {
		if (p->data_type == OSSL_PARAM_UTF8_STRING) {
			if (!OSSL_PARAM_set_utf8_string(p, s->pad == RSA_PKCS1_PSS_PADDING ?
			    OSSL_PKEY_RSA_PAD_MODE_PSS : OSSL_PKEY_RSA_PAD_MODE_PKCSV15))
				return 0;
		} else if (!OSSL_PARAM_set_int(p, s->pad))
			return 0;
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL &&
	    p->data_type != OSSL_PARAM_UTF8_STRING && !OSSL_PARAM_set_int(p, s->saltlen))
		return 0;
	return 1;
}

static const OSSL_PARAM sig_gettable[] = {
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
	OSSL_PARAM_int(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL),
	OSSL_PARAM_END
};

static const OSSL_PARAM *
sig_gettable_ctx_params(void *ctx, void *provctx)
{
	(void)ctx;
	(void)provctx;
	return sig_gettable;
}

static int
sig_init(void *ctx, void *kd, const OSSL_PARAM params[])
{
	struct sc_sigctx *s = ctx;
	struct sc_pkey *k = kd;

	if (s == NULL || k == NULL || k->signer == NULL || k->pub == NULL)
		return 0;
	s->key = k;
	return sig_set_ctx_params(s, params);
}

/* "sha256" for SHA2-256, NULL for digests the agent does not sign with. */
static const char *
md_suffix(const EVP_MD *md)
{
	if (EVP_MD_is_a(md, "SHA256"))
		return "sha256";
	if (EVP_MD_is_a(md, "SHA384"))
		return "sha384";
	if (EVP_MD_is_a(md, "SHA512"))
		return "sha512";
	return NULL;
}

static size_t
max_sig_size(const struct sc_pkey *k)
{
	int n = EVP_PKEY_get_size(k->pub);

	return n > 0 ? (size_t)n : 0;
}

/* The agent signs dgst with the scheme the context describes. */
static int
agent_sign(struct sc_sigctx *s, unsigned char *sig, size_t *siglen, size_t sigsize,
    const unsigned char *dgst, size_t dlen)
{
	struct sc_tls_signer *sg = s->key->signer;
	const EVP_MD *md = s->md;
	EVP_MD *guess = NULL;
	const char *suffix, *family;
	unsigned char *out = NULL;
	size_t outlen = 0;
	int r, ok = 0;

	if (md == NULL) {
		/* A bare sign() without a digest set: the digest's length says which. */
		guess = EVP_MD_fetch(NULL, dlen == 48 ? "SHA384" : dlen == 64 ? "SHA512" : "SHA256", NULL);
		md = guess;
	}
	if (md == NULL || (suffix = md_suffix(md)) == NULL) {
		snprintf(sg->last_msg, sizeof(sg->last_msg), "the agent signs with SHA-256, "
		    "SHA-384 or SHA-512 only, not %s", md ? EVP_MD_get0_name(md) : "(none)");
		sg->last_err = SC_ERR_UNSUPPORTED;
		goto out;
	}
	if ((size_t)EVP_MD_get_size(md) != dlen) {
		snprintf(sg->last_msg, sizeof(sg->last_msg), "a %s digest has %d bytes, not %zu",
		    EVP_MD_get0_name(md), EVP_MD_get_size(md), dlen);
		sg->last_err = SC_ERR_INVALID;
		goto out;
	}
	if (s->key->is_ec)
		family = "ecdsa";
	else if (s->pad == RSA_PKCS1_PSS_PADDING) {
		family = "rsa-pss";
		if ((s->saltlen != RSA_PSS_SALTLEN_DIGEST && s->saltlen != (int)dlen) ||
		    (s->mgf1 != NULL && !EVP_MD_is_a(s->mgf1, EVP_MD_get0_name(md)))) {
			snprintf(sg->last_msg, sizeof(sg->last_msg), "RSA-PSS through the agent "
			    "needs salt length = digest length and MGF1 with the same digest");
			sg->last_err = SC_ERR_UNSUPPORTED;
			goto out;
		}
	} else
		family = "rsa-pkcs1";
	snprintf(sg->last_alg, sizeof(sg->last_alg), "%s-%s", family, suffix);
	r = scagent_sign(sg->client, sg->ref, sg->last_alg, 1, dgst, dlen, &out, &outlen);
	if (r == SC_ERR_PIN_REQUIRED && sg->ask_pin != NULL) {
		char *pin = sg->ask_pin(sg->label);

		if (pin != NULL) {
			r = scagent_sign_pin(sg->client, sg->ref, sg->last_alg, 1, dgst, dlen, pin, 0,
			    &out, &outlen);
			sc_secstr_free(pin);
		}
	}
	if (r != 0) {
		sg->last_err = r;
		snprintf(sg->last_msg, sizeof(sg->last_msg), "%s", scagent_error(sg->client));
		goto out;
	}
	if (outlen > sigsize) {
		snprintf(sg->last_msg, sizeof(sg->last_msg), "the agent's %zu-byte signature "
		    "is larger than the %zu bytes expected", outlen, sigsize);
		sg->last_err = SC_ERR_PROTOCOL;
		goto out;
	}
	memcpy(sig, out, outlen);
	*siglen = outlen;
	sg->last_err = 0;
	sg->last_msg[0] = '\0';
	sg->nsigs++;
	ok = 1;
out:
	if (!ok)
		ERR_raise_data(ERR_LIB_USER, ERR_R_OPERATION_FAIL, "%s", sg->last_msg);
	scagent_free(out);
	EVP_MD_free(guess);
	return ok;
}

static int
sig_sign(void *ctx, unsigned char *sig, size_t *siglen, size_t sigsize,
    const unsigned char *tbs, size_t tbslen)
{
	struct sc_sigctx *s = ctx;

	if (s == NULL || s->key == NULL)
		return 0;
	if (sig == NULL) {
		*siglen = max_sig_size(s->key);
		return 1;
	}
	return agent_sign(s, sig, siglen, sigsize, tbs, tbslen);
}

static int
sig_digest_sign_init(void *ctx, const char *mdname, void *kd, const OSSL_PARAM params[])
{
	struct sc_sigctx *s = ctx;

	if (!sig_init(ctx, kd, NULL))
		return 0;
	if (!set_md(&s->md, mdname != NULL && *mdname ? mdname : "SHA256"))
		return 0;
	EVP_MD_CTX_free(s->mdctx);
	if ((s->mdctx = EVP_MD_CTX_new()) == NULL ||
	    !EVP_DigestInit_ex2(s->mdctx, s->md, NULL))
		return 0;
	return sig_set_ctx_params(s, params);
}

static int
sig_digest_sign_update(void *ctx, const unsigned char *data, size_t len)
{
	struct sc_sigctx *s = ctx;

	return s != NULL && s->mdctx != NULL && EVP_DigestUpdate(s->mdctx, data, len);
}

static int
sig_digest_sign_final(void *ctx, unsigned char *sig, size_t *siglen, size_t sigsize)
{
	struct sc_sigctx *s = ctx;
	unsigned char dgst[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;

	if (s == NULL || s->key == NULL || s->mdctx == NULL)
		return 0;
	if (sig == NULL) {
		*siglen = max_sig_size(s->key);
		return 1;
	}
	if (!EVP_DigestFinal_ex(s->mdctx, dgst, &dlen))
		return 0;
	return agent_sign(s, sig, siglen, sigsize, dgst, dlen);
}

static const OSSL_DISPATCH sig_fns[] = {
	{ OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))sig_newctx },
	{ OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))sig_freectx },
	{ OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))sig_dupctx },
	{ OSSL_FUNC_SIGNATURE_SIGN_INIT, (void (*)(void))sig_init },
	{ OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))sig_sign },
	{ OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))sig_digest_sign_init },
	{ OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (void (*)(void))sig_digest_sign_update },
	{ OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (void (*)(void))sig_digest_sign_final },
	{ OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void))sig_set_ctx_params },
	{ OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))sig_settable_ctx_params },
	{ OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void))sig_get_ctx_params },
	{ OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, (void (*)(void))sig_gettable_ctx_params },
	{ 0, NULL }
};

/* ---------------------------------------------------------------- provider */

#define RSA_NAMES "RSA:rsaEncryption:1.2.840.113549.1.1.1"
#define EC_NAMES "EC:id-ecPublicKey:1.2.840.10045.2.1"

static const OSSL_ALGORITHM keymgmt_algs[] = {
	{ RSA_NAMES, "provider=" SC_PROV_NAME, km_rsa_fns, "RSA key on a token, through scagentd" },
	{ EC_NAMES, "provider=" SC_PROV_NAME, km_ec_fns, "EC key on a token, through scagentd" },
	{ NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM signature_algs[] = {
	{ RSA_NAMES, "provider=" SC_PROV_NAME, sig_fns, "RSA PKCS#1 v1.5 and PSS by the token" },
	{ "ECDSA", "provider=" SC_PROV_NAME, sig_fns, "ECDSA by the token" },
	{ NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM *
prov_query(void *provctx, int op, int *no_cache)
{
	(void)provctx;
	*no_cache = 0;
	switch (op) {
	case OSSL_OP_KEYMGMT:
		return keymgmt_algs;
	case OSSL_OP_SIGNATURE:
		return signature_algs;
	default:
		return NULL;
	}
}

static void
prov_teardown(void *provctx)
{
	(void)provctx;
}

static const OSSL_DISPATCH prov_fns[] = {
	{ OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))prov_query },
	{ OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))prov_teardown },
	{ 0, NULL }
};

static int
prov_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
    const OSSL_DISPATCH **out, void **provctx)
{
	(void)in;
	*out = prov_fns;
	*provctx = (void *)handle;
	return 1;
}

static pthread_mutex_t prov_lock = PTHREAD_MUTEX_INITIALIZER;
static OSSL_LIB_CTX *prov_libctx;
static OSSL_PROVIDER *prov_handle;

static OSSL_LIB_CTX *
provider_libctx(void)
{
	OSSL_LIB_CTX *lc;

	pthread_mutex_lock(&prov_lock);
	if (prov_libctx == NULL && (lc = OSSL_LIB_CTX_new()) != NULL) {
		if (OSSL_PROVIDER_add_builtin(lc, SC_PROV_NAME, prov_init) &&
		    (prov_handle = OSSL_PROVIDER_load(lc, SC_PROV_NAME)) != NULL)
			prov_libctx = lc;
		else
			OSSL_LIB_CTX_free(lc);
	}
	lc = prov_libctx;
	pthread_mutex_unlock(&prov_lock);
	return lc;
}

void
sc_tls_provider_cleanup(void)
{
	pthread_mutex_lock(&prov_lock);
	OSSL_PROVIDER_unload(prov_handle);
	prov_handle = NULL;
	OSSL_LIB_CTX_free(prov_libctx);
	prov_libctx = NULL;
	pthread_mutex_unlock(&prov_lock);
}

int
sc_tls_agent_pkey(X509 *cert, struct sc_tls_signer *signer, EVP_PKEY **out)
{
	EVP_PKEY *pub = X509_get0_pubkey(cert);
	OSSL_PARAM *pubp = NULL, *all = NULL;
	OSSL_PARAM extra[2];
	EVP_PKEY_CTX *pc = NULL;
	OSSL_LIB_CTX *lc;
	const char *type;
	int r = SC_ERR_INTERNAL;

	*out = NULL;
	if (pub == NULL)
		return SC_ERR_CERT;
	if (EVP_PKEY_is_a(pub, "RSA"))
		type = "RSA";
	else if (EVP_PKEY_is_a(pub, "EC"))
		type = "EC";
	else
		return SC_ERR_UNSUPPORTED;
	if ((lc = provider_libctx()) == NULL)
		return SC_ERR_INTERNAL;
	if (EVP_PKEY_todata(pub, EVP_PKEY_PUBLIC_KEY, &pubp) <= 0)
		goto out;
	extra[0] = OSSL_PARAM_construct_octet_ptr(SC_PARAM_SIGNER, (void **)&signer, sizeof(*signer));
	extra[1] = OSSL_PARAM_construct_end();
	if ((all = OSSL_PARAM_merge(pubp, extra)) == NULL)
		goto out;
	if ((pc = EVP_PKEY_CTX_new_from_name(lc, type, "provider=" SC_PROV_NAME)) == NULL ||
	    EVP_PKEY_fromdata_init(pc) <= 0 ||
	    EVP_PKEY_fromdata(pc, out, EVP_PKEY_KEYPAIR, all) <= 0)
		goto out;
	r = SC_OK;
out:
	EVP_PKEY_CTX_free(pc);
	OSSL_PARAM_free(all);
	OSSL_PARAM_free(pubp);
	return r;
}
