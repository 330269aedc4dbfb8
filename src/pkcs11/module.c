/*
 * scagent-pkcs11.so: the agent's tokens as PKCS#11 slots.
 *
 * State: slots (one per token the agent lists; a token that goes away leaves
 * its slot without a token, and gets the same slot back when it returns),
 * their objects, sessions, and one connection to the agent shared by all
 * threads. g.lock guards all of it and is never held across a call to the
 * agent; g.refresh_lock serialises re-listing. The agent's login state is the
 * token's login state here: a session is a user session when the agent is
 * logged in to its token, whoever logged it in.
 *
 * Errors from the agent become CK_RVs in one place, ckr_from_agent().
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <p11-kit/uri.h>
#include "common/err.h"
#include "common/util.h"
#include "pkcs11/p11mod.h"
#include "scagent/scagent.h"

#define EXPORT __attribute__((visibility("default")))

#define STALE_MS 1000		/* a listing younger than this is reused */
#define WAIT_POLL_MS 5000	/* C_WaitForSlotEvent re-lists at least this often */
#define CKF_EC_PARAMETERS_ (1UL << 22)	/* PKCS#11 2.40's CKF_EC_PARAMETERS, not in p11-kit's header */

struct p11_slot {
	CK_SLOT_ID id;
	char *ident;			/* module, serial and label of its token */
	int present, seen, event;
	char *label, *serial, *manufacturer, *model, *reader;
	int login_required, logged_in, count_low, final_try, locked, protected_path;
	int write_protected;
	int app_login;			/* this process called C_Login (and no logout since) */
	struct p11_object *objs;
	size_t nobjs;
	CK_MECHANISM_TYPE *mechs;
	CK_MECHANISM_INFO *minfo;
	size_t nmechs;
	int mechs_loaded;
};

struct p11_session {
	CK_SESSION_HANDLE handle;
	CK_SLOT_ID slot;
	CK_FLAGS flags;
	int finding;
	CK_OBJECT_HANDLE *found;
	size_t nfound, pos;
	int signing, sign_busy;
	struct p11_signop sign;
	int verifying;			/* C_VerifyInit done: verify holds the operation */
	struct p11_signop verify;
	struct p11_session *next;
};

struct agent_conn {
	int refs;
	int dead;
	scagent_client *c;
};

static struct {
	pthread_mutex_t lock;
	pthread_mutex_t refresh_lock;
	pthread_cond_t cond;		/* C_WaitForSlotEvent callers leaving */
	int initialized;
	int forked;			/* in a child: drop inherited connections */
	struct agent_conn *conn;
	struct p11_slot **slots;
	size_t nslots;
	CK_SLOT_ID next_slot;
	CK_OBJECT_HANDLE next_handle;
	CK_SESSION_HANDLE next_session;
	struct p11_session *sessions;
	struct p11_cert **cache;
	size_t ncache;
	uint64_t last_refresh;
	int listed;
	int wake[2];			/* C_Finalize wakes C_WaitForSlotEvent */
	int waiters;
} g = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.refresh_lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.wake = { -1, -1 },
};

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* ------------------------------------------------------------------ */
/* Small helpers */

static void
pad(unsigned char *dst, size_t n, const char *src)
{
	size_t len = src ? strlen(src) : 0;

	memset(dst, ' ', n);
	memcpy(dst, src ? src : "", len < n ? len : n);
}

/*
 * How the agent is told which token a slot is: a token URI with its label,
 * serial, manufacturer and model, so that two tokens with one label (two
 * cards of one person, two YubiKeys "PIV_II") stay apart. Freed with free().
 */
static char *
slot_token_uri(const struct p11_slot *s)
{
	P11KitUri *uri = p11_kit_uri_new();
	CK_TOKEN_INFO *ti;
	char *out = NULL;

	if (uri == NULL)
		return NULL;
	ti = p11_kit_uri_get_token_info(uri);
	pad(ti->label, sizeof(ti->label), s->label);
	pad(ti->serialNumber, sizeof(ti->serialNumber), s->serial);
	pad(ti->manufacturerID, sizeof(ti->manufacturerID), s->manufacturer);
	pad(ti->model, sizeof(ti->model), s->model);
	if (p11_kit_uri_format(uri, P11_KIT_URI_FOR_TOKEN, &out) != P11_KIT_URI_OK)
		out = NULL;
	p11_kit_uri_free(uri);
	return out;
}

