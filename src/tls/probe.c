/*
 * scagent probe's checks (see probe.h), in three connections: the first
 * observes and sends no certificate (reaching the server, handshake, chain,
 * name, principal, whether and when a certificate is asked for, whether it
 * is required); the second, strict as connect, presents the certificate
 * chosen (client-auth, http); when the server accepted it, a third offers
 * the session kept from the second and answers no request (resumption).
 */
#include "config.h"
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include "cert/certinfo.h"
#include "common/err.h"
#include "tls/probe-diag.h"
#include "tls/probe.h"

#define MAX_BODY (256u * 1024 * 1024)

const char *const sc_probe_check_ids[SC_PROBE_COUNT] = {
	"resolve", "tcp", "proxy", "tls-handshake", "server-chain", "server-name", "principal",
	"client-cert-request", "client-cert-required", "client-cert-match", "client-auth", "http"
};

/* One probe: its connections and what they found. */
struct probe {
	const struct sc_probe_opts *o;
	struct sc_probe_check *k;
	struct sc_tls_opts o1, o2, o3;
	struct sc_tls_conn c1, c2, c3;
	struct sc_http_resp r1, r2, *final;	/* final: the answer http tells about */
	struct sc_tls_choice choice;
	struct addrinfo *res;
	char desc[128];
	int hs_ok, matched, http1;
};

