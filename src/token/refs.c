/*
 * References: which certificate a REF names (an RFC 7512 pkcs11: URI, a
 * SHA-256 fingerprint prefix of at least 8 hex digits, or a unique label),
 * with the candidates to show when none or several match; and which key pair
 * a key REF names (URI, CKA_ID in hex, label, or a certificate REF).
 */

#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/x509v3.h>
#include <p11-kit/uri.h>
#include "common/err.h"
#include "common/log.h"
#include "common/text.h"
#include "common/util.h"
#include "token/store-private.h"

void
match_clear(struct match *m)
{
	objset_unref(m->objs);
	token_unref(m->tok);
	memset(m, 0, sizeof(*m));
}

/* Whether uri's object attributes (class, id, label) name this object. */
static int
uri_match_object(P11KitUri *uri, CK_OBJECT_CLASS cls, const unsigned char *id, size_t idlen,
    const char *label)
{
	CK_ATTRIBUTE attrs[3] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_ID, (void *)id, idlen },
		{ CKA_LABEL, (void *)label, label ? strlen(label) : 0 },
	};

	return p11_kit_uri_match_attributes(uri, attrs, 3);
}

/* The class a URI names, or dflt when it names none. */
static CK_OBJECT_CLASS
uri_class(P11KitUri *uri, CK_OBJECT_CLASS dflt)
{
	CK_ATTRIBUTE *ucls = p11_kit_uri_get_attribute(uri, CKA_CLASS);
	CK_OBJECT_CLASS cls = dflt;

	if (ucls != NULL && ucls->ulValueLen == sizeof(cls))
		memcpy(&cls, ucls->pValue, sizeof(cls));
	return cls;
}

static int
uri_matches(P11KitUri *uri, struct sc_token *t, const struct sc_cert *c)
{
	if (!p11_kit_uri_match_token_info(uri, &t->info))
		return 0;
	/* A URI that names the private or public key selects its certificate. */
	return uri_match_object(uri, uri_class(uri, CKO_CERTIFICATE), c->id, c->idlen, c->label);
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
	return sc_json_new_text(buf);
}

/*
 * Find the one certificate a REF names. A hex REF may also be a label: a
 * fingerprint match wins, then labels. candidates gets what matched (when
 * ambiguous) or everything there is (when nothing matched).
 */