static const char *
jstr(json_object *o, const char *key)
{
	json_object *v;

	if (o != NULL && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return "";
}

static int
jbool(json_object *o, const char *key)
{
	json_object *v;

	return o != NULL && json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

static json_object *
jarr(json_object *o, const char *key)
{
	json_object *v;

	if (o != NULL && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_array))
		return v;
	return NULL;
}

/* The one place where an agent error becomes a CK_RV. */
static CK_RV
ckr_from_agent(int r)
{
	switch (r) {
	case SC_OK:
		return CKR_OK;
	case SC_ERR_NOMEM:
		return CKR_HOST_MEMORY;
	case SC_ERR_PIN_INCORRECT:
	case SC_ERR_PIN_INVALID:	/* a PIN of a length the token refuses is not its PIN */
		return CKR_PIN_INCORRECT;
	case SC_ERR_PIN_LOCKED:
		return CKR_PIN_LOCKED;
	case SC_ERR_PIN_FINAL_TRY:
		/* The agent keeps the last try for an explicit `scagent login --confirm-final-try`. */
		return CKR_FUNCTION_CANCELED;
	case SC_ERR_NOT_LOGGED_IN:
	case SC_ERR_PIN_REQUIRED:	/* C_Sign without C_Login(CKU_CONTEXT_SPECIFIC) */
		return CKR_USER_NOT_LOGGED_IN;
	case SC_ERR_ALREADY:
		return CKR_USER_ALREADY_LOGGED_IN;
	case SC_ERR_TOKEN_REMOVED:
	case SC_ERR_NOT_FOUND:
	case SC_ERR_AMBIGUOUS:
		return CKR_DEVICE_REMOVED;
	case SC_ERR_DENIED:
		return CKR_FUNCTION_REJECTED;
	case SC_ERR_CANCELLED:
		return CKR_FUNCTION_CANCELED;
	case SC_ERR_INVALID:
		return CKR_DATA_INVALID;
	case SC_ERR_AGENT_UNREACHABLE:
	case SC_ERR_IO:
	case SC_ERR_PROTOCOL:
	case SC_ERR_TIMEOUT:
	case SC_ERR_TOO_LARGE:
	case SC_ERR_DEVICE:
	case SC_ERR_BAD_SIGNATURE:
		return CKR_DEVICE_ERROR;
	default:
		return CKR_FUNCTION_FAILED;
	}
}

static int
conn_broken(int r)
{
	return r == SC_ERR_AGENT_UNREACHABLE || r == SC_ERR_IO || r == SC_ERR_PROTOCOL ||
	    r == SC_ERR_TOO_LARGE || r == SC_ERR_TIMEOUT;
}

/* ------------------------------------------------------------------ */
/* The agent connection */

static void
conn_unref_locked(struct agent_conn *ac)
{
	if (ac == NULL || --ac->refs > 0)
		return;
	scagent_close(ac->c);
	free(ac);
}

/* In a child after fork(): the parent's connection is not ours to use. */
static void
drop_after_fork_locked(void)
{
	if (!g.forked)
		return;
	g.forked = 0;
	if (g.conn != NULL) {
		scagent_close(g.conn->c);
		free(g.conn);
		g.conn = NULL;
	}
}

/* A referenced connection, connecting if needed; NULL when the agent is unreachable. */
static struct agent_conn *
conn_get(void)
{
	struct agent_conn *ac;
	scagent_client *c = NULL;

	pthread_mutex_lock(&g.lock);
	drop_after_fork_locked();
	if ((ac = g.conn) != NULL && !ac->dead) {
		ac->refs++;
		pthread_mutex_unlock(&g.lock);
		return ac;
	}
	pthread_mutex_unlock(&g.lock);
	if (scagent_connect(NULL, &c) != SC_OK)
		return NULL;
	pthread_mutex_lock(&g.lock);
	if (g.conn != NULL && !g.conn->dead) {
		ac = g.conn;
		ac->refs++;
		pthread_mutex_unlock(&g.lock);
		scagent_close(c);
		return ac;
	}
	if ((ac = calloc(1, sizeof(*ac))) == NULL) {
		pthread_mutex_unlock(&g.lock);
		scagent_close(c);
		return NULL;
	}
	ac->c = c;
	ac->refs = 2;		/* g.conn's and the caller's */
	if (g.conn != NULL)
		conn_unref_locked(g.conn);
	g.conn = ac;
	pthread_mutex_unlock(&g.lock);
	return ac;
}

/* Done with ac; r is what the call returned (a broken connection is dropped). */
static void
conn_put(struct agent_conn *ac, int r)
{
	if (ac == NULL)
		return;
	pthread_mutex_lock(&g.lock);
	if (conn_broken(r) && !ac->dead) {
		ac->dead = 1;
		if (g.conn == ac) {
			g.conn = NULL;
			ac->refs--;	/* g.conn's; the caller's is still held */
		}
	}
	conn_unref_locked(ac);
	pthread_mutex_unlock(&g.lock);
}

/* ------------------------------------------------------------------ */
/* Slots and objects */

static struct p11_slot *
slot_get(CK_SLOT_ID id)
{
	for (size_t i = 0; i < g.nslots; i++)
		if (g.slots[i]->id == id)
			return g.slots[i];
	return NULL;
}

/* rv, or CKR_CRYPTOKI_NOT_INITIALIZED outside C_Initialize..C_Finalize. */
static CK_RV
if_initialized(CK_RV rv)
{
	pthread_mutex_lock(&g.lock);
	if (!g.initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_unlock(&g.lock);
	return rv;
}

/* With g.lock held: slot id, when it exists and has a token. */
static CK_RV
present_slot(CK_SLOT_ID id, struct p11_slot **s)
{
	if (!g.initialized)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if ((*s = slot_get(id)) == NULL)
		return CKR_SLOT_ID_INVALID;
	return (*s)->present ? CKR_OK : CKR_TOKEN_NOT_PRESENT;
}

static void
slot_drop_mechs(struct p11_slot *s)
{
	free(s->mechs);
	free(s->minfo);
	s->mechs = NULL;
	s->minfo = NULL;
	s->nmechs = 0;
	s->mechs_loaded = 0;
}

static void
slot_drop_objs(struct p11_slot *s)
{
	for (size_t i = 0; i < s->nobjs; i++)
		p11_object_clear(&s->objs[i]);
	free(s->objs);
	s->objs = NULL;
	s->nobjs = 0;
}

static void
slot_free(struct p11_slot *s)
{
	if (s == NULL)
		return;
	slot_drop_objs(s);
	slot_drop_mechs(s);
	free(s->ident);
	free(s->label);
	free(s->serial);
	free(s->manufacturer);
	free(s->model);
	free(s->reader);
	free(s);
}

static void
session_free(struct p11_session *s)
{
	if (s == NULL)
		return;
	free(s->found);
	p11_signop_clear(&s->sign);
	p11_signop_clear(&s->verify);
	free(s);
}

static void
sessions_close_slot(CK_SLOT_ID slot)
{
	struct p11_session **pp = &g.sessions, *s;

	while ((s = *pp) != NULL) {
		if (s->slot == slot) {
			*pp = s->next;
			session_free(s);
		} else
			pp = &s->next;
	}
}

static struct p11_object *
slot_object(struct p11_slot *s, CK_OBJECT_HANDLE h)
{
	for (size_t i = 0; s != NULL && i < s->nobjs; i++)
		if (s->objs[i].handle == h)
			return &s->objs[i];
	return NULL;
}

/* Private objects are seen in user sessions only. */
static int
object_visible(const struct p11_slot *s, const struct p11_object *o)
{
	return !o->private_obj || s->logged_in;
}

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
static void
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

/* Load the slot's mechanisms from the agent once per token insertion. */
static CK_RV
slot_load_mechs(CK_SLOT_ID id)
{
	struct agent_conn *ac;
	struct p11_slot *s;
	json_object *res = NULL, *arr;
	CK_MECHANISM_TYPE *mechs = NULL;
	CK_MECHANISM_INFO *minfo = NULL;
	char *label = NULL, *args = NULL, *text = NULL;
	size_t n = 0;
	int r = SC_ERR_AGENT_UNREACHABLE, all;
	CK_RV rv = CKR_OK;

	pthread_mutex_lock(&g.lock);
	if ((rv = present_slot(id, &s)) == CKR_OK && !s->mechs_loaded &&
	    (label = slot_token_uri(s)) == NULL)
		rv = CKR_HOST_MEMORY;
	pthread_mutex_unlock(&g.lock);
	if (rv != CKR_OK || label == NULL)
		return rv;

	arr = json_object_new_object();
	json_object_object_add(arr, "token", json_object_new_string(label));
	args = strdup(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
	json_object_put(arr);
	if (args != NULL && (ac = conn_get()) != NULL) {
		r = scagent_call(ac->c, "mechanisms", args, &text);
		conn_put(ac, r);
	}
	free(args);
	free(label);
	if (r == SC_OK)
		res = json_tokener_parse(text);
	scagent_free(text);
	arr = jarr(res, "mechanisms");
	if (r != SC_OK && r != SC_ERR_UNSUPPORTED) {
		json_object_put(res);
		return ckr_from_agent(r);
	}
	/* An agent without the op, or a token that lists none: offer all. */
	all = arr == NULL || json_object_array_length(arr) == 0;
	if ((mechs = calloc(p11_nmechs, sizeof(*mechs))) == NULL ||
	    (minfo = calloc(p11_nmechs, sizeof(*minfo))) == NULL) {
		free(mechs);
		json_object_put(res);
		return CKR_HOST_MEMORY;
	}
	for (size_t i = 0; i < p11_nmechs; i++) {
		/*
		 * Only CKF_SIGN: C_Verify works, in-process with the
		 * certificate's key, but a module that lists CKF_VERIFY gets
		 * pkcs11-tool --test to sign arbitrary data with raw
		 * CKM_RSA_PKCS, which the agent refuses (a SHA-2 DigestInfo only).
		 */
		CK_MECHANISM_INFO mi = { 0, 0, CKF_SIGN };
		int have = all;

		for (size_t k = 0; !all && k < json_object_array_length(arr); k++) {
			json_object *m = json_object_array_get_idx(arr, k), *v;
			CK_FLAGS fl;
			if (!json_object_object_get_ex(m, "type", &v) ||
			    (CK_MECHANISM_TYPE)json_object_get_int64(v) != p11_mechs[i].token_mech)
				continue;
			fl = json_object_object_get_ex(m, "flags", &v) ? (CK_FLAGS)json_object_get_int64(v) : 0;
			if (!(fl & CKF_SIGN))
				continue;
			have = 1;
			mi.flags = CKF_SIGN | (fl & (CKF_HW | CKF_EC_F_P | CKF_EC_NAMEDCURVE |
			    CKF_EC_UNCOMPRESS | CKF_EC_COMPRESS | CKF_EC_PARAMETERS_));
			if (json_object_object_get_ex(m, "min_key_size", &v))
				mi.ulMinKeySize = (CK_ULONG)json_object_get_int64(v);
			if (json_object_object_get_ex(m, "max_key_size", &v))
				mi.ulMaxKeySize = (CK_ULONG)json_object_get_int64(v);
		}
		if (!have)
			continue;
		mechs[n] = p11_mechs[i].type;
		minfo[n] = mi;
		n++;
	}
	json_object_put(res);
	pthread_mutex_lock(&g.lock);
	if (g.initialized && (s = slot_get(id)) != NULL && s->present && !s->mechs_loaded) {
		s->mechs = mechs;
		s->minfo = minfo;
		s->nmechs = n;
		s->mechs_loaded = 1;
		mechs = NULL;
		minfo = NULL;
	}
	pthread_mutex_unlock(&g.lock);
	free(mechs);
	free(minfo);
	return CKR_OK;
}

static int
slot_has_mech(const struct p11_slot *s, CK_MECHANISM_TYPE m)
{
	for (size_t i = 0; i < s->nmechs; i++)
		if (s->mechs[i] == m)
			return 1;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Sessions (g.lock held) */

static CK_RV
session_get(CK_SESSION_HANDLE h, struct p11_session **out, struct p11_slot **slot)
{
	*out = NULL;
	if (slot)
		*slot = NULL;
	if (!g.initialized)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	for (struct p11_session *s = g.sessions; s != NULL; s = s->next)
		if (s->handle == h) {
			*out = s;
			if (slot && (*slot = slot_get(s->slot)) == NULL)
				return CKR_GENERAL_ERROR;
			return CKR_OK;
		}
	return CKR_SESSION_HANDLE_INVALID;
}

static CK_ULONG
session_count(CK_SLOT_ID slot)
{
	CK_ULONG n = 0;

	for (struct p11_session *s = g.sessions; s != NULL; s = s->next)
		if (s->slot == slot)
			n++;
	return n;
}

static CK_ULONG
rw_session_count(CK_SLOT_ID slot)
{
	CK_ULONG n = 0;

	for (struct p11_session *s = g.sessions; s != NULL; s = s->next)
		if (s->slot == slot && (s->flags & CKF_RW_SESSION))
			n++;
	return n;
}

/* ------------------------------------------------------------------ */
/* General */

static void
atfork_prepare(void)
{
	pthread_mutex_lock(&g.lock);
}

static void
atfork_parent(void)
{
	pthread_mutex_unlock(&g.lock);
}

static void
atfork_child(void)
{
	/* The child has one thread: whatever the others held is void here. */
	pthread_mutex_init(&g.refresh_lock, NULL);
	pthread_cond_init(&g.cond, NULL);
	g.waiters = 0;
	g.forked = 1;
	pthread_mutex_unlock(&g.lock);
}

static void
register_atfork(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static int
inside_agent(void)
{
	/* Loaded by scagentd itself, the module would forward to itself. */
	extern char *program_invocation_short_name;

	return strcmp(program_invocation_short_name, "scagentd") == 0 ||
	    strcmp(program_invocation_short_name, "lt-scagentd") == 0;
}

static CK_RV
p11_Initialize(CK_VOID_PTR pInitArgs)
{
	CK_C_INITIALIZE_ARGS *a = pInitArgs;
	CK_RV rv = CKR_OK;

	if (a != NULL) {
		int nfn = (a->CreateMutex != NULL) + (a->DestroyMutex != NULL) +
		    (a->LockMutex != NULL) + (a->UnlockMutex != NULL);
		if (a->pReserved != NULL || (nfn != 0 && nfn != 4))
			return CKR_ARGUMENTS_BAD;
		/* Only the OS's locks are used: the application's cannot be. */
		if (nfn == 4 && !(a->flags & CKF_OS_LOCKING_OK))
			return CKR_CANT_LOCK;
	}
	if (inside_agent())
		return CKR_FUNCTION_FAILED;
	pthread_once(&atfork_once, register_atfork);
	pthread_mutex_lock(&g.lock);
	if (g.initialized) {
		rv = CKR_CRYPTOKI_ALREADY_INITIALIZED;
		goto out;
	}
	drop_after_fork_locked();
	if (pipe2(g.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	g.next_slot = 1;
	g.next_handle = 1;
	g.next_session = 1;
	g.listed = 0;
	g.last_refresh = 0;
	g.initialized = 1;
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

static CK_RV
p11_Finalize(CK_VOID_PTR pReserved)
{
	struct p11_session *s;

	if (pReserved != NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&g.lock);
	if (!g.initialized) {
		pthread_mutex_unlock(&g.lock);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	g.initialized = 0;
	if (write(g.wake[1], "x", 1) < 0) {
		/* the pipe already holds a byte: waiters are being woken */
	}
	while (g.waiters > 0)
		pthread_cond_wait(&g.cond, &g.lock);
	while ((s = g.sessions) != NULL) {
		g.sessions = s->next;
		session_free(s);
	}
	for (size_t i = 0; i < g.nslots; i++)
		slot_free(g.slots[i]);
	free(g.slots);
	g.slots = NULL;
	g.nslots = 0;
	for (size_t i = 0; i < g.ncache; i++)
		p11_cert_unref(g.cache[i]);
	free(g.cache);
	g.cache = NULL;
	g.ncache = 0;
	drop_after_fork_locked();
	conn_unref_locked(g.conn);
	g.conn = NULL;
	close(g.wake[0]);
	close(g.wake[1]);
	g.wake[0] = g.wake[1] = -1;
	pthread_mutex_unlock(&g.lock);
	return CKR_OK;
}

static CK_RV
p11_GetInfo(CK_INFO_PTR pInfo)
{
	CK_RV rv = CKR_OK;

	pthread_mutex_lock(&g.lock);
	if (!g.initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_unlock(&g.lock);
	if (rv != CKR_OK)
		return rv;
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	memset(pInfo, 0, sizeof(*pInfo));
	pInfo->cryptokiVersion.major = 2;
	pInfo->cryptokiVersion.minor = 40;
	pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), "scagent");
	pad(pInfo->libraryDescription, sizeof(pInfo->libraryDescription),
	    "scagent agent forwarding module");
	pInfo->libraryVersion.major = 0;
	pInfo->libraryVersion.minor = 1;
	return CKR_OK;
}

/* ------------------------------------------------------------------ */
/* Slots and tokens */

static CK_RV
p11_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount)
{
	CK_ULONG n = 0;
	CK_RV rv = CKR_OK;
	int listed;

	pthread_mutex_lock(&g.lock);
	rv = g.initialized ? CKR_OK : CKR_CRYPTOKI_NOT_INITIALIZED;
	listed = g.listed;
	pthread_mutex_unlock(&g.lock);
	if (rv != CKR_OK)
		return rv;
	if (pulCount == NULL)
		return CKR_ARGUMENTS_BAD;
	/* Re-list on the size query: the list that sizes the buffer is the one it gets. */
	if (pSlotList == NULL || !listed)
		refresh(1);
	pthread_mutex_lock(&g.lock);
	if (!g.initialized) {
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
		goto out;
	}
	for (size_t i = 0; i < g.nslots; i++)
		if (!tokenPresent || g.slots[i]->present)
			n++;
	if (pSlotList == NULL) {
		*pulCount = n;
		goto out;
	}
	if (*pulCount < n) {
		*pulCount = n;
		rv = CKR_BUFFER_TOO_SMALL;
		goto out;
	}
	n = 0;
	for (size_t i = 0; i < g.nslots; i++)
		if (!tokenPresent || g.slots[i]->present)
			pSlotList[n++] = g.slots[i]->id;
	*pulCount = n;
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

static CK_RV
p11_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo)
{
	struct p11_slot *s;
	CK_RV rv = CKR_OK;
	char desc[128];

	refresh(0);
	pthread_mutex_lock(&g.lock);
	if (!g.initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	else if (pInfo == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else if ((s = slot_get(slotID)) == NULL)
		rv = CKR_SLOT_ID_INVALID;
	else {
		memset(pInfo, 0, sizeof(*pInfo));
		snprintf(desc, sizeof(desc), "scagent: %s", s->label ? s->label : "");
		pad(pInfo->slotDescription, sizeof(pInfo->slotDescription), desc);
		pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), "scagent");
		pInfo->flags = CKF_REMOVABLE_DEVICE | (s->present ? CKF_TOKEN_PRESENT : 0);
	}
	pthread_mutex_unlock(&g.lock);
	return rv;
}

static CK_RV
p11_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo)
{
	struct p11_slot *s;
	CK_RV rv = CKR_OK;

	refresh(0);
	pthread_mutex_lock(&g.lock);
	if (!g.initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	else if (pInfo == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else if ((s = slot_get(slotID)) == NULL)
		rv = CKR_SLOT_ID_INVALID;
	else if (!s->present)
		rv = CKR_TOKEN_NOT_PRESENT;
	else {
		memset(pInfo, 0, sizeof(*pInfo));
		pad(pInfo->label, sizeof(pInfo->label), s->label);
		pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), s->manufacturer);
		pad(pInfo->model, sizeof(pInfo->model), s->model);
		pad(pInfo->serialNumber, sizeof(pInfo->serialNumber), s->serial);
		/*
		 * The token's own write protection. Through the agent nothing is
		 * written (C_CreateObject and the like are not supported), but
		 * programs such as pkcs11-tool --test open R/W sessions anyway.
		 */
		pInfo->flags = CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED;
		if (s->write_protected)
			pInfo->flags |= CKF_WRITE_PROTECTED;
		if (s->login_required)
			pInfo->flags |= CKF_LOGIN_REQUIRED;
		if (s->protected_path)
			pInfo->flags |= CKF_PROTECTED_AUTHENTICATION_PATH;
		if (s->count_low)
			pInfo->flags |= CKF_USER_PIN_COUNT_LOW;
		if (s->final_try)
			pInfo->flags |= CKF_USER_PIN_FINAL_TRY;
		if (s->locked)
			pInfo->flags |= CKF_USER_PIN_LOCKED;
		pInfo->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
		pInfo->ulSessionCount = session_count(s->id);
		pInfo->ulMaxRwSessionCount = s->write_protected ? 0 : CK_EFFECTIVELY_INFINITE;
		pInfo->ulRwSessionCount = rw_session_count(s->id);
		pInfo->ulMaxPinLen = 255;
		pInfo->ulMinPinLen = 1;
		pInfo->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
		pInfo->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
		pInfo->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
		pInfo->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
		pad(pInfo->utcTime, sizeof(pInfo->utcTime), "");
	}
	pthread_mutex_unlock(&g.lock);
	return rv;
}

/* The first pending slot event, cleared; 0 when none. g.lock held. */
static int
take_event(CK_SLOT_ID *slot)
{
	for (size_t i = 0; i < g.nslots; i++)
		if (g.slots[i]->event) {
			g.slots[i]->event = 0;
			*slot = g.slots[i]->id;
			return 1;
		}
	return 0;
}

static CK_RV
p11_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved)
{
	scagent_client *watch = NULL;
	CK_RV rv = CKR_OK;
	int wakefd;

	pthread_mutex_lock(&g.lock);
	rv = g.initialized ? CKR_OK : CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_unlock(&g.lock);
	if (rv != CKR_OK)
		return rv;
	if (pSlot == NULL || pReserved != NULL)
		return CKR_ARGUMENTS_BAD;
	refresh(1);
	pthread_mutex_lock(&g.lock);
	if (!g.initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	else if (take_event(pSlot))
		rv = CKR_OK;
	else if (flags & CKF_DONT_BLOCK)
		rv = CKR_NO_EVENT;
	else {
		g.waiters++;
		rv = CKR_NO_EVENT;	/* not returned: means "keep waiting" */
	}
	wakefd = g.wake[0];
	pthread_mutex_unlock(&g.lock);
	if (rv != CKR_NO_EVENT || (flags & CKF_DONT_BLOCK))
		return rv;

	for (;;) {
		struct pollfd p[2] = { { wakefd, POLLIN, 0 }, { -1, POLLIN, 0 } };
		char *ev = NULL;
		int r;

		if (watch == NULL && scagent_connect(NULL, &watch) == SC_OK &&
		    scagent_watch(watch) != SC_OK) {
			scagent_close(watch);
			watch = NULL;
		}
		p[1].fd = watch ? scagent_fd(watch) : -1;
		if (poll(p, 2, watch ? WAIT_POLL_MS : 1000) < 0 && errno != EINTR)
			break;
		if (p[1].revents) {
			/* Drain what came: the listing below says what changed. */
			while ((r = scagent_next_event(watch, 0, &ev)) == SC_OK) {
				scagent_free(ev);
				ev = NULL;
			}
			if (r != SC_ERR_TIMEOUT) {
				scagent_close(watch);
				watch = NULL;
			}
		}
		if (!p[0].revents)
			refresh(1);
		pthread_mutex_lock(&g.lock);
		if (!g.initialized) {
			rv = CKR_CRYPTOKI_NOT_INITIALIZED;
			break;
		}
		if (take_event(pSlot)) {
			rv = CKR_OK;
			break;
		}
		pthread_mutex_unlock(&g.lock);
	}
	g.waiters--;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.lock);
	scagent_close(watch);
	return rv;
}

static CK_RV
p11_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount)
{
	struct p11_slot *s;
	CK_RV rv;

	if (pulCount == NULL)
		return if_initialized(CKR_ARGUMENTS_BAD);
	refresh(0);
	if ((rv = slot_load_mechs(slotID)) != CKR_OK)
		return rv;
	pthread_mutex_lock(&g.lock);
	if ((rv = present_slot(slotID, &s)) == CKR_OK) {
		if (pMechanismList != NULL && *pulCount < s->nmechs)
			rv = CKR_BUFFER_TOO_SMALL;
		else if (pMechanismList != NULL && s->nmechs > 0)
			memcpy(pMechanismList, s->mechs, s->nmechs * sizeof(*s->mechs));
		*pulCount = s->nmechs;
	}
	pthread_mutex_unlock(&g.lock);
	return rv;
}

static CK_RV
p11_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo)
{
	struct p11_slot *s;
	CK_RV rv;

	if (pInfo == NULL)
		return if_initialized(CKR_ARGUMENTS_BAD);
	refresh(0);
	if ((rv = slot_load_mechs(slotID)) != CKR_OK)
		return rv;
	pthread_mutex_lock(&g.lock);
	if ((rv = present_slot(slotID, &s)) == CKR_OK) {
		rv = CKR_MECHANISM_INVALID;
		for (size_t i = 0; i < s->nmechs; i++)
			if (s->mechs[i] == type) {
				*pInfo = s->minfo[i];
				rv = CKR_OK;
			}
	}
	pthread_mutex_unlock(&g.lock);
	return rv;
}

/* ------------------------------------------------------------------ */
/* Sessions */

static CK_RV
p11_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication,
    CK_NOTIFY Notify, CK_SESSION_HANDLE_PTR phSession)
{
	struct p11_session *sess;
	struct p11_slot *s;
	CK_RV rv = CKR_OK;

	refresh(0);
	pthread_mutex_lock(&g.lock);
	if (!g.initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	else if (phSession == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else if ((s = slot_get(slotID)) == NULL)
		rv = CKR_SLOT_ID_INVALID;
	else if (!s->present)
		rv = CKR_TOKEN_NOT_PRESENT;
	else if (!(flags & CKF_SERIAL_SESSION))
		rv = CKR_SESSION_PARALLEL_NOT_SUPPORTED;
	else if ((flags & CKF_RW_SESSION) && s->write_protected)
		rv = CKR_TOKEN_WRITE_PROTECTED;
	else if ((sess = calloc(1, sizeof(*sess))) == NULL)
		rv = CKR_HOST_MEMORY;
	else {
		sess->handle = g.next_session++;
		sess->slot = slotID;
		sess->flags = CKF_SERIAL_SESSION | (flags & CKF_RW_SESSION);
		sess->next = g.sessions;
		g.sessions = sess;
		*phSession = sess->handle;
	}
	pthread_mutex_unlock(&g.lock);
	return rv;
}

static CK_RV
p11_CloseSession(CK_SESSION_HANDLE hSession)
{
	struct p11_session *s, **pp;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, NULL)) == CKR_OK) {
		for (pp = &g.sessions; *pp != s; pp = &(*pp)->next)
			;
		*pp = s->next;
		session_free(s);
	}
	pthread_mutex_unlock(&g.lock);
	return rv;
}

static CK_RV
p11_CloseAllSessions(CK_SLOT_ID slotID)
{
	CK_RV rv = CKR_OK;

	pthread_mutex_lock(&g.lock);
	if (!g.initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	else if (slot_get(slotID) == NULL)
		rv = CKR_SLOT_ID_INVALID;
	else
		sessions_close_slot(slotID);
	pthread_mutex_unlock(&g.lock);
	return rv;
}

static CK_RV
p11_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo)
{
	struct p11_session *s;
	struct p11_slot *slot;
	CK_RV rv;

	refresh(0);
	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, &slot)) == CKR_OK) {
		if (pInfo == NULL)
			rv = CKR_ARGUMENTS_BAD;
		else {
			pInfo->slotID = s->slot;
			pInfo->flags = s->flags;
			if (s->flags & CKF_RW_SESSION)
				pInfo->state = slot->logged_in ? CKS_RW_USER_FUNCTIONS : CKS_RW_PUBLIC_SESSION;
			else
				pInfo->state = slot->logged_in ? CKS_RO_USER_FUNCTIONS : CKS_RO_PUBLIC_SESSION;
			pInfo->ulDeviceError = 0;
		}
	}
	pthread_mutex_unlock(&g.lock);
	return rv;
}

