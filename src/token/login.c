/*
 * Login state: C_Login with the user PIN, tried exactly once; the rules that
 * spend no try on a locked PIN or, unconfirmed, on the final one (for a
 * login and for a per-signature PIN); the salted hash of the PIN a login
 * used, which checks later logins without asking the card; logout; idle
 * logouts and logins with a lifetime; changing the user PIN (C_SetPIN) and
 * unblocking it with the SO PIN or PUK (C_InitPIN), each tried once.
 */

#include "config.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include "common/err.h"
#include "common/log.h"
#include "common/secmem.h"
#include "common/util.h"
#include "token/store-private.h"

/* ------------------------------------------------------------------ */
/* The PIN of a login, kept to check later logins without the card */

/*
 * What the agent keeps of the PIN it logged in to a token with: a salted
 * slow hash, in locked memory, never the PIN. A login asked of a token the
 * agent is logged in to already is checked against it (login_check): the
 * card is not asked, so its retry counter stays as it is.
 */
#define PIN_SALT_LEN 16
#define PIN_HASH_LEN 32
#define PIN_HASH_ITER 50000		/* PBKDF2-HMAC-SHA256: ~20 ms here */
#define PIN_WRONG_PAUSE_US 1000000	/* after a wrong one, per token */
struct pin_check {
	unsigned char salt[PIN_SALT_LEN];
	unsigned char hash[PIN_HASH_LEN];
};

static int
pin_hash(const char *pin, const unsigned char *salt, unsigned char *out)
{
	return PKCS5_PBKDF2_HMAC(pin, (int)strlen(pin), salt, PIN_SALT_LEN, PIN_HASH_ITER,
	    EVP_sha256(), PIN_HASH_LEN, out) == 1 ? SC_OK : SC_ERR_INTERNAL;
}

/* A new check of pin (sc_secmem_free), or NULL. */
static struct pin_check *
pin_check_new(const char *pin)
{
	struct pin_check *pc = sc_secmem_alloc(sizeof(*pc));

	if (pc != NULL && (RAND_bytes(pc->salt, PIN_SALT_LEN) != 1 ||
	    pin_hash(pin, pc->salt, pc->hash) != SC_OK)) {
		sc_secmem_free(pc);
		pc = NULL;
	}
	return pc;
}

/* The login is gone: so is what it kept of the PIN. Under t->lock. */
void
login_forget_locked(struct sc_token *t)
{
	t->logged_in = 0;
	t->login_ends = 0;
	sc_secmem_free(t->pin_check);
	t->pin_check = NULL;
}

/* ------------------------------------------------------------------ */
/* Login */

/*
 * The rules before a PIN is spent, on the token's flags (with a TPM's
 * lockout counter mapped onto them, tpm_pin_flags): no try on a locked PIN,
 * the final one only when confirmed. so: the SO PIN's flags (a TPM's
 * counter counts the SO PIN's failures too, so its user flags count for both).
 */
static int
pin_rules(struct sc_store *st, CK_FLAGS fl, int so, int confirm_final_try)
{
	CK_FLAGS locked = so ? CKF_SO_PIN_LOCKED : CKF_USER_PIN_LOCKED;
	CK_FLAGS final = so ? CKF_SO_PIN_FINAL_TRY : CKF_USER_PIN_FINAL_TRY;

	if (fl & locked)
		return SC_ERR_PIN_LOCKED;
	if ((fl & final) && !confirm_final_try && !st->opts.confirm_final_try)
		return SC_ERR_PIN_FINAL_TRY;
	return SC_OK;
}

/* A TPM's lockout counter counts the SO PIN's failures too: as SO PIN flags. */
static CK_FLAGS
tpm_so_flags(CK_FLAGS user)
{
	return ((user & CKF_USER_PIN_LOCKED) ? CKF_SO_PIN_LOCKED : 0) |
	    ((user & CKF_USER_PIN_FINAL_TRY) ? CKF_SO_PIN_FINAL_TRY : 0) |
	    ((user & CKF_USER_PIN_COUNT_LOW) ? CKF_SO_PIN_COUNT_LOW : 0);
}

/* The rules on the token's fresh flags (a TPM's lockout counter included). */
static int
token_pin_rules(struct sc_store *st, struct sc_token *t, int so, int confirm_final_try)
{
	CK_FLAGS fl;

	token_update_info(t);
	fl = tpm_pin_flags(st, t);
	if (so)
		fl = tpm_so_flags(fl);
	pthread_mutex_lock(&t->lock);
	fl |= t->info.flags;
	pthread_mutex_unlock(&t->lock);
	return pin_rules(st, fl, so, confirm_final_try);
}

