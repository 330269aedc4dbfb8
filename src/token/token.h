/*
 * The token store: PKCS#11 modules loaded through libp11, their tokens, the
 * certificates and keys on them, login state, and private-key operations.
 * Keys never leave the token. Thread-safe: list, sign and login may be called
 * from many threads; a slow token only holds up callers that use it.
 */
#ifndef SC_TOKEN_H
#define SC_TOKEN_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>
#include "common/alg.h"

struct sc_store;
struct sc_token;

/* The signature algorithms (enum sc_alg, sc_alg_parse, ...) are common/alg.h's. */

struct sc_store_opts {
	int verify_ecdsa;		/* verify ECDSA signatures too (RSA always is) */
	int confirm_final_try;		/* logins at final try allowed without asking */
};

struct sc_store *sc_store_new(const struct sc_store_opts *opts);
void sc_store_free(struct sc_store *st);

/*
 * Load one module. path is resolved with realpath(); a module that does not
 * exist or fails C_Initialize is remembered with its reason (reported by
 * sc_store_list_json under "errors") and the call returns the error; the
 * store stays usable with the other modules.
 */
int sc_store_add_module(struct sc_store *st, const char *path);
/* Number of modules that loaded. */
size_t sc_store_nmodules(struct sc_store *st);

/*
 * Re-read slots, tokens and objects of every module. Tokens that remain keep
 * their login state; tokens that went away are dropped with theirs. changed
 * (may be NULL) is set to 1 when anything visible changed.
 */
int sc_store_refresh(struct sc_store *st, int *changed);
/*
 * sc_store_refresh, and *events (may be NULL) gets a new array of what
 * appeared and vanished, in order: {"event": "token-added"|"token-removed",
 * "token": label, "reader": slot description, "module": path, "slot": id,
 * "serial": serial}. A token that vanished has been dropped with its login.
 */
int sc_store_refresh_report(struct sc_store *st, int *changed, json_object **events);
/*
 * The same, but SC_ERR_BUSY at once when another thread is re-reading slots
 * (a module can take seconds over a card it does not know).
 */
int sc_store_refresh_try(struct sc_store *st, int *changed, json_object **events);

/*
 * The inventory of INTERFACE.md's `scagent list --json` ("tokens", and
 * "errors": [{"module": path, "error": reason}] when a module failed).
 * anchors: when not NULL, CBA checks include the chain to one of these
 * trust anchors (sc_cert_anchors_pem). New reference.
 */
json_object *sc_store_list_json(struct sc_store *st, X509_STORE *anchors);

/*
 * Resolve a REF (pkcs11: URI, SHA-256 prefix of >= 8 hex digits, or unique
 * label) to one certificate. On success *out is that certificate's list entry
 * (new reference, as in list --json, plus "token" = token label). On
 * SC_ERR_NOT_FOUND or SC_ERR_AMBIGUOUS, *candidates (if not NULL) gets an
 * array of "label (sha256 prefix) on token" strings to show the user.
 */
int sc_store_find_cert(struct sc_store *st, const char *ref, X509_STORE *anchors,
    json_object **out, json_object **candidates);

/* DER of the certificate REF names, and its chain of CA certificates found on its token. */
int sc_store_get_cert(struct sc_store *st, const char *ref,
    unsigned char **der, size_t *derlen, json_object **chain_b64);

/*
 * Log in to the token whose label is token_label with the user PIN. Tried
 * exactly once. A locked PIN is reported without trying; a PIN at its final
 * try is refused (SC_ERR_PIN_FINAL_TRY) unless confirm_final_try is set.
 * *flags_out (may be NULL) gets the token flags after the attempt.
 */
int sc_store_login(struct sc_store *st, const char *token_label, const char *pin,
    int confirm_final_try, json_object **flags_out);
int sc_store_logout(struct sc_store *st, const char *token_label);
/*
 * Change the user PIN (C_SetPIN on a read/write session: the old PIN is the
 * card's to check), tried once, under the rules of a login (locked: not
 * tried; final try: only with confirm_final_try). When the agent is logged
 * in, the PIN check it keeps follows the new PIN. *flags_out as for a login.
 */