static CK_RV
p11_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
	struct agent_conn *ac;
	struct p11_session *s;
	struct p11_slot *slot;
	char *label = NULL, *ident = NULL, *pin = NULL;
	int r = SC_ERR_AGENT_UNREACHABLE;
	CK_RV rv;

	if (userType != CKU_CONTEXT_SPECIFIC)
		refresh(1);	/* a per-signature PIN concerns the operation, not the token */
	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, &slot)) != CKR_OK)
		goto out_locked;
	if (userType != CKU_USER && userType != CKU_CONTEXT_SPECIFIC) {
		/* The agent logs in users only: no SO. */
		rv = CKR_USER_TYPE_INVALID;
		goto out_locked;
	}
	if (pPin == NULL && ulPinLen != 0) {
		rv = CKR_ARGUMENTS_BAD;
		goto out_locked;
	}
	if (pPin != NULL && memchr(pPin, '\0', ulPinLen) != NULL) {
		rv = CKR_ARGUMENTS_BAD;
		goto out_locked;
	}
	if (userType == CKU_CONTEXT_SPECIFIC) {
		/*
		 * The PIN for the signature being made with a key that asks for
		 * it every time: kept for C_Sign, which hands it to the agent,
		 * which tries it once. A NULL PIN leaves it to the agent's
		 * pinentry.
		 */
		if (!s->signing || s->sign_busy || !s->sign.always_auth)
			rv = CKR_OPERATION_NOT_INITIALIZED;
		else if (pPin != NULL) {
			if (s->sign.ctx_pin != NULL) {
				OPENSSL_cleanse(s->sign.ctx_pin, strlen(s->sign.ctx_pin));
				free(s->sign.ctx_pin);
			}
			if ((s->sign.ctx_pin = malloc(ulPinLen + 1)) == NULL)
				rv = CKR_HOST_MEMORY;
			else {
				memcpy(s->sign.ctx_pin, pPin, ulPinLen);
				s->sign.ctx_pin[ulPinLen] = '\0';
			}
		}
		goto out_locked;
	}
	if (slot->app_login) {
		rv = CKR_USER_ALREADY_LOGGED_IN;
		goto out_locked;
	}
	if (slot->logged_in && pPin == NULL) {
		/*
		 * The agent is logged in to the token already (one login for all
		 * its clients), and no PIN was given to check: this application
		 * is logged in too. A PIN given is sent: the agent checks it
		 * against the one it logged in with, without the card.
		 */
		slot->app_login = 1;
		goto out_locked;
	}
	if ((label = slot_token_uri(slot)) == NULL || (ident = strdup(slot->ident)) == NULL) {
		free(label);
		rv = CKR_HOST_MEMORY;
		goto out_locked;
	}
	pthread_mutex_unlock(&g.lock);
	if (pPin != NULL) {
		if ((pin = malloc(ulPinLen + 1)) == NULL) {
			free(label);
			free(ident);
			return CKR_HOST_MEMORY;
		}
		memcpy(pin, pPin, ulPinLen);
		pin[ulPinLen] = '\0';
	}
	/* NULL PIN: the agent asks for it itself (pinentry), if it can. */
	if ((ac = conn_get()) != NULL)
		r = scagent_login(ac->c, label, pin, 0);
	conn_put(ac, r);
	if (pin != NULL) {
		OPENSSL_cleanse(pin, ulPinLen);
		free(pin);
	}
	refresh(1);
	if (r == SC_OK || r == SC_ERR_ALREADY) {
		/* "already": someone logged the agent in meanwhile; that login is ours. */
		pthread_mutex_lock(&g.lock);
		for (size_t i = 0; i < g.nslots; i++)
			if (g.slots[i]->present && strcmp(g.slots[i]->ident, ident) == 0)
				g.slots[i]->app_login = 1;
		pthread_mutex_unlock(&g.lock);
		r = SC_OK;
	}
	free(label);
	free(ident);
	if (r == SC_ERR_NOT_LOGGED_IN && pPin == NULL)
		return CKR_ARGUMENTS_BAD;	/* no PIN, and the agent has no way to ask */
	return ckr_from_agent(r);