/* The token's flags after an attempt, for the caller's message. */
static void
pin_flags_out(struct sc_token *t, json_object **flags_out)
{
	if (flags_out == NULL)
		return;
	pthread_mutex_lock(&t->lock);
	*flags_out = token_flags_json(&t->info, t->logged_in);
	pthread_mutex_unlock(&t->lock);
}

/*
 * A login asked of a token the agent is logged in to: pin checked against
 * the hash kept at that login, the card not asked. SC_ERR_ALREADY when it
 * matches; SC_ERR_PIN_INCORRECT when not, after a pause, one wrong PIN at a
 * time a token (guessing against the hash goes no faster than a try a
 * second); SC_ERR_DENIED when the login kept no hash (the token said it
 * was logged in already when the agent logged in: its PIN was not tried).
 */
static int
login_check(struct sc_token *t, const char *pin)
{
	struct pin_check *pc;
	unsigned char h[PIN_HASH_LEN];
	int r = SC_ERR_DENIED, have;

	if ((pc = sc_secmem_alloc(sizeof(*pc))) == NULL)
		return SC_ERR_NOMEM;
	pthread_mutex_lock(&t->lock);
	if ((have = t->logged_in && t->pin_check != NULL))
		memcpy(pc, t->pin_check, sizeof(*pc));
	pthread_mutex_unlock(&t->lock);
	if (!have)
		goto out;
	pthread_mutex_lock(&t->check_lock);
	if ((r = pin_hash(pin, pc->salt, h)) == SC_OK)
		r = CRYPTO_memcmp(h, pc->hash, PIN_HASH_LEN) == 0 ? SC_ERR_ALREADY : SC_ERR_PIN_INCORRECT;
	if (r == SC_ERR_PIN_INCORRECT) {
		sc_info("login to \"%s\": not the PIN the agent is logged in with (the card was not asked)",
		    t->label);
		usleep(PIN_WRONG_PAUSE_US);
	}
	pthread_mutex_unlock(&t->check_lock);
out:
	explicit_bzero(h, sizeof(h));
	sc_secmem_free(pc);
	return r;
}

int
sc_store_login(struct sc_store *st, const char *token_label, const char *pin,
    int confirm_final_try, json_object **flags_out)
{
	struct sc_token *t;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	struct pin_check *pc = NULL;
	CK_FLAGS tflags;
	CK_RV rv;
	int r;

	if (flags_out)
		*flags_out = NULL;
	if ((t = store_find_label(st, token_label, &r)) == NULL)
		return r;
	/* Fresh flags: never spend a try on a locked PIN or a final try unasked. */
	token_update_info(t);
	tflags = tpm_pin_flags(st, t);	/* a TPM's lockout counter, as PIN flags */
	pthread_mutex_lock(&t->lock);
	if (t->logged_in) {
		pthread_mutex_unlock(&t->lock);
		r = login_check(t, pin);
		goto out;
	}
	if ((r = pin_rules(st, t->info.flags | tflags, 0, confirm_final_try)) != SC_OK)
		goto out_locked;
	pthread_mutex_unlock(&t->lock);

	rv = t->mod->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
	if (rv != CKR_OK) {
		r = sc_err_from_ckr_known(rv);
		goto out;
	}
	rv = t->mod->f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	/* The card took this PIN: keep its hash (out of memory: later logins are refused). */
	if (rv == CKR_OK && (pc = pin_check_new(pin)) == NULL)
		sc_info("login to \"%s\": the PIN's hash could not be kept", t->label);
	if (rv == CKR_USER_ALREADY_LOGGED_IN)
		rv = CKR_OK;	/* logged in outside the agent: take it as ours, its PIN untried */
	token_update_info(t);
	if (rv != CKR_OK) {
		sc_info("login to \"%s\" failed: %s", t->label, sc_ckr_name(rv));
		t->mod->f->C_CloseSession(s);
		r = sc_err_from_ckr_known(rv);
		goto out;
	}
	pthread_mutex_lock(&t->lock);
	t->login_session = s;
	t->logged_in = 1;
	sc_secmem_free(t->pin_check);
	t->pin_check = pc;
	pc = NULL;
	t->last_use = sc_now_ms();
	pthread_mutex_unlock(&t->lock);
	sc_info("logged in to \"%s\"", t->label);
	token_reload(t, 1);	/* private keys may have become visible */
	r = SC_OK;
	goto out;
out_locked:
	pthread_mutex_unlock(&t->lock);
out:
	pin_flags_out(t, flags_out);
	sc_secmem_free(pc);
	token_unref(t);
	return r;
}

int
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
	login_forget_locked(t);
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

/*
 * Before a key with CKA_ALWAYS_AUTHENTICATE signs: a PIN was given (else
 * pin-required, nothing tried), and it is not about to be spent on a locked
 * PIN, or on the final try without confirmation (as a login).
 */