int
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
				/* Candidate strings cost: build them only for an error. */
				if (pass == 0 && candidates != NULL && nm == 0)
					json_object_array_add(all, candidate(v[i], c));
				if (!hit)
					continue;
				if (candidates != NULL)
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
sc_store_find_cert(struct sc_store *st, const char *ref, X509_STORE *anchors,
    json_object **out, json_object **candidates)
{
	struct match m;
	STACK_OF(X509) *inter;
	int r;

	*out = NULL;
	if ((r = store_resolve(st, ref, &m, candidates)) != SC_OK)
		return r;
	inter = anchors ? objset_intermediates(m.objs) : NULL;
	*out = cert_json(m.tok, m.objs, &m.objs->certs[m.idx], anchors, inter);
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
/* Key references */

static json_object *
kp_candidate(struct sc_token *t, const struct sc_kp *k)
{
	char buf[512], *hex = sc_hex(k->id, k->idlen);

	snprintf(buf, sizeof(buf), "%s (id %s) on token \"%s\"", k->label && *k->label ?
	    k->label : "(no label)", hex ? hex : "", t->label);
	free(hex);
	return sc_json_new_text(buf);
}

void
kmatch_clear(struct kmatch *m)
{
	free(m->kp.id);
	free(m->kp.label);
	EVP_PKEY_free(m->kp.pk);
	token_unref(m->tok);
	memset(m, 0, sizeof(*m));
}

static int
kp_uri_matches(P11KitUri *uri, const struct sc_kp *k)
{
	CK_OBJECT_CLASS cls = uri_class(uri, CKO_PRIVATE_KEY);

	if (cls != CKO_PRIVATE_KEY && cls != CKO_PUBLIC_KEY)
		return 0;
	return uri_match_object(uri, cls, k->id, k->idlen, k->label);
}

/* m->kp becomes a copy of k (its own id, label and key reference) on token t. */
static void
kmatch_set(struct kmatch *m, struct sc_token *t, const struct sc_kp *k)
{
	m->tok = t;
	__atomic_add_fetch(&t->refs, 1, __ATOMIC_ACQ_REL);
	m->kp = *k;
	if (k->pk != NULL)
		EVP_PKEY_up_ref(k->pk);
	if ((m->kp.id = malloc(k->idlen ? k->idlen : 1)) != NULL)
		memcpy(m->kp.id, k->id, k->idlen);
	m->kp.label = sc_strdup0(k->label);
}

/* The key pair with CKA_ID id on token t. */
static int
token_find_kp(struct sc_token *t, const unsigned char *id, size_t idlen, struct kmatch *out)
{
	CK_SESSION_HANDLE s;
	struct sc_kp *kps = NULL;
	size_t nk = 0;
	int r;

	if ((r = session_get(t, &s)) != SC_OK)
		return r;
	r = token_keypairs(t, s, &kps, &nk);
	session_put(t, s, r == SC_ERR_TOKEN_REMOVED);
	if (r == SC_OK) {
		r = SC_ERR_NOT_FOUND;
		for (size_t k = 0; k < nk; k++)
			if (kps[k].idlen == idlen && memcmp(kps[k].id, id, idlen) == 0) {
				kmatch_set(out, t, &kps[k]);
				r = SC_OK;
				break;
			}
	}
	kps_free(kps, nk);
	return r;
}

/*
 * Resolve a key REF: a pkcs11: URI of the private or public key, the key's
 * CKA_ID in hex, or its label (IDs win over labels); failing that, a
 * certificate REF names the key with the certificate's ID.
 */
int
key_resolve(struct sc_store *st, const char *ref, struct kmatch *out, json_object **candidates)
{
	P11KitUri *uri = NULL;
	struct sc_token **v;
	json_object *hits[2], *all = json_object_new_array();
	size_t n, nhits[2] = { 0, 0 };
	struct kmatch first[2];
	int r, is_uri = strncmp(ref, "pkcs11:", 7) == 0;
	int is_id = !is_uri && strlen(ref) % 2 == 0 && *ref && sc_is_hex(ref);

	memset(out, 0, sizeof(*out));
	memset(first, 0, sizeof(first));
	hits[0] = json_object_new_array();
	hits[1] = json_object_new_array();
	if (candidates)
		*candidates = NULL;
	if (is_uri && ((uri = p11_kit_uri_new()) == NULL ||
	    p11_kit_uri_parse(ref, P11_KIT_URI_FOR_ANY, uri) != P11_KIT_URI_OK)) {
		r = SC_ERR_INVALID;
		goto out;
	}
	v = tokens_get(st, &n);
	for (size_t i = 0; i < n; i++) {
		CK_SESSION_HANDLE s;
		struct sc_kp *kps = NULL;
		size_t nk = 0;

		if (is_uri && !p11_kit_uri_match_token_info(uri, &v[i]->info))
			continue;
		if (session_get(v[i], &s) != SC_OK)
			continue;
		r = token_keypairs(v[i], s, &kps, &nk);
		session_put(v[i], s, r == SC_ERR_TOKEN_REMOVED);
		for (size_t k = 0; r == SC_OK && k < nk; k++) {
			char *hex = sc_hex(kps[k].id, kps[k].idlen);
			int how = -1;	/* 0: by URI or ID, 1: by label */

			if (is_uri)
				how = kp_uri_matches(uri, &kps[k]) ? 0 : -1;
			else if (is_id && hex != NULL && strcasecmp(hex, ref) == 0)
				how = 0;
			else if (kps[k].label != NULL && strcmp(kps[k].label, ref) == 0)
				how = 1;
			free(hex);
			json_object_array_add(all, kp_candidate(v[i], &kps[k]));
			if (how < 0)
				continue;
			json_object_array_add(hits[how], kp_candidate(v[i], &kps[k]));
			if (nhits[how]++ == 0)
				kmatch_set(&first[how], v[i], &kps[k]);
		}
		kps_free(kps, nk);
	}
	tokens_put(v, n);
	for (int how = 0; how < 2; how++) {
		if (nhits[how] == 0)
			continue;
		if (nhits[how] == 1) {
			*out = first[how];
			memset(&first[how], 0, sizeof(first[how]));
			r = SC_OK;
		} else {
			r = SC_ERR_AMBIGUOUS;
			if (candidates)
				*candidates = json_object_get(hits[how]);
		}
		goto out;
	}
	/* A certificate REF: its key. */
	{
		struct match cm;
		if (store_resolve(st, ref, &cm, NULL) == SC_OK) {
			struct sc_cert *c = &cm.objs->certs[cm.idx];
			r = c->idlen > 0 ? token_find_kp(cm.tok, c->id, c->idlen, out) : SC_ERR_NOT_FOUND;
			match_clear(&cm);
			if (r == SC_OK)
				goto out;
		}
	}
	r = SC_ERR_NOT_FOUND;
	if (candidates)
		*candidates = json_object_get(all);
out:
	kmatch_clear(&first[0]);
	kmatch_clear(&first[1]);
	p11_kit_uri_free(uri);
	json_object_put(hits[0]);
	json_object_put(hits[1]);
	json_object_put(all);
	return r;
}

int
sc_store_find_key(struct sc_store *st, const char *ref, json_object **out,
    json_object **candidates)
{
	struct kmatch m;
	int r;

	*out = NULL;
	if ((r = key_resolve(st, ref, &m, candidates)) != SC_OK)
		return r;
	*out = kp_json(m.tok, &m.kp);
	kmatch_clear(&m);
	return *out ? SC_OK : SC_ERR_NOMEM;
}
