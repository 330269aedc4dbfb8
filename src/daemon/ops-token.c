/*
 * Operations on tokens and their certificates and keys: list, find,
 * get-cert, login, logout, pin-change, pin-unblock, mechanisms,
 * get-public-key, with the messages of their errors.
 */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cert/certinfo.h"
#include "common/err.h"
#include "common/log.h"
#include "common/secmem.h"
#include "common/text.h"
#include "common/util.h"
#include "daemon/pinentry.h"
#include "daemon/server-private.h"
#include "proto/proto.h"
#include "token/pcsc.h"
#include "token/token.h"

/*
 * The trust anchors a list or find request sends as "cas" (PEM text), in
 * *anchors (NULL without "cas"). The client reads its CA file itself: the
 * agent opens no file a client names. SC_OK, or the error, with *why.
 */
static int
cas_anchors(json_object *req, X509_STORE **anchors, const char **why)
{
	json_object *v;
	int r;

	*anchors = NULL;
	*why = NULL;
	if (!json_object_object_get_ex(req, "cas", &v))
		return SC_OK;
	if ((size_t)json_object_get_string_len(v) > SC_PROTO_MAX_CAS) {
		*why = "\"cas\" is over 224 KiB: send only the CA certificates the chains need";
		return SC_ERR_INVALID;
	}
	r = sc_cert_anchors_pem(json_object_get_string(v), (size_t)json_object_get_string_len(v),
	    anchors, NULL);
	if (r == SC_ERR_CERT) {
		*why = "\"cas\" holds no PEM certificate, or one that does not parse: send the CA "
		    "certificates as PEM text";
		return SC_ERR_INVALID;
	}
	return r;
}

int
op_list(struct client *c, int64_t id, json_object *req)
{
	json_object *j, *readers;
	X509_STORE *anchors;
	const char *why;
	char reason[256];
	int r;

	if ((r = cas_anchors(req, &anchors, &why)) != SC_OK)
		return reply_err(c, id, r, why);
	/*
	 * "cached": what is known, without reading slots (a TLS handshake's
	 * certificate choice: tokens are read on PC/SC events, login, logout,
	 * import, a plain list and the periodic check, not per handshake).
	 */
	if (!arg_bool(req, "cached"))
		refresh_if_stale(c->srv);
	j = sc_store_list_json(c->srv->st, anchors);
	X509_STORE_free(anchors);
	readers = sc_pcsc_readers(c->srv->pcsc, reason, sizeof(reason));
	sc_pcsc_list_add_readers(j, readers, reason);
	return reply_ok(c, id, j);
}

int
op_find(struct client *c, int64_t id, json_object *req)
{
	json_object *out = NULL, *cand = NULL;
	const char *ref = arg_str(req, "ref");
	X509_STORE *anchors;
	const char *why;
	int r;

	if ((r = cas_anchors(req, &anchors, &why)) != SC_OK)
		return reply_err(c, id, r, why);
	if (!arg_bool(req, "cached"))	/* as list's */
		refresh_if_stale(c->srv);
	r = sc_store_find_cert(c->srv->st, ref, anchors, &out, &cand);
	X509_STORE_free(anchors);
	if (r != SC_OK)
		return ref_error(c, id, r, ref, cand);
	return reply_ok(c, id, out);
}

int
op_get_cert(struct client *c, int64_t id, json_object *req)
{
	unsigned char *der = NULL;
	size_t derlen = 0;
	json_object *chain = NULL, *res, *cand = NULL, *dummy = NULL;
	const char *ref = arg_str(req, "ref");
	char *b;
	int r;

	r = sc_store_get_cert(c->srv->st, ref, &der, &derlen, arg_bool(req, "chain") ? &chain : NULL);
	if (r != SC_OK) {
		/* For the candidates list in the message. */
		if (r == SC_ERR_NOT_FOUND || r == SC_ERR_AMBIGUOUS)
			sc_store_find_cert(c->srv->st, ref, NULL, &dummy, &cand);
		json_object_put(dummy);
		return ref_error(c, id, r, ref, cand);
	}
	res = json_object_new_object();
	b = sc_b64(der, derlen);
	json_object_object_add(res, "der", json_object_new_string(b ? b : ""));
	free(b);
	free(der);
	if (chain != NULL)
		json_object_object_add(res, "chain", chain);
	return reply_ok(c, id, res);
}

#define LOGIN_LIFETIME_MAX 31536000	/* seconds: a year */