out_locked:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

static CK_RV
p11_Logout(CK_SESSION_HANDLE hSession)
{
	struct agent_conn *ac;
	struct p11_session *s;
	struct p11_slot *slot;
	char *label = NULL, *ident = NULL;
	int r = SC_ERR_AGENT_UNREACHABLE;
	CK_RV rv;

	refresh(1);
	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, &slot)) == CKR_OK) {
		if (!slot->logged_in)
			rv = CKR_USER_NOT_LOGGED_IN;
		else if ((label = slot_token_uri(slot)) == NULL || (ident = strdup(slot->ident)) == NULL)
			rv = CKR_HOST_MEMORY;
	}
	pthread_mutex_unlock(&g.lock);
	if (rv != CKR_OK) {
		free(label);
		return rv;
	}
	if ((ac = conn_get()) != NULL)
		r = scagent_logout(ac->c, label);
	conn_put(ac, r);
	pthread_mutex_lock(&g.lock);
	for (size_t i = 0; i < g.nslots; i++)
		if (g.slots[i]->present && strcmp(g.slots[i]->ident, ident) == 0)
			g.slots[i]->app_login = 0;
	pthread_mutex_unlock(&g.lock);
	free(label);
	free(ident);
	refresh(1);
	return ckr_from_agent(r);
}

