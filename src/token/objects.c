/*
 * A token's objects: its certificates and private keys, read into an object
 * set that is replaced whole and reference-counted, and found again only
 * when their handles change; and its key pairs (public and private key
 * objects paired by CKA_ID, with the public key), read when asked for.
 */

#include "config.h"
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <p11-kit/uri.h>
#include "cert/certinfo.h"
#include "common/err.h"
#include "common/log.h"
#include "common/text.h"
#include "common/util.h"
#include "token/store-private.h"

static void
cert_clear(struct sc_cert *c)
{
	free(c->label);
	free(c->id);
	free(c->der);
	X509_free(c->x509);
	free(c->uri);
	json_object_put(c->desc);
}

void
objset_unref(struct sc_objset *o)
{
	if (o == NULL || __atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	for (size_t i = 0; i < o->ncerts; i++)
		cert_clear(&o->certs[i]);
	for (size_t i = 0; i < o->nkeys; i++)
		free(o->keys[i].id);
	free(o->cert_h);
	free(o->key_h);
	free(o->certs);
	free(o->keys);
	free(o);
}

struct sc_objset *
token_objs(struct sc_token *t)
{
	struct sc_objset *o;

	pthread_mutex_lock(&t->lock);
	if ((o = t->objs) != NULL)
		__atomic_add_fetch(&o->refs, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_unlock(&t->lock);
	return o;
}

/* Read one attribute of any length; *val is malloc'd (NULL for empty). */
static CK_RV
get_attr(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
    CK_ATTRIBUTE_TYPE type, unsigned char **val, size_t *len)
{
	CK_ATTRIBUTE a = { type, NULL, 0 };
	CK_RV rv;

	*val = NULL;
	*len = 0;
	if ((rv = f->C_GetAttributeValue(s, o, &a, 1)) != CKR_OK)
		return rv;
	if (a.ulValueLen == (CK_ULONG)-1 || a.ulValueLen > 1 << 20)
		return CKR_ATTRIBUTE_TYPE_INVALID;
	if (a.ulValueLen == 0)
		return CKR_OK;
	if ((a.pValue = malloc(a.ulValueLen + 1)) == NULL)
		return CKR_HOST_MEMORY;
	if ((rv = f->C_GetAttributeValue(s, o, &a, 1)) != CKR_OK) {
		free(a.pValue);
		return rv;
	}
	((unsigned char *)a.pValue)[a.ulValueLen] = '\0';
	*val = a.pValue;
	*len = a.ulValueLen;
	return CKR_OK;
}

static CK_RV
find_objects(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl,
    CK_ULONG n, CK_OBJECT_HANDLE **out, CK_ULONG *nout)
{
	CK_OBJECT_HANDLE *h = NULL, *nh;
	CK_ULONG cap = 0, cnt = 0, got;
	CK_RV rv;

	*out = NULL;
	*nout = 0;
	if ((rv = f->C_FindObjectsInit(s, tmpl, n)) != CKR_OK)
		return rv;
	for (;;) {
		if (cnt == cap) {
			cap = cap ? cap * 2 : 32;
			if ((nh = realloc(h, cap * sizeof(*h))) == NULL) {
				rv = CKR_HOST_MEMORY;
				break;
			}
			h = nh;
		}
		if ((rv = f->C_FindObjects(s, h + cnt, cap - cnt, &got)) != CKR_OK)
			break;
		if (got == 0)
			break;
		cnt += got;
	}
	f->C_FindObjectsFinal(s);
	if (rv != CKR_OK) {
		free(h);
		return rv;
	}
	*out = h;
	*nout = cnt;
	return CKR_OK;
}

char *
make_uri(const CK_TOKEN_INFO *ti, CK_OBJECT_CLASS cls, const unsigned char *id,
    size_t idlen, const char *label)
{
	P11KitUri *uri;
	CK_ATTRIBUTE a;
	char *s = NULL;

	if ((uri = p11_kit_uri_new()) == NULL)
		return NULL;
	memcpy(p11_kit_uri_get_token_info(uri), ti, sizeof(*ti));
	a.type = CKA_CLASS;
	a.pValue = &cls;
	a.ulValueLen = sizeof(cls);
	p11_kit_uri_set_attribute(uri, &a);
	if (idlen > 0) {
		a.type = CKA_ID;
		a.pValue = (void *)id;
		a.ulValueLen = idlen;
		p11_kit_uri_set_attribute(uri, &a);
	}
	if (label != NULL) {
		a.type = CKA_LABEL;
		a.pValue = (void *)label;
		a.ulValueLen = strlen(label);
		p11_kit_uri_set_attribute(uri, &a);
	}
	if (p11_kit_uri_format(uri, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &s) != P11_KIT_URI_OK)
		s = NULL;
	p11_kit_uri_free(uri);
	return s;
}

/* ------------------------------------------------------------------ */
/* Reading a token's objects */

static int
cmp_handle(const void *a, const void *b)
{
	CK_OBJECT_HANDLE x = *(const CK_OBJECT_HANDLE *)a, y = *(const CK_OBJECT_HANDLE *)b;

	return x < y ? -1 : x > y;
}

/* The handles of the objects of class cls, sorted. */
static CK_RV
find_class(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
    CK_OBJECT_HANDLE **h, CK_ULONG *n)
{
	CK_ATTRIBUTE tmpl = { CKA_CLASS, &cls, sizeof(cls) };
	CK_RV rv = find_objects(f, s, &tmpl, 1, h, n);

	if (rv == CKR_OK && *n > 1)
		qsort(*h, *n, sizeof(**h), cmp_handle);
	return rv;
}

static int
read_keys(struct sc_token *t, CK_SESSION_HANDLE s, struct sc_objset *o)
{
	CK_FUNCTION_LIST_PTR f = t->mod->f;
	CK_OBJECT_HANDLE *h = NULL;
	CK_ULONG n = 0;
	CK_RV rv;

	if ((rv = find_class(f, s, CKO_PRIVATE_KEY, &h, &n)) != CKR_OK)
		return sc_err_from_ckr(rv);
	if (n > 0 && (o->keys = calloc(n, sizeof(*o->keys))) == NULL) {
		free(h);
		return SC_ERR_NOMEM;
	}
	o->key_h = h;
	o->nkey_h = n;
	for (CK_ULONG i = 0; i < n; i++) {
		struct sc_key *k = &o->keys[o->nkeys];
		CK_BBOOL aa = CK_FALSE;
		CK_ATTRIBUTE a[2] = {
			{ CKA_KEY_TYPE, &k->type, sizeof(k->type) },
			{ CKA_ALWAYS_AUTHENTICATE, &aa, sizeof(aa) },
		};
		if (get_attr(f, s, h[i], CKA_ID, &k->id, &k->idlen) != CKR_OK)
			continue;
		k->type = (CK_KEY_TYPE)-1;
		/* ALWAYS_AUTHENTICATE is optional: a module may not know it. */
		f->C_GetAttributeValue(s, h[i], a, 2);
		k->always_auth = aa == CK_TRUE;
		k->handle = h[i];
		o->nkeys++;
	}
	o->keys_hidden = (t->info.flags & CKF_LOGIN_REQUIRED) && !t->logged_in;
	return SC_OK;
}

static int
read_certs(struct sc_token *t, CK_SESSION_HANDLE s, struct sc_objset *o)
{
	CK_FUNCTION_LIST_PTR f = t->mod->f;
	CK_OBJECT_HANDLE *h = NULL;
	CK_ULONG n = 0;
	CK_RV rv;

	if ((rv = find_class(f, s, CKO_CERTIFICATE, &h, &n)) != CKR_OK)
		return sc_err_from_ckr(rv);
	sc_debug("token \"%s\": %lu certificate objects", t->label, (unsigned long)n);
	if (n > 0 && (o->certs = calloc(n, sizeof(*o->certs))) == NULL) {
		free(h);
		return SC_ERR_NOMEM;
	}
	o->cert_h = h;
	o->ncert_h = n;
	for (CK_ULONG i = 0; i < n; i++) {
		struct sc_cert *c = &o->certs[o->ncerts];
		unsigned char *label = NULL;
		size_t labellen = 0;
		const unsigned char *p;

		if (get_attr(f, s, h[i], CKA_VALUE, &c->der, &c->derlen) != CKR_OK)
			continue;
		get_attr(f, s, h[i], CKA_ID, &c->id, &c->idlen);
		get_attr(f, s, h[i], CKA_LABEL, &label, &labellen);
		c->label = label ? (char *)label : strdup("");
		if (c->der != NULL) {
			p = c->der;
			c->x509 = d2i_X509(NULL, &p, (long)c->derlen);
			if (c->x509 != NULL && p != c->der + c->derlen) {
				X509_free(c->x509);
				c->x509 = NULL;
			}
		}
		ERR_clear_error();
		if (c->der != NULL) {
			unsigned char md[32];
			unsigned int mdlen = sizeof(md);
			char *hex;

			EVP_Digest(c->der, c->derlen, md, &mdlen, EVP_sha256(), NULL);
			if ((hex = sc_hex(md, 32)) != NULL) {
				memcpy(c->sha256, hex, 65);
				free(hex);
			}
		}
		c->uri = make_uri(&t->info, CKO_CERTIFICATE, c->id, c->idlen, c->label);
		c->desc = json_object_new_object();
		c->describe_error = c->x509 == NULL ? SC_ERR_CERT :
		    sc_cert_describe(c->x509, c->desc);
		o->ncerts++;
	}
	return SC_OK;
}

/* Whether h (n, sorted) differs from have (nhave, sorted). */
static int
handles_differ(const CK_OBJECT_HANDLE *h, CK_ULONG n, const CK_OBJECT_HANDLE *have, CK_ULONG nhave)
{
	return n != nhave || (n > 0 && memcmp(h, have, n * sizeof(*h)) != 0);
}

/*
 * Build a fresh object set for t. keys_only: reuse t's certificates, if they
 * are still the same objects: a module may number its objects anew (SoftHSM
 * does when a slot's last session closes, as a logout can do).
 */
int
token_reload(struct sc_token *t, int keys_only)
{
	struct sc_objset *o = NULL, *old = NULL;
	CK_SESSION_HANDLE s;
	int r, bad = 0;

	if ((r = session_get(t, &s)) != SC_OK)
		return r;
	if ((o = calloc(1, sizeof(*o))) == NULL) {
		r = SC_ERR_NOMEM;
		goto out;
	}
	o->refs = 1;
	if (keys_only && (old = token_objs(t)) != NULL) {
		CK_OBJECT_HANDLE *h = NULL;
		CK_ULONG n = 0;

		if (find_class(t->mod->f, s, CKO_CERTIFICATE, &h, &n) != CKR_OK ||
		    handles_differ(h, n, old->cert_h, old->ncert_h)) {
			objset_unref(old);	/* not the same objects: read them */
			old = NULL;
		}
		free(h);
	}
	if (old != NULL) {
		/* Move nothing: certificates are shared by copying references. */
		if ((o->certs = calloc(old->ncerts ? old->ncerts : 1, sizeof(*o->certs))) == NULL) {
			r = SC_ERR_NOMEM;
			goto out;
		}
		for (size_t i = 0; i < old->ncerts; i++) {
			struct sc_cert *c = &o->certs[i], *oc = &old->certs[i];
			*c = *oc;
			c->label = strdup(oc->label);
			c->id = oc->idlen ? malloc(oc->idlen) : NULL;
			if (c->id)
				memcpy(c->id, oc->id, oc->idlen);
			c->der = malloc(oc->derlen ? oc->derlen : 1);
			if (c->der)
				memcpy(c->der, oc->der, oc->derlen);
			if (c->x509)
				X509_up_ref(c->x509);
			c->uri = sc_strdup0(oc->uri);
			json_object_get(c->desc);
			o->ncerts++;
		}
		if (old->ncert_h > 0 && (o->cert_h = malloc(old->ncert_h * sizeof(*o->cert_h))) != NULL) {
			memcpy(o->cert_h, old->cert_h, old->ncert_h * sizeof(*o->cert_h));
			o->ncert_h = old->ncert_h;
		}
	} else if ((r = read_certs(t, s, o)) != SC_OK) {
		bad = r == SC_ERR_TOKEN_REMOVED;
		goto out;
	}
	if ((r = read_keys(t, s, o)) != SC_OK) {
		bad = r == SC_ERR_TOKEN_REMOVED;
		goto out;
	}
	pthread_mutex_lock(&t->lock);
	objset_unref(t->objs);
	t->objs = o;
	o = NULL;
	pthread_mutex_unlock(&t->lock);
	r = SC_OK;
out:
	session_put(t, s, bad);
	objset_unref(old);
	objset_unref(o);
	return r;
}

/*
 * Whether t's certificates or private keys are other objects than when its
 * object set was read: another program wrote or deleted one (pkcs11-tool,
 * an enrolment tool). Finding the handles reads no attribute.
 */
int
token_objects_changed(struct sc_token *t)
{
	struct sc_objset *o = token_objs(t);
	CK_OBJECT_HANDLE *h = NULL;
	CK_SESSION_HANDLE s;
	CK_ULONG n = 0;
	int ch = 0, bad = 0;
	CK_RV rv;

	if (o == NULL || session_get(t, &s) != SC_OK) {
		objset_unref(o);
		return 0;
	}
	if ((rv = find_class(t->mod->f, s, CKO_CERTIFICATE, &h, &n)) == CKR_OK)
		ch = handles_differ(h, n, o->cert_h, o->ncert_h);
	free(h);
	h = NULL;
	if (rv == CKR_OK && !ch && (rv = find_class(t->mod->f, s, CKO_PRIVATE_KEY, &h, &n)) == CKR_OK)
		ch = handles_differ(h, n, o->key_h, o->nkey_h);
	free(h);
	bad = rv != CKR_OK && ckr_session_bad(rv);
	session_put(t, s, bad);
	objset_unref(o);
	return ch;
}

/* ------------------------------------------------------------------ */
/* Key pairs */

void
kps_free(struct sc_kp *v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++) {
		free(v[i].id);
		free(v[i].label);
		EVP_PKEY_free(v[i].pk);
	}
	free(v);
}

static EVP_PKEY *
pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *pk = NULL;

	if (params != NULL && ctx != NULL && EVP_PKEY_fromdata_init(ctx) > 0 &&
	    EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		pk = NULL;
	OSSL_PARAM_free(params);
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return pk;
}

static EVP_PKEY *
pkey_rsa(const unsigned char *n, size_t nlen, const unsigned char *e, size_t elen)
{
	BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	EVP_PKEY *pk = NULL;

	if (bn != NULL && be != NULL && bld != NULL &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
		pk = pkey_fromdata("RSA", bld);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(be);
	return pk;
}

static EVP_PKEY *
pkey_ec_point(const char *group, const unsigned char *pt, size_t ptlen)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	EVP_PKEY *pk = NULL;

	if (bld != NULL &&
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) &&
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, ptlen))
		pk = pkey_fromdata("EC", bld);
	OSSL_PARAM_BLD_free(bld);
	return pk;
}