static int
is_token_uri(const char *token)
{
	return token != NULL && strncmp(token, "pkcs11:", 7) == 0;
}


static int
login_error(struct client *c, int64_t id, int r, const char *token, json_object *flags)
{
	char msg[512];
	json_object *v;
	int low = flags && json_object_object_get_ex(flags, "pin_count_low", &v) && json_object_get_boolean(v);
	int final = flags && json_object_object_get_ex(flags, "pin_final_try", &v) && json_object_get_boolean(v);
	int in = flags && json_object_object_get_ex(flags, "logged_in", &v) && json_object_get_boolean(v);

	if (r == SC_ERR_PIN_INCORRECT && in)
		return reply_err(c, id, r, "wrong PIN: it is not the PIN the agent is logged in to "
		    "this token with (checked by the agent; the card was not asked and its retry "
		    "counter is unchanged)");
	if (tpm_login_message(c, r, token, msg, sizeof(msg)))
		return reply_err(c, id, r, msg);	/* a TPM says how its lockout stands */
	switch (r) {
	case SC_ERR_PIN_INCORRECT:
		snprintf(msg, sizeof(msg), "wrong PIN for token \"%s\"%s", token,
		    final ? "; one try is left before the PIN locks" :
		    low ? "; few tries are left before the PIN locks" :
		    "; the token counts failed tries and locks after too many");
		break;
	case SC_ERR_PIN_LOCKED:
		snprintf(msg, sizeof(msg), "the PIN of token \"%s\" is locked; unblock it with the SO "
		    "PIN or PUK: `scagent pin unblock --token %s`", token, token);
		break;
	case SC_ERR_PIN_FINAL_TRY:
		snprintf(msg, sizeof(msg), "token \"%s\" has one PIN try left; if you are sure of the "
		    "PIN, confirm with --confirm-final-try", token);
		break;
	case SC_ERR_NOT_FOUND:
		snprintf(msg, sizeof(msg), "no token %s \"%s\"; see `scagent list`",
		    is_token_uri(token) ? "matches" : "labelled", token);
		break;
	case SC_ERR_AMBIGUOUS:
		snprintf(msg, sizeof(msg), "more than one token %s \"%s\": name one with a token URI "
		    "(pkcs11:token=LABEL;serial=SERIAL, serials in `scagent list`)",
		    is_token_uri(token) ? "matches" : "is labelled", token);
		break;
	case SC_ERR_INVALID:
		snprintf(msg, sizeof(msg), "\"%s\" is not a valid token URI (RFC 7512: "
		    "pkcs11:token=LABEL;serial=SERIAL)", token);
		break;
	case SC_ERR_ALREADY:
		snprintf(msg, sizeof(msg), "already logged in to token \"%s\" (with this PIN)", token);
		break;
	case SC_ERR_DENIED:
		snprintf(msg, sizeof(msg), "the agent is logged in to token \"%s\" without a PIN it "
		    "can check (the token was logged in when the agent logged in): log out with "
		    "`scagent logout --token %s` and log in again", token, token);
		break;
	case SC_ERR_NOT_LOGGED_IN:
		snprintf(msg, sizeof(msg), "not logged in to token \"%s\"", token);
		break;
	default:
		snprintf(msg, sizeof(msg), "login to token \"%s\" failed: %s", token, sc_strerror(r));
	}
	return reply_err(c, id, r, msg);
}

/* A token's label for an event, also when the request named it by URI. */
static const char *
event_label(struct client *c, const char *token, char *label, size_t len)
{
	if (!is_token_uri(token) || sc_store_token_label(c->srv->st, token, label, len) != SC_OK)
		snprintf(label, len, "%s", token);
	return label;
}

/* Fields of a login/logout event. */
json_object *
token_fields(const char *token, const char *reason)
{
	json_object *o = json_object_new_object();

	if (token != NULL)
		sc_json_add_text(o, "token", token);
	if (reason != NULL)
		json_object_object_add(o, "reason", json_object_new_string(reason));
	return o;
}

void
tell_logouts(struct sc_server *srv, json_object *labels, const char *reason)
{
	for (size_t i = 0; labels != NULL && i < json_object_array_length(labels); i++)
		sc_server_broadcast(srv, "logout", token_fields(json_object_get_string(
		    json_object_array_get_idx(labels, i)), reason));
	json_object_put(labels);
}

