/*
 * Enrolment on a token: a key pair generated on it (never extractable), and
 * an issued certificate stored next to the key whose public key it carries,
 * with its CA certificates.
 */

#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include "common/err.h"
#include "common/log.h"
#include "common/text.h"
#include "common/util.h"
#include "token/store-private.h"

int
sc_keytype_parse(const char *s)
{
	if (strcmp(s, "rsa:2048") == 0)
		return SC_KEY_RSA2048;
	if (strcmp(s, "rsa:3072") == 0)
		return SC_KEY_RSA3072;
	if (strcmp(s, "ec:p256") == 0 || strcmp(s, "ec:prime256v1") == 0)
		return SC_KEY_EC_P256;
	return -1;
}

/* The token labelled label, with a fresh read-write session on it. */
static int
token_rw_session(struct sc_store *st, const char *label, struct sc_token **tp,
    CK_SESSION_HANDLE *s, char *why, size_t whylen)
{
	struct sc_token *t;
	CK_RV rv;
	int r;

	*tp = NULL;
	*s = CK_INVALID_HANDLE;
	if ((t = store_find_label(st, label, &r)) == NULL) {
		snprintf(why, whylen, r == SC_ERR_NOT_FOUND ? "no token labelled \"%s\"; see `scagent list`" :
		    "more than one token is labelled \"%s\"", label);
		return r;
	}
	rv = t->dead ? CKR_TOKEN_NOT_PRESENT :
	    t->mod->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, s);
	if (rv != CKR_OK) {
		snprintf(why, whylen, "cannot open a read-write session on token \"%s\": %s%s", label,
		    sc_ckr_name(rv), rv == CKR_TOKEN_WRITE_PROTECTED ? " (the token is write-protected)" : "");
		token_unref(t);
		return sc_err_from_ckr(rv);
	}
	*tp = t;
	return SC_OK;
}

static int
id_in_use(const struct sc_kp *kps, size_t nk, const struct sc_objset *o,
    const unsigned char *id, size_t idlen)
{
	for (size_t i = 0; i < nk; i++)
		if (kps[i].idlen == idlen && memcmp(kps[i].id, id, idlen) == 0)
			return 1;
	for (size_t i = 0; o != NULL && i < o->ncerts; i++)
		if (o->certs[i].idlen == idlen && memcmp(o->certs[i].id, id, idlen) == 0)
			return 1;
	return 0;
}

static void
attr_add(CK_ATTRIBUTE *v, CK_ULONG *n, CK_ATTRIBUTE_TYPE type, const void *p, size_t len)
{
	v[*n].type = type;
	v[*n].pValue = (void *)p;
	v[*n].ulValueLen = len;
	(*n)++;
}

/*
 * The new key's ID: the one asked for (*id), if no key or certificate on the
 * token has it; else the lowest free one-byte ID, in idbuf, as pkcs11-tool
 * users number their keys.
 */
static int
keygen_id(const struct sc_kp *kps, size_t nk, const struct sc_objset *o, const char *token_label,
    const unsigned char **id, size_t *idlen, unsigned char *idbuf, char *why, size_t whylen)
{
	unsigned int b;

	if (*id != NULL) {
		if (id_in_use(kps, nk, o, *id, *idlen)) {
			char *hex = sc_hex(*id, *idlen);
			snprintf(why, whylen, "ID %s is already used on token \"%s\"; choose another --id "
			    "or leave it out", hex ? hex : "", token_label);
			free(hex);
			return SC_ERR_ALREADY;
		}
		return SC_OK;
	}
	for (b = 1; b < 256; b++) {
		idbuf[0] = (unsigned char)b;
		if (!id_in_use(kps, nk, o, idbuf, 1))
			break;
	}
	if (b == 256) {
		snprintf(why, whylen, "token \"%s\" has no free one-byte key ID: give --id", token_label);
		return SC_ERR_ALREADY;
	}
	*id = idbuf;
	*idlen = 1;
	return SC_OK;
}

