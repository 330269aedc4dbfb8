/*
 * The token store. Modules are loaded and their slots enumerated through
 * libp11; objects, logins and signatures go through the module's own
 * function list, because libp11 0.4.12 caches objects per slot and, under
 * OpenSSL 3, signs RSA-PSS as raw RSA, which TPMs and many cards refuse.
 *
 * Locking: st->lock guards the token array and each token's object set
 * pointer swaps; tok->lock guards a token's sessions and login state and is
 * never held across a call into the module that can block for long, except
 * C_Login/C_Logout, which serialise on that token only.
 */
#include "config.h"
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libp11.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include <p11-kit/uri.h>
#include "cert/certinfo.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "token/token.h"

#define SC_MAX_SESSIONS_IDLE 8

struct sc_module {
	char *path;			/* as configured */
	char *real;			/* realpath() */
	PKCS11_CTX *ctx;
	PKCS11_SLOT *slots;
	unsigned int nslots;
	void *dl;
	CK_FUNCTION_LIST_PTR f;
	pthread_mutex_t lock;		/* serialises libp11 calls on ctx */
};

struct sc_key {
	unsigned char *id;
	size_t idlen;
	CK_OBJECT_HANDLE handle;
	CK_KEY_TYPE type;
	int always_auth;
};

struct sc_cert {
	char *label;
	unsigned char *id;
	size_t idlen;
	unsigned char *der;
	size_t derlen;
	X509 *x509;			/* NULL: unparseable */
	char sha256[65];
	char *uri;
	json_object *desc;		/* sc_cert_describe() output, cached */
	int describe_error;
};

/* A token's objects: replaced whole, never changed in place. */
struct sc_objset {
	int refs;
	struct sc_cert *certs;
	size_t ncerts;
	struct sc_key *keys;		/* private keys visible now */
	size_t nkeys;
	int keys_hidden;		/* private keys may be invisible (not logged in) */
};

struct sc_token {
	int refs;			/* under st->lock */
	struct sc_module *mod;
	CK_SLOT_ID slot;
	CK_TOKEN_INFO info;
	char *label, *serial, *manufacturer, *model, *reader;
	CK_MECHANISM_TYPE *mechs;
	CK_ULONG nmechs;
	pthread_mutex_t lock;		/* sessions, login state, objs swap */
	CK_SESSION_HANDLE pool[SC_MAX_SESSIONS_IDLE];
	size_t npool;
	CK_SESSION_HANDLE login_session; /* kept open while logged in */
	int logged_in;
	uint64_t last_use;
	struct sc_objset *objs;
	int seen;			/* refresh mark */
};

struct sc_store {
	struct sc_store_opts opts;
	pthread_mutex_t lock;
	struct sc_module **mods;
	size_t nmods;
	json_object *errors;		/* [{"module","error"}] */
	struct sc_token **toks;
	size_t ntoks;
	pthread_mutex_t refresh_lock;
};

/* ------------------------------------------------------------------ */
/* Algorithms */

static const struct {
	const char *name;
	int family;
	const char *md;
	CK_MECHANISM_TYPE hash_mech, mgf, data_mech;
} algs[SC_ALG_COUNT] = {
	{ "rsa-pkcs1-sha256", 1, "SHA256", CKM_SHA256, 0, CKM_SHA256_RSA_PKCS },
	{ "rsa-pkcs1-sha384", 1, "SHA384", CKM_SHA384, 0, CKM_SHA384_RSA_PKCS },
	{ "rsa-pkcs1-sha512", 1, "SHA512", CKM_SHA512, 0, CKM_SHA512_RSA_PKCS },
	{ "rsa-pss-sha256", 2, "SHA256", CKM_SHA256, CKG_MGF1_SHA256, CKM_SHA256_RSA_PKCS_PSS },
	{ "rsa-pss-sha384", 2, "SHA384", CKM_SHA384, CKG_MGF1_SHA384, CKM_SHA384_RSA_PKCS_PSS },
	{ "rsa-pss-sha512", 2, "SHA512", CKM_SHA512, CKG_MGF1_SHA512, CKM_SHA512_RSA_PKCS_PSS },
	{ "ecdsa-sha256", 3, "SHA256", CKM_SHA256, 0, CKM_ECDSA_SHA256 },
	{ "ecdsa-sha384", 3, "SHA384", CKM_SHA384, 0, CKM_ECDSA_SHA384 },
	{ "ecdsa-sha512", 3, "SHA512", CKM_SHA512, 0, CKM_ECDSA_SHA512 },
};

int
sc_alg_parse(const char *name)
{
	for (int i = 0; i < SC_ALG_COUNT; i++)
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
	switch (alg) {
	case SC_ALG_RSA_PKCS1_SHA256: case SC_ALG_RSA_PSS_SHA256: case SC_ALG_ECDSA_SHA256:
		return EVP_sha256();
	case SC_ALG_RSA_PKCS1_SHA384: case SC_ALG_RSA_PSS_SHA384: case SC_ALG_ECDSA_SHA384:
		return EVP_sha384();
	case SC_ALG_RSA_PKCS1_SHA512: case SC_ALG_RSA_PSS_SHA512: case SC_ALG_ECDSA_SHA512:
		return EVP_sha512();
	}
	return NULL;
}

int
sc_alg_family(int alg)
{
	return alg >= 0 && alg < SC_ALG_COUNT ? algs[alg].family : 0;
}

/* ------------------------------------------------------------------ */
/* Objects */

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

static void
objset_unref(struct sc_objset *o)
{
	if (o == NULL || __atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	for (size_t i = 0; i < o->ncerts; i++)
		cert_clear(&o->certs[i]);
	for (size_t i = 0; i < o->nkeys; i++)
		free(o->keys[i].id);
	free(o->certs);
	free(o->keys);
	free(o);
}

static struct sc_objset *
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

static char *
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
/* Sessions */

static int
session_get(struct sc_token *t, CK_SESSION_HANDLE *s)
{
	CK_RV rv;

	pthread_mutex_lock(&t->lock);
	if (t->npool > 0) {
		*s = t->pool[--t->npool];
		pthread_mutex_unlock(&t->lock);
		return SC_OK;
	}
	pthread_mutex_unlock(&t->lock);
	rv = t->mod->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, s);
	if (rv != CKR_OK) {
		sc_debug("C_OpenSession on slot %lu: %s", (unsigned long)t->slot,
		    sc_ckr_name(rv));
		return sc_err_from_ckr(rv);
	}
	return SC_OK;
}

