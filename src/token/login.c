/*
 * Login state: C_Login with the user PIN, tried exactly once; the rules that
 * spend no try on a locked PIN or, unconfirmed, on the final one (for a
 * login and for a per-signature PIN); the salted hash of the PIN a login
 * used, which checks later logins without asking the card; logout; idle
 * logouts.
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
	sc_secmem_free(t->pin_check);
	t->pin_check = NULL;
}

/* ------------------------------------------------------------------ */
/* Login */

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
	if ((t->info.flags | tflags) & CKF_USER_PIN_LOCKED) {
		r = SC_ERR_PIN_LOCKED;
		goto out_locked;
	}
	if (((t->info.flags | tflags) & CKF_USER_PIN_FINAL_TRY) && !confirm_final_try &&
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
	/* The card took this PIN: keep its hash (out of memory: later logins are refused). */
	if (rv == CKR_OK && (pc = pin_check_new(pin)) == NULL)
		sc_info("login to \"%s\": the PIN's hash could not be kept", t->label);
	if (rv == CKR_USER_ALREADY_LOGGED_IN)
		rv = CKR_OK;	/* logged in outside the agent: take it as ours, its PIN untried */
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
	if (flags_out) {
		pthread_mutex_lock(&t->lock);
		*flags_out = token_flags_json(&t->info, t->logged_in);
		pthread_mutex_unlock(&t->lock);
	}
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

/*
 * Before a key with CKA_ALWAYS_AUTHENTICATE signs: a PIN was given (else
 * pin-required, nothing tried), and it is not about to be spent on a locked
 * PIN, or on the final try without confirmation (as a login).
 */
int
ctx_pin_check(struct sc_store *st, struct sc_token *t, const struct sc_sign_pin *sp)
{
	CK_FLAGS fl;

	if (sp == NULL || sp->pin == NULL)
		return SC_ERR_PIN_REQUIRED;
	token_update_info(t);
	fl = tpm_pin_flags(st, t);
	pthread_mutex_lock(&t->lock);
	fl |= t->info.flags;
	pthread_mutex_unlock(&t->lock);
	if (fl & CKF_USER_PIN_LOCKED)
		return SC_ERR_PIN_LOCKED;
	if ((fl & CKF_USER_PIN_FINAL_TRY) && !sp->confirm_final_try && !st->opts.confirm_final_try)
		return SC_ERR_PIN_FINAL_TRY;
	return SC_OK;
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
		uint64_t d;
		pthread_mutex_lock(&v[i]->lock);
		d = v[i]->logged_in ? v[i]->last_use + idle_ms + 1 : 0;
		pthread_mutex_unlock(&v[i]->lock);
		if (d != 0 && (due == 0 || d < due))
			due = d;
	}
	tokens_put(v, n);
	return due;
}
