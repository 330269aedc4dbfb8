/*
 * scagent probe --exchange HOST: the virtual directories of an Exchange
 * server, as its administrator checks them in IIS's SSL Settings: for each
 * path, whether a client certificate is asked for and when (handshake,
 * TLS 1.2 renegotiation, TLS 1.3 post-handshake authentication, never),
 * whether it is required ("Require") or only accepted ("Accept"), the HTTP
 * status without and with the card's certificate, and one line of advice.
 *
 * Two connections per path: the first sends no certificate; the second,
 * strict as `connect`, presents one. The second connections keep their
 * sessions in the run's cache (o->sessions, tls/sessions.h) and offer them,
 * so a server that asks in the handshake and resumes sessions costs one
 * card signature for the whole sweep. A server that fails its chain, name or principal checks
 * is sent no certificate at all (as probe).
 */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>
#include <openssl/ssl.h>
#include "cli/cli.h"
#include "cli/exchange.h"
#include "common/err.h"
#include "tls/probe-diag.h"

#define SWEEP_MAX_BODY (1024u * 1024)
#define SWEEP_TIMEOUT_MS 15000

static const char *const exchange_paths[] = {
	"/autodiscover/autodiscover.xml", "/owa/", "/ecp/", "/EWS/Exchange.asmx",
	"/Microsoft-Server-ActiveSync", "/mapi/", "/rpc/rpcproxy.dll", "/OAB/",
};

static const char not_found_advice[] = "not found (HTTP 404): this virtual directory is not "
    "published on this server, or another server answers for it";

struct endpoint {
	const char *path;
	const char *client_cert;	/* require, accept, none */
	const char *requested;		/* handshake, renegotiation, post-handshake, never */
	int without, with;		/* HTTP status; -1: none */
	const char *result;		/* pass, warn, fail */
	const char *code;		/* a finding's code, or "" */
	char advice[640];
};

/* The server as the first connection saw it: chain, name, principal. */
struct server_view {
	int checked;
	struct sc_tls_finding chain, name;
	char principal[512];		/* "" when it matches or was not asked */
	char desc[128];
};

/* What the sweep carries from one path to the next. */
struct sweep {
	const struct sc_tls_opts *o;
	char host[256], port[8];
	int signatures;
	struct server_view sv;
};

static const char *
requested_name(int phase)
{
	switch (phase) {
	case SC_TLS_REQ_HANDSHAKE:
		return "handshake";
	case SC_TLS_REQ_RENEGOTIATION:
		return "renegotiation";
	case SC_TLS_REQ_PHA:
		return "post-handshake";
	default:
		return "never";
	}
}

static int
rank(const char *result)
{
	return strcmp(result, "fail") == 0 ? 2 : strcmp(result, "warn") == 0 ? 1 : 0;
}

static void
set_result(struct endpoint *e, const char *result, const char *code, const char *advice)
{
	e->result = result;
	e->code = code ? code : "";
	snprintf(e->advice, sizeof(e->advice), "%s", advice ? advice : "");
}

/* A connection that failed: its advice, then what failed. */
static void
set_failure(struct endpoint *e, const struct sc_tls_conn *c)
{
	size_t off;

	set_result(e, "fail", "", c->fail == SC_TLS_E_NOCERT ?
	    sc_tls_nocert_advice(&c->req, c->choice.why) : sc_tls_advice(c));
	off = strlen(e->advice);
	snprintf(e->advice + off, sizeof(e->advice) - off, "%s(%.300s)", off ? " " : "", c->err);
}