/* Give a session back; bad says it failed in a way that makes it unusable. */
static void
session_put(struct sc_token *t, CK_SESSION_HANDLE s, int bad)
{
	pthread_mutex_lock(&t->lock);
	if (!bad && t->npool < SC_MAX_SESSIONS_IDLE) {
		t->pool[t->npool++] = s;
		s = CK_INVALID_HANDLE;
	}
	pthread_mutex_unlock(&t->lock);
	if (s != CK_INVALID_HANDLE)
		t->mod->f->C_CloseSession(s);
}

static int
ckr_session_bad(CK_RV rv)
{
	return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	    rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT;
}

/* ------------------------------------------------------------------ */
/* Reading a token's objects */

static int
read_keys(struct sc_token *t, CK_SESSION_HANDLE s, struct sc_objset *o)
{
	CK_FUNCTION_LIST_PTR f = t->mod->f;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl = { CKA_CLASS, &cls, sizeof(cls) };
	CK_OBJECT_HANDLE *h = NULL;
	CK_ULONG n = 0;
	CK_RV rv;

	if ((rv = find_objects(f, s, &tmpl, 1, &h, &n)) != CKR_OK)
		return sc_err_from_ckr(rv);
	if (n > 0 && (o->keys = calloc(n, sizeof(*o->keys))) == NULL) {
		free(h);
		return SC_ERR_NOMEM;
	}
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
	free(h);
	o->keys_hidden = (t->info.flags & CKF_LOGIN_REQUIRED) && !t->logged_in;
	return SC_OK;
}

static int
read_certs(struct sc_token *t, CK_SESSION_HANDLE s, struct sc_objset *o)
{
	CK_FUNCTION_LIST_PTR f = t->mod->f;
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_ATTRIBUTE tmpl = { CKA_CLASS, &cls, sizeof(cls) };
	CK_OBJECT_HANDLE *h = NULL;
	CK_ULONG n = 0;
	CK_RV rv;

	if ((rv = find_objects(f, s, &tmpl, 1, &h, &n)) != CKR_OK)
		return sc_err_from_ckr(rv);
	sc_debug("token \"%s\": %lu certificate objects", t->label, (unsigned long)n);
	if (n > 0 && (o->certs = calloc(n, sizeof(*o->certs))) == NULL) {
		free(h);
		return SC_ERR_NOMEM;
	}
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
	free(h);
	return SC_OK;
}

/* Build a fresh object set for t. keys_only: reuse t's certificates. */
static int
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

/* ------------------------------------------------------------------ */
/* Tokens */

