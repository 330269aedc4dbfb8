/*
 * Listing: the agent's tokens become slots, and their certificates objects
 * (a certificate, a public key, a private key). A token keeps its slot, and
 * an object its handle, across listings; certificates are fetched once and
 * cached by their SHA-256.
 */
#include "config.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>
#include "common/err.h"
#include "common/util.h"
#include "pkcs11/p11mod.h"
#include "scagent/scagent.h"

#define STALE_MS 1000		/* a listing younger than this is reused */

static struct p11_cert *
cache_find(const char *sha256)
{
	for (size_t i = 0; i < g.ncache; i++)
		if (strcmp(g.cache[i]->sha256, sha256) == 0)
			return g.cache[i];
	return NULL;
}

static void
cache_add(struct p11_cert *c)
{
	struct p11_cert **n;

	if ((n = realloc(g.cache, (g.ncache + 1) * sizeof(*n))) == NULL) {
		p11_cert_unref(c);
		return;
	}
	g.cache = n;
	g.cache[g.ncache++] = c;
}

/* Drop cached certificates no object uses any more. */
static void
cache_trim(void)
{
	size_t j = 0;

	for (size_t i = 0; i < g.ncache; i++) {
		if (__atomic_load_n(&g.cache[i]->refs, __ATOMIC_ACQUIRE) == 1)
			p11_cert_unref(g.cache[i]);
		else
			g.cache[j++] = g.cache[i];
	}
	g.ncache = j;
}

static int
obj_add(struct p11_slot *s, struct p11_object *v, size_t *n, CK_OBJECT_CLASS cls,
    struct p11_cert *c, json_object *cj, int priv_obj, int always_auth)
{
	struct p11_object *o = &v[*n], *old = NULL;
	const char *uri = jstr(cj, "uri"), *hexid = jstr(cj, "id");

	memset(o, 0, sizeof(*o));
	o->cls = cls;
	o->cert = c;
	__atomic_add_fetch(&c->refs, 1, __ATOMIC_ACQ_REL);
	o->label = strdup(jstr(cj, "label"));
	o->ref = strdup(*uri ? uri : c->sha256);
	if (*hexid && sc_unhex(hexid, &o->id, &o->idlen) != SC_OK) {
		o->id = NULL;
		o->idlen = 0;
	}
	o->private_obj = priv_obj;
	o->always_auth = always_auth;
	if (o->label == NULL || o->ref == NULL) {
		p11_object_clear(o);
		return -1;
	}
	/* The same object keeps its handle across listings. */
	for (size_t i = 0; i < s->nobjs && old == NULL; i++)
		if (s->objs[i].cls == cls && s->objs[i].cert == c &&
		    s->objs[i].idlen == o->idlen &&
		    (o->idlen == 0 || memcmp(s->objs[i].id, o->id, o->idlen) == 0) &&
		    strcmp(s->objs[i].label, o->label) == 0)
			old = &s->objs[i];
	for (size_t i = 0; old != NULL && i < *n; i++)
		if (v[i].handle == old->handle)
			old = NULL;	/* already taken by a twin */
	o->handle = old ? old->handle : g.next_handle++;
	(*n)++;
	return 0;
}

static void
slot_set_objects(struct p11_slot *s, json_object *certs)
{
	size_t ncerts = certs ? json_object_array_length(certs) : 0, n = 0;
	struct p11_object *v;

	if ((v = calloc(3 * ncerts + 1, sizeof(*v))) == NULL)
		return;
	for (size_t i = 0; i < ncerts; i++) {
		json_object *cj = json_object_array_get_idx(certs, i), *key = NULL;
		struct p11_cert *c = cache_find(jstr(cj, "sha256"));
		const char *pk;

		if (c == NULL || json_object_object_get_ex(cj, "error", NULL))
			continue;
		json_object_object_get_ex(cj, "key", &key);
		pk = jstr(key, "private_key");
		obj_add(s, v, &n, CKO_CERTIFICATE, c, cj, 0, 0);
		/*
		 * A public key object stands for a key pair on the token: shown
		 * when the agent sees the private key, and while it cannot tell
		 * (before login) for end-entity certificates: cards do not hold
		 * CA keys.
		 */
		if (c->key_type == P11_KEY_NONE || strcmp(pk, "absent") == 0 ||
		    (strcmp(pk, "present") != 0 && c->is_ca))
			continue;
		obj_add(s, v, &n, CKO_PUBLIC_KEY, c, cj, 0, 0);
		if (strcmp(pk, "present") == 0)
			obj_add(s, v, &n, CKO_PRIVATE_KEY, c, cj, s->login_required,
			    jbool(key, "always_authenticate"));
	}
	slot_drop_objs(s);
	s->objs = v;
	s->nobjs = n;
}

static int
set_str(char **dst, const char *src)
{
	char *n = strdup(src);

	if (n == NULL)
		return -1;
	free(*dst);
	*dst = n;
	return 0;
}

static struct p11_slot *
slot_for_token(json_object *t)
{
	struct p11_slot *s = NULL, **ns;
	char *ident = NULL;

	for (int k = 0; k < 64 && s == NULL; k++) {
		free(ident);
		if (asprintf(&ident, "%s\n%s\n%s\n%d", jstr(t, "module"), jstr(t, "serial"),
		    jstr(t, "label"), k) < 0)
			return NULL;
		for (size_t i = 0; i < g.nslots && s == NULL; i++)
			if (strcmp(g.slots[i]->ident, ident) == 0)
				s = g.slots[i];
		if (s != NULL && s->seen)
			s = NULL;	/* a twin token took it: next number */
		else if (s == NULL)
			break;
	}
	if (s != NULL) {
		free(ident);
		return s;
	}
	if (ident == NULL || (s = calloc(1, sizeof(*s))) == NULL ||
	    (ns = realloc(g.slots, (g.nslots + 1) * sizeof(*ns))) == NULL) {
		free(ident);
		free(s);
		return NULL;
	}
	s->ident = ident;
	s->id = g.next_slot++;
	g.slots = ns;
	g.slots[g.nslots++] = s;
	return s;
}