/* ------------------------------------------------------------------ */
/* Objects */

static CK_RV
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

static CK_RV
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

static CK_RV
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
static struct p11_object *
session_object(struct p11_slot *slot, CK_OBJECT_HANDLE h)
{
	struct p11_object *o = slot_object(slot, h);

	return o != NULL && object_visible(slot, o) ? o : NULL;
}

static CK_RV
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

static CK_RV
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

/* ------------------------------------------------------------------ */
/* Signing */

static void
sign_end(struct p11_session *s)
{
	p11_signop_clear(&s->sign);
	s->signing = 0;
	s->sign_busy = 0;
}

/*
 * C_SignInit (a private key) and C_VerifyInit (a public key): the same
 * mechanisms and checks, into the session's sign or verify operation.
 */
static CK_RV
op_init(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey, int verify)
{
	struct p11_session *s;
	struct p11_slot *slot;
	struct p11_object *o;
	CK_SLOT_ID slot_id = 0;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, &slot)) == CKR_OK)
		slot_id = slot->id;
	pthread_mutex_unlock(&g.lock);
	if (rv != CKR_OK)
		return rv;
	if ((rv = slot_load_mechs(slot_id)) != CKR_OK)
		return rv;
	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, &slot)) != CKR_OK)
		goto out;
	if (pMechanism == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else if (verify ? s->verifying : s->signing)
		rv = CKR_OPERATION_ACTIVE;
	else if ((o = session_object(slot, hKey)) == NULL || o->cls == CKO_CERTIFICATE)
		rv = CKR_KEY_HANDLE_INVALID;
	else if (o->cls != (verify ? CKO_PUBLIC_KEY : CKO_PRIVATE_KEY))
		rv = CKR_KEY_FUNCTION_NOT_PERMITTED;	/* a private key signs, its public key verifies */
	else if (!slot_has_mech(slot, pMechanism->mechanism))
		rv = CKR_MECHANISM_INVALID;
	else if ((rv = p11_signop_init(verify ? &s->verify : &s->sign, pMechanism, o)) == CKR_OK)
		*(verify ? &s->verifying : &s->signing) = 1;
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

static CK_RV
p11_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	return op_init(hSession, pMechanism, hKey, 0);
}

