/*
 * The module's objects: for each certificate the agent lists, a certificate
 * object; for a certificate whose key pair is on the token, a public key
 * object (from the certificate's key) and, when the agent sees the private
 * key, a private key object that is sensitive and never extractable.
 */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include "pkcs11/p11mod.h"

static void
cert_free(struct p11_cert *c)
{
	if (c == NULL)
		return;
	free(c->der);
	/* i2d_*() output */
	OPENSSL_free(c->subject);
	OPENSSL_free(c->issuer);
	OPENSSL_free(c->serial);
	OPENSSL_free(c->spki);
	OPENSSL_free(c->ec_params);
	OPENSSL_free(c->ec_point);
	free(c->modulus);
	free(c->exponent);
	free(c);
}

void
p11_cert_unref(struct p11_cert *c)
{
	if (c == NULL || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	cert_free(c);
}

static int
bn_param(EVP_PKEY *pk, const char *name, unsigned char **out, size_t *outlen)
{
	BIGNUM *bn = NULL;
	int n, r = -1;

	*out = NULL;
	*outlen = 0;
	if (!EVP_PKEY_get_bn_param(pk, name, &bn))
		return -1;
	n = BN_num_bytes(bn);
	if ((*out = malloc(n > 0 ? (size_t)n : 1)) == NULL)
		goto out;
	if (n == 0)
		(*out)[0] = 0;
	else
		BN_bn2bin(bn, *out);
	*outlen = n > 0 ? (size_t)n : 1;
	r = 0;
out:
	BN_free(bn);
	return r;
}

static int
ec_key_attrs(struct p11_cert *c, EVP_PKEY *pk)
{
	char group[80];
	unsigned char point[256];
	size_t glen = 0, plen = 0;
	ASN1_OBJECT *oid;
	ASN1_OCTET_STRING *os = NULL;
	int nid, n, r = -1;

	if (!EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
	    sizeof(group), &glen) ||
	    !EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, point,
	    sizeof(point), &plen))
		return -1;
	if ((nid = OBJ_txt2nid(group)) == NID_undef || (oid = OBJ_nid2obj(nid)) == NULL)
		return -1;
	if ((n = i2d_ASN1_OBJECT(oid, &c->ec_params)) <= 0)
		return -1;
	c->ec_paramslen = (size_t)n;
	if ((os = ASN1_OCTET_STRING_new()) == NULL || !ASN1_OCTET_STRING_set(os, point, (int)plen))
		goto out;
	if ((n = i2d_ASN1_OCTET_STRING(os, &c->ec_point)) <= 0)
		goto out;
	c->ec_pointlen = (size_t)n;
	r = 0;
out:
	ASN1_OCTET_STRING_free(os);
	return r;
}

struct p11_cert *
p11_cert_new(const char *sha256, const unsigned char *der, size_t derlen)
{
	struct p11_cert *c = NULL;
	const unsigned char *p = der;
	X509 *x = NULL;
	EVP_PKEY *pk;
	int n;

	if ((x = d2i_X509(NULL, &p, (long)derlen)) == NULL || p != der + derlen)
		goto fail;
	if ((c = calloc(1, sizeof(*c))) == NULL || (c->der = malloc(derlen)) == NULL)
		goto fail;
	c->refs = 1;
	snprintf(c->sha256, sizeof(c->sha256), "%s", sha256);
	memcpy(c->der, der, derlen);
	c->derlen = derlen;
	/* i2d_*() with *out == NULL allocates the output. */
	if ((n = i2d_X509_NAME(X509_get_subject_name(x), &c->subject)) <= 0)
		goto fail;
	c->subjectlen = (size_t)n;
	if ((n = i2d_X509_NAME(X509_get_issuer_name(x), &c->issuer)) <= 0)
		goto fail;
	c->issuerlen = (size_t)n;
	if ((n = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &c->serial)) <= 0)
		goto fail;
	c->seriallen = (size_t)n;
	if ((n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &c->spki)) <= 0)
		goto fail;
	c->spkilen = (size_t)n;
	c->is_ca = X509_check_ca(x) > 0;
	c->key_type = P11_KEY_NONE;
	if ((pk = X509_get0_pubkey(x)) != NULL) {
		int bits = EVP_PKEY_get_bits(pk);
		switch (EVP_PKEY_get_base_id(pk)) {
		case EVP_PKEY_RSA:
			if (bits > 0 &&
			    bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &c->modulus, &c->moduluslen) == 0 &&
			    bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &c->exponent, &c->exponentlen) == 0) {
				c->key_type = CKK_RSA;
				c->bits = (CK_ULONG)bits;
				c->siglen = ((CK_ULONG)bits + 7) / 8;
			}
			break;
		case EVP_PKEY_EC:
			if (bits > 0 && ec_key_attrs(c, pk) == 0) {
				c->key_type = CKK_EC;
				c->bits = (CK_ULONG)bits;
				c->siglen = 2 * (((CK_ULONG)bits + 7) / 8);
			}
			break;
		}
	}
	X509_free(x);
	ERR_clear_error();
	return c;