static void
token_unref(struct sc_token *t)
{
	if (t == NULL || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	for (size_t i = 0; i < t->npool; i++)
		t->mod->f->C_CloseSession(t->pool[i]);
	if (t->login_session != CK_INVALID_HANDLE)
		t->mod->f->C_CloseSession(t->login_session);
	objset_unref(t->objs);
	free(t->label);
	free(t->serial);
	free(t->manufacturer);
	free(t->model);
	free(t->reader);
	free(t->mechs);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static struct sc_token *
token_new(struct sc_module *m, CK_SLOT_ID slot, const CK_TOKEN_INFO *ti, const char *reader)
{
	struct sc_token *t;
	CK_ULONG n = 0;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	t->refs = 1;
	t->mod = m;
	t->slot = slot;
	t->info = *ti;
	t->login_session = CK_INVALID_HANDLE;
	pthread_mutex_init(&t->lock, NULL);
	t->label = sc_p11_str(ti->label, sizeof(ti->label));
	t->serial = sc_p11_str(ti->serialNumber, sizeof(ti->serialNumber));
	t->manufacturer = sc_p11_str(ti->manufacturerID, sizeof(ti->manufacturerID));
	t->model = sc_p11_str(ti->model, sizeof(ti->model));
	t->reader = strdup(reader ? reader : "");
	if (m->f->C_GetMechanismList(slot, NULL, &n) == CKR_OK && n > 0 && n < 4096 &&
	    (t->mechs = calloc(n, sizeof(*t->mechs))) != NULL &&
	    m->f->C_GetMechanismList(slot, t->mechs, &n) == CKR_OK)
		t->nmechs = n;
	if (t->label == NULL || t->serial == NULL || t->manufacturer == NULL ||
	    t->model == NULL || t->reader == NULL) {
		token_unref(t);
		return NULL;
	}
	return t;
}

static int
token_has_mech(struct sc_token *t, CK_MECHANISM_TYPE m)
{
	for (CK_ULONG i = 0; i < t->nmechs; i++)
		if (t->mechs[i] == m)
			return 1;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Store */

struct sc_store *
sc_store_new(const struct sc_store_opts *opts)
{
	struct sc_store *st;

	if ((st = calloc(1, sizeof(*st))) == NULL)
		return NULL;
	if (opts != NULL)
		st->opts = *opts;
	pthread_mutex_init(&st->lock, NULL);
	pthread_mutex_init(&st->refresh_lock, NULL);
	if ((st->errors = json_object_new_array()) == NULL) {
		free(st);
		return NULL;
	}
	return st;
}

void
sc_store_free(struct sc_store *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; i < st->ntoks; i++)
		token_unref(st->toks[i]);
	free(st->toks);
	for (size_t i = 0; i < st->nmods; i++) {
		struct sc_module *m = st->mods[i];
		if (m->slots)
			PKCS11_release_all_slots(m->ctx, m->slots, m->nslots);
		PKCS11_CTX_unload(m->ctx);
		PKCS11_CTX_free(m->ctx);
		if (m->dl)
			dlclose(m->dl);
		free(m->path);
		free(m->real);
		pthread_mutex_destroy(&m->lock);
		free(m);
	}
	free(st->mods);
	json_object_put(st->errors);
	pthread_mutex_destroy(&st->lock);
	pthread_mutex_destroy(&st->refresh_lock);
	free(st);
}

static void __attribute__((format(printf, 3, 4)))
module_error(struct sc_store *st, const char *path, const char *fmt, ...)
{
	char msg[512];
	json_object *e = json_object_new_object();
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sc_warn("module %s: %s", path, msg);
	json_object_object_add(e, "module", json_object_new_string(path));
	json_object_object_add(e, "error", json_object_new_string(msg));
	json_object_array_add(st->errors, e);
}

int
sc_store_add_module(struct sc_store *st, const char *path)
{
	struct sc_module *m = NULL, **nm;
	CK_C_GetFunctionList getfl;
	char real[PATH_MAX];
	unsigned long e;
	int r = SC_ERR_MODULE;

	if (realpath(path, real) == NULL) {
		module_error(st, path, "cannot resolve the module path: %s", strerror(errno));
		return SC_ERR_NOT_FOUND;
	}
	for (size_t i = 0; i < st->nmods; i++)
		if (strcmp(st->mods[i]->real, real) == 0)
			return SC_OK;	/* the same module twice: once is enough */
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return SC_ERR_NOMEM;
	pthread_mutex_init(&m->lock, NULL);
	m->path = strdup(path);
	m->real = strdup(real);
	/* Our own reference first: it yields dlerror()'s reason when it fails. */
	if ((m->dl = dlopen(real, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		module_error(st, path, "cannot load: %s", dlerror());
		goto fail;
	}
	if ((getfl = (CK_C_GetFunctionList)dlsym(m->dl, "C_GetFunctionList")) == NULL) {
		module_error(st, path, "%s", "not a PKCS#11 module: no C_GetFunctionList");
		goto fail;
	}
	if ((m->ctx = PKCS11_CTX_new()) == NULL) {
		r = SC_ERR_NOMEM;
		goto fail;
	}
	if (PKCS11_CTX_load(m->ctx, real) != 0) {
		e = ERR_peek_last_error();
		module_error(st, path, "C_Initialize failed: %s",
		    e ? ERR_reason_error_string(e) : "unknown reason");
		ERR_clear_error();
		PKCS11_CTX_free(m->ctx);
		m->ctx = NULL;
		goto fail;
	}
	if (getfl(&m->f) != CKR_OK || m->f == NULL) {
		module_error(st, path, "%s", "C_GetFunctionList failed");
		goto fail_unload;
	}
	if (PKCS11_enumerate_slots(m->ctx, &m->slots, &m->nslots) != 0) {
		module_error(st, path, "%s", "cannot list slots");
		goto fail_unload;
	}
	if ((nm = realloc(st->mods, (st->nmods + 1) * sizeof(*nm))) == NULL) {
		r = SC_ERR_NOMEM;
		goto fail_unload;
	}
	st->mods = nm;
	st->mods[st->nmods++] = m;
	sc_info("loaded module %s", path);
	return SC_OK;
fail_unload:
	if (m->slots)
		PKCS11_release_all_slots(m->ctx, m->slots, m->nslots);
	PKCS11_CTX_unload(m->ctx);
	PKCS11_CTX_free(m->ctx);
fail:
	if (m->dl)
		dlclose(m->dl);
	free(m->path);
	free(m->real);
	pthread_mutex_destroy(&m->lock);
	free(m);
	return r;
}

size_t
sc_store_nmodules(struct sc_store *st)
{
	return st->nmods;
}

static int
store_add_token(struct sc_store *st, struct sc_token *t)
{
	struct sc_token **nt;

	pthread_mutex_lock(&st->lock);
	if ((nt = realloc(st->toks, (st->ntoks + 1) * sizeof(*nt))) == NULL) {
		pthread_mutex_unlock(&st->lock);
		return SC_ERR_NOMEM;
	}
	st->toks = nt;
	st->toks[st->ntoks++] = t;
	pthread_mutex_unlock(&st->lock);
	return SC_OK;
}

static struct sc_token *
store_find_slot(struct sc_store *st, struct sc_module *m, CK_SLOT_ID slot)
{
	struct sc_token *t = NULL;

	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->ntoks; i++)
		if (st->toks[i]->mod == m && st->toks[i]->slot == slot) {
			t = st->toks[i];
			__atomic_add_fetch(&t->refs, 1, __ATOMIC_ACQ_REL);
			break;
		}
	pthread_mutex_unlock(&st->lock);
	return t;
}

static void
store_drop_unseen(struct sc_store *st, struct sc_module *m, int *changed)
{
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->ntoks;) {
		struct sc_token *t = st->toks[i];
		if (t->mod == m && !t->seen) {
			sc_info("token \"%s\" removed", t->label);
			memmove(&st->toks[i], &st->toks[i + 1], (st->ntoks - i - 1) * sizeof(*st->toks));
			st->ntoks--;
			token_unref(t);
			*changed = 1;
			continue;
		}
		t->seen = 0;
		i++;
	}
	pthread_mutex_unlock(&st->lock);
}

/*
 * Slots are re-read with C_GetSlotList, not libp11: PKCS11_update_slots
 * crashes in libp11 0.4.12 and PKCS11_release_all_slots closes every session
 * of the slot, which would log the agent out.
 */
static int
refresh_module(struct sc_store *st, struct sc_module *m, int *changed)
{
	CK_SLOT_ID *ids = NULL;
	CK_ULONG n = 0;
	int r = SC_OK;
	CK_RV rv;

	pthread_mutex_lock(&m->lock);
	rv = m->f->C_GetSlotList(CK_TRUE, NULL, &n);
	if (rv == CKR_OK && n > 0 && n < 1024) {
		if ((ids = calloc(n, sizeof(*ids))) == NULL)
			rv = CKR_HOST_MEMORY;
		else
			rv = m->f->C_GetSlotList(CK_TRUE, ids, &n);
	}
	if (rv != CKR_OK) {
		pthread_mutex_unlock(&m->lock);
		free(ids);
		sc_debug("module %s: C_GetSlotList: %s", m->path, sc_ckr_name(rv));
		/* Keep what we know: a module that failed once may answer next time. */
		return sc_err_from_ckr(rv);
	}
	for (CK_ULONG i = 0; i < n; i++) {
		CK_SLOT_ID id = ids[i];
		CK_SLOT_INFO si;
		CK_TOKEN_INFO ti;
		struct sc_token *t;
		char *reader;

		if (m->f->C_GetSlotInfo(id, &si) != CKR_OK || !(si.flags & CKF_TOKEN_PRESENT))
			continue;
		if (m->f->C_GetTokenInfo(id, &ti) != CKR_OK)
			continue;
		if (!(ti.flags & CKF_TOKEN_INITIALIZED))
			continue;	/* an empty slot for a new token (tpm2-pkcs11) */
		t = store_find_slot(st, m, id);
		if (t != NULL && (memcmp(t->info.label, ti.label, sizeof(ti.label)) != 0 ||
		    memcmp(t->info.serialNumber, ti.serialNumber, sizeof(ti.serialNumber)) != 0)) {
			/* Another token in the same slot: the old one is gone. */
			token_unref(t);
			t = NULL;
		}
		if (t != NULL) {
			pthread_mutex_lock(&t->lock);
			if (t->info.flags != ti.flags)
				*changed = 1;
			t->info = ti;
			t->seen = 1;
			pthread_mutex_unlock(&t->lock);
			token_unref(t);
			continue;
		}
		reader = sc_p11_str(si.slotDescription, sizeof(si.slotDescription));
		t = token_new(m, id, &ti, reader);
		free(reader);
		if (t == NULL) {
			r = SC_ERR_NOMEM;
			continue;
		}
		if (token_reload(t, 0) != SC_OK)
			sc_warn("token \"%s\": cannot read its objects", t->label);
		t->seen = 1;
		if (store_add_token(st, t) != SC_OK) {
			token_unref(t);
			r = SC_ERR_NOMEM;
			continue;
		}
		sc_info("token \"%s\" present in %s", t->label, t->reader);
		*changed = 1;
	}
	pthread_mutex_unlock(&m->lock);
	free(ids);
	store_drop_unseen(st, m, changed);
	return r;
}

int
sc_store_refresh(struct sc_store *st, int *changed)
{
	int r = SC_OK, ch = 0;

	pthread_mutex_lock(&st->refresh_lock);
	for (size_t i = 0; i < st->nmods; i++) {
		int rr = refresh_module(st, st->mods[i], &ch);
		if (rr != SC_OK)
			r = rr;
	}
	pthread_mutex_unlock(&st->refresh_lock);
	if (changed != NULL)
		*changed = ch;
	return r;
}

/* The tokens now present, each with a reference held; free with tokens_put. */
static struct sc_token **
tokens_get(struct sc_store *st, size_t *n)
{
	struct sc_token **v;

	pthread_mutex_lock(&st->lock);
	if ((v = calloc(st->ntoks + 1, sizeof(*v))) == NULL) {
		pthread_mutex_unlock(&st->lock);
		*n = 0;
		return NULL;
	}
	for (size_t i = 0; i < st->ntoks; i++) {
		v[i] = st->toks[i];
		__atomic_add_fetch(&v[i]->refs, 1, __ATOMIC_ACQ_REL);
	}
	*n = st->ntoks;
	pthread_mutex_unlock(&st->lock);
	return v;
}

static void
tokens_put(struct sc_token **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		token_unref(v[i]);
	free(v);
}

/* ------------------------------------------------------------------ */
/* JSON */

static int
key_status(const struct sc_objset *o, const struct sc_cert *c, const struct sc_key **key)
{
	*key = NULL;
	for (size_t i = 0; i < o->nkeys; i++)
		if (o->keys[i].idlen == c->idlen && c->idlen > 0 &&
		    memcmp(o->keys[i].id, c->id, c->idlen) == 0) {
			*key = &o->keys[i];
			return 1;
		}
	return o->keys_hidden ? -1 : 0;
}

static json_object *
token_flags_json(const CK_TOKEN_INFO *ti, int logged_in)
{
	json_object *f = json_object_new_object();

	json_object_object_add(f, "login_required",
	    json_object_new_boolean((ti->flags & CKF_LOGIN_REQUIRED) != 0));
	json_object_object_add(f, "logged_in", json_object_new_boolean(logged_in));
	json_object_object_add(f, "pin_count_low",
	    json_object_new_boolean((ti->flags & CKF_USER_PIN_COUNT_LOW) != 0));
	json_object_object_add(f, "pin_final_try",
	    json_object_new_boolean((ti->flags & CKF_USER_PIN_FINAL_TRY) != 0));
	json_object_object_add(f, "pin_locked",
	    json_object_new_boolean((ti->flags & CKF_USER_PIN_LOCKED) != 0));
	json_object_object_add(f, "protected_auth_path",
	    json_object_new_boolean((ti->flags & CKF_PROTECTED_AUTHENTICATION_PATH) != 0));
	json_object_object_add(f, "write_protected",
	    json_object_new_boolean((ti->flags & CKF_WRITE_PROTECTED) != 0));
	return f;
}

/* CA certificates on the token, for chain building. */
static STACK_OF(X509) *
objset_intermediates(const struct sc_objset *o)
{
	STACK_OF(X509) *sk = sk_X509_new_null();

	for (size_t i = 0; sk != NULL && i < o->ncerts; i++)
		if (o->certs[i].x509 != NULL && X509_check_ca(o->certs[i].x509) > 0)
			sk_X509_push(sk, o->certs[i].x509);
	return sk;
}

static json_object *
cert_json(struct sc_token *t, const struct sc_objset *o, const struct sc_cert *c,
    const char *cafile, STACK_OF(X509) *inter)
{
	json_object *j = NULL, *key, *cba, *problems;
	const struct sc_key *k;
	struct sc_cba_input in;
	char *hexid, *reason = NULL;
	int ks = key_status(o, c, &k);

	if (json_object_deep_copy(c->desc, &j, NULL) != 0)
		return NULL;
	hexid = sc_hex(c->id, c->idlen);
	json_object_object_add(j, "uri", json_object_new_string(c->uri ? c->uri : ""));
	json_object_object_add(j, "label", json_object_new_string(c->label));
	json_object_object_add(j, "id", json_object_new_string(hexid ? hexid : ""));
	free(hexid);
	json_object_object_add(j, "sha256", json_object_new_string(c->sha256));
	json_object_object_add(j, "token", json_object_new_string(t->label));
	if (c->x509 == NULL || c->describe_error != SC_OK) {
		json_object_object_add(j, "error", json_object_new_string(
		    "the certificate object does not hold a valid DER X.509 certificate"));
		cba = json_object_new_object();
		problems = json_object_new_array();
		json_object_array_add(problems, json_object_new_string("unparseable"));
		json_object_object_add(cba, "suitable", json_object_new_boolean(0));
		json_object_object_add(cba, "problems", problems);
		json_object_object_add(j, "cba", cba);
		return j;
	}
	if (!json_object_object_get_ex(j, "key", &key)) {
		key = json_object_new_object();
		json_object_object_add(j, "key", key);
	}
	json_object_object_add(key, "private_key", json_object_new_string(
	    ks == 1 ? "present" : ks == 0 ? "absent" : "unknown"));
	if (k != NULL && k->always_auth)
		json_object_object_add(key, "always_authenticate", json_object_new_boolean(1));
	memset(&in, 0, sizeof(in));
	in.private_key = ks;
	in.cafile = cafile;
	in.untrusted = inter;
	problems = sc_cert_cba(c->x509, &in, &reason);
	cba = json_object_new_object();
	json_object_object_add(cba, "suitable",
	    json_object_new_boolean(json_object_array_length(problems) == 0));
	json_object_object_add(cba, "problems", problems);
	if (reason != NULL)
		json_object_object_add(cba, "chain_error", json_object_new_string(reason));
	free(reason);
	json_object_object_add(j, "cba", cba);
	return j;
}

static json_object *
token_json(struct sc_token *t, const char *cafile)
{
	json_object *j = json_object_new_object(), *certs = json_object_new_array();
	struct sc_objset *o = token_objs(t);
	STACK_OF(X509) *inter = NULL;
	CK_TOKEN_INFO ti;
	int logged_in;

	pthread_mutex_lock(&t->lock);
	ti = t->info;
	logged_in = t->logged_in;
	pthread_mutex_unlock(&t->lock);
	json_object_object_add(j, "module", json_object_new_string(t->mod->path));
	json_object_object_add(j, "slot", json_object_new_int64((int64_t)t->slot));
	json_object_object_add(j, "reader", json_object_new_string(t->reader));
	json_object_object_add(j, "label", json_object_new_string(t->label));
	json_object_object_add(j, "manufacturer", json_object_new_string(t->manufacturer));
	json_object_object_add(j, "model", json_object_new_string(t->model));
	json_object_object_add(j, "serial", json_object_new_string(t->serial));
	json_object_object_add(j, "flags", token_flags_json(&ti, logged_in));
	if (o != NULL) {
		inter = cafile ? objset_intermediates(o) : NULL;
		for (size_t i = 0; i < o->ncerts; i++) {
			json_object *c = cert_json(t, o, &o->certs[i], cafile, inter);
			if (c != NULL)
				json_object_array_add(certs, c);
		}
	}
	json_object_object_add(j, "certificates", certs);
	sk_X509_free(inter);
	objset_unref(o);
	return j;
}

json_object *
sc_store_list_json(struct sc_store *st, const char *cafile)
{
	json_object *j = json_object_new_object(), *toks = json_object_new_array();
	struct sc_token **v;
	size_t n;

	v = tokens_get(st, &n);
	for (size_t i = 0; i < n; i++)
		json_object_array_add(toks, token_json(v[i], cafile));
	tokens_put(v, n);
	json_object_object_add(j, "tokens", toks);
	pthread_mutex_lock(&st->lock);
	if (json_object_array_length(st->errors) > 0)
		json_object_object_add(j, "errors", json_object_get(st->errors));
	pthread_mutex_unlock(&st->lock);
	return j;
}

/* ------------------------------------------------------------------ */
/* References */

struct match {
	struct sc_token *tok;		/* referenced */
	struct sc_objset *objs;		/* referenced */
	size_t idx;			/* certificate index */
};

static void
match_clear(struct match *m)
{
	objset_unref(m->objs);
	token_unref(m->tok);
	memset(m, 0, sizeof(*m));
}

static int
uri_matches(P11KitUri *uri, struct sc_token *t, const struct sc_cert *c)
{
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_ATTRIBUTE attrs[3];
	CK_ATTRIBUTE *ucls;

	if (!p11_kit_uri_match_token_info(uri, &t->info))
		return 0;
	/* A URI that names the private or public key selects its certificate. */
	ucls = p11_kit_uri_get_attribute(uri, CKA_CLASS);
	if (ucls != NULL && ucls->ulValueLen == sizeof(cls))
		memcpy(&cls, ucls->pValue, sizeof(cls));
	attrs[0].type = CKA_CLASS;
	attrs[0].pValue = &cls;
	attrs[0].ulValueLen = sizeof(cls);
	attrs[1].type = CKA_ID;
	attrs[1].pValue = c->id;
	attrs[1].ulValueLen = c->idlen;
	attrs[2].type = CKA_LABEL;
	attrs[2].pValue = c->label;
	attrs[2].ulValueLen = strlen(c->label);
	return p11_kit_uri_match_attributes(uri, attrs, 3);
}

static int
ref_kind(const char *ref)
{
	size_t n = strlen(ref);

	if (strncmp(ref, "pkcs11:", 7) == 0)
		return 'u';
	if (n >= 8 && n <= 64 && sc_is_hex(ref))
		return 'h';
	return 'l';
}

static json_object *
candidate(struct sc_token *t, const struct sc_cert *c)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "%s (%.16s) on token \"%s\"", c->label, c->sha256, t->label);
	return json_object_new_string(buf);
}