/* Ask for the PIN through pinentry and log in once. */
int
login_with_pinentry(struct client *c, const char *token, int confirm, json_object **flags)
{
	char *pin = NULL;
	char desc[512];
	int r;

	if (c->srv->o.pinentry == NULL)
		return SC_ERR_NOT_LOGGED_IN;
	snprintf(desc, sizeof(desc), "Enter the PIN of smart card \"%s\" for %s", token, c->exe);
	worker_pending(c);
	if ((r = sc_pinentry_getpin(c->srv->o.pinentry, desc, c->fd, &pin)) != SC_OK)
		return r;
	r = sc_store_login(c->srv->st, token, pin, confirm, flags);
	sc_secstr_free(pin);
	if (r == SC_OK)
		monitor_kick(c->srv);	/* a new idle-logout deadline */
	return r;
}

int
op_login(struct client *c, int64_t id, json_object *req)
{
	const char *token = arg_str(req, "token"), *pin = arg_str(req, "pin");
	json_object *flags = NULL, *res;
	char detail[256], label[256];
	int r;

	json_object *lt = NULL;
	int64_t lifetime = json_object_object_get_ex(req, "lifetime", &lt) ? json_object_get_int64(lt) : 0;

	if (lifetime < 0 || lifetime > LOGIN_LIFETIME_MAX)
		return reply_err(c, id, SC_ERR_INVALID, "\"lifetime\" is in seconds, from 1 to "
		    "31536000 (a year); 0 or none: the login lasts until logout or the idle timeout");
	refresh_if_stale(c->srv);	/* a token that just arrived can be logged in to */
	if (pin == NULL && c->srv->o.pinentry == NULL)
		return reply_err(c, id, SC_ERR_INVALID, "login needs \"pin\": this agent has no "
		    "pinentry program to ask for it (scagentd --pinentry PROGRAM)");
	if (pin != NULL)
		r = sc_store_login(c->srv->st, token, pin, arg_bool(req, "confirm_final_try"), &flags);
	else
		r = login_with_pinentry(c, token, arg_bool(req, "confirm_final_try"), &flags);
	snprintf(detail, sizeof(detail), "token=\"%s\"", token);
	audit(c->srv, c, "login", detail, r);
	if (r != SC_OK) {
		r = login_error(c, id, r, token, flags);
		json_object_put(flags);
		return r;
	}
	/* Set at once after the login, before this client hears of it. */
	if (lifetime > 0 && sc_store_login_lifetime(c->srv->st, token, (unsigned long)lifetime) != SC_OK)
		sc_info("login to \"%s\": its lifetime could not be set (logged out already?)", token);
	res = json_object_new_object();
	json_object_object_add(res, "flags", flags);
	if (lifetime > 0)
		json_object_object_add(res, "lifetime", json_object_new_int64(lifetime));
	monitor_kick(c->srv);	/* a new idle-logout deadline */
	sc_server_broadcast(c->srv, "login", token_fields(event_label(c, token, label, sizeof(label)), NULL));
	return reply_ok(c, id, res);
}

int
op_logout(struct client *c, int64_t id, json_object *req)
{
	const char *token = arg_str(req, "token");
	char label[256];
	int r = sc_store_logout(c->srv->st, token);

	if (r != SC_OK)
		return login_error(c, id, r, token, NULL);
	sc_server_broadcast(c->srv, "logout", token_fields(event_label(c, token, label, sizeof(label)), NULL));
	return reply_ok(c, id, NULL);
}

/*
 * Every token logged in, logged out (the agent's workers, when the screen
 * locks or the machine sleeps: reason "lock" or "sleep"): a logout event for
 * each, and how many.
 */
int
op_logout_all(struct client *c, int64_t id, json_object *req)
{
	const char *why = arg_str(req, "reason"), *reason = why && !strcmp(why, "sleep") ? "sleep" : "lock";
	json_object *labels = NULL, *res = json_object_new_object();
	int n = sc_store_logout_all(c->srv->st, &labels);

	tell_logouts(c->srv, labels, reason);
	if (n > 0)
		sc_info("logged out of %d token(s): %s", n, reason[0] == 'l' ? "the screen locked" :
		    "the machine goes to sleep");
	json_object_object_add(res, "logged_out", json_object_new_int(n));
	json_object_object_add(res, "reason", json_object_new_string(reason));
	return reply_ok(c, id, res);
}

/*
 * The errors of a PIN change (so = 0) or unblock (so = 1) that a login does
 * not have, or says otherwise; the rest as login_error.
 */