/* The first connection's view of the server; 0 when it passed, else 1 (said in e). */
static int
server_checks(struct sweep *sw, struct sc_tls_conn *c, struct endpoint *e)
{
	struct server_view v;
	char names[256];

	memset(&v, 0, sizeof(v));
	v.checked = 1;
	sc_tls_diag_chain(c, &v.chain);
	sc_tls_diag_name(c, &v.name);
	if (sw->o->principal != NULL && SSL_get0_peer_certificate(c->ssl) != NULL &&
	    !sc_tls_principal_matches(SSL_get0_peer_certificate(c->ssl), sw->o->principal, names,
	    sizeof(names)))
		snprintf(v.principal, sizeof(v.principal), "--principal msstd:%.150s does not match "
		    "the server certificate, which names %.200s", sw->o->principal, names[0] ? names : "nothing");
	sc_tls_describe(c, v.desc, sizeof(v.desc));
	if (!sw->sv.checked)
		sw->sv = v;
	if (strcmp(v.chain.status, "fail") == 0)
		set_result(e, "fail", v.chain.code, v.chain.advice);
	else if (strcmp(v.name.status, "fail") == 0)
		set_result(e, "fail", v.name.code, v.name.advice);
	else if (v.principal[0] != '\0')
		set_result(e, "fail", "wrong-principal", "set --principal msstd:NAME to the certificate's "
		    "CN or a DNS name, or check you reach the right server");
	else
		return 0;
	return 1;
}

/* The second connection: the same path with the certificate. */
static void
with_cert(struct sweep *sw, struct endpoint *e)
{
	struct sc_tls_opts o2 = *sw->o;
	struct sc_tls_conn c;
	struct sc_http_resp r;
	struct sc_tls_finding f;

	memset(&r, 0, sizeof(r));
	o2.strict = 1;
	o2.offer_cert = 1;
	o2.timeout_ms = SWEEP_TIMEOUT_MS;
	sc_tls_conn_init(&c, &o2, sw->host, sw->port);
	snprintf(c.logprefix, sizeof(c.logprefix), "%.20s: ", e->path);
	if (sc_tls_open(&c) != SC_OK ||
	    sc_http_exchange(&c, "GET", e->path, NULL, 0, NULL, 0, SWEEP_MAX_BODY, &r) != SC_OK) {
		set_failure(e, &c);
		goto out;
	}
	e->with = r.status;
	sw->signatures += c.signer.nsigs;
	if (c.fail == SC_TLS_OK)
		SSL_shutdown(c.ssl);
	/*
	 * A resumed session carries the certificate of the connection it came
	 * from: for what the server's answer means, that certificate was sent.
	 * (Set after the close_notify: no later ticket is kept under it.)
	 */
	if (!c.cert_sent && c.resumed) {
		c.cert_sent = 1;
		snprintf(c.choice.label, sizeof(c.choice.label), "%s", c.sess_id.label);
	}
	sc_tls_diag_http(&c, &r, &f);
	if (!c.cert_sent)
		set_result(e, "fail", "", c.choice.why[0] ? sc_tls_nocert_advice(&c.req, c.choice.why) :
		    "the server did not ask for the certificate on this connection");
	else if (r.status == 404)
		set_result(e, "warn", "not-found", not_found_advice);
	else if (f.code[0] != '\0' || strcmp(f.status, "fail") == 0)
		set_result(e, "fail", f.code, f.advice[0] ? f.advice : "check the server's logs for this URL");
out:
	sc_http_resp_free(&r);
	sc_tls_conn_free(&c);
}

/* One path: without, then (when asked for) with the certificate. */
static void
sweep_path(struct sweep *sw, struct endpoint *e)
{
	struct sc_tls_opts o1 = *sw->o;
	struct sc_tls_conn c;
	struct sc_http_resp r;
	struct sc_tls_finding req;
	int hs_ok, http_ok = 0;

	memset(&r, 0, sizeof(r));
	e->without = e->with = -1;
	e->client_cert = "none";
	e->requested = "never";
	set_result(e, "pass", "", "");
	o1.strict = 0;
	o1.offer_cert = 0;
	o1.timeout_ms = SWEEP_TIMEOUT_MS;
	sc_tls_conn_init(&c, &o1, sw->host, sw->port);
	hs_ok = sc_tls_open(&c) == SC_OK;
	if (c.ssl == NULL || (!hs_ok && c.requests == 0 && SSL_get0_peer_certificate(c.ssl) == NULL)) {
		set_failure(e, &c);
		goto out;
	}
	if (server_checks(sw, &c, e))
		goto out;	/* nothing more for a doubtful server */
	if (hs_ok) {
		c.fail = SC_TLS_OK;
		if ((http_ok = sc_http_exchange(&c, "GET", e->path, NULL, 0, NULL, 0, SWEEP_MAX_BODY,
		    &r) == SC_OK))
			e->without = r.status;
	}
	e->requested = requested_name(c.req_phase);
	sc_tls_diag_required(&c, hs_ok, http_ok, &r, &req);
	if (c.requests == 0) {
		if (http_ok && r.status == 404)
			set_result(e, "warn", "not-found", not_found_advice);
		else if (!http_ok)
			set_result(e, "fail", "", sc_tls_advice(&c));
		else
			set_result(e, "warn", "no-cert-requested", "no certificate is asked for here: if "
			    "certificate-based authentication is meant for this virtual directory, set its "
			    "IIS SSL Settings to Require client certificates");
		goto out;
	}
	e->client_cert = strcmp(req.status, "warn") == 0 ? "accept" : "require";
	if (strcmp(req.status, "warn") == 0)
		set_result(e, "warn", req.code, req.advice);
	with_cert(sw, e);
out:
	sc_http_resp_free(&r);
	sc_tls_conn_free(&c);
}