int sc_store_pin_change(struct sc_store *st, const char *token_label, const char *old_pin,
    const char *new_pin, int confirm_final_try, json_object **flags_out);
/*
 * Set a new user PIN with the SO PIN (or PUK): C_Login as CKU_SO, C_InitPIN,
 * C_Logout, tried once, the SO PIN's flags (and a TPM's lockout counter)
 * under the rules of a login. The agent's own login to the token ends first
 * (*logged_out is then 1). SC_ERR_PIN_INCORRECT: the SO PIN is wrong;
 * SC_ERR_PIN_INVALID: the token refused the new PIN; SC_ERR_BUSY: another
 * session is in the way of the SO's login.
 */
int sc_store_pin_unblock(struct sc_store *st, const char *token_label, const char *so_pin,
    const char *new_pin, int confirm_final_try, int *logged_out, json_object **flags_out);
/*
 * The agent's login to the token ends seconds after now whatever its use
 * (`scagent login --lifetime`, ssh-add -t); 0 takes the limit away.
 * SC_ERR_NOT_LOGGED_IN when the agent is not logged in to it.
 */
int sc_store_login_lifetime(struct sc_store *st, const char *token_label, unsigned long seconds);
/*
 * Log out of tokens whose login lifetime is over; *labels (may be NULL)
 * gets a new array of their labels. Returns how many.
 */
int sc_store_expire_lifetimes(struct sc_store *st, json_object **labels);
/* Log out of every token logged in (the screen locked); labels as above. How many. */
int sc_store_logout_all(struct sc_store *st, json_object **labels);
/*
 * Wherever a token is named (login, logout, mechanisms, keygen, import,
 * delete-token): its label, or a token URI (pkcs11:token=...;serial=...),
 * which tells apart two tokens with one label. The label of the token so
 * named, into label: SC_OK, SC_ERR_NOT_FOUND, SC_ERR_AMBIGUOUS, SC_ERR_INVALID.
 */
int sc_store_token_label(struct sc_store *st, const char *token, char *label, size_t len);
/* Log out of tokens idle for more than idle_ms (0: none); labels as above. How many. */
int sc_store_expire_logins(struct sc_store *st, unsigned long idle_ms, json_object **labels);
/*
 * When (sc_now_ms() time) the first login idle for idle_ms (0: no idle
 * limit) or at the end of its lifetime expires, so a caller can sleep until
 * then; 0 when no login expires.
 */
uint64_t sc_store_login_deadline(struct sc_store *st, unsigned long idle_ms);

/*
 * The PIN for one signature with a key that has CKA_ALWAYS_AUTHENTICATE (a
 * PIV card's signature key, say): C_Login as CKU_CONTEXT_SPECIFIC after
 * C_SignInit, tried once. Without it such a key answers SC_ERR_PIN_REQUIRED
 * having tried nothing. Other keys ignore it.
 */
struct sc_sign_pin {
	const char *pin;
	int confirm_final_try;		/* spend the final try (as for a login) */
};

/*
 * One signature asked of the store: with the private key of certificate
 * ref (sc_store_sign) or of key ref (sc_store_sign_key).
 */
struct sc_sign_req {
	const char *ref;
	int alg;			/* enum sc_alg */
	int is_digest;			/* in is the already computed hash for alg's digest, else the data */
	const unsigned char *in;
	size_t inlen;
	const struct sc_sign_pin *pin;	/* for a CKA_ALWAYS_AUTHENTICATE key; may be NULL */
};

/* What a signature was made with, filled on success. */
struct sc_sign_info {
	char sha256[65];		/* the certificate's SHA-256 fingerprint; "" for a key REF */
};

/*
 * Sign rq with the private key of certificate rq->ref. The signature is
 * checked against the certificate's public key (RSA always, ECDSA per opts)
 * before it is returned. ECDSA signatures come out DER-encoded. sig is
 * malloc'd. info may be NULL.
 */
int sc_store_sign(struct sc_store *st, const struct sc_sign_req *rq,
    unsigned char **sig, size_t *siglen, struct sc_sign_info *info);