/*
 * Find the one certificate a REF names. A hex REF may also be a label: a
 * fingerprint match wins, then labels. candidates gets what matched (when
 * ambiguous) or everything there is (when nothing matched).
 */
static int
store_resolve(struct sc_store *st, const char *ref, struct match *out, json_object **candidates)
{
	P11KitUri *uri = NULL;
	struct sc_token **v;
	size_t n, nm = 0;
	json_object *cand = json_object_new_array(), *all = json_object_new_array();
	int kind = ref_kind(ref), r;
	char lower[65];

	memset(out, 0, sizeof(*out));
	if (candidates)
		*candidates = NULL;
	if (kind == 'u') {
		uri = p11_kit_uri_new();
		if (uri == NULL || p11_kit_uri_parse(ref, P11_KIT_URI_FOR_ANY, uri) != P11_KIT_URI_OK) {
			p11_kit_uri_free(uri);
			json_object_put(cand);
			json_object_put(all);
			return SC_ERR_INVALID;
		}
	}
	if (kind == 'h') {
		size_t i;
		for (i = 0; ref[i] && i < 64; i++)
			lower[i] = (char)((ref[i] >= 'A' && ref[i] <= 'F') ? ref[i] + 32 : ref[i]);
		lower[i] = '\0';
	}
	/* Two passes for hex: fingerprints first, then labels. */
	for (int pass = 0; pass < (kind == 'h' ? 2 : 1) && nm == 0; pass++) {
		v = tokens_get(st, &n);
		for (size_t i = 0; i < n; i++) {
			struct sc_objset *o = token_objs(v[i]);
			for (size_t k = 0; o != NULL && k < o->ncerts; k++) {
				struct sc_cert *c = &o->certs[k];
				int hit;

				if (kind == 'u')
					hit = uri_matches(uri, v[i], c);
				else if (kind == 'h' && pass == 0)
					hit = strncmp(c->sha256, lower, strlen(lower)) == 0;
				else
					hit = strcmp(c->label, ref) == 0;
				if (pass == 0)
					json_object_array_add(all, candidate(v[i], c));
				if (!hit)
					continue;
				json_object_array_add(cand, candidate(v[i], c));
				if (nm++ == 0) {
					out->tok = v[i];
					__atomic_add_fetch(&v[i]->refs, 1, __ATOMIC_ACQ_REL);
					out->objs = o;
					__atomic_add_fetch(&o->refs, 1, __ATOMIC_ACQ_REL);
					out->idx = k;
				}
			}
			objset_unref(o);
		}
		tokens_put(v, n);
	}
	p11_kit_uri_free(uri);
	if (nm == 1) {
		r = SC_OK;
	} else {
		match_clear(out);
		r = nm == 0 ? SC_ERR_NOT_FOUND : SC_ERR_AMBIGUOUS;
		if (candidates) {
			*candidates = nm == 0 ? all : cand;
			json_object_get(*candidates);
		}
	}
	json_object_put(cand);
	json_object_put(all);
	return r;
}

