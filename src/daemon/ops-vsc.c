/*
 * TPM virtual smart cards and enrolment: init-token, delete-token, vsc-list,
 * keygen, import; and the PIN message of a token on a TPM, which says how
 * the TPM's dictionary-attack lockout stands.
 */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include "common/err.h"
#include "common/text.h"
#include "common/util.h"
#include "daemon/server-private.h"
#include "token/token.h"
#include "token/tpm.h"

/*
 * For a token on a TPM: the PIN error with the TPM's dictionary-attack
 * state. Returns 0 when the token is not on a TPM or the TPM cannot be read.
 */
int
tpm_login_message(struct client *c, int r, const char *token, char *msg, size_t len)
{
	json_object *l = NULL, *v;
	unsigned long counter, max, interval;
	char d1[32], d2[32];

	if (r != SC_ERR_PIN_INCORRECT && r != SC_ERR_PIN_LOCKED && r != SC_ERR_PIN_FINAL_TRY)
		return 0;
	if (sc_store_tpm_lockout(c->srv->st, token, &l) != SC_OK)
		return 0;
	counter = json_object_object_get_ex(l, "counter", &v) ? (unsigned long)json_object_get_int64(v) : 0;
	max = json_object_object_get_ex(l, "max_tries", &v) ? (unsigned long)json_object_get_int64(v) : 0;
	interval = json_object_object_get_ex(l, "interval", &v) ? (unsigned long)json_object_get_int64(v) : 0;
	json_object_put(l);
	sc_tpm_duration(interval, d1, sizeof(d1));
	switch (r) {
	case SC_ERR_PIN_INCORRECT:
		snprintf(msg, len, "wrong PIN for TPM token \"%s\"; the TPM has counted %lu of %lu failed "
		    "tries before its dictionary-attack lockout (it forgives one every %s)",
		    token, counter, max, d1);
		break;
	case SC_ERR_PIN_FINAL_TRY:
		snprintf(msg, len, "TPM token \"%s\": %lu of %lu failed tries are counted, one more wrong "
		    "PIN locks the TPM for at least %s; if you are sure of the PIN, confirm with "
		    "--confirm-final-try", token, counter, max, d1);
		break;
	default:
		if (interval == 0)
			snprintf(msg, len, "the TPM holding token \"%s\" is in dictionary-attack lockout "
			    "(%lu failed tries, the limit is %lu) and does not recover by itself: the TPM "
			    "owner must clear it (tpm2_dictionarylockout --clear-lockout)", token, counter, max);
		else
			snprintf(msg, len, "the TPM holding token \"%s\" is in dictionary-attack lockout "
			    "(%lu failed tries, the limit is %lu): no PIN was tried. It forgives one failed "
			    "try every %s, so a PIN can be tried again in at most %s (all forgiven in %s); "
			    "the TPM owner can clear the lockout at once (tpm2_dictionarylockout "
			    "--clear-lockout)", token, counter, max, d1, d1,
			    sc_tpm_duration(counter * interval, d2, sizeof(d2)));
	}
	return 1;
}

int
op_init_token(struct client *c, int64_t id, json_object *req)
{
	const char *label = arg_str(req, "label");
	json_object *res;
	char why[512], detail[256];
	int r;

	r = sc_store_init_token(c->srv->st, label, arg_str(req, "so_pin"), arg_str(req, "pin"),
	    why, sizeof(why));
	snprintf(detail, sizeof(detail), "token=\"%s\"", label);
	audit(c->srv, c, "init-token", detail, r);
	/* Also after a failure: the token may exist without its user PIN. */
	server_refresh(c->srv, 1, NULL);	/* token-added, changed */
	if (r != SC_OK)
		return reply_err(c, id, r, *why ? why : sc_strerror(r));
	res = json_object_new_object();
	sc_json_add_text(res, "label", label);
	json_object_object_add(res, "module", json_object_new_string(sc_store_vsc_module(c->srv->st)));
	return reply_ok(c, id, res);
}

int
op_delete_token(struct client *c, int64_t id, json_object *req)
{
	const char *label = arg_str(req, "label");
	char why[512], detail[256];
	int r;

	r = sc_store_delete_token(c->srv->st, label, why, sizeof(why));
	snprintf(detail, sizeof(detail), "token=\"%s\"", label);
	audit(c->srv, c, "delete-token", detail, r);
	server_refresh(c->srv, 1, NULL);	/* token-removed, changed */
	if (r != SC_OK)
		return reply_err(c, id, r, *why ? why : sc_strerror(r));
	return reply_ok(c, id, NULL);
}

int
op_vsc_list(struct client *c, int64_t id, json_object *req)
{
	return reply_ok(c, id, sc_store_vsc_list_json(c->srv->st));
}

int
op_keygen(struct client *c, int64_t id, json_object *req)
{
	const char *token = arg_str(req, "token"), *type = arg_str(req, "type");
	const char *hexid = arg_str(req, "key_id");
	unsigned char *kid = NULL;
	size_t kidlen = 0;
	json_object *out = NULL;
	char why[512], detail[256];
	int kt = sc_keytype_parse(type), r;

	if (kt < 0) {
		snprintf(why, sizeof(why), "unknown key type \"%.32s\"; use rsa:2048, rsa:3072 or ec:p256", type);
		return reply_err(c, id, SC_ERR_INVALID, why);
	}
	if (hexid != NULL && sc_unhex(hexid, &kid, &kidlen) != SC_OK)
		return reply_err(c, id, SC_ERR_INVALID, "\"key_id\" must be an even number of hex digits");
	r = sc_store_keygen(c->srv->st, token, kt, arg_str(req, "label"), kid, kidlen, &out,
	    why, sizeof(why));
	free(kid);
	snprintf(detail, sizeof(detail), "token=\"%s\" type=%s", token, type);
	audit(c->srv, c, "keygen", detail, r);
	if (r != SC_OK)
		return reply_err(c, id, r, *why ? why : sc_strerror(r));
	sc_server_broadcast(c->srv, "changed", json_object_new_object());
	return reply_ok(c, id, out);
}

int
op_import(struct client *c, int64_t id, json_object *req)
{
	const char *token = arg_str(req, "token"), *chain64 = arg_str(req, "chain");
	unsigned char *der = NULL, *chain = NULL;
	size_t derlen = 0, chainlen = 0;
	json_object *out = NULL;
	char why[1024], detail[256];
	int r;

	if (sc_unb64(arg_str(req, "cert"), &der, &derlen) != SC_OK ||
	    (chain64 != NULL && sc_unb64(chain64, &chain, &chainlen) != SC_OK)) {
		free(der);
		return reply_err(c, id, SC_ERR_INVALID, "\"cert\"/\"chain\" is not valid base64");
	}
	r = sc_store_import_cert(c->srv->st, token, der, derlen, chain, chainlen, &out,
	    why, sizeof(why));
	free(der);
	free(chain);
	snprintf(detail, sizeof(detail), "token=\"%s\"", token);
	audit(c->srv, c, "import", detail, r);
	if (r != SC_OK)
		return reply_err(c, id, r, *why ? why : sc_strerror(r));
	sc_server_broadcast(c->srv, "changed", json_object_new_object());
	return reply_ok(c, id, out);
}