int
ctx_pin_check(struct sc_store *st, struct sc_token *t, const struct sc_sign_pin *sp)
{
	if (sp == NULL || sp->pin == NULL)
		return SC_ERR_PIN_REQUIRED;
	return token_pin_rules(st, t, 0, sp->confirm_final_try);
}

/* ------------------------------------------------------------------ */
/* Changing and unblocking the user PIN */

/* After the user PIN changed: the login's PIN check follows it (out of memory: dropped). */
static void
login_follow_pin(struct sc_token *t, const char *new_pin)
{
	struct pin_check *pc = pin_check_new(new_pin);

	pthread_mutex_lock(&t->lock);
	if (t->logged_in) {
		sc_secmem_free(t->pin_check);
		t->pin_check = pc;
		pc = NULL;
	}
	pthread_mutex_unlock(&t->lock);
	sc_secmem_free(pc);
}

int
sc_store_pin_change(struct sc_store *st, const char *token_label, const char *old_pin,
    const char *new_pin, int confirm_final_try, json_object **flags_out)
{
	struct sc_token *t;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_RV rv;
	int r, in, logged = 0;

	if (flags_out)
		*flags_out = NULL;
	if ((t = store_find_label(st, token_label, &r)) == NULL)
		return r;
	if ((r = token_pin_rules(st, t, 0, confirm_final_try)) != SC_OK)
		goto out;
	pthread_mutex_lock(&t->lock);
	in = t->logged_in;
	pthread_mutex_unlock(&t->lock);
	/* Logged in or not, a read/write session changes the user's PIN (C_SetPIN needs R/W). */
	rv = t->mod->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
	if (rv == CKR_OK && !in && module_is_tpm2_pkcs11(t->mod)) {
		/*
		 * tpm2-pkcs11 1.9 answers CKR_OK to a C_SetPIN with a wrong PIN
		 * when no one is logged in (the TPM refused and counted it): the
		 * PIN is tried by a login instead, and C_SetPIN runs logged in,
		 * where it reports the TPM's answer, with the PIN the TPM just took.
		 */
		if ((rv = t->mod->f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)old_pin,
		    strlen(old_pin))) == CKR_OK)
			logged = 1;
	}
	if (rv == CKR_OK)
		rv = t->mod->f->C_SetPIN(s, (CK_UTF8CHAR_PTR)old_pin, strlen(old_pin),
		    (CK_UTF8CHAR_PTR)new_pin, strlen(new_pin));
	if (logged)
		t->mod->f->C_Logout(s);
	if (s != CK_INVALID_HANDLE)
		t->mod->f->C_CloseSession(s);
	token_update_info(t);
	if (rv != CKR_OK) {
		sc_info("PIN change on \"%s\" failed: %s", t->label, sc_ckr_name(rv));
		r = sc_err_from_ckr(rv);
		goto out;
	}
	login_follow_pin(t, new_pin);
	sc_info("the user PIN of \"%s\" was changed", t->label);
	r = SC_OK;
out:
	pin_flags_out(t, flags_out);
	token_unref(t);
	return r;
}

/* Close the token's idle sessions: an SO login refuses while read-only ones exist. */
static void
pool_close(struct sc_token *t)
{
	CK_SESSION_HANDLE v[SC_MAX_SESSIONS_IDLE];
	size_t n;

	pthread_mutex_lock(&t->lock);
	n = t->npool;
	memcpy(v, t->pool, n * sizeof(v[0]));
	t->npool = 0;
	pthread_mutex_unlock(&t->lock);
	for (size_t i = 0; i < n; i++)
		t->mod->f->C_CloseSession(v[i]);
}