int
sc_store_find_cert(struct sc_store *st, const char *ref, const char *cafile,
    json_object **out, json_object **candidates)
{
	struct match m;
	STACK_OF(X509) *inter;
	int r;

	*out = NULL;
	if ((r = store_resolve(st, ref, &m, candidates)) != SC_OK)
		return r;
	inter = cafile ? objset_intermediates(m.objs) : NULL;
	*out = cert_json(m.tok, m.objs, &m.objs->certs[m.idx], cafile, inter);
	sk_X509_free(inter);
	match_clear(&m);
	return *out ? SC_OK : SC_ERR_NOMEM;
}

int
sc_store_get_cert(struct sc_store *st, const char *ref, unsigned char **der,
    size_t *derlen, json_object **chain_b64)
{
	struct match m;
	struct sc_cert *c;
	json_object *chain;
	int r;

	*der = NULL;
	*derlen = 0;
	if (chain_b64)
		*chain_b64 = NULL;
	if ((r = store_resolve(st, ref, &m, NULL)) != SC_OK)
		return r;
	c = &m.objs->certs[m.idx];
	if ((*der = malloc(c->derlen ? c->derlen : 1)) == NULL) {
		match_clear(&m);
		return SC_ERR_NOMEM;
	}
	memcpy(*der, c->der, c->derlen);
	*derlen = c->derlen;
	if (chain_b64 != NULL && c->x509 != NULL) {
		/* Walk issuer links through the CA certificates on the token. */
		X509 *cur = c->x509;
		chain = json_object_new_array();
		for (int depth = 0; depth < 8; depth++) {
			struct sc_cert *next = NULL;
			for (size_t i = 0; i < m.objs->ncerts; i++) {
				struct sc_cert *ca = &m.objs->certs[i];
				if (ca->x509 == NULL || ca->x509 == cur || X509_check_ca(ca->x509) <= 0)
					continue;
				if (X509_check_issued(ca->x509, cur) == X509_V_OK) {
					next = ca;
					break;
				}
			}
			if (next == NULL || X509_check_issued(next->x509, next->x509) == X509_V_OK) {
				/* Stop at the end or at a self-signed root: servers have it. */
				break;
			}
			char *b = sc_b64(next->der, next->derlen);
			json_object_array_add(chain, json_object_new_string(b ? b : ""));
			free(b);
			cur = next->x509;
		}
		*chain_b64 = chain;
	}
	match_clear(&m);
	return SC_OK;
}