/* The templates of a new key pair, and the values they point to. */
struct keygen_tmpl {
	CK_BBOOL yes, no;
	CK_ULONG bits;
	CK_OBJECT_CLASS pubcls, privcls;
	CK_ATTRIBUTE pub[8], priv[10];
	CK_ULONG np, nv;
};

/*
 * Private key CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE,
 * CKA_SIGN; an RSA key also decrypts and its public key encrypts.
 */
static void
keygen_templates(struct keygen_tmpl *k, CK_KEY_TYPE kt, int type, const unsigned char *id,
    size_t idlen, const char *label)
{
	static const unsigned char p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
	static const unsigned char f4[] = { 0x01, 0x00, 0x01 };
	CK_ATTRIBUTE *pub = k->pub, *priv = k->priv;
	CK_ULONG np = 0, nv = 0;

	k->yes = CK_TRUE;
	k->no = CK_FALSE;
	k->bits = type == SC_KEY_RSA3072 ? 3072 : 2048;
	k->pubcls = CKO_PUBLIC_KEY;
	k->privcls = CKO_PRIVATE_KEY;
	attr_add(pub, &np, CKA_CLASS, &k->pubcls, sizeof(k->pubcls));
	attr_add(pub, &np, CKA_TOKEN, &k->yes, sizeof(k->yes));
	attr_add(pub, &np, CKA_VERIFY, &k->yes, sizeof(k->yes));
	attr_add(pub, &np, CKA_ID, id, idlen);
	attr_add(pub, &np, CKA_LABEL, label, strlen(label));
	if (kt == CKK_RSA) {
		attr_add(pub, &np, CKA_MODULUS_BITS, &k->bits, sizeof(k->bits));
		attr_add(pub, &np, CKA_PUBLIC_EXPONENT, f4, sizeof(f4));
		attr_add(pub, &np, CKA_ENCRYPT, &k->yes, sizeof(k->yes));
	} else
		attr_add(pub, &np, CKA_EC_PARAMS, p256, sizeof(p256));
	attr_add(priv, &nv, CKA_CLASS, &k->privcls, sizeof(k->privcls));
	attr_add(priv, &nv, CKA_TOKEN, &k->yes, sizeof(k->yes));
	attr_add(priv, &nv, CKA_PRIVATE, &k->yes, sizeof(k->yes));
	attr_add(priv, &nv, CKA_SENSITIVE, &k->yes, sizeof(k->yes));
	attr_add(priv, &nv, CKA_EXTRACTABLE, &k->no, sizeof(k->no));
	attr_add(priv, &nv, CKA_SIGN, &k->yes, sizeof(k->yes));
	attr_add(priv, &nv, CKA_ID, id, idlen);
	attr_add(priv, &nv, CKA_LABEL, label, strlen(label));
	if (kt == CKK_RSA)
		attr_add(priv, &nv, CKA_DECRYPT, &k->yes, sizeof(k->yes));
	k->np = np;
	k->nv = nv;
}

/* Whether token t can make this key pair now: logged in, the mechanism listed. */
static int
keygen_can(struct sc_token *t, const char *token_label, CK_KEY_TYPE kt, CK_MECHANISM_TYPE mech,
    char *why, size_t whylen)
{
	int need_login;

	pthread_mutex_lock(&t->lock);
	need_login = (t->info.flags & CKF_LOGIN_REQUIRED) && !t->logged_in;
	pthread_mutex_unlock(&t->lock);
	if (need_login) {
		snprintf(why, whylen, "key generation on token \"%s\" needs a login: run "
		    "`scagent login --token %s` first", token_label, token_label);
		return SC_ERR_NOT_LOGGED_IN;
	}
	if (t->nmechs > 0 && !token_has_mech(t, mech)) {
		snprintf(why, whylen, "token \"%s\" cannot generate %s keys", token_label,
		    kt == CKK_EC ? "EC" : "RSA");
		return SC_ERR_MECHANISM;
	}
	return SC_OK;
}