int
sc_store_pin_unblock(struct sc_store *st, const char *token_label, const char *so_pin,
    const char *new_pin, int confirm_final_try, int *logged_out, json_object **flags_out)
{
	struct sc_token *t;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_RV rv;
	int r;

	*logged_out = 0;
	if (flags_out)
		*flags_out = NULL;
	if ((t = store_find_label(st, token_label, &r)) == NULL)
		return r;
	if ((r = token_pin_rules(st, t, 1, confirm_final_try)) != SC_OK)
		goto out;
	/* The SO logs in alone: the agent's own login ends (its PIN is being replaced). */
	*logged_out = token_logout(t) == SC_OK;
	pool_close(t);
	rv = t->mod->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
	if (rv != CKR_OK) {
		r = sc_err_from_ckr(rv);
		goto out;
	}
	rv = t->mod->f->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin));
	if (rv == CKR_OK) {
		CK_RV rv2 = t->mod->f->C_InitPIN(s, (CK_UTF8CHAR_PTR)new_pin, strlen(new_pin));
		t->mod->f->C_Logout(s);
		if (rv2 != CKR_OK) {
			sc_info("unblocking the PIN of \"%s\": C_InitPIN: %s", t->label, sc_ckr_name(rv2));
			r = rv2 == CKR_PIN_INCORRECT ? SC_ERR_PIN_INVALID : sc_err_from_ckr(rv2);
		} else
			r = SC_OK;
	} else {
		sc_info("unblocking the PIN of \"%s\": SO login: %s", t->label, sc_ckr_name(rv));
		/* Another login or a read-only session of a signature under way: not the SO PIN's fault. */
		r = rv == CKR_SESSION_READ_ONLY_EXISTS || rv == CKR_USER_ANOTHER_ALREADY_LOGGED_IN ||
		    rv == CKR_USER_ALREADY_LOGGED_IN ? SC_ERR_BUSY : sc_err_from_ckr(rv);
	}
	t->mod->f->C_CloseSession(s);
	token_update_info(t);
	if (r == SC_OK)
		sc_info("the user PIN of \"%s\" was set by its SO", t->label);
out:
	pin_flags_out(t, flags_out);
	token_unref(t);
	return r;
}

/* ------------------------------------------------------------------ */
/* Idle logins */

uint64_t
sc_store_login_deadline(struct sc_store *st, unsigned long idle_ms)
{
	struct sc_token **v;
	size_t n;
	uint64_t due = 0;

	v = tokens_get(st, &n);
	for (size_t i = 0; i < n; i++) {
		uint64_t d = 0;
		pthread_mutex_lock(&v[i]->lock);
		if (v[i]->logged_in && idle_ms > 0)
			d = v[i]->last_use + idle_ms + 1;
		if (v[i]->logged_in && v[i]->login_ends != 0 && (d == 0 || v[i]->login_ends < d))
			d = v[i]->login_ends;
		pthread_mutex_unlock(&v[i]->lock);
		if (d != 0 && (due == 0 || d < due))
			due = d;
	}
	tokens_put(v, n);
	return due;
}

int
sc_store_login_lifetime(struct sc_store *st, const char *token_label, unsigned long seconds)
{
	struct sc_token *t;
	int r;

	if ((t = store_find_label(st, token_label, &r)) == NULL)
		return r;
	pthread_mutex_lock(&t->lock);
	if (t->logged_in)
		t->login_ends = seconds > 0 ? sc_now_ms() + (uint64_t)seconds * 1000 : 0;
	else
		r = SC_ERR_NOT_LOGGED_IN;
	pthread_mutex_unlock(&t->lock);
	token_unref(t);
	return r;
}

/* Which logins logout_where ends. */
enum { END_ALL, END_LIFETIME, END_IDLE };

/*
 * Log out of every token logged in (END_ALL), of those whose lifetime ended,
 * or of those unused for over idle_ms; *labels (may be NULL) their labels.
 */
static int
logout_where(struct sc_store *st, int which, unsigned long idle_ms, json_object **labels)
{
	static const char *const said[] = { NULL, "reached the end of its lifetime",
		"was idle for too long" };
	struct sc_token **v;
	size_t n;
	uint64_t now = sc_now_ms();
	int count = 0;

	if (labels != NULL)
		*labels = json_object_new_array();
	v = tokens_get(st, &n);
	for (size_t i = 0; i < n; i++) {
		struct sc_token *t = v[i];
		int end;

		pthread_mutex_lock(&t->lock);
		end = t->logged_in && (which == END_ALL ||
		    (which == END_LIFETIME && t->login_ends != 0 && t->login_ends <= now) ||
		    (which == END_IDLE && t->last_use < now && now - t->last_use > idle_ms));
		pthread_mutex_unlock(&t->lock);
		if (!end || token_logout(t) != SC_OK)
			continue;
		count++;
		if (said[which] != NULL)
			sc_info("the login to \"%s\" %s", t->label, said[which]);
		if (labels != NULL && *labels != NULL)
			json_object_array_add(*labels, json_object_new_string(t->label));
	}
	tokens_put(v, n);
	return count;
}

int
sc_store_expire_lifetimes(struct sc_store *st, json_object **labels)
{
	return logout_where(st, END_LIFETIME, 0, labels);
}

int
sc_store_expire_logins(struct sc_store *st, unsigned long idle_ms, json_object **labels)
{
	if (idle_ms == 0) {
		if (labels != NULL)
			*labels = json_object_new_array();
		return 0;
	}
	return logout_where(st, END_IDLE, idle_ms, labels);
}

int
sc_store_logout_all(struct sc_store *st, json_object **labels)
{
	return logout_where(st, END_ALL, 0, labels);
}