/* ------------------------------------------------------------------ */
/* Login */

static struct sc_token *
store_find_label(struct sc_store *st, const char *label, int *r)
{
	struct sc_token *t = NULL;
	int n = 0;

	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->ntoks; i++)
		if (strcmp(st->toks[i]->label, label) == 0) {
			if (n++ == 0)
				t = st->toks[i];
		}
	if (n == 1)
		__atomic_add_fetch(&t->refs, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_unlock(&st->lock);
	*r = n == 0 ? SC_ERR_NOT_FOUND : n > 1 ? SC_ERR_AMBIGUOUS : SC_OK;
	return n == 1 ? t : NULL;
}

static void
token_update_info(struct sc_token *t)
{
	CK_TOKEN_INFO ti;

	if (t->mod->f->C_GetTokenInfo(t->slot, &ti) == CKR_OK) {
		pthread_mutex_lock(&t->lock);
		t->info = ti;
		pthread_mutex_unlock(&t->lock);
	}
}

int
sc_store_login(struct sc_store *st, const char *token_label, const char *pin,
    int confirm_final_try, json_object **flags_out)
{
	struct sc_token *t;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_RV rv;
	int r;

	if (flags_out)
		*flags_out = NULL;
	if ((t = store_find_label(st, token_label, &r)) == NULL)
		return r;
	/* Fresh flags: never spend a try on a locked PIN or a final try unasked. */
	token_update_info(t);
	pthread_mutex_lock(&t->lock);
	if (t->logged_in) {
		r = SC_ERR_ALREADY;
		goto out_locked;
	}
	if (t->info.flags & CKF_USER_PIN_LOCKED) {
		r = SC_ERR_PIN_LOCKED;
		goto out_locked;
	}
	if ((t->info.flags & CKF_USER_PIN_FINAL_TRY) && !confirm_final_try &&
	    !st->opts.confirm_final_try) {
		r = SC_ERR_PIN_FINAL_TRY;
		goto out_locked;
	}
	pthread_mutex_unlock(&t->lock);

	rv = t->mod->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
	if (rv != CKR_OK) {
		r = sc_err_from_ckr(rv);
		goto out;
	}
	rv = t->mod->f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	if (rv == CKR_USER_ALREADY_LOGGED_IN)
		rv = CKR_OK;	/* logged in outside the agent: take it as ours */
	token_update_info(t);
	if (rv != CKR_OK) {
		sc_info("login to \"%s\" failed: %s", t->label, sc_ckr_name(rv));
		t->mod->f->C_CloseSession(s);
		r = sc_err_from_ckr(rv);
		goto out;
	}
	pthread_mutex_lock(&t->lock);
	t->login_session = s;
	t->logged_in = 1;
	t->last_use = sc_now_ms();
	pthread_mutex_unlock(&t->lock);
	sc_info("logged in to \"%s\"", t->label);
	token_reload(t, 1);	/* private keys may have become visible */
	r = SC_OK;
	goto out;
out_locked:
	pthread_mutex_unlock(&t->lock);
out:
	if (flags_out) {
		pthread_mutex_lock(&t->lock);
		*flags_out = token_flags_json(&t->info, t->logged_in);
		pthread_mutex_unlock(&t->lock);
	}
	token_unref(t);
	return r;
}