/* CKA_EC_PARAMS (a named curve OID) and CKA_EC_POINT (DER OCTET STRING, or raw from some modules). */
static EVP_PKEY *
pkey_ec(const unsigned char *params, size_t plen, const unsigned char *point, size_t ptlen)
{
	const unsigned char *p = params, *q = point;
	ASN1_OBJECT *oid = d2i_ASN1_OBJECT(NULL, &p, (long)plen);
	ASN1_OCTET_STRING *os = d2i_ASN1_OCTET_STRING(NULL, &q, (long)ptlen);
	const char *group = oid != NULL ? OBJ_nid2sn(OBJ_obj2nid(oid)) : NULL;
	EVP_PKEY *pk = NULL;

	if (group != NULL && OBJ_obj2nid(oid) != NID_undef) {
		/* A point that is not on the curve does not load: try the DER form, then raw. */
		if (os != NULL && q == point + ptlen)
			pk = pkey_ec_point(group, os->data, (size_t)os->length);
		if (pk == NULL)
			pk = pkey_ec_point(group, point, ptlen);
	}
	ASN1_OBJECT_free(oid);
	ASN1_OCTET_STRING_free(os);
	ERR_clear_error();
	return pk;
}

/* The public key held by a key object (RSA private keys carry it too). */
EVP_PKEY *
object_pkey(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, CK_KEY_TYPE type)
{
	unsigned char *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0;
	EVP_PKEY *pk = NULL;

	if (type == CKK_RSA) {
		if (get_attr(f, s, h, CKA_MODULUS, &a, &alen) == CKR_OK && a != NULL &&
		    get_attr(f, s, h, CKA_PUBLIC_EXPONENT, &b, &blen) == CKR_OK && b != NULL)
			pk = pkey_rsa(a, alen, b, blen);
	} else if (type == CKK_EC) {
		if (get_attr(f, s, h, CKA_EC_PARAMS, &a, &alen) == CKR_OK && a != NULL &&
		    get_attr(f, s, h, CKA_EC_POINT, &b, &blen) == CKR_OK && b != NULL)
			pk = pkey_ec(a, alen, b, blen);
	}
	free(a);
	free(b);
	return pk;
}