/*
 * The end of C_Sign and C_SignFinal: size rules, then the agent. Called with
 * g.lock held and s signing; returns with g.lock released.
 */
static CK_RV
sign_complete(struct p11_session *s, CK_SESSION_HANDLE h, CK_BYTE_PTR pSignature,
    CK_ULONG_PTR pulSignatureLen)
{
	struct agent_conn *ac;
	struct p11_signop op;
	struct p11_session *again;
	unsigned char dgst[EVP_MAX_MD_SIZE], *sig = NULL;
	size_t dlen = 0, siglen = 0;
	const char *alg;
	char *ref = NULL, *pin = NULL;
	CK_ULONG need = s->sign.cert->siglen;
	int r = SC_ERR_AGENT_UNREACHABLE;
	CK_RV rv;

	if (pSignature == NULL) {
		*pulSignatureLen = need;
		pthread_mutex_unlock(&g.lock);
		return CKR_OK;
	}
	if (*pulSignatureLen < need) {
		*pulSignatureLen = need;
		pthread_mutex_unlock(&g.lock);
		return CKR_BUFFER_TOO_SMALL;
	}
	if ((rv = p11_signop_prepare(&s->sign, &alg, dgst, &dlen)) != CKR_OK ||
	    (ref = strdup(s->sign.ref)) == NULL ||
	    (s->sign.ctx_pin != NULL && (pin = strdup(s->sign.ctx_pin)) == NULL)) {
		sign_end(s);
		pthread_mutex_unlock(&g.lock);
		OPENSSL_cleanse(dgst, sizeof(dgst));
		free(ref);
		return rv != CKR_OK ? rv : CKR_HOST_MEMORY;
	}
	/* What finishing needs, kept while the agent works without the lock. */
	memset(&op, 0, sizeof(op));
	op.spec = s->sign.spec;
	op.cert = s->sign.cert;
	__atomic_add_fetch(&op.cert->refs, 1, __ATOMIC_ACQ_REL);
	s->sign_busy = 1;
	pthread_mutex_unlock(&g.lock);

	if ((ac = conn_get()) != NULL)
		r = scagent_sign_pin(ac->c, ref, alg, 1, dgst, dlen, pin, 0, &sig, &siglen);
	conn_put(ac, r);
	OPENSSL_cleanse(dgst, sizeof(dgst));
	if (pin != NULL)
		OPENSSL_cleanse(pin, strlen(pin));
	free(pin);
	free(ref);
	rv = ckr_from_agent(r);
	if (r == SC_ERR_NOT_FOUND || r == SC_ERR_KEY || r == SC_ERR_MECHANISM)
		rv = CKR_FUNCTION_FAILED;
	if (r == SC_ERR_INVALID)
		rv = CKR_DATA_LEN_RANGE;
	if (rv == CKR_OK)
		rv = p11_signop_finish(&op, sig, siglen, pSignature, pulSignatureLen);
	scagent_free(sig);
	p11_cert_unref(op.cert);

	pthread_mutex_lock(&g.lock);
	if (!g.initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	else if (session_get(h, &again, NULL) == CKR_OK && again->signing && again->sign_busy)
		sign_end(again);
	pthread_mutex_unlock(&g.lock);
	if (r == SC_ERR_NOT_LOGGED_IN)
		refresh(1);	/* the agent lost its login: so did we */
	return rv;
}

static CK_RV
p11_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
    CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	struct p11_session *s;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, NULL)) != CKR_OK)
		goto out;
	if (!s->signing) {
		rv = CKR_OPERATION_NOT_INITIALIZED;
		goto out;
	}
	if (s->sign_busy || s->sign.multi) {
		rv = CKR_OPERATION_ACTIVE;
		goto out;
	}
	if (pulSignatureLen == NULL || (pData == NULL && ulDataLen > 0)) {
		sign_end(s);
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	if (pSignature != NULL && *pulSignatureLen >= s->sign.cert->siglen) {
		/* Only a call that signs consumes the data. */
		if ((rv = p11_signop_update(&s->sign, pData, ulDataLen)) != CKR_OK) {
			sign_end(s);
			goto out;
		}
	}
	return sign_complete(s, hSession, pSignature, pulSignatureLen);
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

static void verify_end(struct p11_session *s);

/* C_SignUpdate and C_VerifyUpdate: a part of the data; an error ends the operation. */
static CK_RV
op_update(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, int verify)
{
	struct p11_session *s;
	struct p11_signop *op;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, NULL)) != CKR_OK)
		goto out;
	op = verify ? &s->verify : &s->sign;
	if (!(verify ? s->verifying : s->signing))
		rv = CKR_OPERATION_NOT_INITIALIZED;
	else if (!verify && s->sign_busy)
		rv = CKR_OPERATION_ACTIVE;
	else if ((pPart == NULL && ulPartLen > 0) ||
	    (rv = p11_signop_update(op, pPart, ulPartLen)) != CKR_OK) {
		if (rv == CKR_OK)
			rv = CKR_ARGUMENTS_BAD;
		if (verify)
			verify_end(s);
		else
			sign_end(s);
	} else
		op->multi = 1;
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