static int
token_logout(struct sc_token *t)
{
	CK_SESSION_HANDLE s;

	pthread_mutex_lock(&t->lock);
	if (!t->logged_in) {
		pthread_mutex_unlock(&t->lock);
		return SC_ERR_NOT_LOGGED_IN;
	}
	s = t->login_session;
	t->login_session = CK_INVALID_HANDLE;
	t->logged_in = 0;
	pthread_mutex_unlock(&t->lock);
	t->mod->f->C_Logout(s);
	t->mod->f->C_CloseSession(s);
	sc_info("logged out of \"%s\"", t->label);
	token_update_info(t);
	token_reload(t, 1);
	return SC_OK;
}

int
sc_store_logout(struct sc_store *st, const char *token_label)
{
	struct sc_token *t;
	int r;

	if ((t = store_find_label(st, token_label, &r)) == NULL)
		return r;
	r = token_logout(t);
	token_unref(t);
	return r;
}

int
sc_store_expire_logins(struct sc_store *st, unsigned long idle_ms)
{
	struct sc_token **v;
	size_t n;
	uint64_t now = sc_now_ms();
	int count = 0;

	v = tokens_get(st, &n);
	for (size_t i = 0; i < n; i++) {
		int expire;
		pthread_mutex_lock(&v[i]->lock);
		expire = v[i]->logged_in && now - v[i]->last_use > idle_ms;
		pthread_mutex_unlock(&v[i]->lock);
		if (expire && token_logout(v[i]) == SC_OK)
			count++;
	}
	tokens_put(v, n);
	return count;
}

/* ------------------------------------------------------------------ */
/* Signing */

/* DigestInfo prefixes (RFC 8017, section 9.2, note 1). */
static const unsigned char di_sha256[] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86,
	0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
static const unsigned char di_sha384[] = { 0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86,
	0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30 };
static const unsigned char di_sha512[] = { 0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86,
	0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40 };

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

/* Check sig over digest with the certificate's public key. */
static int
verify_sig(X509 *x, int alg, const unsigned char *dgst, size_t dlen,
    const unsigned char *sig, size_t siglen)
{
	EVP_PKEY *pk = X509_get0_pubkey(x);
	EVP_PKEY_CTX *ctx;
	int ok = 0;

	if (pk == NULL || (ctx = EVP_PKEY_CTX_new(pk, NULL)) == NULL)
		return SC_ERR_NOMEM;
	if (EVP_PKEY_verify_init(ctx) <= 0 ||
	    EVP_PKEY_CTX_set_signature_md(ctx, sc_alg_md(alg)) <= 0)
		goto out;
	if (sc_alg_family(alg) == 1 && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0)
		goto out;
	if (sc_alg_family(alg) == 2 &&
	    (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, sc_alg_md(alg)) <= 0))
		goto out;
	ok = EVP_PKEY_verify(ctx, sig, siglen, dgst, dlen) == 1;
out:
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return ok ? SC_OK : SC_ERR_BAD_SIGNATURE;
}