/* ------------------------------------------------------------------ */
/* TPM virtual smart cards and enrolment. Functions that take why/whylen put a
 * one-line reason there on failure (empty when the code says it all). */

/*
 * The module that holds TPM virtual smart cards. Default (path NULL): the
 * loaded module that identifies as tpm2-pkcs11 in C_GetInfo.
 */
int sc_store_set_vsc_module(struct sc_store *st, const char *path);
/* Its configured path, or NULL when none is loaded. */
const char *sc_store_vsc_module(struct sc_store *st);

/*
 * Create a token on the vsc module's empty slot: C_InitToken with the SO PIN
 * and label, then C_Login as SO and C_InitPIN with the user PIN.  The store
 * sees the new token at the next sc_store_refresh_report (which reports it as
 * token-added); the same for a deleted token (token-removed).
 */
int sc_store_init_token(struct sc_store *st, const char *label, const char *so_pin,
    const char *user_pin, char *why, size_t whylen);
/*
 * Delete a token of the vsc module. tpm2-pkcs11 refuses C_InitToken on an
 * initialised token, so the token is removed from its store with
 * `tpm2_ptool rmtoken` and the module is initialised again to forget it.
 */
int sc_store_delete_token(struct sc_store *st, const char *label, char *why, size_t whylen);
/*
 * {"module","tcti","store","lockout":{...},"tokens":[{"label","serial","slot",
 * "manufacturer","model","keys","certificates","flags"}]} for the vsc module.
 */
json_object *sc_store_vsc_list_json(struct sc_store *st);
/* The TPM lockout state under a tpm2-pkcs11 token; SC_ERR_UNSUPPORTED for other tokens. */
int sc_store_tpm_lockout(struct sc_store *st, const char *token_label, json_object **out);

enum sc_keytype { SC_KEY_RSA2048 = 0, SC_KEY_RSA3072, SC_KEY_EC_P256 };
/* "rsa:2048", "rsa:3072", "ec:p256" -> enum sc_keytype; -1 when unknown. */
int sc_keytype_parse(const char *s);

/*
 * Generate a key pair on the token (logged in): private key CKA_TOKEN,
 * CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_SIGN. id NULL: the
 * lowest free one-byte ID; label NULL: "key-<id>". *out: the key as
 * sc_store_find_key describes it.
 */
int sc_store_keygen(struct sc_store *st, const char *token_label, int type, const char *label,
    const unsigned char *id, size_t idlen, json_object **out, char *why, size_t whylen);

/*
 * Store a certificate (DER) with the CKA_ID of the key pair whose public key
 * it carries (SC_ERR_KEY with the reason when none does), and the CA
 * certificates of chain (concatenated DER, may be NULL) with their own IDs
 * (subject key identifier). Certificates already on the token are skipped.
 */
int sc_store_import_cert(struct sc_store *st, const char *token_label, const unsigned char *der,
    size_t derlen, const unsigned char *chain, size_t chainlen, json_object **out,
    char *why, size_t whylen);

/*
 * Resolve a key REF (pkcs11: URI of the private or public key, CKA_ID in hex,
 * unique label, or a certificate REF) to one key pair:
 * {"token","label","id","uri","type","bits","curve","public_key" (base64
 * SubjectPublicKeyInfo DER),"private_key"}. Candidates as sc_store_find_cert.
 */
int sc_store_find_key(struct sc_store *st, const char *ref, json_object **out,
    json_object **candidates);
/* Sign with the private key key REF rq->ref names; as sc_store_sign, every signature verified. */
int sc_store_sign_key(struct sc_store *st, const struct sc_sign_req *rq,
    unsigned char **sig, size_t *siglen, struct sc_sign_info *info);
/*
 * The mechanisms of the token labelled token_label with their
 * C_GetMechanismInfo: {"mechanisms": [{"type": CKM number, "min_key_size",
 * "max_key_size", "flags": CKF_ bits}]} (new reference in *out).
 */
int sc_store_mechanisms(struct sc_store *st, const char *token_label, json_object **out);

#endif
