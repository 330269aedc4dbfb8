/*
 * The client certificate: the agent handle shared by a run's connections,
 * --cert resolved up front, and the choice among the agent's certificates
 * for a server's CertificateRequest (acceptable CAs, signature schemes,
 * suitability for client authentication, a key present on a usable token).
 */
#include "config.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "cert/certinfo.h"
#include "common/err.h"
#include "common/util.h"
#include "tls/prefs.h"
#include "tls/probe-diag.h"
#include "tls/tlsclient.h"
#include "tls/tls-private.h"

/*
 * The agent's list as it knows it, without reading slots: a handshake costs
 * the card its signature and nothing else (tokens are read on PC/SC events,
 * login, logout, import, a plain list and the agent's periodic check).
 */
#define LIST_CACHED "{\"cached\":true}"

/* ---------------------------------------------------------------- agent */

void
sc_tls_agent_init(struct sc_tls_agent *ag, const char *socket)
{
	memset(ag, 0, sizeof(*ag));
	ag->socket = socket;
	pthread_mutex_init(&ag->lock, NULL);
}

void
sc_tls_agent_clear(struct sc_tls_agent *ag)
{
	if (ag == NULL)
		return;
	scagent_close(ag->client);
	ag->client = NULL;
	pthread_mutex_destroy(&ag->lock);
}

int
sc_tls_agent_get(struct sc_tls_agent *ag, scagent_client **client, char *why, size_t whylen)
{
	char *path;
	int r = SC_OK;

	*client = NULL;
	pthread_mutex_lock(&ag->lock);
	if (ag->client == NULL && (r = scagent_connect(ag->socket, &ag->client)) != SC_OK) {
		path = scagent_default_socket(ag->socket);
		snprintf(why, whylen, "no agent at %s (%s): start one with `eval \"$(scagentd)\"` "
		    "or give --socket", path ? path : "(unknown)", scagent_strerror(r));
		free(path);
		r = SC_ERR_AGENT_UNREACHABLE;
	}
	*client = ag->client;
	pthread_mutex_unlock(&ag->lock);
	return r;
}


/* ---------------------------------------------------------------- choice */

static const struct {
	uint16_t code;
	const char *name;
} sigalg_names[] = {
	{ 0x0401, "rsa_pkcs1_sha256" }, { 0x0501, "rsa_pkcs1_sha384" }, { 0x0601, "rsa_pkcs1_sha512" },
	{ 0x0804, "rsa_pss_rsae_sha256" }, { 0x0805, "rsa_pss_rsae_sha384" }, { 0x0806, "rsa_pss_rsae_sha512" },
	{ 0x0403, "ecdsa_secp256r1_sha256" }, { 0x0503, "ecdsa_secp384r1_sha384" },
	{ 0x0603, "ecdsa_secp521r1_sha512" },
};

/* The request's signature schemes the agent can make, by name. */
void
sc_tls_sigalgs_text(const struct sc_tls_req *req, char *buf, size_t len)
{
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(sigalg_names) / sizeof(sigalg_names[0]); i++)
		for (int k = 0; k < req->nsigalgs; k++)
			if (req->sigalgs[k] == sigalg_names[i].code)
				sc_tls_append_name(buf, len, sigalg_names[i].name);
	if (buf[0] == '\0')
		snprintf(buf, len, "none the agent makes");
}

static int
req_has(const struct sc_tls_req *req, uint16_t code)
{
	for (int i = 0; i < req->nsigalgs; i++)
		if (req->sigalgs[i] == code)
			return 1;
	return 0;
}

