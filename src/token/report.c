/*
 * The JSON the token store gives: the inventory of `scagent list --json`
 * (tokens, their flags, their certificates with the CBA verdict), one
 * certificate as find gives it, a key pair as get-public-key and keygen give
 * it, and a token's mechanisms.
 */

#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/x509.h>
#include "cert/certinfo.h"
#include "common/err.h"
#include "common/log.h"
#include "common/text.h"
#include "common/util.h"
#include "token/store-private.h"

int
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

json_object *
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

/*
 * The token's certificates, for chain building: all of them, so that an
 * issuer that is no proper CA is found and named (chain-invalid-ca) rather
 * than missed; OpenSSL picks issuers by name and key identifier.
 */
STACK_OF(X509) *
objset_intermediates(const struct sc_objset *o)
{
	STACK_OF(X509) *sk = sk_X509_new_null();

	for (size_t i = 0; sk != NULL && i < o->ncerts; i++)
		if (o->certs[i].x509 != NULL)
			sk_X509_push(sk, o->certs[i].x509);
	return sk;
}

json_object *
cert_json(struct sc_token *t, const struct sc_objset *o, const struct sc_cert *c,
    X509_STORE *anchors, STACK_OF(X509) *inter)
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
	sc_json_add_text(j, "label", c->label);
	json_object_object_add(j, "id", json_object_new_string(hexid ? hexid : ""));
	free(hexid);
	json_object_object_add(j, "sha256", json_object_new_string(c->sha256));
	sc_json_add_text(j, "token", t->label);
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
	in.anchors = anchors;
	in.untrusted = inter;
	problems = sc_cert_cba(c->x509, &in, &reason);
	cba = json_object_new_object();
	json_object_object_add(cba, "suitable",
	    json_object_new_boolean(json_object_array_length(problems) == 0));
	json_object_object_add(cba, "problems", problems);
	if (reason != NULL)
		sc_json_add_text(cba, "chain_error", reason);
	free(reason);
	json_object_object_add(j, "cba", cba);
	return j;
}

static json_object *
token_json(struct sc_token *t, X509_STORE *anchors)
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
	sc_json_add_text(j, "module", t->mod->path);
	json_object_object_add(j, "slot", json_object_new_int64((int64_t)t->slot));
	sc_json_add_text(j, "reader", t->reader);
	sc_json_add_text(j, "label", t->label);
	sc_json_add_text(j, "manufacturer", t->manufacturer);
	sc_json_add_text(j, "model", t->model);
	sc_json_add_text(j, "serial", t->serial);
	json_object_object_add(j, "flags", token_flags_json(&ti, logged_in));
	if (o != NULL) {
		inter = anchors ? objset_intermediates(o) : NULL;
		for (size_t i = 0; i < o->ncerts; i++) {
			json_object *c = cert_json(t, o, &o->certs[i], anchors, inter);
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
sc_store_list_json(struct sc_store *st, X509_STORE *anchors)
{
	json_object *j = json_object_new_object(), *toks = json_object_new_array();
	struct sc_token **v;
	size_t n;

	v = tokens_get(st, &n);
	for (size_t i = 0; i < n; i++)
		json_object_array_add(toks, token_json(v[i], anchors));
	tokens_put(v, n);
	json_object_object_add(j, "tokens", toks);
	pthread_mutex_lock(&st->lock);
	if (json_object_array_length(st->errors) > 0)
		json_object_object_add(j, "errors", json_object_get(st->errors));
	pthread_mutex_unlock(&st->lock);
	return j;
}

json_object *
kp_json(struct sc_token *t, const struct sc_kp *k)
{
	json_object *j = json_object_new_object();
	char *hex = sc_hex(k->id, k->idlen), *uri, *b64;
	unsigned char *der = NULL;
	char curve[64];
	size_t clen = 0;
	int dlen;
	int hidden = (t->info.flags & CKF_LOGIN_REQUIRED) && !t->logged_in;

	sc_json_add_text(j, "token", t->label);
	sc_json_add_text(j, "label", k->label);
	json_object_object_add(j, "id", json_object_new_string(hex ? hex : ""));
	free(hex);
	uri = make_uri(&t->info, CKO_PRIVATE_KEY, k->id, k->idlen, k->label);
	json_object_object_add(j, "uri", json_object_new_string(uri ? uri : ""));
	free(uri);
	json_object_object_add(j, "type", json_object_new_string(k->type == CKK_RSA ? "rsa" :
	    k->type == CKK_EC ? "ec" : "other"));
	if (k->pk != NULL) {
		if (k->type == CKK_EC && EVP_PKEY_get_utf8_string_param(k->pk,
		    OSSL_PKEY_PARAM_GROUP_NAME, curve, sizeof(curve), &clen))
			json_object_object_add(j, "curve", json_object_new_string(curve));
		json_object_object_add(j, "bits", json_object_new_int(EVP_PKEY_get_bits(k->pk)));
		if ((dlen = i2d_PUBKEY(k->pk, &der)) > 0 &&
		    (b64 = sc_b64(der, (size_t)dlen)) != NULL) {
			json_object_object_add(j, "public_key", json_object_new_string(b64));
			free(b64);
		}
		OPENSSL_free(der);
	}
	json_object_object_add(j, "private_key", json_object_new_string(
	    k->priv != CK_INVALID_HANDLE ? "present" : hidden ? "unknown" : "absent"));
	return j;
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