fail:
	X509_free(x);
	cert_free(c);
	ERR_clear_error();
	return NULL;
}

void
p11_object_clear(struct p11_object *o)
{
	if (o == NULL)
		return;
	p11_cert_unref(o->cert);
	free(o->label);
	free(o->id);
	free(o->ref);
	memset(o, 0, sizeof(*o));
}

/* ------------------------------------------------------------------ */
/* Attributes */

static CK_RV
val_bool(struct p11_attr_val *v, int b)
{
	v->scratch.b = b ? CK_TRUE : CK_FALSE;
	v->ptr = &v->scratch.b;
	v->len = sizeof(CK_BBOOL);
	return CKR_OK;
}

static CK_RV
val_ulong(struct p11_attr_val *v, CK_ULONG ul)
{
	v->scratch.ul = ul;
	v->ptr = &v->scratch.ul;
	v->len = sizeof(CK_ULONG);
	return CKR_OK;
}

static CK_RV
val_bytes(struct p11_attr_val *v, const void *p, size_t len)
{
	v->ptr = p;
	v->len = (CK_ULONG)len;
	return CKR_OK;
}

static CK_RV
val_mechs(struct p11_attr_val *v, CK_KEY_TYPE kt)
{
	size_t n = 0, nmechs;
	const struct p11_mech_spec *mechs = p11_mech_list(&nmechs);

	for (size_t i = 0; i < nmechs && n < 16; i++)
		if (mechs[i].key_type == kt)
			v->scratch.mechs[n++] = mechs[i].type;
	v->ptr = v->scratch.mechs;
	v->len = (CK_ULONG)(n * sizeof(CK_MECHANISM_TYPE));
	return CKR_OK;
}

/* Attributes every object has. */
static int
storage_attr(const struct p11_object *o, CK_ATTRIBUTE_TYPE type, struct p11_attr_val *v)
{
	switch (type) {
	case CKA_CLASS:
		val_ulong(v, o->cls);
		return 1;
	case CKA_TOKEN:
		val_bool(v, 1);
		return 1;
	case CKA_PRIVATE:
		val_bool(v, o->private_obj);
		return 1;
	case CKA_MODIFIABLE:
	case CKA_COPYABLE:
	case CKA_DESTROYABLE:
		val_bool(v, 0);
		return 1;
	case CKA_LABEL:
		val_bytes(v, o->label, strlen(o->label));
		return 1;
	case CKA_ID:
		val_bytes(v, o->id, o->idlen);
		return 1;
	}
	return 0;
}

static CK_RV
cert_attr(const struct p11_object *o, CK_ATTRIBUTE_TYPE type, struct p11_attr_val *v)
{
	const struct p11_cert *c = o->cert;

	switch (type) {
	case CKA_CERTIFICATE_TYPE:
		return val_ulong(v, CKC_X_509);
	case CKA_TRUSTED:
		return val_bool(v, 0);
	case CKA_CERTIFICATE_CATEGORY:
		return val_ulong(v, 0);	/* unspecified */
	case CKA_VALUE:
		return val_bytes(v, c->der, c->derlen);
	case CKA_SUBJECT:
		return val_bytes(v, c->subject, c->subjectlen);
	case CKA_ISSUER:
		return val_bytes(v, c->issuer, c->issuerlen);
	case CKA_SERIAL_NUMBER:
		return val_bytes(v, c->serial, c->seriallen);
	case CKA_PUBLIC_KEY_INFO:
		return val_bytes(v, c->spki, c->spkilen);
	case CKA_URL:
	case CKA_HASH_OF_SUBJECT_PUBLIC_KEY:
	case CKA_HASH_OF_ISSUER_PUBLIC_KEY:
	case CKA_START_DATE:
	case CKA_END_DATE:
		return val_bytes(v, "", 0);
	case CKA_JAVA_MIDP_SECURITY_DOMAIN:
		return val_ulong(v, 0);
	}
	return CKR_ATTRIBUTE_TYPE_INVALID;
}