/* Apply a listing (tokens may be NULL: the agent is unreachable). g.lock held. */
static void
apply_listing(json_object *tokens)
{
	size_t n = tokens ? json_object_array_length(tokens) : 0;

	for (size_t i = 0; i < g.nslots; i++)
		g.slots[i]->seen = 0;
	for (size_t i = 0; i < n; i++) {
		json_object *t = json_object_array_get_idx(tokens, i), *f = NULL;
		struct p11_slot *s = slot_for_token(t);

		if (s == NULL)
			continue;
		s->seen = 1;
		if (!s->present) {
			s->present = 1;
			s->event = g.listed;	/* the first listing is no event */
			slot_drop_mechs(s);
		}
		if (set_str(&s->label, jstr(t, "label")) < 0 ||
		    set_str(&s->serial, jstr(t, "serial")) < 0 ||
		    set_str(&s->manufacturer, jstr(t, "manufacturer")) < 0 ||
		    set_str(&s->model, jstr(t, "model")) < 0 ||
		    set_str(&s->reader, jstr(t, "reader")) < 0)
			continue;
		json_object_object_get_ex(t, "flags", &f);
		s->login_required = jbool(f, "login_required");
		s->logged_in = jbool(f, "logged_in");
		if (!s->logged_in)
			s->app_login = 0;
		s->count_low = jbool(f, "pin_count_low");
		s->final_try = jbool(f, "pin_final_try");
		s->locked = jbool(f, "pin_locked");
		s->protected_path = jbool(f, "protected_auth_path");
		s->write_protected = jbool(f, "write_protected");
		slot_set_objects(s, jarr(t, "certificates"));
	}
	for (size_t i = 0; i < g.nslots; i++) {
		struct p11_slot *s = g.slots[i];
		if (s->seen || !s->present)
			continue;
		s->present = 0;
		s->event = 1;
		s->logged_in = 0;
		s->app_login = 0;
		slot_drop_objs(s);
		slot_drop_mechs(s);
		sessions_close_slot(s->id);
	}
	cache_trim();
}

/* Fetch and parse the certificates of the listing that are not cached yet. */
static void
fetch_certs(json_object *tokens)
{
	size_t n = tokens ? json_object_array_length(tokens) : 0;

	for (size_t i = 0; i < n; i++) {
		json_object *certs = jarr(json_object_array_get_idx(tokens, i), "certificates");
		size_t nc = certs ? json_object_array_length(certs) : 0;

		for (size_t k = 0; k < nc; k++) {
			json_object *cj = json_object_array_get_idx(certs, k);
			const char *sha = jstr(cj, "sha256"), *uri = jstr(cj, "uri");
			struct agent_conn *ac;
			struct p11_cert *c = NULL;
			unsigned char *der = NULL;
			size_t derlen = 0;
			int found, r = SC_ERR_AGENT_UNREACHABLE;

			if (strlen(sha) != 64 || json_object_object_get_ex(cj, "error", NULL))
				continue;
			pthread_mutex_lock(&g.lock);
			found = cache_find(sha) != NULL;
			pthread_mutex_unlock(&g.lock);
			if (found)
				continue;
			if ((ac = conn_get()) != NULL)
				r = scagent_get_cert(ac->c, *uri ? uri : sha, &der, &derlen, NULL);
			conn_put(ac, r);
			if (r != SC_OK)
				continue;
			c = p11_cert_new(sha, der, derlen);
			scagent_free(der);
			if (c == NULL)
				continue;
			pthread_mutex_lock(&g.lock);
			if (cache_find(sha) == NULL)
				cache_add(c);
			else
				p11_cert_unref(c);
			pthread_mutex_unlock(&g.lock);
		}
	}
}

/* Re-list the agent's tokens unless the last listing is recent (force: always). */
void
refresh(int force)
{
	struct agent_conn *ac;
	json_object *list = NULL, *tokens = NULL;
	char *text = NULL;
	int r = SC_ERR_AGENT_UNREACHABLE;

	pthread_mutex_lock(&g.refresh_lock);
	pthread_mutex_lock(&g.lock);
	if (!g.initialized || (!force && g.listed && sc_now_ms() - g.last_refresh < STALE_MS)) {
		pthread_mutex_unlock(&g.lock);
		pthread_mutex_unlock(&g.refresh_lock);
		return;
	}
	pthread_mutex_unlock(&g.lock);
	if ((ac = conn_get()) != NULL)
		r = scagent_list(ac->c, &text);
	conn_put(ac, r);
	if (r == SC_OK && (list = json_tokener_parse(text)) != NULL)
		tokens = jarr(list, "tokens");
	scagent_free(text);
	fetch_certs(tokens);
	pthread_mutex_lock(&g.lock);
	if (g.initialized) {
		apply_listing(tokens);
		g.listed = 1;
		g.last_refresh = sc_now_ms();
	}
	pthread_mutex_unlock(&g.lock);
	pthread_mutex_unlock(&g.refresh_lock);
	json_object_put(list);
}