/* NULL when a key of this type can answer req, else why not. */
static const char *
key_unfit(const char *type, const char *curve, const struct sc_tls_req *req, char *buf, size_t len)
{
	int tls13 = req->version >= TLS1_3_VERSION;

	if (req->nsigalgs == 0)
		return NULL;
	if (type != NULL && strcmp(type, "rsa") == 0) {
		if (req_has(req, 0x0804) || req_has(req, 0x0805) || req_has(req, 0x0806))
			return NULL;
		if (!tls13 && (req_has(req, 0x0401) || req_has(req, 0x0501) || req_has(req, 0x0601)))
			return NULL;
		snprintf(buf, len, "an RSA key, and the server accepts no RSA signature scheme the "
		    "agent makes%s", tls13 ? " (TLS 1.3 needs RSA-PSS)" : "");
		return buf;
	}
	if (type != NULL && strcmp(type, "ec") == 0) {
		uint16_t want = curve == NULL ? 0 : strcmp(curve, "prime256v1") == 0 ? 0x0403 :
		    strcmp(curve, "secp384r1") == 0 ? 0x0503 : strcmp(curve, "secp521r1") == 0 ? 0x0603 : 0;
		if (tls13 ? req_has(req, want) :
		    (req_has(req, 0x0403) || req_has(req, 0x0503) || req_has(req, 0x0603)))
			return NULL;
		snprintf(buf, len, "an EC key (%s), and the server accepts no matching ECDSA scheme",
		    curve ? curve : "unknown curve");
		return buf;
	}
	snprintf(buf, len, "a %s key, which TLS client authentication through the agent "
	    "does not support", type ? type : "unknown");
	return buf;
}

static int
name_in(const STACK_OF(X509_NAME) *names, const X509_NAME *n)
{
	for (int i = 0; i < sk_X509_NAME_num(names); i++)
		if (X509_NAME_cmp(sk_X509_NAME_value(names, i), n) == 0)
			return 1;
	return 0;
}

static X509 *
find_subject(STACK_OF(X509) *pool, const X509_NAME *n)
{
	for (int i = 0; i < sk_X509_num(pool); i++)
		if (X509_NAME_cmp(X509_get_subject_name(sk_X509_value(pool, i)), n) == 0)
			return sk_X509_value(pool, i);
	return NULL;
}

static int
self_issued(X509 *x)
{
	return X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0;
}

/*
 * Walk up from leaf through pool; 1 when a certificate on the way is issued
 * by one of names (or names is empty). chain gets the intermediates found.
 */
static int
chains_to(X509 *leaf, STACK_OF(X509) *pool, const STACK_OF(X509_NAME) *names,
    STACK_OF(X509) *chain, char *matched, size_t mlen)
{
	X509 *cur = leaf, *up;
	int found = sk_X509_NAME_num(names) == 0;

	for (int depth = 0; depth < 8; depth++) {
		if (!found && name_in(names, X509_get_issuer_name(cur))) {
			found = 1;
			sc_tls_name_text(X509_get_issuer_name(cur), matched, mlen);
		}
		if (self_issued(cur) || (up = find_subject(pool, X509_get_issuer_name(cur))) == NULL || up == cur)
			break;
		if (!self_issued(up) && chain != NULL && X509_up_ref(up))
			sk_X509_push(chain, up);
		cur = up;
	}
	return found;
}

static X509 *
der_to_x509(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;

	return d2i_X509(NULL, &p, (long)len);
}

/* Certificate and token CA certificates from the agent; pool gets the CAs (and --cafile's). */
static int
fetch_cert(scagent_client *cl, const char *ref, const char *cafile, X509 **x,
    STACK_OF(X509) *pool, char *why, size_t whylen)
{
	unsigned char *der = NULL;
	size_t len = 0;
	char *chain = NULL;
	json_object *arr = NULL;
	int r;

	*x = NULL;
	if ((r = scagent_get_cert(cl, ref, &der, &len, &chain)) != SC_OK) {
		snprintf(why, whylen, "%s", scagent_error(cl));
		return r;
	}
	*x = der_to_x509(der, len);
	scagent_free(der);
	if (*x == NULL) {
		scagent_free(chain);
		snprintf(why, whylen, "the agent's certificate \"%s\" does not parse", ref);
		return SC_ERR_CERT;
	}
	if (chain != NULL && (arr = json_tokener_parse(chain)) != NULL &&
	    json_object_is_type(arr, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			unsigned char *d = NULL;
			size_t dl = 0;
			X509 *ca;
			if (sc_unb64(json_object_get_string(json_object_array_get_idx(arr, i)), &d, &dl) != SC_OK)
				continue;
			if ((ca = der_to_x509(d, dl)) != NULL && !sk_X509_push(pool, ca))
				X509_free(ca);
			free(d);
		}
	}
	json_object_put(arr);
	scagent_free(chain);
	if (cafile != NULL) {
		FILE *fp = fopen(cafile, "r");
		X509 *ca;
		while (fp != NULL && (ca = PEM_read_X509(fp, NULL, NULL, NULL)) != NULL)
			if (!sk_X509_push(pool, ca))
				X509_free(ca);
		if (fp != NULL)
			fclose(fp);
		ERR_clear_error();
	}
	return SC_OK;
}