static int
pin_error(struct client *c, int64_t id, int r, const char *token, json_object *flags, int so)
{
	const char *what = so ? "unblocked" : "changed";
	char msg[640], tpm[512];

	if (tpm_login_message(c, r, token, tpm, sizeof(tpm))) {
		snprintf(msg, sizeof(msg), "%s; the PIN was not %s", tpm, what);
		return reply_err(c, id, r, msg);
	}
	switch (r) {
	case SC_ERR_PIN_INCORRECT:
		if (so)
			snprintf(msg, sizeof(msg), "wrong SO PIN or PUK for token \"%s\" (tried once): "
			    "the PIN was not unblocked; the token counts failed tries of the SO PIN too, "
			    "and a locked SO PIN cannot be unblocked", token);
		else
			snprintf(msg, sizeof(msg), "wrong PIN for token \"%s\" (tried once): the PIN was "
			    "not changed; the token counts failed tries and locks after too many", token);
		break;
	case SC_ERR_PIN_LOCKED:
		if (!so)
			return login_error(c, id, r, token, flags);
		snprintf(msg, sizeof(msg), "the SO PIN (or PUK) of token \"%s\" is locked: nothing was "
		    "tried, and the PIN cannot be unblocked with it; ask whoever issued the token",
		    token);
		break;
	case SC_ERR_PIN_FINAL_TRY:
		if (!so)
			return login_error(c, id, r, token, flags);
		snprintf(msg, sizeof(msg), "token \"%s\" has one SO PIN (or PUK) try left: nothing "
		    "was tried; if you are sure of it, confirm with --confirm-final-try", token);
		break;
	case SC_ERR_PIN_INVALID:
		snprintf(msg, sizeof(msg), "token \"%s\" refused the new PIN (too short, too long, or "
		    "characters it does not take): the PIN was not %s", token, what);
		break;
	case SC_ERR_BUSY:
		snprintf(msg, sizeof(msg), "token \"%s\" is in use by a signature or another login: "
		    "the SO could not log in and the PIN was not unblocked; try again", token);
		break;
	default:
		return login_error(c, id, r, token, flags);
	}
	return reply_err(c, id, r, msg);
}

/* A PIN change or unblock: audited, its error explained, the token's flags as the result. */
static int
pin_reply(struct client *c, int64_t id, const char *op, int r, const char *token,
    json_object *flags, int so)
{
	char detail[256];
	json_object *res;

	snprintf(detail, sizeof(detail), "token=\"%s\"", token);
	audit(c->srv, c, op, detail, r);
	if (r != SC_OK) {
		r = pin_error(c, id, r, token, flags, so);
		json_object_put(flags);
		return r;
	}
	res = json_object_new_object();
	json_object_object_add(res, "flags", flags);
	return reply_ok(c, id, res);
}

int
op_pin_change(struct client *c, int64_t id, json_object *req)
{
	const char *token = arg_str(req, "token");
	json_object *flags = NULL;
	int r;

	r = sc_store_pin_change(c->srv->st, token, arg_str(req, "pin"), arg_str(req, "new_pin"),
	    arg_bool(req, "confirm_final_try"), &flags);
	return pin_reply(c, id, "pin-change", r, token, flags, 0);
}

int
op_pin_unblock(struct client *c, int64_t id, json_object *req)
{
	const char *token = arg_str(req, "token");
	json_object *flags = NULL;
	char label[256];
	int r, out = 0;

	r = sc_store_pin_unblock(c->srv->st, token, arg_str(req, "so_pin"), arg_str(req, "new_pin"),
	    arg_bool(req, "confirm_final_try"), &out, &flags);
	if (out)
		sc_server_broadcast(c->srv, "logout", token_fields(event_label(c, token, label,
		    sizeof(label)), "pin-unblock"));
	return pin_reply(c, id, "pin-unblock", r, token, flags, 1);
}

int
op_mechanisms(struct client *c, int64_t id, json_object *req)
{
	const char *token = arg_str(req, "token");
	json_object *res = NULL;
	int r = sc_store_mechanisms(c->srv->st, token, &res);

	if (r != SC_OK)
		return login_error(c, id, r, token, NULL);
	return reply_ok(c, id, res);
}

int
op_get_public_key(struct client *c, int64_t id, json_object *req)
{
	const char *ref = arg_str(req, "ref");
	json_object *out = NULL, *cand = NULL;
	int r = sc_store_find_key(c->srv->st, ref, &out, &cand);

	if (r != SC_OK)
		return key_ref_error(c, id, r, ref, cand);
	json_object_put(cand);
	return reply_ok(c, id, out);
}

