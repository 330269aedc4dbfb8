/*
 * The token store. Modules are loaded and their slots enumerated through
 * libp11; objects, logins and signatures go through the module's own
 * function list, because libp11 0.4.12 caches objects per slot (a newly
 * imported certificate would stay invisible), PKCS11_update_slots crashes,
 * PKCS11_release_all_slots calls C_CloseAllSessions (which logs the agent
 * out), and under OpenSSL 3 its EVP_PKEY signs RSA-PSS as raw RSA, which
 * TPMs and many cards refuse. A login session stays open while logged in:
 * closing a slot's last session logs out, and SoftHSM then numbers the
 * objects anew, so a login or logout finds the certificates' handles and
 * reads them again when they changed.
 *
 * This file: modules, slots and the tokens in them, refresh (tokens that
 * come and go, objects another program changed), finding a token by label
 * or token URI, and each token's pool of sessions. The other concerns are in
 * the files store-private.h lists, with the locks and what they guard.
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
#include <openssl/err.h>
#include <p11-kit/uri.h>
#include "common/err.h"
#include "common/log.h"
#include "common/secmem.h"
#include "common/text.h"
#include "common/util.h"
#include "token/store-private.h"

/* ------------------------------------------------------------------ */
/* Tokens */

void
token_unref(struct sc_token *t)
{
	if (t == NULL || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	for (size_t i = 0; i < t->npool; i++)
		t->mod->f->C_CloseSession(t->pool[i]);
	if (t->login_session != CK_INVALID_HANDLE)
		t->mod->f->C_CloseSession(t->login_session);
	sc_secmem_free(t->pin_check);
	pthread_mutex_destroy(&t->check_lock);
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
	pthread_mutex_init(&t->check_lock, NULL);
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

int
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
	free(st->vsc_real);
	json_object_put(st->pending);
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
	sc_json_add_text(e, "module", path);
	json_object_object_add(e, "error", sc_json_new_text(msg));
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
		/*
		 * No slots yet is not a failure: OpenSC has none while pcscd is
		 * down, and slots appear later through sc_store_refresh().
		 */
		sc_info("module %s: no slots yet", path);
		ERR_clear_error();
		m->slots = NULL;
		m->nslots = 0;
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

/* Append {"event": what, "token", "reader", "module", "slot", "serial"} to ev (may be NULL). */
void
token_event(json_object *ev, const char *what, const struct sc_token *t)
{
	json_object *e;

	if (ev == NULL)
		return;
	e = json_object_new_object();
	json_object_object_add(e, "event", json_object_new_string(what));
	sc_json_add_text(e, "token", t->label);
	sc_json_add_text(e, "reader", t->reader);
	sc_json_add_text(e, "module", t->mod->path);
	json_object_object_add(e, "slot", json_object_new_int64((int64_t)t->slot));
	sc_json_add_text(e, "serial", t->serial);
	json_object_array_add(ev, e);
}

static void
store_drop_unseen(struct sc_store *st, struct sc_module *m, int *changed, json_object *ev)
{
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->ntoks;) {
		struct sc_token *t = st->toks[i];
		if (t->mod == m && !t->seen) {
			sc_info("token \"%s\" removed", t->label);
			token_event(ev, "token-removed", t);
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
refresh_module(struct sc_store *st, struct sc_module *m, int *changed, json_object *ev)
{
	json_object *added = ev != NULL ? json_object_new_array() : NULL;
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
		json_object_put(added);
		/* Keep what we know: a module that failed once may answer next time. */
		return sc_err_from_ckr(rv);
	}
	sc_debug("module %s: %lu slot%s with a token", m->path, (unsigned long)n, n == 1 ? "" : "s");
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
		token_event(added, "token-added", t);
		*changed = 1;
	}
	pthread_mutex_unlock(&m->lock);
	free(ids);
	/* Removals first: a card swapped for one with the same label reads right. */
	store_drop_unseen(st, m, changed, ev);
	for (size_t i = 0; added != NULL && i < json_object_array_length(added); i++)
		json_object_array_add(ev, json_object_get(json_object_array_get_idx(added, i)));
	json_object_put(added);
	return r;
}

int
sc_store_refresh(struct sc_store *st, int *changed)
{
	return sc_store_refresh_report(st, changed, NULL);
}

/*
 * Whether two object sets show the same certificates and private keys, in
 * the same order (handles aside); when unsure, not.
 */
static int
objsets_alike(const struct sc_objset *a, const struct sc_objset *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	if (a->ncerts != b->ncerts || a->nkeys != b->nkeys || a->keys_hidden != b->keys_hidden)
		return 0;
	for (size_t i = 0; i < a->ncerts; i++) {
		const struct sc_cert *x = &a->certs[i], *y = &b->certs[i];

		if (strcmp(x->sha256, y->sha256) != 0 || x->label == NULL || y->label == NULL ||
		    strcmp(x->label, y->label) != 0 ||
		    x->idlen != y->idlen || (x->idlen > 0 && memcmp(x->id, y->id, x->idlen) != 0))
			return 0;
	}
	for (size_t i = 0; i < a->nkeys; i++) {
		const struct sc_key *x = &a->keys[i], *y = &b->keys[i];

		if (x->type != y->type || x->always_auth != y->always_auth || x->idlen != y->idlen ||
		    (x->idlen > 0 && memcmp(x->id, y->id, x->idlen) != 0))
			return 0;
	}
	return 1;
}

static int
store_refresh(struct sc_store *st, int wait, int *changed, json_object **events)
{
	int r = SC_OK, ch = 0;
	json_object *ev = NULL;

	if (changed != NULL)
		*changed = 0;
	if (events != NULL)
		*events = NULL;
	if (wait)
		pthread_mutex_lock(&st->refresh_lock);
	else if (pthread_mutex_trylock(&st->refresh_lock) != 0)
		return SC_ERR_BUSY;
	if (events != NULL)
		*events = ev = json_object_new_array();
	/* Tokens dropped by module_reinit come first: they are gone already. */
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; st->pending != NULL && i < json_object_array_length(st->pending); i++) {
		if (ev != NULL)
			json_object_array_add(ev, json_object_get(json_object_array_get_idx(st->pending, i)));
		ch = 1;
	}
	json_object_put(st->pending);
	st->pending = NULL;
	pthread_mutex_unlock(&st->lock);
	for (size_t i = 0; i < st->nmods; i++) {
		int rr = refresh_module(st, st->mods[i], &ch, ev);
		if (rr != SC_OK)
			r = rr;
	}
	/*
	 * Objects written or deleted by another program: read the token again.
	 * Other handles for the same objects (a module may number them anew, for
	 * all its tokens, at a logout) are no change anyone sees.
	 */
	{
		size_t n;
		struct sc_token **v = tokens_get(st, &n);

		for (size_t i = 0; i < n; i++) {
			struct sc_objset *before;

			if (!token_objects_changed(v[i]))
				continue;
			before = token_objs(v[i]);
			if (token_reload(v[i], 0) == SC_OK) {
				struct sc_objset *after = token_objs(v[i]);

				if (!objsets_alike(before, after)) {
					sc_info("token \"%s\": its objects changed, read again", v[i]->label);
					ch = 1;
				} else
					sc_debug("token \"%s\": its objects have other handles, nothing else changed",
					    v[i]->label);
				objset_unref(after);
			}
			objset_unref(before);
		}
		tokens_put(v, n);
	}
	pthread_mutex_unlock(&st->refresh_lock);
	if (changed != NULL)
		*changed = ch;
	return r;
}

int
sc_store_refresh_report(struct sc_store *st, int *changed, json_object **events)
{
	return store_refresh(st, 1, changed, events);
}

int
sc_store_refresh_try(struct sc_store *st, int *changed, json_object **events)
{
	return store_refresh(st, 0, changed, events);
}

/* The tokens now present, each with a reference held; free with tokens_put. */
struct sc_token **
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

void
tokens_put(struct sc_token **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		token_unref(v[i]);
	free(v);
}

/* ------------------------------------------------------------------ */
/* Finding a token by label or token URI */

struct sc_token *
store_find_label(struct sc_store *st, const char *label, int *r)
{
	struct sc_token **v, *t = NULL;
	P11KitUri *uri = NULL;
	size_t n;
	int hits = 0;

	/* Or a token URI (pkcs11:token=...;serial=...): two cards with one label differ by serial. */
	if (strncmp(label, "pkcs11:", 7) == 0) {
		if ((uri = p11_kit_uri_new()) == NULL ||
		    p11_kit_uri_parse(label, P11_KIT_URI_FOR_TOKEN, uri) != P11_KIT_URI_OK) {
			p11_kit_uri_free(uri);
			*r = SC_ERR_INVALID;
			return NULL;
		}
	}
	v = tokens_get(st, &n);
	for (size_t i = 0; i < n; i++) {
		int hit;

		if (uri != NULL) {
			pthread_mutex_lock(&v[i]->lock);
			hit = p11_kit_uri_match_token_info(uri, &v[i]->info);
			pthread_mutex_unlock(&v[i]->lock);
		} else
			hit = strcmp(v[i]->label, label) == 0;
		if (hit && hits++ == 0)
			t = v[i];
	}
	if (hits == 1)
		__atomic_add_fetch(&t->refs, 1, __ATOMIC_ACQ_REL);
	tokens_put(v, n);
	p11_kit_uri_free(uri);
	*r = hits == 0 ? SC_ERR_NOT_FOUND : hits > 1 ? SC_ERR_AMBIGUOUS : SC_OK;
	return hits == 1 ? t : NULL;
}

int
sc_store_token_label(struct sc_store *st, const char *token, char *label, size_t len)
{
	struct sc_token *t;
	int r;

	if ((t = store_find_label(st, token, &r)) == NULL)
		return r;
	snprintf(label, len, "%s", t->label);
	token_unref(t);
	return SC_OK;
}

void
token_update_info(struct sc_token *t)
{
	CK_TOKEN_INFO ti;

	if (t->mod->f->C_GetTokenInfo(t->slot, &ti) == CKR_OK) {
		pthread_mutex_lock(&t->lock);
		t->info = ti;
		pthread_mutex_unlock(&t->lock);
	}
}

/* ------------------------------------------------------------------ */
/* Sessions */

int
session_get(struct sc_token *t, CK_SESSION_HANDLE *s)
{
	CK_RV rv;

	pthread_mutex_lock(&t->lock);
	if (t->dead) {
		pthread_mutex_unlock(&t->lock);
		return SC_ERR_TOKEN_REMOVED;
	}
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
void
session_put(struct sc_token *t, CK_SESSION_HANDLE s, int bad)
{
	pthread_mutex_lock(&t->lock);
	if (t->dead)
		s = CK_INVALID_HANDLE;	/* belongs to the module's previous life */
	else if (!bad && t->npool < SC_MAX_SESSIONS_IDLE) {
		t->pool[t->npool++] = s;
		s = CK_INVALID_HANDLE;
	}
	pthread_mutex_unlock(&t->lock);
	if (s != CK_INVALID_HANDLE)
		t->mod->f->C_CloseSession(s);
}

int
ckr_session_bad(CK_RV rv)
{
	return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	    rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT;
}
