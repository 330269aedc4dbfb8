/*
 * sign (a certificate's key) and sign-key (a key by itself): the arguments,
 * confirmation through pinentry (--confirm-sign), a login through pinentry
 * when the token needs one, a per-signature PIN (CKA_ALWAYS_AUTHENTICATE)
 * from the request or pinentry, tried once, the audit line, and the messages.
 */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include "common/alg.h"
#include "common/err.h"
#include "common/secmem.h"
#include "common/util.h"
#include "daemon/pinentry.h"
#include "daemon/server-private.h"
#include "token/token.h"

/* The certificate REF names, for messages and the audit log. */
struct sign_facts {
	char sha[80];			/* fingerprint, "?" when unknown */
	char tok[128];			/* token label, "LABEL" when unknown */
	char keytype[16];		/* "rsa", "ec", "?" */
	char label[128];		/* the certificate's label, "" when unknown */
};

static void
sign_facts(struct client *c, const char *ref, struct sign_facts *f)
{
	json_object *found = NULL, *v, *key;

	snprintf(f->sha, sizeof(f->sha), "?");
	snprintf(f->tok, sizeof(f->tok), "LABEL");
	snprintf(f->keytype, sizeof(f->keytype), "?");
	f->label[0] = '\0';
	if (sc_store_find_cert(c->srv->st, ref, NULL, &found, NULL) != SC_OK)
		return;
	if (json_object_object_get_ex(found, "sha256", &v))
		snprintf(f->sha, sizeof(f->sha), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(found, "token", &v))
		snprintf(f->tok, sizeof(f->tok), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(found, "label", &v))
		snprintf(f->label, sizeof(f->label), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(found, "key", &key) && json_object_object_get_ex(key, "type", &v))
		snprintf(f->keytype, sizeof(f->keytype), "%s", json_object_get_string(v));
	json_object_put(found);
}

/* The arguments of sign and sign-key: alg, and exactly one of data and digest. */
static int
sign_args(json_object *req, int *alg, unsigned char **in, size_t *inlen, int *is_digest,
    char *msg, size_t msglen)
{
	const char *algname = arg_str(req, "alg");
	const char *data = arg_str(req, "data"), *digest = arg_str(req, "digest");

	*in = NULL;
	*inlen = 0;
	if ((*alg = sc_alg_parse(algname)) < 0) {
		snprintf(msg, msglen, "unknown algorithm \"%.64s\"; use %s", algname,
		    sc_alg_names_hint());
		return SC_ERR_INVALID;
	}
	if ((data == NULL) == (digest == NULL)) {
		snprintf(msg, msglen, "give exactly one of \"data\" and \"digest\"");
		return SC_ERR_INVALID;
	}
	if (sc_unb64(data ? data : digest, in, inlen) != SC_OK) {
		snprintf(msg, msglen, "\"data\"/\"digest\" is not valid base64");
		return SC_ERR_INVALID;
	}
	*is_digest = digest != NULL;
	if (*is_digest && *inlen != (size_t)EVP_MD_get_size(sc_alg_md(*alg))) {
		snprintf(msg, msglen, "\"digest\" has %zu bytes; %s wants a %d-byte hash",
		    *inlen, algname, EVP_MD_get_size(sc_alg_md(*alg)));
		free(*in);
		*in = NULL;
		return SC_ERR_INVALID;
	}
	return SC_OK;
}

/*
 * A key that needs its PIN for every signature (CKA_ALWAYS_AUTHENTICATE)
 * and got none in the request: ask pinentry once. *pin is locked memory.
 */
static int
key_pin_from_pinentry(struct client *c, const char *what, const char *token, char **pin)
{
	char desc[1024];
	int r;

	*pin = NULL;
	if (c->srv->o.pinentry == NULL)
		return SC_ERR_PIN_REQUIRED;
	snprintf(desc, sizeof(desc), "Enter the PIN for one signature with %s on smart card \"%s\" "
	    "for %s (this key asks for it every time)", what, token, c->exe);
	worker_pending(c);
	r = sc_pinentry_getpin(c->srv->o.pinentry, desc, c->fd, pin);
	/* Nobody to ask (pinentry = auto without display or terminal): as without pinentry. */
	return r == SC_ERR_NOT_LOGGED_IN ? SC_ERR_PIN_REQUIRED : r;
}