/* Attributes of both key classes. */
static CK_RV
key_attr(const struct p11_object *o, CK_ATTRIBUTE_TYPE type, struct p11_attr_val *v)
{
	const struct p11_cert *c = o->cert;
	int rsa = c->key_type == CKK_RSA;

	switch (type) {
	case CKA_KEY_TYPE:
		return val_ulong(v, c->key_type);
	case CKA_SUBJECT:
		return val_bytes(v, c->subject, c->subjectlen);
	case CKA_START_DATE:
	case CKA_END_DATE:
		return val_bytes(v, "", 0);
	case CKA_DERIVE:
		return val_bool(v, 0);
	case CKA_LOCAL:
		/* Not made by this module's C_GenerateKeyPair, which it does not have. */
		return val_bool(v, 0);
	case CKA_KEY_GEN_MECHANISM:
		return val_ulong(v, CK_UNAVAILABLE_INFORMATION);
	case CKA_ALLOWED_MECHANISMS:
		return val_mechs(v, c->key_type);
	case CKA_PUBLIC_KEY_INFO:
		return val_bytes(v, c->spki, c->spkilen);
	case CKA_MODULUS:
		return rsa ? val_bytes(v, c->modulus, c->moduluslen) : CKR_ATTRIBUTE_TYPE_INVALID;
	case CKA_PUBLIC_EXPONENT:
		return rsa ? val_bytes(v, c->exponent, c->exponentlen) : CKR_ATTRIBUTE_TYPE_INVALID;
	case CKA_EC_PARAMS:
		return !rsa ? val_bytes(v, c->ec_params, c->ec_paramslen) : CKR_ATTRIBUTE_TYPE_INVALID;
	}
	return CKR_ATTRIBUTE_TYPE_INVALID;
}

static CK_RV
pubkey_attr(const struct p11_object *o, CK_ATTRIBUTE_TYPE type, struct p11_attr_val *v)
{
	const struct p11_cert *c = o->cert;

	switch (type) {
	case CKA_ENCRYPT:
	case CKA_VERIFY_RECOVER:
	case CKA_WRAP:
	case CKA_TRUSTED:
		return val_bool(v, 0);
	case CKA_VERIFY:
		return val_bool(v, 1);
	case CKA_MODULUS_BITS:
		return c->key_type == CKK_RSA ? val_ulong(v, c->bits) : CKR_ATTRIBUTE_TYPE_INVALID;
	case CKA_EC_POINT:
		return c->key_type == CKK_EC ? val_bytes(v, c->ec_point, c->ec_pointlen) :
		    CKR_ATTRIBUTE_TYPE_INVALID;
	}
	return key_attr(o, type, v);
}

static CK_RV
privkey_attr(const struct p11_object *o, CK_ATTRIBUTE_TYPE type, struct p11_attr_val *v)
{
	const struct p11_cert *c = o->cert;

	switch (type) {
	case CKA_SENSITIVE:
	case CKA_ALWAYS_SENSITIVE:
	case CKA_NEVER_EXTRACTABLE:
	case CKA_SIGN:
		return val_bool(v, 1);
	case CKA_EXTRACTABLE:
	case CKA_DECRYPT:
	case CKA_SIGN_RECOVER:
	case CKA_UNWRAP:
	case CKA_WRAP_WITH_TRUSTED:
		return val_bool(v, 0);
	case CKA_ALWAYS_AUTHENTICATE:
		return val_bool(v, o->always_auth);
	case CKA_PRIVATE_EXPONENT:
	case CKA_PRIME_1:
	case CKA_PRIME_2:
	case CKA_EXPONENT_1:
	case CKA_EXPONENT_2:
	case CKA_COEFFICIENT:
		return c->key_type == CKK_RSA ? CKR_ATTRIBUTE_SENSITIVE : CKR_ATTRIBUTE_TYPE_INVALID;
	case CKA_VALUE:
		return c->key_type == CKK_EC ? CKR_ATTRIBUTE_SENSITIVE : CKR_ATTRIBUTE_TYPE_INVALID;
	}
	return key_attr(o, type, v);
}

CK_RV
p11_object_attr(const struct p11_object *o, CK_ATTRIBUTE_TYPE type, struct p11_attr_val *v)
{
	v->ptr = NULL;
	v->len = 0;
	if (storage_attr(o, type, v))
		return CKR_OK;
	switch (o->cls) {
	case CKO_CERTIFICATE:
		return cert_attr(o, type, v);
	case CKO_PUBLIC_KEY:
		return pubkey_attr(o, type, v);
	case CKO_PRIVATE_KEY:
		return privkey_attr(o, type, v);
	}
	return CKR_ATTRIBUTE_TYPE_INVALID;
}

