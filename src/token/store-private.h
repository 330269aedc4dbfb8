/*
 * The token store's insides, shared by the files of src/token/ and by
 * nothing else (the project sees token/token.h only).
 *
 *   store.c    modules, slots, tokens, sessions, refresh
 *   objects.c  a token's object set (certificates, private keys), key pairs
 *   refs.c     REF resolution: pkcs11: URI, fingerprint prefix, label, key REFs
 *   login.c    login, logout, the PIN check hash, lockout rules, idle logins
 *   sign.c     one signature (algorithms: common/alg.c), verified before it is returned
 *   report.c   the JSON the store gives: list, find, key pairs, mechanisms
 *   vsc.c      TPM virtual smart cards: create, delete, list, TPM lockout
 *   enrol.c    key generation and certificate import
 *
 * Threads. The store is called from the agent's client threads (one per
 * client), its monitor thread (refresh, idle logouts) and, in the CLI's
 * --direct mode, from one thread. Modules are added before any of them runs:
 * st->mods and st->nmods never change after that, and are read unlocked.
 *
 * Locks, in the order they are taken (never the other way round):
 * st->refresh_lock, then a module's m->lock, then st->lock, then a token's
 * t->lock. t->check_lock is taken with none of the others held.
 *
 * st->refresh_lock: one slot re-reading at a time. Held for a whole refresh
 * (store_refresh; sc_store_refresh_try only tries it and answers busy), for
 * module_reinit and for sc_store_init_token, which change a module's slots.
 *
 * m->lock (struct sc_module): serialises libp11 calls on the module's ctx
 * and the walk of its slot list; module_reinit replaces ctx under it. Held
 * by refresh_module, module_reinit and sc_store_init_token, across module
 * calls (C_GetSlotList, C_GetTokenInfo, C_InitToken, ...).
 *
 * st->lock: the token array (st->toks, st->ntoks) and each token's seen mark,
 * st->pending, and st->errors as list reads it. A token reference is taken
 * out of the array only under it (tokens_get, store_find_slot). Held across
 * no module call but C_CloseSession, when store_drop_unseen drops the last
 * reference to a token that went away (its sessions close with it).
 *
 * t->lock (struct sc_token): t->info, the idle session pool, login_session,
 * logged_in, pin_check, last_use, login_ends, dead, and the t->objs pointer
 * (swapped whole by token_reload; readers take a reference with token_objs). Held
 * for a few assignments only, never across a module call: C_Login, C_Sign
 * and the rest run with no lock, so a slow token holds up only its callers.
 *
 * t->check_lock: PINs checked against the hash of the login's PIN one at a
 * time per token, with a pause after a wrong one (login_check), so guessing
 * against the hash goes no faster than a try a second.
 *
 * Reference counts (t->refs, o->refs) are atomic. A token leaves st->toks
 * under st->lock and is freed with its last reference; an object set is
 * never changed, only replaced, and is freed with its last reference.
 */
#ifndef SC_STORE_PRIVATE_H
#define SC_STORE_PRIVATE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>
#include <libp11.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>
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
	/* The handles found, sorted: another program's changes show as other handles. */
	CK_OBJECT_HANDLE *cert_h, *key_h;
	CK_ULONG ncert_h, nkey_h;
};

struct pin_check;			/* login.c */

struct sc_token {
	int refs;			/* atomic; taken from st->toks under st->lock */
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
	struct pin_check *pin_check;	/* of the PIN the agent logged in with, or NULL */
	pthread_mutex_t check_lock;	/* PINs checked against it one at a time */
	uint64_t last_use;
	uint64_t login_ends;		/* sc_now_ms() time a login with a lifetime ends, or 0 */
	struct sc_objset *objs;
	int seen;			/* refresh mark */
	int dead;			/* its module was re-initialised: handles are void */
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
	char *vsc_real;			/* realpath of the TPM virtual smart card module, or NULL */
	json_object *pending;		/* events not reported yet (module_reinit), under lock */
};