/* The message of a PIN error of a per-signature PIN (key on token). */
static void
key_pin_message(int r, const char *key, const char *token, int asked, char *msg, size_t len)
{
	switch (r) {
	case SC_ERR_PIN_REQUIRED:
		snprintf(msg, len, "%s on token \"%s\" needs its PIN for every signature "
		    "(CKA_ALWAYS_AUTHENTICATE): give it with --pin-stdin (protocol: \"pin\") or run "
		    "scagentd with --pinentry; no PIN was tried", key, token);
		break;
	case SC_ERR_PIN_INCORRECT:
		snprintf(msg, len, "wrong PIN for %s on token \"%s\"%s (tried once): nothing was "
		    "signed", key, token, asked ? ", asked through pinentry" : "");
		break;
	case SC_ERR_PIN_LOCKED:
		snprintf(msg, len, "the PIN of token \"%s\" is locked: nothing was tried; unblock it "
		    "with the SO PIN or PUK: `scagent pin unblock --token %s`", token, token);
		break;
	case SC_ERR_PIN_FINAL_TRY:
		snprintf(msg, len, "token \"%s\" has one PIN try left: nothing was tried; if you are "
		    "sure of the PIN, repeat with --confirm-final-try (protocol: "
		    "\"confirm_final_try\")", token);
		break;
	case SC_ERR_PIN_INVALID:
		snprintf(msg, len, "the PIN for %s on token \"%s\" has an invalid length or "
		    "characters: nothing was signed", key, token);
		break;
	case SC_ERR_CANCELLED:
		snprintf(msg, len, "the PIN entry for %s on token \"%s\" was cancelled: nothing was "
		    "signed", key, token);
		break;
	default:
		snprintf(msg, len, "signing with %s failed: %s", key, sc_strerror(r));
	}
}

static int
is_key_pin_error(int r)
{
	return r == SC_ERR_PIN_REQUIRED || r == SC_ERR_PIN_INCORRECT || r == SC_ERR_PIN_LOCKED ||
	    r == SC_ERR_PIN_FINAL_TRY || r == SC_ERR_PIN_INVALID;
}

/* {"signature": base64}; frees sig. */
static int
reply_signature(struct client *c, int64_t id, unsigned char *sig, size_t siglen)
{
	json_object *res;
	char *b64 = sc_b64(sig, siglen);

	free(sig);
	if (b64 == NULL)
		return reply_err(c, id, SC_ERR_NOMEM, NULL);
	res = json_object_new_object();
	json_object_object_add(res, "signature", json_object_new_string(b64));
	free(b64);
	return reply_ok(c, id, res);
}

/*
 * scagentd --confirm-sign: ask through pinentry before signing with ref (sf
 * gets its facts). SC_ERR_DENIED, audited, when it was not confirmed.
 */
static int
sign_confirm(struct client *c, const char *ref, const char *algname, struct sign_facts *sf)
{
	char msg[1024], detail[512];
	int r;

	if (c->srv->o.confirm_sign && c->srv->o.pinentry != NULL) {
		sign_facts(c, ref, sf);
		snprintf(detail, sizeof(detail), "cert=%s alg=%s", sf->sha, algname);
		snprintf(msg, sizeof(msg), "Allow %s (pid %ld) to sign with \"%s\"?", c->exe, (long)c->pid, ref);
		worker_pending(c);
		if ((r = sc_pinentry_confirm(c->srv->o.pinentry, msg, c->fd)) != SC_OK) {
			audit(c->srv, c, "sign", detail, SC_ERR_DENIED);
			return SC_ERR_DENIED;
		}
	}
	return SC_OK;
}

/* The message of a failed signature with ref, other than a REF or a per-signature PIN error. */
static void
sign_error_message(int r, const char *ref, const char *algname, int alg,
    const struct sign_facts *sf, char *msg, size_t len)
{
	switch (r) {
	case SC_ERR_NOT_LOGGED_IN:
		snprintf(msg, len, "the token \"%s\" holding \"%s\" needs a login: run "
		    "`scagent login --token %s` first", sf->tok, ref, sf->tok);
		break;
	case SC_ERR_PIN_INCORRECT:
		snprintf(msg, len, "wrong PIN for token \"%s\" (asked through pinentry, "
		    "tried once): nothing was signed", sf->tok);
		break;
	case SC_ERR_CANCELLED:
		snprintf(msg, len, "the PIN entry for token \"%s\" was cancelled: "
		    "nothing was signed", sf->tok);
		break;
	case SC_ERR_KEY:
		if (strcmp(sf->keytype, "ec") == 0 && sc_alg_family(alg) != SC_ALG_ECDSA)
			snprintf(msg, len, "the key of \"%s\" is an EC key and cannot make "
			    "a %s signature; use ecdsa-sha256|384|512", ref, algname);
		else if (strcmp(sf->keytype, "rsa") == 0 && sc_alg_family(alg) == SC_ALG_ECDSA)
			snprintf(msg, len, "the key of \"%s\" is an RSA key and cannot make "
			    "a %s signature; use rsa-pkcs1-* or rsa-pss-*", ref, algname);
		else
			snprintf(msg, len, "the key of \"%s\" cannot make a %s signature "
			    "(no private key with its ID on the token)", ref, algname);
		break;
	case SC_ERR_MECHANISM:
		snprintf(msg, len, "the token holding \"%s\" does not support %s", ref, algname);
		break;
	case SC_ERR_TOKEN_REMOVED:
		snprintf(msg, len, "the token \"%s\" was removed or reset while signing "
		    "with \"%s\"; insert it and log in again", sf->tok, ref);
		break;
	case SC_ERR_DEVICE:
		snprintf(msg, len, "the token \"%s\" failed while signing with \"%s\" and no "
		    "signature came back (the agent's log says how); remove and insert it, "
		    "then log in again", sf->tok, ref);
		break;
	case SC_ERR_BAD_SIGNATURE:
		snprintf(msg, len, "the token \"%s\" returned a signature with \"%s\" that "
		    "does not verify; it was discarded (the token may be faulty)", sf->tok, ref);
		break;
	default:
		snprintf(msg, len, "signing with \"%s\" failed: %s", ref, sc_strerror(r));
	}
}