int
sc_store_keygen(struct sc_store *st, const char *token_label, int type, const char *label,
    const unsigned char *id, size_t idlen, json_object **out, char *why, size_t whylen)
{
	CK_KEY_TYPE kt = type == SC_KEY_EC_P256 ? CKK_EC : CKK_RSA;
	CK_MECHANISM mech = { kt == CKK_EC ? CKM_EC_KEY_PAIR_GEN : CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
	CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	struct sc_token *t = NULL;
	struct sc_objset *o = NULL;
	struct sc_kp *kps = NULL, made;
	struct keygen_tmpl k;
	size_t nk = 0;
	unsigned char idbuf[1];
	char deflabel[16];
	CK_RV rv;
	int r;

	*out = NULL;
	*why = '\0';
	memset(&made, 0, sizeof(made));
	if (type < 0 || type > SC_KEY_EC_P256)
		return SC_ERR_INVALID;
	if (label != NULL && strlen(label) > 64) {
		snprintf(why, whylen, "a key label has at most 64 bytes");
		return SC_ERR_INVALID;
	}
	if (id != NULL && (idlen == 0 || idlen > 64)) {
		snprintf(why, whylen, "a key ID has 1 to 64 bytes");
		return SC_ERR_INVALID;
	}
	if ((r = token_rw_session(st, token_label, &t, &s, why, whylen)) != SC_OK)
		return r;
	if ((r = keygen_can(t, token_label, kt, mech.mechanism, why, whylen)) != SC_OK)
		goto out;
	if ((r = token_keypairs(t, s, &kps, &nk)) != SC_OK) {
		snprintf(why, whylen, "cannot read the keys of token \"%s\": %s", token_label, sc_strerror(r));
		goto out;
	}
	o = token_objs(t);
	if ((r = keygen_id(kps, nk, o, token_label, &id, &idlen, idbuf, why, whylen)) != SC_OK)
		goto out;
	if (label == NULL) {
		snprintf(deflabel, sizeof(deflabel), "key-%02x", id[0]);
		label = idlen == 1 ? deflabel : "key";
	}
	for (size_t i = 0; i < nk; i++)
		if (kps[i].label != NULL && strcmp(kps[i].label, label) == 0) {
			snprintf(why, whylen, "a key labelled \"%s\" exists on token \"%s\"; choose another --label",
			    label, token_label);
			r = SC_ERR_ALREADY;
			goto out;
		}
	keygen_templates(&k, kt, type, id, idlen, label);
	rv = t->mod->f->C_GenerateKeyPair(s, &mech, k.pub, k.np, k.priv, k.nv, &hpub, &hpriv);
	if (rv != CKR_OK) {
		snprintf(why, whylen, "token \"%s\" could not generate the key pair: %s", token_label,
		    sc_ckr_name(rv));
		r = rv == CKR_USER_NOT_LOGGED_IN ? SC_ERR_NOT_LOGGED_IN : sc_err_from_ckr(rv);
		goto out;
	}
	made.id = (unsigned char *)id;
	made.idlen = idlen;
	made.label = (char *)label;
	made.type = kt;
	made.priv = hpriv;
	made.pub = hpub;
	made.pk = object_pkey(t->mod->f, s, hpub, kt);
	if (made.pk == NULL)
		made.pk = object_pkey(t->mod->f, s, hpriv, kt);
	sc_info("generated a %s key pair \"%s\" on token \"%s\"", kt == CKK_EC ? "P-256" :
	    k.bits == 3072 ? "RSA-3072" : "RSA-2048", label, token_label);
	*out = kp_json(t, &made);
	EVP_PKEY_free(made.pk);
	r = SC_OK;
out:
	if (s != CK_INVALID_HANDLE)
		t->mod->f->C_CloseSession(s);
	if (t != NULL && r == SC_OK)
		token_reload(t, 0);
	kps_free(kps, nk);
	objset_unref(o);
	token_unref(t);
	return r;
}

/* Create a certificate object. */
static CK_RV
put_cert(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, X509 *x, const unsigned char *der,
    size_t derlen, const char *label, const unsigned char *id, size_t idlen)
{
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_CERTIFICATE_TYPE ct = CKC_X_509;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_OBJECT_HANDLE h;
	CK_ATTRIBUTE a[11];
	CK_ULONG n = 0;
	unsigned char *subj = NULL, *iss = NULL, *ser = NULL;
	int sl, il, nl;
	CK_RV rv = CKR_HOST_MEMORY;

	sl = i2d_X509_NAME(X509_get_subject_name(x), &subj);
	il = i2d_X509_NAME(X509_get_issuer_name(x), &iss);
	nl = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &ser);
	if (sl <= 0 || il <= 0 || nl <= 0)
		goto out;
	attr_add(a, &n, CKA_CLASS, &cls, sizeof(cls));
	attr_add(a, &n, CKA_CERTIFICATE_TYPE, &ct, sizeof(ct));
	attr_add(a, &n, CKA_TOKEN, &yes, sizeof(yes));
	attr_add(a, &n, CKA_PRIVATE, &no, sizeof(no));
	attr_add(a, &n, CKA_LABEL, label, strlen(label));
	attr_add(a, &n, CKA_ID, id, idlen);
	attr_add(a, &n, CKA_VALUE, der, derlen);
	attr_add(a, &n, CKA_SUBJECT, subj, (size_t)sl);
	attr_add(a, &n, CKA_ISSUER, iss, (size_t)il);
	attr_add(a, &n, CKA_SERIAL_NUMBER, ser, (size_t)nl);
	rv = f->C_CreateObject(s, a, n, &h);
out:
	OPENSSL_free(subj);
	OPENSSL_free(iss);
	OPENSSL_free(ser);
	return rv;
}

