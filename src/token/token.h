/*
 * The token store: PKCS#11 modules loaded through libp11, their tokens, the
 * certificates and keys on them, login state, and private-key operations.
 * Keys never leave the token. Thread-safe: list, sign and login may be called
 * from many threads; a slow token only holds up callers that use it.
 */
#ifndef SC_TOKEN_H
#define SC_TOKEN_H

#include <stddef.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

struct sc_store;
struct sc_token;

/* Signature algorithms of INTERFACE.md, in that order. */
enum sc_alg {
	SC_ALG_RSA_PKCS1_SHA256 = 0, SC_ALG_RSA_PKCS1_SHA384, SC_ALG_RSA_PKCS1_SHA512,
	SC_ALG_RSA_PSS_SHA256, SC_ALG_RSA_PSS_SHA384, SC_ALG_RSA_PSS_SHA512,
	SC_ALG_ECDSA_SHA256, SC_ALG_ECDSA_SHA384, SC_ALG_ECDSA_SHA512,
	SC_ALG_COUNT
};
/* "rsa-pss-sha256" -> SC_ALG_RSA_PSS_SHA256; -1 when unknown. */
int sc_alg_parse(const char *name);
const char *sc_alg_name(int alg);
/* The digest an algorithm hashes with. */
const EVP_MD *sc_alg_md(int alg);
/* 1 RSA PKCS#1 v1.5, 2 RSA-PSS, 3 ECDSA. */
int sc_alg_family(int alg);

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
 * The inventory of INTERFACE.md's `scagent list --json` ("tokens", and
 * "errors": [{"module": path, "error": reason}] when a module failed).
 * cafile: when not NULL, CBA checks include the chain. New reference.
 */
json_object *sc_store_list_json(struct sc_store *st, const char *cafile);

/*
 * Resolve a REF (pkcs11: URI, SHA-256 prefix of >= 8 hex digits, or unique
 * label) to one certificate. On success *out is that certificate's list entry
 * (new reference, as in list --json, plus "token" = token label). On
 * SC_ERR_NOT_FOUND or SC_ERR_AMBIGUOUS, *candidates (if not NULL) gets an
 * array of "label (sha256 prefix) on token" strings to show the user.
 */
int sc_store_find_cert(struct sc_store *st, const char *ref, const char *cafile,
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
/* Log out of tokens idle for more than idle_ms; returns how many. */
int sc_store_expire_logins(struct sc_store *st, unsigned long idle_ms);

/*
 * Sign with the private key of certificate REF. is_digest: in is the already
 * computed hash for alg's digest, else the data. The signature is checked
 * against the certificate's public key (RSA always, ECDSA per opts) before it
 * is returned. ECDSA signatures come out DER-encoded. sig is malloc'd.
 * info (may be NULL) gets {"sha256": cert fingerprint, "token": label}.
 */
int sc_store_sign(struct sc_store *st, const char *ref, int alg, int is_digest,
    const unsigned char *in, size_t inlen, unsigned char **sig, size_t *siglen,
    json_object **info);

/*
 * The mechanisms of the token labelled token_label with their
 * C_GetMechanismInfo: {"mechanisms": [{"type": CKM number, "min_key_size",
 * "max_key_size", "flags": CKF_ bits}]} (new reference in *out).
 */
int sc_store_mechanisms(struct sc_store *st, const char *token_label, json_object **out);

#endif