int
op_sign(struct client *c, int64_t id, json_object *req)
{
	const char *ref = arg_str(req, "ref"), *algname = arg_str(req, "alg");
	unsigned char *in = NULL, *sig = NULL;
	size_t inlen = 0, siglen = 0;
	json_object *cand = NULL, *dummy = NULL;
	struct sc_sign_pin sp = { arg_str(req, "pin"), arg_bool(req, "confirm_final_try") };
	struct sc_sign_req rq;
	struct sc_sign_info info = { "" };
	char msg[1024], detail[512], what[300];
	struct sign_facts sf = { .sha = "?", .tok = "LABEL", .keytype = "?" };
	char *asked = NULL;
	int alg, is_digest = 0, via_pinentry = 0, login_failed = 0, r;

	if ((r = sign_args(req, &alg, &in, &inlen, &is_digest, msg, sizeof(msg))) != SC_OK)
		return reply_err(c, id, r, msg);
	rq = (struct sc_sign_req){ ref, alg, is_digest, in, inlen, &sp };
	if (sign_confirm(c, ref, algname, &sf) != SC_OK) {
		free(in);
		return reply_err(c, id, SC_ERR_DENIED, "the signature was not confirmed");
	}
	/* The fingerprint for the audit line comes with the signature, if it is wanted. */
	r = sc_store_sign(c->srv->st, &rq, &sig, &siglen, audit_on(c->srv) ? &info : NULL);
	/* Facts for the audit line and the messages (looked up again only on failure). */
	if (r != SC_OK)
		sign_facts(c, ref, &sf);
	if (r == SC_ERR_NOT_LOGGED_IN && c->srv->o.pinentry != NULL && strcmp(sf.sha, "?") != 0) {
		/* Ask once for the PIN of the key's token, then sign once more. */
		int lr = login_with_pinentry(c, sf.tok, 0, NULL);
		char ldetail[200];

		snprintf(ldetail, sizeof(ldetail), "token=\"%s\" via=pinentry", sf.tok);
		if (lr != SC_ERR_NOT_LOGGED_IN)
			audit(c->srv, c, "login", ldetail, lr);
		if (lr == SC_OK) {
			sc_server_broadcast(c->srv, "login", token_fields(sf.tok, NULL));
			r = sc_store_sign(c->srv->st, &rq, &sig, &siglen, &info);
		} else if (lr != SC_ERR_NOT_LOGGED_IN) {
			r = lr;
			login_failed = 1;	/* the token's PIN, not the key's */
		}
	}
	snprintf(what, sizeof(what), "the key of \"%s\"", sf.label[0] ? sf.label : ref);
	if (r == SC_ERR_PIN_REQUIRED && c->srv->o.pinentry != NULL) {
		/* The key wants a PIN for this signature and the client gave none: ask once. */
		via_pinentry = 1;
		if ((r = key_pin_from_pinentry(c, what, sf.tok, &asked)) == SC_OK) {
			sp.pin = asked;
			r = sc_store_sign(c->srv->st, &rq, &sig, &siglen, &info);
		}
	}
	sc_secstr_free(asked);
	free(in);
	if (info.sha256[0] != '\0')
		snprintf(sf.sha, sizeof(sf.sha), "%s", info.sha256);
	snprintf(detail, sizeof(detail), "cert=%s alg=%s", sf.sha, algname);
	audit(c->srv, c, "sign", detail, r);
	if (r != SC_OK) {
		if (r == SC_ERR_NOT_FOUND || r == SC_ERR_AMBIGUOUS || r == SC_ERR_INVALID) {
			if (r != SC_ERR_INVALID)
				sc_store_find_cert(c->srv->st, ref, NULL, &dummy, &cand);
			json_object_put(dummy);
			return ref_error(c, id, r, ref, cand);
		}
		if (!login_failed && (is_key_pin_error(r) || (r == SC_ERR_CANCELLED && via_pinentry))) {
			key_pin_message(r, what, sf.tok, via_pinentry, msg, sizeof(msg));
			return reply_err(c, id, r, msg);
		}
		sign_error_message(r, ref, algname, alg, &sf, msg, sizeof(msg));
		return reply_err(c, id, r, msg);
	}
	return reply_signature(c, id, sig, siglen);
}