int
sc_store_sign(struct sc_store *st, const char *ref, int alg, int is_digest,
    const unsigned char *in, size_t inlen, unsigned char **sig, size_t *siglen,
    json_object **info)
{
	struct match m;
	struct sc_cert *c;
	const struct sc_key *k;
	CK_RSA_PKCS_PSS_PARAMS pss;
	CK_MECHANISM mech = { 0, NULL, 0 };
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_FUNCTION_LIST_PTR f;
	unsigned char dgst[EVP_MAX_MD_SIZE], tbs[EVP_MAX_MD_SIZE + 32], out[1024];
	unsigned int dlen = 0;
	CK_ULONG outlen = sizeof(out), tbslen = 0;
	const EVP_MD *md = sc_alg_md(alg);
	int r, family = sc_alg_family(alg), bad = 0;
	CK_RV rv;

	*sig = NULL;
	*siglen = 0;
	if (info)
		*info = NULL;
	if (md == NULL)
		return SC_ERR_INVALID;
	if (is_digest && inlen != (size_t)EVP_MD_get_size(md))
		return SC_ERR_INVALID;
	if ((r = store_resolve(st, ref, &m, NULL)) != SC_OK)
		return r;
	c = &m.objs->certs[m.idx];
	f = m.tok->mod->f;
	if (key_status(m.objs, c, &k) != 1) {
		r = m.objs->keys_hidden ? SC_ERR_NOT_LOGGED_IN : SC_ERR_KEY;
		goto out;
	}
	if ((family == 3) != (k->type == CKK_EC)) {
		r = SC_ERR_KEY;	/* an RSA algorithm for an EC key or the reverse */
		goto out;
	}
	if (k->always_auth) {
		/* Needs a PIN for every signature (CKU_CONTEXT_SPECIFIC): not offered. */
		r = SC_ERR_UNSUPPORTED;
		goto out;
	}
	if (is_digest) {
		memcpy(dgst, in, inlen);
		dlen = (unsigned int)inlen;
	} else if (!EVP_Digest(in, inlen, dgst, &dlen, md, NULL)) {
		r = SC_ERR_NOMEM;
		goto out;
	}
	switch (family) {
	case 1: {
		const unsigned char *pre = alg == SC_ALG_RSA_PKCS1_SHA256 ? di_sha256 :
		    alg == SC_ALG_RSA_PKCS1_SHA384 ? di_sha384 : di_sha512;
		size_t prelen = sizeof(di_sha256);	/* all three are 19 bytes */
		memcpy(tbs, pre, prelen);
		memcpy(tbs + prelen, dgst, dlen);
		tbslen = prelen + dlen;
		mech.mechanism = CKM_RSA_PKCS;
		break;
	}
	case 2:
		pss.hashAlg = algs[alg].hash_mech;
		pss.mgf = algs[alg].mgf;
		pss.sLen = dlen;
		mech.mechanism = CKM_RSA_PKCS_PSS;
		mech.pParameter = &pss;
		mech.ulParameterLen = sizeof(pss);
		memcpy(tbs, dgst, dlen);
		tbslen = dlen;
		break;
	case 3:
		mech.mechanism = CKM_ECDSA;
		memcpy(tbs, dgst, dlen);
		tbslen = dlen;
		break;
	}
	if (m.tok->nmechs > 0 && !token_has_mech(m.tok, mech.mechanism)) {
		/* The hash-and-sign variant over the data is the only other way in. */
		if (is_digest || !token_has_mech(m.tok, algs[alg].data_mech)) {
			r = SC_ERR_MECHANISM;
			goto out;
		}
		mech.mechanism = algs[alg].data_mech;
		if (inlen > sizeof(tbs)) {
			r = SC_ERR_MECHANISM;	/* would need multi-part: use the digest */
			goto out;
		}
		memcpy(tbs, in, inlen);
		tbslen = inlen;
	}
	if ((r = session_get(m.tok, &s)) != SC_OK)
		goto out;
	rv = f->C_SignInit(s, &mech, k->handle);
	if (rv == CKR_OK)
		rv = f->C_Sign(s, tbs, tbslen, out, &outlen);
	if (rv != CKR_OK) {
		sc_info("signature on \"%s\" failed: %s", m.tok->label, sc_ckr_name(rv));
		bad = ckr_session_bad(rv);
		r = sc_err_from_ckr(rv);
		if (rv == CKR_USER_NOT_LOGGED_IN) {
			/* The token forgot us (removed and reinserted, or logged out outside). */
			pthread_mutex_lock(&m.tok->lock);
			m.tok->logged_in = 0;
			pthread_mutex_unlock(&m.tok->lock);
		}
		goto out;
	}
	pthread_mutex_lock(&m.tok->lock);
	m.tok->last_use = sc_now_ms();
	pthread_mutex_unlock(&m.tok->lock);
	if (family == 3) {
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
	if (c->x509 != NULL && (family != 3 || st->opts.verify_ecdsa) &&
	    (r = verify_sig(c->x509, alg, dgst, dlen, *sig, *siglen)) != SC_OK) {
		sc_error("token \"%s\" returned a signature that does not verify: discarded",
		    m.tok->label);
		free(*sig);
		*sig = NULL;
		*siglen = 0;
		goto out;
	}
	if (info) {
		*info = json_object_new_object();
		json_object_object_add(*info, "sha256", json_object_new_string(c->sha256));
		json_object_object_add(*info, "token", json_object_new_string(m.tok->label));
	}
	r = SC_OK;
out:
	if (s != CK_INVALID_HANDLE)
		session_put(m.tok, s, bad);
	OPENSSL_cleanse(dgst, sizeof(dgst));
	match_clear(&m);
	return r;
}

/* ------------------------------------------------------------------ */
/* Mechanisms */

int
sc_store_mechanisms(struct sc_store *st, const char *token_label, json_object **out)
{
	struct sc_token *t;
	json_object *arr;
	int r;

	*out = NULL;
	if ((t = store_find_label(st, token_label, &r)) == NULL)
		return r;
	if ((arr = json_object_new_array()) == NULL) {
		token_unref(t);
		return SC_ERR_NOMEM;
	}
	for (CK_ULONG i = 0; i < t->nmechs; i++) {
		CK_MECHANISM_INFO mi;
		json_object *m;

		if (t->mod->f->C_GetMechanismInfo(t->slot, t->mechs[i], &mi) != CKR_OK)
			continue;
		m = json_object_new_object();
		json_object_object_add(m, "type", json_object_new_int64((int64_t)t->mechs[i]));
		json_object_object_add(m, "min_key_size", json_object_new_int64((int64_t)mi.ulMinKeySize));
		json_object_object_add(m, "max_key_size", json_object_new_int64((int64_t)mi.ulMaxKeySize));
		json_object_object_add(m, "flags", json_object_new_int64((int64_t)mi.flags));
		json_object_array_add(arr, m);
	}
	token_unref(t);
	*out = json_object_new_object();
	json_object_object_add(*out, "mechanisms", arr);
	return SC_OK;
}