static int
parse_target(const char *target, struct sweep *sw)
{
	char *url = NULL, *path = NULL, why[256];
	int r;

	if (strncasecmp(target, "https://", 8) == 0)
		url = strdup(target);
	else if (asprintf(&url, "https://%s/", target) < 0)
		url = NULL;
	if (url == NULL)
		return SC_ERR_NOMEM;
	r = sc_tls_parse_url(url, sw->host, sizeof(sw->host), sw->port, sizeof(sw->port), &path,
	    why, sizeof(why));
	if (r != SC_OK)
		cli_err("--exchange %s: %s", target, why);
	free(url);
	free(path);
	return r;
}

static void
print_json(const struct sweep *sw, const struct endpoint *ep, int n, const char *result)
{
	json_object *o = json_object_new_object(), *arr = json_object_new_array(), *sv;
	char hp[300];

	snprintf(hp, sizeof(hp), "%s%s%s", sw->host, strcmp(sw->port, "443") ? ":" : "",
	    strcmp(sw->port, "443") ? sw->port : "");
	json_object_object_add(o, "host", json_object_new_string(hp));
	for (int i = 0; i < n; i++) {
		json_object *e = json_object_new_object();
		json_object_object_add(e, "path", json_object_new_string(ep[i].path));
		json_object_object_add(e, "client_cert", json_object_new_string(ep[i].client_cert));
		json_object_object_add(e, "requested", json_object_new_string(ep[i].requested));
		json_object_object_add(e, "status_without_cert",
		    ep[i].without >= 0 ? json_object_new_int(ep[i].without) : NULL);
		json_object_object_add(e, "status_with_cert",
		    ep[i].with >= 0 ? json_object_new_int(ep[i].with) : NULL);
		json_object_object_add(e, "result", json_object_new_string(ep[i].result));
		if (ep[i].code[0])
			json_object_object_add(e, "code", json_object_new_string(ep[i].code));
		json_object_object_add(e, "advice", json_object_new_string(ep[i].advice));
		json_object_array_add(arr, e);
	}
	json_object_object_add(o, "endpoints", arr);
	if (sw->sv.checked) {
		sv = json_object_new_object();
		json_object_object_add(sv, "tls", json_object_new_string(sw->sv.desc));
		json_object_object_add(sv, "server_chain", json_object_new_string(sw->sv.chain.status));
		if (sw->sv.chain.code[0])
			json_object_object_add(sv, "code", json_object_new_string(sw->sv.chain.code));
		json_object_object_add(sv, "detail", json_object_new_string(sw->sv.chain.detail));
		if (sw->sv.chain.advice[0] && strcmp(sw->sv.chain.status, "pass") != 0)
			json_object_object_add(sv, "advice", json_object_new_string(sw->sv.chain.advice));
		json_object_object_add(sv, "server_name", json_object_new_string(sw->sv.name.status));
		if (strcmp(sw->sv.name.status, "fail") == 0)
			json_object_object_add(sv, "name_detail", json_object_new_string(sw->sv.name.detail));
		if (sw->sv.principal[0])
			json_object_object_add(sv, "principal", json_object_new_string(sw->sv.principal));
		json_object_object_add(o, "server", sv);
	}
	json_object_object_add(o, "signatures", json_object_new_int(sw->signatures));
	json_object_object_add(o, "result", json_object_new_string(result));
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
	    JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

static void
status_text(int status, char *buf, size_t len)
{
	if (status >= 0)
		snprintf(buf, len, "%d", status);
	else
		snprintf(buf, len, "-");
}

static void
print_table(const struct sweep *sw, const struct endpoint *ep, int n, const char *result)
{
	char w1[16], w2[16];

	cli_say(stdout, "Exchange virtual directories on %s port %s%s%s%s", sw->host, sw->port,
	    sw->sv.checked ? " (" : "", sw->sv.checked ? sw->sv.desc : "", sw->sv.checked ? ")" : "");
	if (sw->sv.checked && strcmp(sw->sv.chain.status, "pass") != 0) {
		cli_say(stdout, "server-chain %s [%s]: %s", sw->sv.chain.status, sw->sv.chain.code,
		    sw->sv.chain.detail);
		cli_say(stdout, "  advice: %s", sw->sv.chain.advice);
	}
	if (sw->sv.checked && strcmp(sw->sv.name.status, "fail") == 0)
		cli_say(stdout, "server-name fail [wrong-name]: %s", sw->sv.name.detail);
	if (sw->sv.checked && sw->sv.principal[0])
		cli_say(stdout, "principal fail: %s", sw->sv.principal);
	printf("%-32s %-8s %-15s %-7s %-7s %-6s %s\n", "PATH", "CERT", "REQUESTED", "WITHOUT",
	    "WITH", "RESULT", "ADVICE");
	for (int i = 0; i < n; i++) {
		status_text(ep[i].without, w1, sizeof(w1));
		status_text(ep[i].with, w2, sizeof(w2));
		cli_say(stdout, "%-32s %-8s %-15s %-7s %-7s %-6s %s%s%s%s", ep[i].path, ep[i].client_cert,
		    ep[i].requested, w1, w2, ep[i].result, ep[i].code[0] ? "[" : "", ep[i].code,
		    ep[i].code[0] ? "] " : "", ep[i].advice[0] ? ep[i].advice : "-");
	}
	printf("card signatures: %d\n", sw->signatures);
	printf("result: %s\n", result);
}

int
probe_exchange(const struct sc_tls_opts *o, const char *target, const char **extra,
    int nextra, int json)
{
	struct sweep sw;
	struct endpoint *ep = NULL;
	const char *result = "pass";
	int n = 0, max = (int)(sizeof(exchange_paths) / sizeof(exchange_paths[0])) + nextra;
	int rc = EX_SC_FAIL;

	memset(&sw, 0, sizeof(sw));
	sw.o = o;
	if (parse_target(target, &sw) != SC_OK)
		return EX_SC_USAGE;
	if ((ep = calloc((size_t)max, sizeof(*ep))) == NULL)
		return EX_SC_FAIL;
	for (size_t i = 0; i < sizeof(exchange_paths) / sizeof(exchange_paths[0]); i++)
		ep[n++].path = exchange_paths[i];
	for (int i = 0; i < nextra; i++)
		ep[n++].path = extra[i];
	for (int i = 0; i < n; i++) {
		sweep_path(&sw, &ep[i]);
		if (rank(ep[i].result) > rank(result))
			result = ep[i].result;
		/* A server that failed its checks gets nothing more: no other path either. */
		if (sw.sv.checked && i == 0 && strcmp(ep[i].result, "fail") == 0 &&
		    (strcmp(sw.sv.chain.status, "fail") == 0 || strcmp(sw.sv.name.status, "fail") == 0 ||
		    sw.sv.principal[0] != '\0')) {
			n = 0;	/* no path was tried: the server object says why */
			result = "fail";
			break;
		}
	}
	if (json)
		print_json(&sw, ep, n, result);
	else
		print_table(&sw, ep, n, result);
	rc = strcmp(result, "fail") == 0 ? EX_SC_FAIL : EX_SC_OK;
	free(ep);
	return rc;
}