int
p11_object_matches(const struct p11_object *o, const CK_ATTRIBUTE *tmpl, CK_ULONG n)
{
	struct p11_attr_val v;

	for (CK_ULONG i = 0; i < n; i++) {
		if (p11_object_attr(o, tmpl[i].type, &v) != CKR_OK)
			return 0;	/* unknown or sensitive: no match */
		if (v.len != tmpl[i].ulValueLen)
			return 0;
		if (v.len > 0 && (tmpl[i].pValue == NULL || memcmp(v.ptr, tmpl[i].pValue, v.len) != 0))
			return 0;
	}
	return 1;
}

CK_RV
p11_object_get_attrs(const struct p11_object *o, CK_ATTRIBUTE *tmpl, CK_ULONG n)
{
	struct p11_attr_val v;
	CK_RV rv = CKR_OK, r;

	for (CK_ULONG i = 0; i < n; i++) {
		r = p11_object_attr(o, tmpl[i].type, &v);
		if (r != CKR_OK) {
			tmpl[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
			rv = r;
			continue;
		}
		if (tmpl[i].pValue == NULL) {
			tmpl[i].ulValueLen = v.len;
			continue;
		}
		if (tmpl[i].ulValueLen < v.len) {
			tmpl[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
			rv = CKR_BUFFER_TOO_SMALL;
			continue;
		}
		if (v.len > 0)
			memcpy(tmpl[i].pValue, v.ptr, v.len);
		tmpl[i].ulValueLen = v.len;
	}
	return rv;
}

/* ------------------------------------------------------------------ */
/* Finding objects and reading their attributes (C_FindObjects*, C_GetAttributeValue) */

CK_RV
p11_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	struct p11_session *s;
	struct p11_slot *slot;
	CK_RV rv;

	refresh(0);
	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, &slot)) != CKR_OK)
		goto out;
	if (pTemplate == NULL && ulCount > 0) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	if (s->finding) {
		rv = CKR_OPERATION_ACTIVE;
		goto out;
	}
	free(s->found);
	s->nfound = s->pos = 0;
	if ((s->found = calloc(slot->nobjs + 1, sizeof(*s->found))) == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	for (size_t i = 0; i < slot->nobjs; i++)
		if (object_visible(slot, &slot->objs[i]) &&
		    p11_object_matches(&slot->objs[i], pTemplate, ulCount))
			s->found[s->nfound++] = slot->objs[i].handle;
	s->finding = 1;
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

CK_RV
p11_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject,
    CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount)
{
	struct p11_session *s;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, NULL)) != CKR_OK)
		goto out;
	if (phObject == NULL || pulObjectCount == NULL) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	if (!s->finding) {
		rv = CKR_OPERATION_NOT_INITIALIZED;
		goto out;
	}
	*pulObjectCount = 0;
	while (s->pos < s->nfound && *pulObjectCount < ulMaxObjectCount)
		phObject[(*pulObjectCount)++] = s->found[s->pos++];
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

CK_RV
p11_FindObjectsFinal(CK_SESSION_HANDLE hSession)
{
	struct p11_session *s;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, NULL)) == CKR_OK) {
		if (!s->finding)
			rv = CKR_OPERATION_NOT_INITIALIZED;
		free(s->found);
		s->found = NULL;
		s->nfound = s->pos = 0;
		s->finding = 0;
	}
	pthread_mutex_unlock(&g.lock);
	return rv;
}

/* The object h as session s sees it; NULL when invalid. g.lock held. */
struct p11_object *
session_object(struct p11_slot *slot, CK_OBJECT_HANDLE h)
{
	struct p11_object *o = slot_object(slot, h);

	return o != NULL && object_visible(slot, o) ? o : NULL;
}

CK_RV
p11_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
    CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	struct p11_session *s;
	struct p11_slot *slot;
	struct p11_object *o;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, &slot)) != CKR_OK)
		goto out;
	if (pTemplate == NULL && ulCount > 0)
		rv = CKR_ARGUMENTS_BAD;
	else if ((o = session_object(slot, hObject)) == NULL)
		rv = CKR_OBJECT_HANDLE_INVALID;
	else
		rv = p11_object_get_attrs(o, pTemplate, ulCount);
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

CK_RV
p11_GetObjectSize(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize)
{
	struct p11_session *s;
	struct p11_slot *slot;
	struct p11_object *o;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, &slot)) != CKR_OK)
		goto out;
	if (pulSize == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else if ((o = session_object(slot, hObject)) == NULL)
		rv = CKR_OBJECT_HANDLE_INVALID;
	else
		*pulSize = o->cls == CKO_CERTIFICATE ? o->cert->derlen : o->cert->spkilen;
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