static void set_check(struct sc_probe_check *k, const char *status, const char *advice,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
set_check(struct sc_probe_check *k, const char *status, const char *advice, const char *fmt, ...)
{
	va_list ap;

	k->status = status;
	k->code = NULL;
	va_start(ap, fmt);
	vsnprintf(k->detail, sizeof(k->detail), fmt, ap);
	va_end(ap);
	snprintf(k->advice, sizeof(k->advice), "%s", advice ? advice : "");
}

static char *
name_of(const X509_NAME *n)
{
	char *s = sc_name_oneline(n);

	return s ? s : strdup("(none)");
}

/* A check from a finding of probe-diag.c. */
static void
set_finding(struct sc_probe_check *k, const struct sc_tls_finding *f)
{
	set_check(k, f->status, f->advice, "%s", f->detail);
	k->code = f->code && f->code[0] ? f->code : NULL;
}

/* server-chain: each certificate, where the path breaks, and its code. */
static void
check_chain(const struct sc_probe_opts *po, struct sc_tls_conn *conn, struct sc_probe_check *k)
{
	STACK_OF(X509) *sk = SSL_get_peer_cert_chain(conn->ssl);
	json_object *arr = json_object_new_array();
	struct sc_tls_finding fd;

	sc_tls_diag_chain(conn, &fd);
	set_finding(k, &fd);
	if (sk == NULL || sk_X509_num(sk) == 0) {
		json_object_put(arr);
		return;
	}
	for (int i = 0; i < sk_X509_num(sk); i++) {
		json_object *o = json_object_new_object(), *d = json_object_new_object(), *v;
		if (sc_cert_describe(sk_X509_value(sk, i), d) == SC_OK) {
			json_object_object_add(o, "depth", json_object_new_int(i));
			for (const char *const *f = (const char *const[]){ "subject", "issuer", "not_before",
			    "not_after", "sha256", NULL }; *f; f++)
				if (json_object_object_get_ex(d, *f, &v))
					json_object_object_add(o, *f, json_object_get(v));
		}
		json_object_put(d);
		json_object_array_add(arr, o);
		if (conn->o->verbose && po->say != NULL) {
			X509 *x = sk_X509_value(sk, i);
			char *s = name_of(X509_get_subject_name(x)), *is = name_of(X509_get_issuer_name(x));
			po->say("server certificate %d: %s (issuer %s)", i, s, is);
			free(s);
			free(is);
		}
	}
	k->extra = arr;
}

static void
check_name(struct sc_tls_conn *conn, struct sc_probe_check *k)
{
	struct sc_tls_finding f;

	sc_tls_diag_name(conn, &f);
	set_finding(k, &f);
}

/*
 * When server-chain, server-name or principal failed: the later checks
 * become skip, saying why, and 1; else 0.
 */
static int
skip_after_failed_server(struct sc_probe_check *k, const struct sc_tls_conn *c1)
{
	static const char advice[] = "fix the failed server check first: scagent offers a client "
	    "certificate only to a server that passes server-chain, server-name and principal";
	char failed[64] = "";

	for (int i = SC_PROBE_CHAIN; i <= SC_PROBE_PRINCIPAL; i++) {
		size_t off = strlen(failed);
		if (strcmp(k[i].status, "fail") == 0)
			snprintf(failed + off, sizeof(failed) - off, "%s%s", off ? ", " : "",
			    sc_probe_check_ids[i]);
	}
	if (failed[0] == '\0')
		return 0;
	set_check(&k[SC_PROBE_REQUEST], "skip", NULL, "not tried: the server failed %s; nothing was sent "
	    "to it after the handshake%s%s", failed, c1->requests > 0 ? " (it asked for a client "
	    "certificate " : "", c1->requests > 0 ? "in the handshake)" : "");
	set_check(&k[SC_PROBE_REQUIRED], "skip", NULL, "not tried: the server failed %s", failed);
	set_check(&k[SC_PROBE_MATCH], "skip", NULL, "not tried: the server failed %s; no certificate "
	    "was chosen for it", failed);
	set_check(&k[SC_PROBE_AUTH], "skip", advice, "not tried: the server failed %s; no certificate "
	    "was offered to it and nothing was signed", failed);
	set_check(&k[SC_PROBE_HTTP], "skip", NULL, "not tried: the server failed %s; no HTTP request "
	    "was sent to it", failed);
	return 1;
}

/* The first connection up to TLS: proxy, resolve, tcp, the proxy's CONNECT. 0, or -1 (said). */
static int
probe_reach(struct probe *p)
{
	struct sc_probe_check *k = p->k;
	struct sc_tls_conn *c1 = &p->c1;
	const char *host = p->o->host, *port = p->o->port;

	if (sc_tls_proxy_choose(c1) != SC_OK) {
		set_check(&k[SC_PROBE_RESOLVE], "fail", sc_tls_advice(c1), "%s", c1->err);
		return -1;
	}
	/* The proxy check is there only when a proxy is used. */
	k[SC_PROBE_PROXY].status = c1->via_proxy ? k[SC_PROBE_PROXY].status : "absent";
	if (sc_tls_resolve(c1, &p->res) != SC_OK) {
		set_check(&k[SC_PROBE_RESOLVE], "fail", sc_tls_advice(c1), "%s", c1->err);
		return -1;
	}
	{
		char addrs[256] = "";
		for (struct addrinfo *ai = p->res; ai; ai = ai->ai_next) {
			char h[64];
			size_t off = strlen(addrs);
			if (getnameinfo(ai->ai_addr, ai->ai_addrlen, h, sizeof(h), NULL, 0, NI_NUMERICHOST) == 0 &&
			    strstr(addrs, h) == NULL && off < sizeof(addrs))
				snprintf(addrs + off, sizeof(addrs) - off, "%s%s", off ? ", " : "", h);
		}
		set_check(&k[SC_PROBE_RESOLVE], "pass", NULL, "%s%s is %s", c1->via_proxy ? "the proxy " : "",
		    c1->via_proxy ? c1->proxy.host : host, addrs);
	}
	if (sc_tls_tcp(c1, p->res) != SC_OK) {
		set_check(&k[SC_PROBE_TCP], "fail", sc_tls_advice(c1), "%s", c1->err);
		return -1;
	}
	set_check(&k[SC_PROBE_TCP], "pass", NULL, "connected to %s%s port %s", c1->via_proxy ? "the proxy at " : "",
	    c1->addr, c1->via_proxy ? c1->proxy.port : port);
	if (c1->via_proxy) {
		if (sc_tls_proxy_connect(c1) != SC_OK) {
			set_check(&k[SC_PROBE_PROXY], "fail", sc_tls_advice(c1), "%s", c1->err);
			return -1;
		}
		set_check(&k[SC_PROBE_PROXY], "pass", NULL, "%s (from %s) connected to %s:%s: %s", c1->proxy.shown,
		    c1->proxy.source, host, port, c1->proxy_answer);
	}
	return 0;
}

/* The first handshake, and the server it shows: chain, name, principal. */
static void
probe_server(struct probe *p)
{
	struct sc_probe_check *k = p->k;
	struct sc_tls_conn *c1 = &p->c1;
	const char *principal = p->o->tls->principal;

	p->hs_ok = sc_tls_handshake(c1) == SC_OK;
	if (c1->ssl != NULL)
		sc_tls_describe(c1, p->desc, sizeof(p->desc));
	if (p->hs_ok)
		set_check(&k[SC_PROBE_HANDSHAKE], "pass", NULL, "%s", p->desc);
	else if (c1->requests > 0)
		set_check(&k[SC_PROBE_HANDSHAKE], "pass", NULL, "%s; the server ended this handshake because no "
		    "client certificate was sent (checked below)", SSL_get_version(c1->ssl));
	else {
		set_check(&k[SC_PROBE_HANDSHAKE], "fail", sc_tls_advice(c1), "%s", c1->err);
	}
	if (SSL_get0_peer_certificate(c1->ssl) == NULL)
		return;
	check_chain(p->o, c1, &k[SC_PROBE_CHAIN]);
	check_name(c1, &k[SC_PROBE_NAME]);
	if (principal != NULL) {
		char names[512];
		if (sc_tls_principal_matches(SSL_get0_peer_certificate(c1->ssl), principal,
		    names, sizeof(names)))
			set_check(&k[SC_PROBE_PRINCIPAL], "pass", NULL, "msstd:%s matches the server "
			    "certificate", principal);
		else {
			c1->fail = SC_TLS_E_PRINCIPAL;
			set_check(&k[SC_PROBE_PRINCIPAL], "fail", sc_tls_advice(c1), "msstd:%s does not "
			    "match the server certificate, which names %s", principal,
			    names[0] ? names : "nothing");
			c1->fail = SC_TLS_OK;
		}
	}
}

/* client-cert-match: which certificate would go; sets p->matched. */
static void
probe_match(struct probe *p)
{
	struct sc_probe_check *k = p->k;
	struct sc_tls_choice *choice = &p->choice;

	switch (sc_tls_choose_cert(p->o->tls, p->o->host, p->o->port, &p->c1.req, choice, "")) {
	case SC_OK:
		p->matched = 1;
		if (p->o->tls->cert_ref != NULL && choice->matches == 0)
			set_check(&k[SC_PROBE_MATCH], "warn", "the server will likely refuse it: pick a "
			    "certificate issued under a CA it names", "--cert \"%s\" (%s) does not chain "
			    "to a CA the server names", choice->label, choice->subject);
		else
			set_check(&k[SC_PROBE_MATCH], "pass", NULL, "\"%s\" (%s) on token %s chains to %s%s",
			    choice->label, choice->subject, choice->token[0] ? choice->token : "?",
			    choice->matched_ca[0] ? choice->matched_ca : "an accepted CA",
			    choice->matches > 1 ? " (others fit too)" : "");
		break;
	case SC_ERR_AGENT_UNREACHABLE:
		set_check(&k[SC_PROBE_MATCH], "fail", "start the agent (eval \"$(scagentd)\") or give --socket",
		    "%s", choice->why);
		break;
	default:
		set_check(&k[SC_PROBE_MATCH], "fail", sc_tls_nocert_advice(&p->c1.req, choice->why), "%s",
		    choice->why);
	}
}

/*
 * A third connection offers the session kept from the second and answers
 * no certificate request: does the server resume with the client's identity
 * (a tunnel's connections then cost no signature)?
 */
static void
probe_resume(struct probe *p)
{
	struct sc_probe_check *k = p->k;

	sc_tls_sessions_end(p->o->tls->sessions, p->c2.flight);
	p->c2.flight = 0;	/* no ticket yet: c3 need not wait for one */
	p->o3 = p->o2;
	p->o3.resume_only = 1;
	sc_tls_conn_init(&p->c3, &p->o3, p->o->host, p->o->port);
	snprintf(p->c3.logprefix, sizeof(p->c3.logprefix), "resume: ");
	k[SC_PROBE_AUTH].resumption = sc_tls_open(&p->c3) == SC_OK && p->c3.resumed ? 1 : -1;
	set_check(&k[SC_PROBE_AUTH], "pass", NULL, "\"%s\" accepted; the token signed "
	    "with %s; %s", p->c2.choice.label, p->c2.signer.last_alg[0] ?
	    p->c2.signer.last_alg : "(no signature)", k[SC_PROBE_AUTH].resumption > 0 ?
	    "a new connection resumed the session with it, without a signature" :
	    "the server did not resume the session: each connection costs a signature "
	    "(enable its session cache or tickets)");
}

/* client-auth: the second connection, with the certificate. */
static void
probe_auth(struct probe *p)
{
	struct sc_probe_check *k = p->k;
	struct sc_tls_conn *c2 = &p->c2;
	struct sc_tls_finding fd;

	p->o2 = *p->o->tls;
	p->o2.strict = 1;	/* as connect: any doubt about the server ends it before the card signs */
	p->o2.timeout_ms = 15000;
	sc_tls_conn_init(c2, &p->o2, p->o->host, p->o->port);
	snprintf(c2->logprefix, sizeof(c2->logprefix), "auth: ");
	p->final = NULL;	/* http tells what the certificate got */
	if (sc_tls_open(c2) == SC_OK &&
	    sc_http_exchange(c2, "GET", p->o->path, NULL, 0, NULL, 0, MAX_BODY, &p->r2) == SC_OK) {
		p->final = &p->r2;
		sc_tls_diag_http(c2, &p->r2, &fd);
		if (!c2->cert_sent)
			set_check(&k[SC_PROBE_AUTH], "fail", "see client-cert-match", "no certificate "
			    "was sent on the second connection: %s", c2->choice.why);
		else if (fd.code[0] != '\0') {
			set_finding(&k[SC_PROBE_AUTH], &fd);
			snprintf(k[SC_PROBE_AUTH].detail, sizeof(k[SC_PROBE_AUTH].detail), "\"%s\" was sent "
			    "but the server answered %.800s", c2->choice.label, fd.detail);
		} else
			probe_resume(p);
	} else {
		set_check(&k[SC_PROBE_AUTH], "fail", sc_tls_advice(c2), "%s", c2->err);
		set_check(&k[SC_PROBE_HTTP], "skip", NULL, "no HTTP answer: client authentication failed");
	}
}

/*
 * The first connection goes on without a certificate: when does the
 * server ask (in the handshake, or after the request), and does it
 * answer without one ("Accept") or refuse ("Require")? Then the
 * certificate's match and the second connection.
 */
static void
probe_request(struct probe *p)
{
	struct sc_probe_check *k = p->k;
	struct sc_tls_conn *c1 = &p->c1;
	struct sc_tls_finding fd;

	if (p->hs_ok) {
		c1->fail = SC_TLS_OK;
		if ((p->http1 = sc_http_exchange(c1, "GET", p->o->path, NULL, 0, NULL, 0, MAX_BODY,
		    &p->r1) == SC_OK))
			p->final = &p->r1;
	}
	sc_tls_diag_required(c1, p->hs_ok, p->http1, &p->r1, &fd);
	set_finding(&k[SC_PROBE_REQUIRED], &fd);
	if (c1->requests == 0) {
		set_check(&k[SC_PROBE_REQUEST], "warn", "if this URL should require a certificate, configure the "
		    "server to (IIS: SSL Settings, Require; Apache: SSLVerifyClient require; nginx: "
		    "ssl_verify_client on)", "the server did not ask for a client certificate, neither "
		    "in the handshake nor after the request");
		set_check(&k[SC_PROBE_MATCH], "skip", NULL, "no certificate was asked for");
		set_check(&k[SC_PROBE_AUTH], "skip", NULL, "no certificate was asked for");
		return;
	}
	{
		char names[512] = "";
		for (int i = 0; i < sk_X509_NAME_num(c1->req.ca_names); i++) {
			char *n = name_of(sk_X509_NAME_value(c1->req.ca_names, i));
			size_t off = strlen(names);
			if (off < sizeof(names))
				snprintf(names + off, sizeof(names) - off, "%s%s", off ? "; " : "", n);
			free(n);
		}
		set_check(&k[SC_PROBE_REQUEST], "pass", NULL, "requested %s; acceptable CAs: %s",
		    sc_tls_req_phase_text(c1->req_phase), names[0] ? names : "any (empty list)");
	}
	probe_match(p);
	if (!p->matched)
		set_check(&k[SC_PROBE_AUTH], "skip", NULL, "no certificate to present");
	else
		probe_auth(p);
}

/* http: the last answer, with or without the certificate. */
static void
probe_http(struct probe *p)
{
	struct sc_probe_check *k = p->k;
	struct sc_tls_finding fd;

	if (p->final != NULL) {
		const struct sc_tls_conn *hc = p->final == &p->r2 ? &p->c2 : &p->c1;
		sc_tls_diag_http(hc, p->final, &fd);
		if (fd.code[0] != '\0')
			set_finding(&k[SC_PROBE_HTTP], &fd);
		else if (p->final->status >= 400)
			set_check(&k[SC_PROBE_HTTP], "fail", sc_http_advice(hc, p->final)[0] ?
			    sc_http_advice(hc, p->final) : "check the server's logs for this URL", "HTTP %d %s",
			    p->final->status, p->final->reason);
		else
			set_check(&k[SC_PROBE_HTTP], "pass", NULL, "HTTP %d %s, %zu bytes", p->final->status,
			    p->final->reason, p->final->bodylen);
	} else if (p->c1.requests == 0 && p->hs_ok)
		set_check(&k[SC_PROBE_HTTP], "fail", sc_tls_advice(&p->c1), "no HTTP answer: %s", p->c1.err);
}

/* The checks, in order; each step that fails leaves the later ones as skip. */
static void
probe_steps(struct probe *p)
{
	struct sc_probe_check *k = p->k;

	for (int i = 0; i < SC_PROBE_COUNT; i++)
		set_check(&k[i], "skip", NULL, "not reached: an earlier check failed");
	if (p->o->tls->principal == NULL)
		set_check(&k[SC_PROBE_PRINCIPAL], "skip", NULL, "no --principal given");

	/* First connection: observe, send no certificate. */
	p->o1 = *p->o->tls;
	p->o1.strict = 0;
	p->o1.offer_cert = 0;
	p->o1.timeout_ms = 15000;
	sc_tls_conn_init(&p->c1, &p->o1, p->o->host, p->o->port);
	if (probe_reach(p) != 0)
		return;
	probe_server(p);
	/*
	 * A server that failed server-chain, server-name or principal is sent
	 * nothing more: no request, no certificate, so nothing is signed for it.
	 */
	if (skip_after_failed_server(k, &p->c1))
		return;
	if (!p->hs_ok && p->c1.requests == 0)
		return;
	probe_request(p);
	probe_http(p);
}

void
sc_probe_run(const struct sc_probe_opts *o, struct sc_probe_result *res)
{
	struct probe p;

	memset(res, 0, sizeof(*res));
	memset(&p, 0, sizeof(p));
	p.o = o;
	p.k = res->checks;
	p.c1.fd = p.c2.fd = p.c3.fd = -1;
	probe_steps(&p);
	if (p.res != NULL)
		freeaddrinfo(p.res);
	sc_tls_choice_clear(&p.choice);
	sc_http_resp_free(&p.r1);
	sc_http_resp_free(&p.r2);
	sc_tls_conn_free(&p.c1);
	if (p.c3.ssl != NULL && p.c3.fail == SC_TLS_OK)
		SSL_shutdown(p.c3.ssl);
	sc_tls_conn_free(&p.c3);
	sc_tls_conn_free(&p.c2);
}

int
sc_probe_failed(const struct sc_probe_result *res)
{
	for (int i = 0; i < SC_PROBE_COUNT; i++)
		if (strcmp(res->checks[i].status, "fail") == 0)
			return 1;
	return 0;
}

void
sc_probe_result_free(struct sc_probe_result *res)
{
	for (int i = 0; i < SC_PROBE_COUNT; i++) {
		json_object_put(res->checks[i].extra);
		res->checks[i].extra = NULL;
	}
}