int
op_sign_key(struct client *c, int64_t id, json_object *req)
{
	const char *ref = arg_str(req, "ref"), *algname = arg_str(req, "alg");
	unsigned char *in = NULL, *sig = NULL;
	size_t inlen = 0, siglen = 0;
	json_object *cand = NULL, *dummy = NULL, *found = NULL, *v;
	struct sc_sign_pin sp = { arg_str(req, "pin"), arg_bool(req, "confirm_final_try") };
	struct sc_sign_req rq;
	char msg[1024], detail[512], what[300], tok[128];
	char *asked = NULL;
	int alg, is_digest = 0, via_pinentry = 0, r;

	if ((r = sign_args(req, &alg, &in, &inlen, &is_digest, msg, sizeof(msg))) != SC_OK)
		return reply_err(c, id, r, msg);
	rq = (struct sc_sign_req){ ref, alg, is_digest, in, inlen, &sp };
	if (c->srv->o.confirm_sign && c->srv->o.pinentry != NULL) {
		snprintf(msg, sizeof(msg), "Allow %s (pid %ld) to sign with key \"%s\"?", c->exe,
		    (long)c->pid, ref);
		worker_pending(c);
		if (sc_pinentry_confirm(c->srv->o.pinentry, msg, c->fd) != SC_OK) {
			free(in);
			snprintf(detail, sizeof(detail), "key=\"%s\" alg=%s", ref, algname);
			audit(c->srv, c, "sign-key", detail, SC_ERR_DENIED);
			return reply_err(c, id, SC_ERR_DENIED, "the signature was not confirmed");
		}
	}
	r = sc_store_sign_key(c->srv->st, &rq, &sig, &siglen, NULL);
	snprintf(what, sizeof(what), "key \"%s\"", ref);
	snprintf(tok, sizeof(tok), "LABEL");
	if (is_key_pin_error(r) && sc_store_find_key(c->srv->st, ref, &found, NULL) == SC_OK &&
	    json_object_object_get_ex(found, "token", &v))
		snprintf(tok, sizeof(tok), "%s", json_object_get_string(v));
	json_object_put(found);
	if (r == SC_ERR_PIN_REQUIRED && c->srv->o.pinentry != NULL) {
		/* The key wants a PIN for this signature and the client gave none: ask once. */
		via_pinentry = 1;
		if ((r = key_pin_from_pinentry(c, what, tok, &asked)) == SC_OK) {
			sp.pin = asked;
			r = sc_store_sign_key(c->srv->st, &rq, &sig, &siglen, NULL);
		}
	}
	sc_secstr_free(asked);
	free(in);
	snprintf(detail, sizeof(detail), "key=\"%s\" alg=%s", ref, algname);
	audit(c->srv, c, "sign-key", detail, r);
	if (r == SC_ERR_NOT_FOUND || r == SC_ERR_AMBIGUOUS) {
		sc_store_find_key(c->srv->st, ref, &dummy, &cand);
		json_object_put(dummy);
		return key_ref_error(c, id, r, ref, cand);
	}
	if (is_key_pin_error(r) || (r == SC_ERR_CANCELLED && via_pinentry)) {
		key_pin_message(r, what, tok, via_pinentry, msg, sizeof(msg));
		return reply_err(c, id, r, msg);
	}
	if (r != SC_OK) {
		if (r == SC_ERR_NOT_LOGGED_IN)
			snprintf(msg, sizeof(msg), "the token holding key \"%s\" needs a login: run "
			    "`scagent login --token LABEL` first", ref);
		else if (r == SC_ERR_KEY)
			snprintf(msg, sizeof(msg), "key \"%s\" cannot make a %s signature (no private key, "
			    "or the wrong key type)", ref, algname);
		else
			snprintf(msg, sizeof(msg), "signing with key \"%s\" failed: %s", ref, sc_strerror(r));
		return reply_err(c, id, r, msg);
	}
	return reply_signature(c, id, sig, siglen);
}