/* Public and private key objects of a token, paired by CKA_ID. */
int
token_keypairs(struct sc_token *t, CK_SESSION_HANDLE s, struct sc_kp **out, size_t *nout)
{
	static const CK_OBJECT_CLASS classes[2] = { CKO_PUBLIC_KEY, CKO_PRIVATE_KEY };
	CK_FUNCTION_LIST_PTR f = t->mod->f;
	struct sc_kp *v = NULL, *nv;
	size_t n = 0;
	int r = SC_OK;

	*out = NULL;
	*nout = 0;
	for (int c = 0; c < 2 && r == SC_OK; c++) {
		CK_OBJECT_CLASS cls = classes[c];
		CK_ATTRIBUTE tmpl = { CKA_CLASS, &cls, sizeof(cls) };
		CK_OBJECT_HANDLE *h = NULL;
		CK_ULONG nh = 0;
		CK_RV rv;

		if ((rv = find_objects(f, s, &tmpl, 1, &h, &nh)) != CKR_OK) {
			r = sc_err_from_ckr(rv);
			break;
		}
		for (CK_ULONG i = 0; i < nh; i++) {
			unsigned char *id = NULL, *label = NULL;
			size_t idlen = 0, labellen = 0, k;
			CK_KEY_TYPE type = (CK_KEY_TYPE)-1;
			CK_ATTRIBUTE ta = { CKA_KEY_TYPE, &type, sizeof(type) };

			if (get_attr(f, s, h[i], CKA_ID, &id, &idlen) != CKR_OK)
				continue;
			get_attr(f, s, h[i], CKA_LABEL, &label, &labellen);
			f->C_GetAttributeValue(s, h[i], &ta, 1);
			for (k = 0; k < n; k++)
				if (idlen > 0 && v[k].idlen == idlen && memcmp(v[k].id, id, idlen) == 0)
					break;
			if (k == n) {
				if ((nv = realloc(v, (n + 1) * sizeof(*v))) == NULL) {
					free(id);
					free(label);
					r = SC_ERR_NOMEM;
					break;
				}
				v = nv;
				memset(&v[n], 0, sizeof(v[n]));
				v[n].priv = v[n].pub = CK_INVALID_HANDLE;
				v[n].type = type;
				v[n].id = id;
				v[n].idlen = idlen;
				id = NULL;
				n++;
			}
			free(id);
			if (v[k].label == NULL || *v[k].label == '\0') {
				free(v[k].label);
				v[k].label = label ? (char *)label : strdup("");
				label = NULL;
			}
			free(label);
			if (cls == CKO_PUBLIC_KEY)
				v[k].pub = h[i];
			else {
				CK_BBOOL aa = CK_FALSE;
				CK_ATTRIBUTE a = { CKA_ALWAYS_AUTHENTICATE, &aa, sizeof(aa) };

				v[k].priv = h[i];
				/* Optional attribute: a module that does not know it fails the call. */
				v[k].always_auth = f->C_GetAttributeValue(s, h[i], &a, 1) == CKR_OK &&
				    aa == CK_TRUE;
			}
			if (v[k].pk == NULL)
				v[k].pk = object_pkey(f, s, h[i], type);
		}
		free(h);
	}
	if (r != SC_OK) {
		kps_free(v, n);
		return r;
	}
	*out = v;
	*nout = n;
	return SC_OK;
}
