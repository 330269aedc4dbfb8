/*
 * The sweep of scagent probe --exchange HOST (see exchange.h): the virtual
 * directories of an Exchange server, as its administrator checks them in IIS's SSL Settings: for each
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
#include <strings.h>
#include <openssl/ssl.h>
#include "common/err.h"
#include "tls/exchange.h"
#include "tls/probe-diag.h"

#define SWEEP_MAX_BODY (1024u * 1024)
#define SWEEP_TIMEOUT_MS 15000

static const char *const exchange_paths[] = {
	"/autodiscover/autodiscover.xml", "/owa/", "/ecp/", "/EWS/Exchange.asmx",
	"/Microsoft-Server-ActiveSync", "/mapi/", "/rpc/rpcproxy.dll", "/OAB/",
};

static const char not_found_advice[] = "not found (HTTP 404): this virtual directory is not "
    "published on this server, or another server answers for it";




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
set_result(struct sc_exchange_endpoint *e, const char *result, const char *code, const char *advice)
{
	e->result = result;
	e->code = code ? code : "";
	snprintf(e->advice, sizeof(e->advice), "%s", advice ? advice : "");
}

/* A connection that failed: its advice, then what failed. */
static void
set_failure(struct sc_exchange_endpoint *e, const struct sc_tls_conn *c)
{
	size_t off;

	set_result(e, "fail", "", c->fail == SC_TLS_E_NOCERT ?
	    sc_tls_nocert_advice(&c->req, c->choice.why) : sc_tls_advice(c));
	off = strlen(e->advice);
	snprintf(e->advice + off, sizeof(e->advice) - off, "%s(%.300s)", off ? " " : "", c->err);
}

/* The first connection's view of the server; 0 when it passed, else 1 (said in e). */
static int
server_checks(struct sc_exchange *sw, struct sc_tls_conn *c, struct sc_exchange_endpoint *e)
{
	struct sc_exchange_server v;
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
		set_result(e, "fail", "wrong-principal", sc_tls_principal_advice);
	else
		return 0;
	return 1;
}

/* The second connection: the same path with the certificate. */
static void
with_cert(struct sc_exchange *sw, struct sc_exchange_endpoint *e)
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
sweep_path(struct sc_exchange *sw, struct sc_exchange_endpoint *e)
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

int
sc_exchange_init(struct sc_exchange *sw, const struct sc_tls_opts *o, const char *target,
    char *why, size_t whylen)
{
	char *url = NULL, *path = NULL;
	int r;

	memset(sw, 0, sizeof(*sw));
	sw->o = o;
	sw->result = "pass";
	why[0] = '\0';
	if (strncasecmp(target, "https://", 8) == 0)
		url = strdup(target);
	else if (asprintf(&url, "https://%s/", target) < 0)
		url = NULL;
	if (url == NULL)
		return SC_ERR_NOMEM;
	r = sc_tls_parse_url(url, sw->host, sizeof(sw->host), sw->port, sizeof(sw->port), &path,
	    why, whylen);
	free(url);
	free(path);
	return r;
}

int
sc_exchange_run(struct sc_exchange *sw, const char **extra, int nextra)
{
	int n = 0, max = (int)(sizeof(exchange_paths) / sizeof(exchange_paths[0])) + nextra;
	struct sc_exchange_endpoint *ep;

	if ((ep = sw->ep = calloc((size_t)max, sizeof(*ep))) == NULL)
		return SC_ERR_NOMEM;
	for (size_t i = 0; i < sizeof(exchange_paths) / sizeof(exchange_paths[0]); i++)
		ep[n++].path = exchange_paths[i];
	for (int i = 0; i < nextra; i++)
		ep[n++].path = extra[i];
	for (int i = 0; i < n; i++) {
		sweep_path(sw, &ep[i]);
		if (rank(ep[i].result) > rank(sw->result))
			sw->result = ep[i].result;
		/* A server that failed its checks gets nothing more: no other path either. */
		if (sw->sv.checked && i == 0 && strcmp(ep[i].result, "fail") == 0 &&
		    (strcmp(sw->sv.chain.status, "fail") == 0 || strcmp(sw->sv.name.status, "fail") == 0 ||
		    sw->sv.principal[0] != '\0')) {
			n = 0;	/* no path was tried: the server object says why */
			sw->result = "fail";
			break;
		}
	}
	sw->n = n;
	return SC_OK;
}

void
sc_exchange_free(struct sc_exchange *sw)
{
	free(sw->ep);
	sw->ep = NULL;
	sw->n = 0;
}