static CK_RV
p11_SignUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
	return op_update(hSession, pPart, ulPartLen, 0);
}

static CK_RV
p11_SignFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	struct p11_session *s;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, NULL)) != CKR_OK)
		goto out;
	if (!s->signing) {
		rv = CKR_OPERATION_NOT_INITIALIZED;
		goto out;
	}
	if (s->sign_busy) {
		rv = CKR_OPERATION_ACTIVE;
		goto out;
	}
	if (pulSignatureLen == NULL) {
		sign_end(s);
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	return sign_complete(s, hSession, pSignature, pulSignatureLen);
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

/* ------------------------------------------------------------------ */
/* Verifying: in-process, with the public key of the certificate */

static void
verify_end(struct p11_session *s)
{
	p11_signop_clear(&s->verify);
	s->verifying = 0;
}

static CK_RV
p11_VerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	return op_init(hSession, pMechanism, hKey, 1);
}

/*
 * C_Verify (single: the data, then the signature) and C_VerifyFinal (the
 * signature after C_VerifyUpdate): either ends the operation.
 */
static CK_RV
verify_finish(CK_SESSION_HANDLE hSession, int single, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
    CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
	struct p11_session *s;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, NULL)) != CKR_OK)
		goto out;
	if (!s->verifying) {
		rv = CKR_OPERATION_NOT_INITIALIZED;
		goto out;
	}
	if (single && s->verify.multi) {
		rv = CKR_OPERATION_ACTIVE;
		goto out;
	}
	if (pSignature == NULL || (single && pData == NULL && ulDataLen > 0))
		rv = CKR_ARGUMENTS_BAD;
	else if (!single || (rv = p11_signop_update(&s->verify, pData, ulDataLen)) == CKR_OK)
		rv = p11_signop_verify(&s->verify, pSignature, ulSignatureLen);
	verify_end(s);
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

static CK_RV
p11_Verify(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
    CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
	return verify_finish(hSession, 1, pData, ulDataLen, pSignature, ulSignatureLen);
}

static CK_RV
p11_VerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
	return op_update(hSession, pPart, ulPartLen, 1);
}

static CK_RV
p11_VerifyFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
	return verify_finish(hSession, 0, NULL, 0, pSignature, ulSignatureLen);
}

/* ------------------------------------------------------------------ */
/* What the agent does not offer */

static CK_RV
not_supported(void)
{
	return if_initialized(CKR_FUNCTION_NOT_SUPPORTED);
}

/* Functions on a session that this module does not offer. */
static CK_RV
session_not_supported(CK_SESSION_HANDLE h)
{
	struct p11_session *s;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(h, &s, NULL)) == CKR_OK)
		rv = CKR_FUNCTION_NOT_SUPPORTED;
	pthread_mutex_unlock(&g.lock);
	return rv;
}

static CK_RV
p11_InitToken(CK_SLOT_ID a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d)
{
	return not_supported();
}

static CK_RV
p11_InitPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR b, CK_ULONG c)
{
	return session_not_supported(h);
}

static CK_RV
p11_SetPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d, CK_ULONG e)
{
	return session_not_supported(h);
}

static CK_RV
p11_GetOperationState(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG_PTR c)
{
	return session_not_supported(h);
}

static CK_RV
p11_SetOperationState(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE d,
    CK_OBJECT_HANDLE e)
{
	return session_not_supported(h);
}

static CK_RV
p11_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE_PTR d)
{
	return session_not_supported(h);
}

static CK_RV
p11_CopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d,
    CK_OBJECT_HANDLE_PTR e)
{
	return session_not_supported(h);
}

static CK_RV
p11_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE b)
{
	return session_not_supported(h);
}

static CK_RV
p11_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d)
{
	return session_not_supported(h);
}

static CK_RV
p11_InitMech(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c)
{
	return session_not_supported(h);
}

static CK_RV
p11_OneShot(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e)
{
	return session_not_supported(h);
}

static CK_RV
p11_Update(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG c)
{
	return session_not_supported(h);
}

static CK_RV
p11_Final(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG_PTR c)
{
	return session_not_supported(h);
}

static CK_RV
p11_DigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b)
{
	return session_not_supported(h);
}

static CK_RV
p11_DigestKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE b)
{
	return session_not_supported(h);
}


static CK_RV
p11_GenerateKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d,
    CK_OBJECT_HANDLE_PTR e)
{
	return session_not_supported(h);
}

static CK_RV
p11_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d,
    CK_ATTRIBUTE_PTR e, CK_ULONG f, CK_OBJECT_HANDLE_PTR g_, CK_OBJECT_HANDLE_PTR i)
{
	return session_not_supported(h);
}

static CK_RV
p11_WrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_OBJECT_HANDLE d,
    CK_BYTE_PTR e, CK_ULONG_PTR f)
{
	return session_not_supported(h);
}

static CK_RV
p11_UnwrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_BYTE_PTR d,
    CK_ULONG e, CK_ATTRIBUTE_PTR f, CK_ULONG g_, CK_OBJECT_HANDLE_PTR i)
{
	return session_not_supported(h);
}

static CK_RV
p11_DeriveKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_ATTRIBUTE_PTR d,
    CK_ULONG e, CK_OBJECT_HANDLE_PTR f)
{
	return session_not_supported(h);
}

/* No random number generator on these tokens (no CKF_RNG). */
static CK_RV
p11_SeedRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG c)
{
	CK_RV rv = session_not_supported(h);

	return rv == CKR_FUNCTION_NOT_SUPPORTED ? CKR_RANDOM_NO_RNG : rv;
}

static CK_RV
p11_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG c)
{
	CK_RV rv = session_not_supported(h);

	return rv == CKR_FUNCTION_NOT_SUPPORTED ? CKR_RANDOM_NO_RNG : rv;
}