/* A certificate's common name (or its whole subject) as an object label. */
static void
cert_label(X509 *x, char *buf, size_t len)
{
	X509_NAME *nm = X509_get_subject_name(x);
	int i = X509_NAME_get_index_by_NID(nm, NID_commonName, -1);
	unsigned char *utf8 = NULL;
	int n;

	if (i >= 0 && (n = ASN1_STRING_to_UTF8(&utf8,
	    X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i)))) > 0) {
		snprintf(buf, len, "%.*s", n, (char *)utf8);
		OPENSSL_free(utf8);
	} else
		X509_NAME_oneline(nm, buf, (int)len);
}

static void
der_sha256(const unsigned char *der, size_t len, char hex[65])
{
	unsigned char md[32];
	unsigned int mdlen = sizeof(md);
	char *h;

	hex[0] = '\0';
	if (EVP_Digest(der, len, md, &mdlen, EVP_sha256(), NULL) && (h = sc_hex(md, 32)) != NULL) {
		memcpy(hex, h, 65);
		free(h);
	}
}

static int
objset_has(const struct sc_objset *o, const char *sha256)
{
	for (size_t i = 0; o != NULL && i < o->ncerts; i++)
		if (strcmp(o->certs[i].sha256, sha256) == 0)
			return 1;
	return 0;
}

static const char *
pkey_desc(EVP_PKEY *pk, char *buf, size_t len)
{
	if (pk == NULL)
		snprintf(buf, len, "unknown");
	else
		snprintf(buf, len, "%s %d bits", EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC ? "EC" :
		    EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA ? "RSA" : "other", EVP_PKEY_get_bits(pk));
	return buf;
}

/* The issued certificate (DER) into *leaf, the CA certificates of chain (concatenated DER) onto cas. */
static int
import_parse(const unsigned char *der, size_t derlen, const unsigned char *chain, size_t chainlen,
    X509 **leaf, STACK_OF(X509) *cas, char *why, size_t whylen)
{
	const unsigned char *p = der, *end;
	char label[256];

	if ((*leaf = d2i_X509(NULL, &p, (long)derlen)) == NULL || p != der + derlen) {
		snprintf(why, whylen, "the certificate is not a DER or PEM X.509 certificate");
		return SC_ERR_CERT;
	}
	for (p = chain, end = chain + chainlen; chain != NULL && p < end;) {
		X509 *ca = d2i_X509(NULL, &p, (long)(end - p));
		if (ca == NULL) {
			snprintf(why, whylen, "chain certificate %d is not a DER or PEM X.509 certificate",
			    sk_X509_num(cas) + 1);
			return SC_ERR_CERT;
		}
		sk_X509_push(cas, ca);
		if (X509_check_ca(ca) <= 0) {
			cert_label(ca, label, sizeof(label));
			snprintf(why, whylen, "chain certificate \"%s\" is not a CA certificate; give the "
			    "issued certificate first and then only its issuing CAs", label);
			return SC_ERR_CERT;
		}
	}
	return SC_OK;
}