static void
accept_names(const struct sc_tls_req *req, char *buf, size_t len)
{
	buf[0] = '\0';
	for (int i = 0; i < sk_X509_NAME_num(req->ca_names); i++) {
		char nm[256];
		sc_tls_name_text(sk_X509_NAME_value(req->ca_names, i), nm, sizeof(nm));
		sc_tls_append_name(buf, len, nm);
	}
}

static void
set_choice(struct sc_tls_choice *ch, X509 *x, STACK_OF(X509) *chain, const char *label,
    const char *token)
{
	ch->cert = x;
	ch->chain = chain;
	snprintf(ch->label, sizeof(ch->label), "%s", label);
	snprintf(ch->token, sizeof(ch->token), "%s", token ? token : "");
	sc_cert_sha256_hex(x, ch->sha256);
	sc_tls_name_text(X509_get_subject_name(x), ch->subject, sizeof(ch->subject));
}

static const char *
jstr(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

/* A CA certificate kept on the token for the chain: not a candidate. */
static int
is_ca_cert(json_object *ce)
{
	json_object *ku;

	if (!json_object_object_get_ex(ce, "key_usage", &ku))
		return 0;
	for (size_t i = 0; i < json_object_array_length(ku); i++)
		if (strcmp(json_object_get_string(json_object_array_get_idx(ku, i)), "keyCertSign") == 0)
			return 1;
	return 0;
}

/* The token's login state lets the agent sign now (or it will ask for the PIN). */
static int
token_usable(json_object *tok)
{
	json_object *flags, *v;

	if (!json_object_object_get_ex(tok, "flags", &flags))
		return 1;
	if (json_object_object_get_ex(flags, "logged_in", &v) && json_object_get_boolean(v))
		return 1;
	return json_object_object_get_ex(flags, "login_required", &v) && !json_object_get_boolean(v);
}

int
sc_tls_find_cert(struct sc_tls_opts *o, char *why, size_t whylen)
{
	scagent_client *cl = NULL;
	json_object *args = NULL, *found = NULL;
	char *res = NULL;
	const char *fp;
	int r;

	o->cert_fp[0] = '\0';
	if (o->cert_ref == NULL)
		return SC_OK;
	if ((r = sc_tls_agent_get(o->agent, &cl, why, whylen)) != SC_OK)
		return r;
	if ((args = json_object_new_object()) == NULL) {
		r = SC_ERR_NOMEM;
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	json_object_object_add(args, "ref", json_object_new_string(o->cert_ref));
	if ((r = scagent_call(cl, "find", json_object_to_json_string(args), &res)) != SC_OK) {
		/* The agent's message lists the candidates. */
		snprintf(why, whylen, "--cert: %s", scagent_error(cl));
		goto out;
	}
	if ((found = json_tokener_parse(res)) == NULL || (fp = jstr(found, "sha256")) == NULL ||
	    strlen(fp) != 64) {
		r = SC_ERR_PROTOCOL;
		snprintf(why, whylen, "--cert %s: the agent's answer names no certificate", o->cert_ref);
		goto out;
	}
	snprintf(o->cert_fp, sizeof(o->cert_fp), "%s", fp);
	sc_tls_note_prefix(o->verbose, "", "--cert %s is \"%s\" on token %s (%.16s)", o->cert_ref,
	    jstr(found, "label") ? jstr(found, "label") : "", jstr(found, "token") ?
	    jstr(found, "token") : "?", fp);
	r = SC_OK;
out:
	json_object_put(found);
	json_object_put(args);
	scagent_free(res);
	return r;
}

/* The token and list entry of the certificate whose SHA-256 is fp, from the agent's list. */
static json_object *
list_entry(json_object *toks, const char *fp, char *token, size_t tokenlen)
{
	json_object *info = NULL;

	for (size_t t = 0; t < json_object_array_length(toks) && info == NULL; t++) {
		json_object *tok = json_object_array_get_idx(toks, t), *certs;
		if (!json_object_object_get_ex(tok, "certificates", &certs))
			continue;
		for (size_t i = 0; i < json_object_array_length(certs); i++) {
			json_object *ce = json_object_array_get_idx(certs, i);
			if (jstr(ce, "sha256") && strcmp(jstr(ce, "sha256"), fp) == 0) {
				info = ce;
				snprintf(token, tokenlen, "%s", jstr(tok, "label") ? jstr(tok, "label") : "");
				break;
			}
		}
	}
	return info;
}

/* --cert: the one certificate given, sent even when it chains to no CA the server names. */
static int
choose_given(const struct sc_tls_opts *o, scagent_client *cl, const struct sc_tls_req *req,
    struct sc_tls_choice *ch, const char *logprefix, const char *accepted)
{
	STACK_OF(X509) *pool = sk_X509_new_null(), *chain = sk_X509_new_null();
	X509 *x = NULL;
	json_object *list = NULL, *toks, *v, *info = NULL;
	char *text = NULL, reason[256], fp[65];
	int r;

	if ((r = fetch_cert(cl, o->cert_fp[0] ? o->cert_fp : o->cert_ref, o->cafile, &x, pool,
	    ch->why, sizeof(ch->why))) != SC_OK) {
		sc_tls_x509s_free(pool);
		sk_X509_free(chain);
		return r;
	}
	ch->candidates = 1;
	if (chains_to(x, pool, req->ca_names, chain, ch->matched_ca, sizeof(ch->matched_ca)))
		ch->matches = 1;
	else
		sc_tls_note_prefix(o->verbose, logprefix, "warning: --cert %s is not issued under a CA "
		    "the server names (%s); sending it anyway", o->cert_ref, accepted);
	sc_cert_sha256_hex(x, fp);
	/* The list entry of this certificate, for its key type and label. */
	if (scagent_call(cl, "list", LIST_CACHED, &text) == SC_OK && (list = json_tokener_parse(text)) != NULL &&
	    json_object_object_get_ex(list, "tokens", &toks))
		info = list_entry(toks, fp, ch->token, sizeof(ch->token));
	if (info != NULL && json_object_object_get_ex(info, "key", &v) &&
	    key_unfit(jstr(v, "type"), jstr(v, "curve"), req, reason, sizeof(reason)) != NULL) {
		char asked[320];
		sc_tls_req_text(req, asked, sizeof(asked));
		snprintf(ch->why, sizeof(ch->why), "--cert %.150s has %.250s; the server asked for %s",
		    o->cert_ref, reason, asked);
		json_object_put(list);
		scagent_free(text);
		X509_free(x);
		sc_tls_x509s_free(pool);
		sc_tls_x509s_free(chain);
		return SC_ERR_KEY;
	}
	{
		char tok[128];
		snprintf(tok, sizeof(tok), "%s", ch->token);
		set_choice(ch, x, chain, info && jstr(info, "label") ? jstr(info, "label") : o->cert_ref, tok);
	}
	sc_tls_x509s_free(pool);
	json_object_put(list);
	scagent_free(text);
	return SC_OK;
}

/* A certificate that fits the request. */
struct fit {
	X509 *x;
	STACK_OF(X509) *chain;		/* intermediates to send */
	char matched[256];		/* the acceptable CA it chains to */
	int score;			/* higher: a key known present, a token usable now */
	struct sc_tls_cand cand;
};

/* What the choice among the agent's certificates carries from one to the next. */
struct scan {
	const struct sc_tls_opts *o;
	scagent_client *cl;
	const struct sc_tls_req *req;
	const char *logprefix;
	char skipped[512];		/* the first few skipped, and why */
	int nskipped;
	struct fit *fits;		/* the certificates that fit, best score first */
	int nfits;
};

/* Why the list entry ce cannot go (into reason), or "" when it may. */
static void
unfit_reason(json_object *ce, const struct sc_tls_req *req, json_object **key, char *reason,
    size_t len)
{
	json_object *cba, *v;
	char why[256];

	reason[0] = '\0';
	if (json_object_object_get_ex(ce, "cba", &cba) && json_object_object_get_ex(cba, "suitable", &v) &&
	    !json_object_get_boolean(v)) {
		json_object *probs;
		snprintf(reason, len, "not suitable for client authentication:");
		if (json_object_object_get_ex(cba, "problems", &probs))
			for (size_t k = 0; k < json_object_array_length(probs); k++) {
				size_t off = strlen(reason);
				snprintf(reason + off, len - off, " %s",
				    json_object_get_string(json_object_array_get_idx(probs, k)));
			}
	} else if (json_object_object_get_ex(ce, "key", key) &&
	    jstr(*key, "private_key") && strcmp(jstr(*key, "private_key"), "absent") == 0) {
		snprintf(reason, len, "no private key on the token");
	} else if (key_unfit(jstr(*key, "type"), jstr(*key, "curve"), req, why, sizeof(why)) != NULL) {
		snprintf(reason, len, "%s", why);
	}
}

static int add_fit(struct scan *s, X509 *x, STACK_OF(X509) *chain, const char *matched, int score,
    const char *label, const char *token, const char *sha);

/* One certificate ce of token tok: skipped (said why), or a match (kept in s->fits). */
static void
consider_cert(struct scan *s, struct sc_tls_choice *ch, json_object *tok, json_object *ce)
{
	const struct sc_tls_opts *o = s->o;
	const char *logprefix = s->logprefix;
	const char *tlabel = jstr(tok, "label");
	json_object *key = NULL;
	const char *label = jstr(ce, "label") ? jstr(ce, "label") : "(no label)";
	const char *sha = jstr(ce, "sha256");
	STACK_OF(X509) *pool, *chain;
	X509 *x = NULL;
	char matched[256] = "", why[256], reason[256];
	int score;

	if (sha == NULL || is_ca_cert(ce))
		return;
	ch->candidates++;
	unfit_reason(ce, s->req, &key, reason, sizeof(reason));
	if (reason[0] != '\0') {
		sc_tls_note_prefix(o->verbose, logprefix, "skipped \"%s\" on %s: %s", label,
		    tlabel ? tlabel : "?", reason);
		if (s->nskipped++ < 4) {
			size_t off = strlen(s->skipped);
			snprintf(s->skipped + off, sizeof(s->skipped) - off, "%s%s (%s)",
			    off ? "; " : "", label, reason);
		}
		return;
	}
	pool = sk_X509_new_null();
	chain = sk_X509_new_null();
	if (fetch_cert(s->cl, sha, o->cafile, &x, pool, why, sizeof(why)) != SC_OK) {
		sc_tls_note_prefix(o->verbose, logprefix, "skipped \"%s\": %s", label, why);
		sc_tls_x509s_free(pool);
		sk_X509_free(chain);
		return;
	}
	if (!chains_to(x, pool, s->req->ca_names, chain, matched, sizeof(matched))) {
		char iss[256];
		sc_tls_name_text(X509_get_issuer_name(x), iss, sizeof(iss));
		sc_tls_note_prefix(o->verbose, logprefix, "skipped \"%s\" on %s: issued by %s, "
		    "which does not chain to a CA the server accepts", label, tlabel ? tlabel : "?", iss);
		if (s->nskipped++ < 4) {
			size_t off = strlen(s->skipped);
			snprintf(s->skipped + off, sizeof(s->skipped) - off, "%s%s (issued by %s)",
			    off ? "; " : "", label, iss);
		}
		X509_free(x);
		sc_tls_x509s_free(pool);
		sc_tls_x509s_free(chain);
		return;
	}
	ch->matches++;
	/* A key known to be there, on a token the agent can use now, goes first. */
	score = (jstr(key, "private_key") && strcmp(jstr(key, "private_key"), "present") == 0 ? 2 : 1) +
	    (token_usable(tok) ? 2 : 0);
	sc_tls_note_prefix(o->verbose, logprefix, "\"%s\" on %s fits: it chains to %s%s", label,
	    tlabel ? tlabel : "?", matched[0] ? matched : "(any CA accepted)",
	    score < 4 ? " (token not logged in, or private key not visible yet)" : "");
	if (add_fit(s, x, chain, matched, score, label, tlabel, sha) != SC_OK) {
		X509_free(x);
		sc_tls_x509s_free(chain);
	}
	sc_tls_x509s_free(pool);
}

/* The list entries are kept best score first, in the agent's order among equals. */
static int
add_fit(struct scan *s, X509 *x, STACK_OF(X509) *chain, const char *matched, int score,
    const char *label, const char *token, const char *sha)
{
	struct fit *nf = realloc(s->fits, (size_t)(s->nfits + 1) * sizeof(*nf)), f;
	struct tm tm;
	int at;

	if (nf == NULL)
		return SC_ERR_NOMEM;
	s->fits = nf;
	memset(&f, 0, sizeof(f));
	f.x = x;
	f.chain = chain;
	f.score = score;
	snprintf(f.matched, sizeof(f.matched), "%s", matched[0] ? matched : "any CA");
	snprintf(f.cand.sha256, sizeof(f.cand.sha256), "%s", sha);
	snprintf(f.cand.label, sizeof(f.cand.label), "%s", label);
	snprintf(f.cand.token, sizeof(f.cand.token), "%s", token ? token : "");
	sc_tls_name_text(X509_get_subject_name(x), f.cand.subject, sizeof(f.cand.subject));
	sc_tls_name_text(X509_get_issuer_name(x), f.cand.issuer, sizeof(f.cand.issuer));
	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
		strftime(f.cand.expires, sizeof(f.cand.expires), "%Y-%m-%d", &tm);
	for (at = s->nfits; at > 0 && s->fits[at - 1].score < score; at--)
		s->fits[at] = s->fits[at - 1];
	s->fits[at] = f;
	s->nfits++;
	return SC_OK;
}

static void
fits_free(struct scan *s)
{
	for (int i = 0; i < s->nfits; i++) {
		X509_free(s->fits[i].x);
		sc_tls_x509s_free(s->fits[i].chain);
	}
	free(s->fits);
	s->fits = NULL;
	s->nfits = 0;
}

/*
 * Several fit: the preference remembered for host:port (or host), else the
 * chooser (a person, a picker), else none. The index chosen, with ch->how;
 * or SC_ERR_* with ch->why listing the candidates and what to do.
 */
static int
pick(struct scan *s, const char *host, const char *port, struct sc_tls_choice *ch)
{
	const struct sc_tls_opts *o = s->o;
	struct sc_tls_cand *cands;
	char pref[65], where[300], server[300], asked[512] = "";
	int r = SC_ERR_AMBIGUOUS;

	if (s->nfits == 1)
		return 0;
	sc_tls_pref_key(host, port, server, sizeof(server));
	if (sc_tls_pref_lookup(host, port, pref, where, sizeof(where)) == SC_OK) {
		for (int i = 0; i < s->nfits; i++)
			if (strcmp(s->fits[i].cand.sha256, pref) == 0) {
				snprintf(ch->how, sizeof(ch->how), "preferred for %s (scagent prefer)", where);
				return i;
			}
		sc_tls_note_prefix(o->verbose, s->logprefix, "the certificate preferred for %s "
		    "(SHA-256 %.16s) is not among the %d that fit this request", where, pref, s->nfits);
	}
	if ((cands = calloc((size_t)s->nfits, sizeof(*cands))) == NULL) {
		snprintf(ch->why, sizeof(ch->why), "out of memory");
		return SC_ERR_NOMEM;
	}
	for (int i = 0; i < s->nfits; i++)
		cands[i] = s->fits[i].cand;
	if (o->choose != NULL) {
		r = o->choose(o->choose_arg, host, port, cands, s->nfits, asked, sizeof(asked));
		if (r >= 0 && r < s->nfits) {
			snprintf(ch->how, sizeof(ch->how), "chosen among the %d that fit", s->nfits);
			free(cands);
			return r;
		}
		r = r < 0 ? r : SC_ERR_INTERNAL;
	}
	{
		char list[640] = "";
		for (int i = 0; i < s->nfits; i++) {
			size_t off = strlen(list);
			snprintf(list + off, sizeof(list) - off, "%s%s (%s, expires %s, SHA-256 %.16s)",
			    i ? ", " : "", cands[i].label, cands[i].subject, cands[i].expires, cands[i].sha256);
		}
		/* A long list is cut short: the advice at its end then goes too, as a line must fit. */
		if (snprintf(ch->why, sizeof(ch->why), "several certificates fit %s: %s; %s%schoose one "
		    "with --cert REF or `scagent prefer %s REF`", server, list, asked,
		    asked[0] ? "; " : "", server) >= (int)sizeof(ch->why))
			sc_tls_note_prefix(o->verbose, s->logprefix, "the list of candidates was cut short");
	}
	free(cands);
	return r;
}

int
sc_tls_choose_cert(const struct sc_tls_opts *o, const char *host, const char *port,
    const struct sc_tls_req *req, struct sc_tls_choice *ch, const char *logprefix)
{
	struct scan s;
	json_object *list = NULL, *toks;
	char *text = NULL, accepted[512];
	int r;

	sc_tls_choice_clear(ch);
	accept_names(req, accepted, sizeof(accepted));
	memset(&s, 0, sizeof(s));
	s.o = o;
	s.req = req;
	s.logprefix = logprefix;
	if ((r = sc_tls_agent_get(o->agent, &s.cl, ch->why, sizeof(ch->why))) != SC_OK)
		return r;
	if (o->cert_ref != NULL)
		return choose_given(o, s.cl, req, ch, logprefix, accepted);
	if ((r = scagent_call(s.cl, "list", LIST_CACHED, &text)) != SC_OK) {
		snprintf(ch->why, sizeof(ch->why), "cannot list the agent's certificates: %s", scagent_error(s.cl));
		return r;
	}
	if ((list = json_tokener_parse(text)) == NULL || !json_object_object_get_ex(list, "tokens", &toks)) {
		scagent_free(text);
		json_object_put(list);
		snprintf(ch->why, sizeof(ch->why), "the agent's list is not JSON");
		return SC_ERR_PROTOCOL;
	}
	for (size_t t = 0; t < json_object_array_length(toks); t++) {
		json_object *tok = json_object_array_get_idx(toks, t), *certs;
		if (!json_object_object_get_ex(tok, "certificates", &certs))
			continue;
		for (size_t i = 0; i < json_object_array_length(certs); i++)
			consider_cert(&s, ch, tok, json_object_array_get_idx(certs, i));
	}
	json_object_put(list);
	scagent_free(text);
	if (s.nfits > 0) {
		int i = pick(&s, host, port, ch);
		if (i < 0) {
			fits_free(&s);
			return i;
		}
		set_choice(ch, s.fits[i].x, s.fits[i].chain, s.fits[i].cand.label, s.fits[i].cand.token);
		snprintf(ch->matched_ca, sizeof(ch->matched_ca), "%s", s.fits[i].matched);
		s.fits[i].x = NULL;
		s.fits[i].chain = NULL;
		fits_free(&s);
		sc_tls_note_prefix(o->verbose, logprefix, "chose \"%s\" on %s (%s)%s%s", ch->label, ch->token,
		    ch->subject, ch->how[0] ? ": " : "", ch->how);
		return SC_OK;
	}
	if (ch->candidates == 0)
		snprintf(ch->why, sizeof(ch->why), "the agent's tokens hold no certificates "
		    "(is the card inserted? `scagent list` shows what the agent sees)");
	else {
		/* Always said, not only with -v: which schemes and CAs were asked for. */
		char asked[320];
		sc_tls_req_text(req, asked, sizeof(asked));
		snprintf(ch->why, sizeof(ch->why), "none of the %d certificate%s on the agent's tokens "
		    "fits the server's request: %.280s; the server asked for %s", ch->candidates,
		    ch->candidates == 1 ? "" : "s", s.skipped, asked);
	}
	return SC_ERR_NOT_FOUND;
}