/* Legacy functions: the standard says they answer CKR_FUNCTION_NOT_PARALLEL. */
static CK_RV
p11_GetFunctionStatus(CK_SESSION_HANDLE h)
{
	CK_RV rv = session_not_supported(h);

	return rv == CKR_FUNCTION_NOT_SUPPORTED ? CKR_FUNCTION_NOT_PARALLEL : rv;
}

static CK_RV
p11_CancelFunction(CK_SESSION_HANDLE h)
{
	CK_RV rv = session_not_supported(h);

	return rv == CKR_FUNCTION_NOT_SUPPORTED ? CKR_FUNCTION_NOT_PARALLEL : rv;
}

static CK_RV p11_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList);

static CK_FUNCTION_LIST function_list = {
	{ 2, 40 },
	p11_Initialize,
	p11_Finalize,
	p11_GetInfo,
	p11_GetFunctionList,
	p11_GetSlotList,
	p11_GetSlotInfo,
	p11_GetTokenInfo,
	p11_GetMechanismList,
	p11_GetMechanismInfo,
	p11_InitToken,
	p11_InitPIN,
	p11_SetPIN,
	p11_OpenSession,
	p11_CloseSession,
	p11_CloseAllSessions,
	p11_GetSessionInfo,
	p11_GetOperationState,
	p11_SetOperationState,
	p11_Login,
	p11_Logout,
	p11_CreateObject,
	p11_CopyObject,
	p11_DestroyObject,
	p11_GetObjectSize,
	p11_GetAttributeValue,
	p11_SetAttributeValue,
	p11_FindObjectsInit,
	p11_FindObjects,
	p11_FindObjectsFinal,
	p11_InitMech,		/* C_EncryptInit */
	p11_OneShot,		/* C_Encrypt */
	p11_OneShot,		/* C_EncryptUpdate */
	p11_Final,		/* C_EncryptFinal */
	p11_InitMech,		/* C_DecryptInit */
	p11_OneShot,		/* C_Decrypt */
	p11_OneShot,		/* C_DecryptUpdate */
	p11_Final,		/* C_DecryptFinal */
	p11_DigestInit,
	p11_OneShot,		/* C_Digest */
	p11_Update,		/* C_DigestUpdate */
	p11_DigestKey,
	p11_Final,		/* C_DigestFinal */
	p11_SignInit,
	p11_Sign,
	p11_SignUpdate,
	p11_SignFinal,
	p11_InitMech,		/* C_SignRecoverInit */
	p11_OneShot,		/* C_SignRecover */
	p11_VerifyInit,
	p11_Verify,
	p11_VerifyUpdate,
	p11_VerifyFinal,
	p11_InitMech,		/* C_VerifyRecoverInit */
	p11_OneShot,		/* C_VerifyRecover */
	p11_OneShot,		/* C_DigestEncryptUpdate */
	p11_OneShot,		/* C_DecryptDigestUpdate */
	p11_OneShot,		/* C_SignEncryptUpdate */
	p11_OneShot,		/* C_DecryptVerifyUpdate */
	p11_GenerateKey,
	p11_GenerateKeyPair,
	p11_WrapKey,
	p11_UnwrapKey,
	p11_DeriveKey,
	p11_SeedRandom,
	p11_GenerateRandom,
	p11_GetFunctionStatus,
	p11_CancelFunction,
	p11_WaitForSlotEvent,
};

static CK_RV
p11_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
	if (ppFunctionList == NULL)
		return CKR_ARGUMENTS_BAD;
	*ppFunctionList = &function_list;
	return CKR_OK;
}

/* ------------------------------------------------------------------ */
/* Exports: C_GetFunctionList and, for programs that link directly, every C_ name. */

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR p) { return p11_GetFunctionList(p); }
EXPORT CK_RV C_Initialize(CK_VOID_PTR a) { return p11_Initialize(a); }
EXPORT CK_RV C_Finalize(CK_VOID_PTR a) { return p11_Finalize(a); }
EXPORT CK_RV C_GetInfo(CK_INFO_PTR a) { return p11_GetInfo(a); }
EXPORT CK_RV C_GetSlotList(CK_BBOOL a, CK_SLOT_ID_PTR b, CK_ULONG_PTR c) { return p11_GetSlotList(a, b, c); }
EXPORT CK_RV C_GetSlotInfo(CK_SLOT_ID a, CK_SLOT_INFO_PTR b) { return p11_GetSlotInfo(a, b); }
EXPORT CK_RV C_GetTokenInfo(CK_SLOT_ID a, CK_TOKEN_INFO_PTR b) { return p11_GetTokenInfo(a, b); }
EXPORT CK_RV C_WaitForSlotEvent(CK_FLAGS a, CK_SLOT_ID_PTR b, CK_VOID_PTR c) { return p11_WaitForSlotEvent(a, b, c); }
EXPORT CK_RV C_GetMechanismList(CK_SLOT_ID a, CK_MECHANISM_TYPE_PTR b, CK_ULONG_PTR c) { return p11_GetMechanismList(a, b, c); }
EXPORT CK_RV C_GetMechanismInfo(CK_SLOT_ID a, CK_MECHANISM_TYPE b, CK_MECHANISM_INFO_PTR c) { return p11_GetMechanismInfo(a, b, c); }
EXPORT CK_RV C_OpenSession(CK_SLOT_ID a, CK_FLAGS b, CK_VOID_PTR c, CK_NOTIFY d, CK_SESSION_HANDLE_PTR e) { return p11_OpenSession(a, b, c, d, e); }
EXPORT CK_RV C_CloseSession(CK_SESSION_HANDLE a) { return p11_CloseSession(a); }
EXPORT CK_RV C_CloseAllSessions(CK_SLOT_ID a) { return p11_CloseAllSessions(a); }
EXPORT CK_RV C_GetSessionInfo(CK_SESSION_HANDLE a, CK_SESSION_INFO_PTR b) { return p11_GetSessionInfo(a, b); }
EXPORT CK_RV C_Login(CK_SESSION_HANDLE a, CK_USER_TYPE b, CK_UTF8CHAR_PTR c, CK_ULONG d) { return p11_Login(a, b, c, d); }
EXPORT CK_RV C_Logout(CK_SESSION_HANDLE a) { return p11_Logout(a); }
EXPORT CK_RV C_FindObjectsInit(CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c) { return p11_FindObjectsInit(a, b, c); }
EXPORT CK_RV C_FindObjects(CK_SESSION_HANDLE a, CK_OBJECT_HANDLE_PTR b, CK_ULONG c, CK_ULONG_PTR d) { return p11_FindObjects(a, b, c, d); }
EXPORT CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE a) { return p11_FindObjectsFinal(a); }
EXPORT CK_RV C_GetAttributeValue(CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d) { return p11_GetAttributeValue(a, b, c, d); }
EXPORT CK_RV C_GetObjectSize(CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ULONG_PTR c) { return p11_GetObjectSize(a, b, c); }
EXPORT CK_RV C_SignInit(CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c) { return p11_SignInit(a, b, c); }
EXPORT CK_RV C_Sign(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e) { return p11_Sign(a, b, c, d, e); }
EXPORT CK_RV C_SignUpdate(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c) { return p11_SignUpdate(a, b, c); }
EXPORT CK_RV C_SignFinal(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c) { return p11_SignFinal(a, b, c); }