/*
 * The key pair whose public key leaf carries: found by comparing public
 * keys, never by name. NULL, with the keys there are in why, when none does.
 */
static struct sc_kp *
import_find_key(struct sc_kp *kps, size_t nk, X509 *leaf, const char *token_label,
    char *why, size_t whylen)
{
	struct sc_kp *key = NULL;
	char desc[64], *hex;

	for (size_t i = 0; i < nk && key == NULL; i++)
		if (kps[i].pk != NULL && kps[i].idlen > 0 &&
		    EVP_PKEY_eq(kps[i].pk, X509_get0_pubkey(leaf)) == 1)
			key = &kps[i];
	ERR_clear_error();
	if (key == NULL) {
		size_t off = (size_t)snprintf(why, whylen, "the certificate's public key (%s) matches no "
		    "key on token \"%s\"; it was issued for another key. Keys on the token:",
		    pkey_desc(X509_get0_pubkey(leaf), desc, sizeof(desc)), token_label);
		for (size_t i = 0; i < nk && off < whylen; i++) {
			hex = sc_hex(kps[i].id, kps[i].idlen);
			off += (size_t)snprintf(why + off, whylen - off, "%s \"%s\" id %s (%s)", i ? "," : "",
			    kps[i].label ? kps[i].label : "", hex ? hex : "", pkey_desc(kps[i].pk, desc, sizeof(desc)));
			free(hex);
		}
		if (nk == 0 && off < whylen)
			snprintf(why + off, whylen - off, " none");
	}
	return key;
}

/*
 * Store the CA certificates cas on the token (session s), each with its own
 * ID, skipping those o has already; one entry each in jchain.
 */
static int
import_chain(struct sc_token *t, CK_SESSION_HANDLE s, const struct sc_objset *o,
    STACK_OF(X509) *cas, json_object *jchain, const char *token_label, char *why, size_t whylen)
{
	char sha[65], label[256], *hex;
	json_object *jc;
	CK_RV rv;

	for (int i = 0; i < sk_X509_num(cas); i++) {
		X509 *ca = sk_X509_value(cas, i);
		const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca);
		unsigned char md[EVP_MAX_MD_SIZE], *cader = NULL;
		unsigned int mdlen = 0;
		int calen = i2d_X509(ca, &cader);
		const unsigned char *caid = md;
		size_t caidlen;

		if (calen <= 0)
			return SC_ERR_NOMEM;
		/* A CA's own ID: its subject key identifier, else the SHA-1 of its key. */
		if (ski != NULL && ski->length > 0) {
			caid = ski->data;
			caidlen = (size_t)ski->length;
		} else {
			X509_pubkey_digest(ca, EVP_sha1(), md, &mdlen);
			caidlen = mdlen;
		}
		cert_label(ca, label, sizeof(label));
		der_sha256(cader, (size_t)calen, sha);
		jc = json_object_new_object();
		hex = sc_hex(caid, caidlen);
		sc_json_add_text(jc, "label", label);
		json_object_object_add(jc, "id", json_object_new_string(hex ? hex : ""));
		json_object_object_add(jc, "sha256", json_object_new_string(sha));
		free(hex);
		json_object_array_add(jchain, jc);
		if (objset_has(o, sha)) {
			json_object_object_add(jc, "status", json_object_new_string("already-present"));
			OPENSSL_free(cader);
			continue;
		}
		rv = put_cert(t->mod->f, s, ca, cader, (size_t)calen, label, caid, caidlen);
		OPENSSL_free(cader);
		if (rv != CKR_OK) {
			snprintf(why, whylen, "the certificate was stored, but token \"%s\" refused CA "
			    "certificate \"%s\": %s", token_label, label, sc_ckr_name(rv));
			return sc_err_from_ckr(rv);
		}
		json_object_object_add(jc, "status", json_object_new_string("imported"));
	}
	return SC_OK;
}