/* A key pair: public and private key objects with one CKA_ID. */
struct sc_kp {
	unsigned char *id;
	size_t idlen;
	char *label;
	CK_KEY_TYPE type;
	CK_OBJECT_HANDLE priv, pub;	/* CK_INVALID_HANDLE: absent or not visible */
	EVP_PKEY *pk;			/* the public key, NULL when unknown */
	int always_auth;		/* the private key has CKA_ALWAYS_AUTHENTICATE */
};

/* The certificate a REF names. */
struct match {
	struct sc_token *tok;		/* referenced */
	struct sc_objset *objs;		/* referenced */
	size_t idx;			/* certificate index */
};

/* The key pair a key REF names. */
struct kmatch {
	struct sc_token *tok;		/* referenced */
	struct sc_kp kp;		/* owned copy */
};

/* store.c: tokens, sessions */
void token_unref(struct sc_token *t);
int token_has_mech(struct sc_token *t, CK_MECHANISM_TYPE m);
/* The tokens now present, each with a reference held; free with tokens_put. */
struct sc_token **tokens_get(struct sc_store *st, size_t *n);
void tokens_put(struct sc_token **v, size_t n);
/* The one token a label or token URI names (referenced), else NULL and *r says why. */
struct sc_token *store_find_label(struct sc_store *st, const char *label, int *r);
void token_update_info(struct sc_token *t);
/* Append {"event": what, "token", "reader", "module", "slot", "serial"} to ev (may be NULL). */
void token_event(json_object *ev, const char *what, const struct sc_token *t);
int session_get(struct sc_token *t, CK_SESSION_HANDLE *s);
/* Give a session back; bad says it failed in a way that makes it unusable. */
void session_put(struct sc_token *t, CK_SESSION_HANDLE s, int bad);
int ckr_session_bad(CK_RV rv);

/* objects.c: object sets and key pairs */
void objset_unref(struct sc_objset *o);
/* t's object set, referenced (NULL when it has none). */
struct sc_objset *token_objs(struct sc_token *t);
char *make_uri(const CK_TOKEN_INFO *ti, CK_OBJECT_CLASS cls, const unsigned char *id,
    size_t idlen, const char *label);
int token_reload(struct sc_token *t, int keys_only);
int token_objects_changed(struct sc_token *t);
void kps_free(struct sc_kp *v, size_t n);
/* The public key held by a key object (RSA private keys carry it too). */
EVP_PKEY *object_pkey(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
    CK_KEY_TYPE type);
/* Public and private key objects of a token, paired by CKA_ID. */
int token_keypairs(struct sc_token *t, CK_SESSION_HANDLE s, struct sc_kp **out, size_t *nout);

/* refs.c: references */
void match_clear(struct match *m);
int store_resolve(struct sc_store *st, const char *ref, struct match *out,
    json_object **candidates);
void kmatch_clear(struct kmatch *m);
int key_resolve(struct sc_store *st, const char *ref, struct kmatch *out,
    json_object **candidates);

/* login.c: login state and PIN rules */
/* The login is gone: so is what it kept of the PIN. Under t->lock. */
void login_forget_locked(struct sc_token *t);
int token_logout(struct sc_token *t);
int ctx_pin_check(struct sc_store *st, struct sc_token *t, const struct sc_sign_pin *sp);

/* report.c: JSON */
/* 1: c's private key is there (*key), 0: not, -1: unknown (keys hidden until login). */
int key_status(const struct sc_objset *o, const struct sc_cert *c, const struct sc_key **key);
json_object *token_flags_json(const CK_TOKEN_INFO *ti, int logged_in);
STACK_OF(X509) *objset_intermediates(const struct sc_objset *o);
json_object *cert_json(struct sc_token *t, const struct sc_objset *o, const struct sc_cert *c,
    X509_STORE *anchors, STACK_OF(X509) *inter);
json_object *kp_json(struct sc_token *t, const struct sc_kp *k);

/* vsc.c: a TPM's dictionary-attack state as PIN flags; whether m is tpm2-pkcs11 */
CK_FLAGS tpm_pin_flags(struct sc_store *st, struct sc_token *t);
int module_is_tpm2_pkcs11(struct sc_module *m);

#endif