int
sc_store_import_cert(struct sc_store *st, const char *token_label, const unsigned char *der,
    size_t derlen, const unsigned char *chain, size_t chainlen, json_object **out,
    char *why, size_t whylen)
{
	STACK_OF(X509) *cas = sk_X509_new_null();
	X509 *leaf = NULL;
	struct sc_token *t = NULL;
	struct sc_objset *o = NULL;
	struct sc_kp *kps = NULL, *key = NULL;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	json_object *res = NULL, *jc, *jchain;
	char sha[65], label[256], *hex;
	size_t nk = 0;
	CK_RV rv;
	int r;

	*out = NULL;
	*why = '\0';
	if (cas == NULL)
		return SC_ERR_NOMEM;
	if ((r = import_parse(der, derlen, chain, chainlen, &leaf, cas, why, whylen)) != SC_OK)
		goto out;
	if ((r = token_rw_session(st, token_label, &t, &s, why, whylen)) != SC_OK)
		goto out;
	if ((r = token_keypairs(t, s, &kps, &nk)) != SC_OK) {
		snprintf(why, whylen, "cannot read the keys of token \"%s\": %s", token_label, sc_strerror(r));
		goto out;
	}
	if ((key = import_find_key(kps, nk, leaf, token_label, why, whylen)) == NULL) {
		r = SC_ERR_KEY;
		goto out;
	}
	o = token_objs(t);
	res = json_object_new_object();
	sc_json_add_text(res, "token", t->label);
	der_sha256(der, derlen, sha);
	jc = json_object_new_object();
	hex = sc_hex(key->id, key->idlen);
	json_object_object_add(jc, "id", json_object_new_string(hex ? hex : ""));
	free(hex);
	json_object_object_add(jc, "sha256", json_object_new_string(sha));
	sc_json_add_text(jc, "key_label", key->label);
	if (key->label != NULL && *key->label)
		snprintf(label, sizeof(label), "%s", key->label);
	else
		cert_label(leaf, label, sizeof(label));
	sc_json_add_text(jc, "label", label);
	if (objset_has(o, sha)) {
		json_object_object_add(jc, "status", json_object_new_string("already-present"));
	} else if ((rv = put_cert(t->mod->f, s, leaf, der, derlen, label, key->id, key->idlen)) != CKR_OK) {
		snprintf(why, whylen, "token \"%s\" refused the certificate object: %s%s", token_label,
		    sc_ckr_name(rv), rv == CKR_USER_NOT_LOGGED_IN ? "; run `scagent login --token "
		    "LABEL` first" : "");
		r = rv == CKR_USER_NOT_LOGGED_IN ? SC_ERR_NOT_LOGGED_IN : sc_err_from_ckr(rv);
		json_object_put(jc);
		goto out;
	} else
		json_object_object_add(jc, "status", json_object_new_string("imported"));
	json_object_object_add(res, "certificate", jc);
	jchain = json_object_new_array();
	json_object_object_add(res, "chain", jchain);
	if ((r = import_chain(t, s, o, cas, jchain, token_label, why, whylen)) != SC_OK)
		goto out;
	sc_info("imported a certificate for key \"%s\" and %d CA certificate%s on token \"%s\"",
	    key->label ? key->label : "", sk_X509_num(cas), sk_X509_num(cas) == 1 ? "" : "s", token_label);
	*out = res;
	res = NULL;
	r = SC_OK;
out:
	if (s != CK_INVALID_HANDLE)
		t->mod->f->C_CloseSession(s);
	if (t != NULL)
		token_reload(t, 0);	/* also after a partial import */
	json_object_put(res);
	kps_free(kps, nk);
	objset_unref(o);
	token_unref(t);
	X509_free(leaf);
	sk_X509_pop_free(cas, X509_free);
	return r;
}
