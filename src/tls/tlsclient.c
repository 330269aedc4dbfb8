/*
 * The TLS client (see tlsclient.h): a connection's life (init, free), the
 * SSL_CTX and its callbacks (the certificate request, alerts, sessions kept
 * and offered), the handshake with renegotiation and post-handshake
 * authentication, failures recorded as one line and a kind, I/O on the
 * connection, and the advice for each kind of failure. Addresses and
 * sockets are in net.c, the server certificate's checks in verify.c, the
 * client certificate's choice in choice.c, HTTP in http.c.
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
#include <unistd.h>
#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "cert/certinfo.h"
#include "common/err.h"
#include "common/text.h"
#include "common/util.h"
#include "tls/probe-diag.h"
#include "tls/tlsclient.h"
#include "tls/tls-private.h"

/* ---------------------------------------------------------------- helpers */

/*
 * -v notes quote labels, certificate names and what servers and proxies
 * said: escaped for the terminal as every other line (common/text.h).
 */
void
sc_tls_note(const struct sc_tls_conn *c, const char *fmt, ...)
{
	char prefix[80];
	va_list ap;

	if (c == NULL || c->o == NULL || !c->o->verbose)
		return;
	snprintf(prefix, sizeof(prefix), "scagent: %s", c->logprefix);
	va_start(ap, fmt);
	sc_term_vsay(stderr, prefix, fmt, ap);
	va_end(ap);
}

void
sc_tls_note_prefix(int verbose, const char *prefix, const char *fmt, ...)
{
	char pre[80];
	va_list ap;

	if (!verbose)
		return;
	snprintf(pre, sizeof(pre), "scagent: %s", prefix ? prefix : "");
	va_start(ap, fmt);
	sc_term_vsay(stderr, pre, fmt, ap);
	va_end(ap);
}

int
sc_tls_fail(struct sc_tls_conn *c, int kind, int code, const char *fmt, ...)
{
	va_list ap;

	c->fail = kind;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	return code;
}

void
sc_tls_x509s_free(STACK_OF(X509) *sk)
{
	sk_X509_pop_free(sk, X509_free);
}

void
sc_tls_name_text(const X509_NAME *n, char *buf, size_t len)
{
	char *s = n ? sc_name_oneline(n) : NULL;

	snprintf(buf, len, "%s", s ? s : "(none)");
	free(s);
}

const char *
sc_tls_req_phase_text(int phase)
{
	switch (phase) {
	case SC_TLS_REQ_HANDSHAKE:
		return "in the handshake";
	case SC_TLS_REQ_RENEGOTIATION:
		return "after the request, by a TLS 1.2 renegotiation";
	case SC_TLS_REQ_PHA:
		return "after the request, by TLS 1.3 post-handshake authentication";
	default:
		return "never";
	}
}


/* ---------------------------------------------------------------- connection */

void
sc_tls_conn_init(struct sc_tls_conn *c, const struct sc_tls_opts *o, const char *host,
    const char *port)
{
	memset(c, 0, sizeof(*c));
	c->o = o;
	c->fd = -1;
	c->verify_err = X509_V_OK;
	c->verify_depth = -1;
	snprintf(c->host, sizeof(c->host), "%s", host);
	snprintf(c->port, sizeof(c->port), "%s", port);
}

void
sc_tls_choice_clear(struct sc_tls_choice *ch)
{
	X509_free(ch->cert);
	sc_tls_x509s_free(ch->chain);
	memset(ch, 0, sizeof(*ch));
}

void
sc_tls_conn_free(struct sc_tls_conn *c)
{
	if (c == NULL)
		return;
	if (c->o != NULL)
		sc_tls_sessions_end(c->o->sessions, c->flight);
	c->flight = 0;
	SSL_free(c->ssl);
	c->ssl = NULL;
	SSL_CTX_free(c->ctx);
	c->ctx = NULL;
	EVP_PKEY_free(c->pkey);
	c->pkey = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	sk_X509_NAME_pop_free(c->req.ca_names, X509_NAME_free);
	c->req.ca_names = NULL;
	sc_tls_choice_clear(&c->choice);
	if (c->proxy.auth != NULL) {
		explicit_bzero(c->proxy.auth, strlen(c->proxy.auth));
		free(c->proxy.auth);
		c->proxy.auth = NULL;
	}
}


/* ---------------------------------------------------------------- callbacks */

static int ex_index = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void
ex_init(void)
{
	ex_index = SSL_get_ex_new_index(0, "scagent tls conn", NULL, NULL, NULL);
}

struct sc_tls_conn *
sc_tls_conn_of(const SSL *ssl)
{
	return SSL_get_ex_data(ssl, ex_index);
}


static void
info_cb(const SSL *ssl, int where, int ret)
{
	struct sc_tls_conn *c = sc_tls_conn_of(ssl);

	if (c == NULL || !(where & SSL_CB_ALERT) || !(where & SSL_CB_READ))
		return;
	if ((ret >> 8) == SSL3_AL_FATAL || (ret & 0xff) != SSL_AD_CLOSE_NOTIFY) {
		if (c->alert[0] == '\0' && (ret & 0xff) != SSL_AD_CLOSE_NOTIFY) {
			/* OpenSSL 3.0 has no name for TLS 1.3's certificate_required (116). */
			snprintf(c->alert, sizeof(c->alert), "%s", (ret & 0xff) == 116 ?
			    "certificate required" : SSL_alert_desc_string_long(ret));
			c->alert_after_cert = c->cert_sent;
		}
	}
}

static void
record_request(struct sc_tls_conn *c, SSL *ssl)
{
	const STACK_OF(X509_NAME) *names = SSL_get0_peer_CA_list(ssl);
	int n;

	sk_X509_NAME_pop_free(c->req.ca_names, X509_NAME_free);
	c->req.ca_names = names ? sk_X509_NAME_deep_copy(names, X509_NAME_dup, X509_NAME_free) :
	    sk_X509_NAME_new_null();
	c->req.version = SSL_version(ssl);
	c->req.nsigalgs = 0;
	n = SSL_get_sigalgs(ssl, -1, NULL, NULL, NULL, NULL, NULL);
	for (int i = 0; i < n && c->req.nsigalgs < (int)(sizeof(c->req.sigalgs) / sizeof(c->req.sigalgs[0])); i++) {
		unsigned char rsig = 0, rhash = 0;
		SSL_get_sigalgs(ssl, i, NULL, NULL, NULL, &rsig, &rhash);
		c->req.sigalgs[c->req.nsigalgs++] = (uint16_t)((rhash << 8) | rsig);
	}
}


static int
cert_cb(SSL *ssl, void *arg)
{
	struct sc_tls_conn *c = arg;
	int phase, r;

	phase = !c->handshake_done ? SC_TLS_REQ_HANDSHAKE :
	    SSL_version(ssl) >= TLS1_3_VERSION ? SC_TLS_REQ_PHA : SC_TLS_REQ_RENEGOTIATION;
	if (c->req_phase == SC_TLS_REQ_NONE)
		c->req_phase = phase;
	c->requests++;
	record_request(c, ssl);
	sc_tls_note(c, "the server asks for a client certificate %s (%d acceptable CA name%s)",
	    sc_tls_req_phase_text(phase), sk_X509_NAME_num(c->req.ca_names),
	    sk_X509_NAME_num(c->req.ca_names) == 1 ? "" : "s");
	if (c->o->verbose) {
		for (int i = 0; i < sk_X509_NAME_num(c->req.ca_names); i++) {
			char nm[256];
			sc_tls_name_text(sk_X509_NAME_value(c->req.ca_names, i), nm, sizeof(nm));
			sc_tls_note(c, "  acceptable CA: %s", nm);
		}
	}
	if (c->o->verbose) {
		char sa[512];
		sc_tls_sigalgs_text(&c->req, sa, sizeof(sa));
		sc_tls_note(c, "  signature schemes accepted: %s", sa);
	}
	if (c->cert_sent)
		return 1;	/* the certificate already given stays */
	if (!c->o->offer_cert || c->o->resume_only)
		return 1;
	/*
	 * Nothing is offered, and so nothing signed, for a server that failed
	 * its checks: a strict handshake never gets here with one, this is the
	 * guard for the others. 0 ends the handshake (TLS 1.3: after the
	 * server's Finished, before the client's Certificate).
	 */
	if (!sc_tls_server_passed(c, ssl)) {
		sc_tls_note(c, "offering no certificate: %s", c->refused);
		return 0;
	}
	r = c->choice_err = sc_tls_choose_cert(c->o, c->host, c->port, &c->req, &c->choice,
	    c->logprefix);
	if (r != SC_OK) {
		sc_tls_note(c, "sending no certificate: %s", c->choice.why);
		return 1;
	}
	memset(&c->signer, 0, sizeof(c->signer));
	if ((r = sc_tls_agent_get(c->o->agent, &c->signer.client, c->choice.why,
	    sizeof(c->choice.why))) != SC_OK)
		return 1;
	snprintf(c->signer.ref, sizeof(c->signer.ref), "%s", c->choice.sha256);
	snprintf(c->signer.label, sizeof(c->signer.label), "%s", c->choice.label);
	c->signer.ask_pin = c->o->ask_pin;
	if ((r = sc_tls_agent_pkey(c->choice.cert, &c->signer, &c->pkey)) != SC_OK) {
		snprintf(c->choice.why, sizeof(c->choice.why), "cannot use the key of \"%s\" "
		    "with OpenSSL: %s", c->choice.label, sc_strerror(r));
		return 0;
	}
	if (SSL_use_cert_and_key(ssl, c->choice.cert, c->pkey, c->choice.chain, 1) != 1) {
		snprintf(c->choice.why, sizeof(c->choice.why), "OpenSSL refused the certificate "
		    "\"%s\" with its token key", c->choice.label);
		return 0;
	}
	c->cert_sent = 1;
	sc_tls_note(c, "sending certificate \"%s\" (%s) with %d intermediate%s",
	    c->choice.label, c->choice.subject, sk_X509_num(c->choice.chain),
	    sk_X509_num(c->choice.chain) == 1 ? "" : "s");
	return 1;
}

/* ---------------------------------------------------------------- sessions */

/* Sessions are kept and resumed only where the certificate goes to a server that passed its checks. */
static int
keeps_sessions(const struct sc_tls_conn *c)
{
	return c->o->sessions != NULL && c->o->strict && c->o->offer_cert;
}

const char *
sc_tls_identity(const struct sc_tls_conn *c, const char **token)
{
	const struct sc_tls_sess_id *id = &c->sess_id;

	if (token != NULL)
		*token = NULL;
	if (c->cert_sent) {
		if (token != NULL)
			*token = c->choice.token;
		return c->choice.label;
	}
	if (!c->resumed)
		return NULL;
	if (token != NULL)
		*token = id->token;
	return id->label;
}

/*
 * OpenSSL has a new session for this connection: at the end of a full TLS
 * 1.2 handshake (also a renegotiation's), or a TLS 1.3 ticket, which comes
 * after the handshake (also after post-handshake authentication). It is
 * kept when it carries the client's identity: a certificate was sent on
 * this connection, or the session resumed was made with one.
 */
static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct sc_tls_conn *c = sc_tls_conn_of(ssl);
	struct sc_tls_sess_id id;
	long kept;

	if (c == NULL || !keeps_sessions(c))
		return 0;
	memset(&id, 0, sizeof(id));
	if (c->cert_sent) {
		snprintf(id.sha256, sizeof(id.sha256), "%s", c->choice.sha256);
		snprintf(id.label, sizeof(id.label), "%s", c->choice.label);
		snprintf(id.token, sizeof(id.token), "%s", c->choice.token);
	} else if (c->resumed || SSL_session_reused(ssl))
		id = c->sess_id;
	else
		return 0;	/* no certificate in it: resuming it would cost a signature anyway */
	if ((kept = sc_tls_sessions_put(c->o->sessions, c->host, c->port, &id, sess, c->sess_epoch)) > 0)
		sc_tls_note(c, "session kept for %s:%s with certificate \"%s\" (%s, for %ld s at most)",
		    c->host, c->port, id.label, SSL_SESSION_get_protocol_version(sess) >= TLS1_3_VERSION ?
		    "TLS 1.3 ticket" : SSL_SESSION_has_ticket(sess) ? "TLS 1.2 ticket" :
		    "TLS 1.2 session id", kept);
	return 0;	/* the cache keeps a copy, not this reference */
}

/* ---------------------------------------------------------------- handshake */

static int
setup_ctx(struct sc_tls_conn *c)
{
	static const unsigned char alpn[] = "\x08http/1.1";
	unsigned long e;

	if ((c->ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		return sc_tls_fail(c, SC_TLS_E_HANDSHAKE, SC_ERR_NOMEM, "cannot create a TLS context");
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(c->ctx, c->o->tls_max ? c->o->tls_max : TLS1_3_VERSION);
	SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
	if (c->o->cafile != NULL) {
		if (SSL_CTX_load_verify_locations(c->ctx, c->o->cafile, NULL) != 1) {
			e = ERR_peek_last_error();
			ERR_clear_error();
			return sc_tls_fail(c, SC_TLS_E_USAGE, SC_ERR_INVALID, "cannot read --cafile %s: %s",
			    c->o->cafile, ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "no certificates");
		}
	} else
		SSL_CTX_set_default_verify_paths(c->ctx);
	SSL_CTX_set_verify(c->ctx, c->o->strict ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, sc_tls_verify_cb);
	SSL_CTX_set_cert_verify_callback(c->ctx, sc_tls_cert_verify_cb, c);
	if (keeps_sessions(c)) {
		/* Sessions go to o->sessions only (shared by the connections), none to this context. */
		SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(c->ctx, new_session_cb);
		/* A TLS 1.2 session id has no lifetime from the server: ours. */
		SSL_CTX_set_timeout(c->ctx, sc_tls_sessions_lifetime(c->o->sessions));
	}
	if ((c->ssl = SSL_new(c->ctx)) == NULL)
		return sc_tls_fail(c, SC_TLS_E_HANDSHAKE, SC_ERR_NOMEM, "cannot create a TLS connection");
	pthread_once(&ex_once, ex_init);
	SSL_set_ex_data(c->ssl, ex_index, c);
	SSL_set_cert_cb(c->ssl, cert_cb, c);
	SSL_set_info_callback(c->ssl, info_cb);
	SSL_set_post_handshake_auth(c->ssl, 1);
	SSL_set_alpn_protos(c->ssl, alpn, sizeof(alpn) - 1);
	if (c->o->strict) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
		unsigned char tmp[16];
		if (inet_pton(AF_INET, c->host, tmp) == 1 || inet_pton(AF_INET6, c->host, tmp) == 1)
			X509_VERIFY_PARAM_set1_ip_asc(vp, c->host);
		else {
			X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			X509_VERIFY_PARAM_set1_host(vp, c->host, 0);
		}
	}
	{
		unsigned char tmp[16];
		if (inet_pton(AF_INET, c->host, tmp) != 1 && inet_pton(AF_INET6, c->host, tmp) != 1)
			SSL_set_tlsext_host_name(c->ssl, c->host);
	}
	SSL_set_fd(c->ssl, c->fd);
	return SC_OK;
}

/* The OpenSSL error queue as one short line. */
static void
ssl_errors(char *buf, size_t len)
{
	unsigned long e;
	size_t off = 0;

	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		const char *r = ERR_reason_error_string(e);
		char tmp[256];
		if (r == NULL) {
			ERR_error_string_n(e, tmp, sizeof(tmp));
			r = tmp;
		}
		if (off < len && strstr(buf, r) == NULL)
			off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? "; " : "", r);
	}
}

static const char *
verify_text(long err)
{
	return X509_verify_cert_error_string(err);
}

static void record_failure(struct sc_tls_conn *c, int ret, const char *during);

/*
 * The connection failed (in its handshake, or after it: a TLS 1.3 server
 * refuses the certificate at the first read): when it made the handshake
 * others wait for, they fail with it rather than each ask the card again.
 */
void
sc_tls_record_failure(struct sc_tls_conn *c, int ret, const char *during)
{
	struct sc_tls_sess_fail why;

	record_failure(c, ret, during);
	if (c->flight == 0)
		return;
	memset(&why, 0, sizeof(why));
	why.kind = c->fail;
	why.sign_err = c->signer.last_err;
	snprintf(why.token, sizeof(why.token), "%s", c->choice.token);
	snprintf(why.why, sizeof(why.why), "%s", c->err);
	sc_tls_sessions_fail(c->o->sessions, c->flight, &why);
	c->flight = 0;
}

static void
record_failure(struct sc_tls_conn *c, int ret, const char *during)
{
	int e = SSL_get_error(c->ssl, ret), saved = errno;
	char errs[384];

	ssl_errors(errs, sizeof(errs));
	if (c->choice_err == SC_ERR_AGENT_UNREACHABLE) {
		sc_tls_fail(c, SC_TLS_E_AGENT, SC_ERR_AGENT_UNREACHABLE, "the server asks for a client "
		    "certificate and the agent is unreachable: %s", c->choice.why);
		return;
	}
	if (c->refused[0] != '\0') {
		sc_tls_fail(c, c->refused_kind, SC_ERR_TLS, "no client certificate was offered to %.200s:%s "
		    "and the connection was ended: %s", c->host, c->port, c->refused);
		return;
	}
	if (c->o->strict && c->principal_bad) {
		sc_tls_fail(c, SC_TLS_E_PRINCIPAL, SC_ERR_TLS, "--principal msstd:%s does not match the "
		    "server certificate, which names %s; the connection was ended before any "
		    "client certificate", c->o->principal, c->peer_names[0] ? c->peer_names :
		    "nothing (no CN, no DNS name)");
		return;
	}
	if (c->signer.last_err == SC_ERR_NOT_LOGGED_IN) {
		sc_tls_fail(c, SC_TLS_E_SIGN, SC_ERR_TLS, "the key of \"%s\" cannot sign: token \"%s\" needs "
		    "a login; run `scagent login --token %s` first", c->signer.label, c->choice.token,
		    c->choice.token);
		return;
	}
	if (c->signer.last_err != 0) {
		sc_tls_fail(c, c->signer.last_err == SC_ERR_AGENT_UNREACHABLE ? SC_TLS_E_AGENT : SC_TLS_E_SIGN,
		    SC_ERR_TLS, "the agent could not sign with \"%s\" (%s): %s", c->signer.label,
		    c->signer.last_alg, c->signer.last_msg);
		return;
	}
	if (c->o->strict && c->verify_err != X509_V_OK) {
		if (c->verify_err == X509_V_ERR_HOSTNAME_MISMATCH || c->verify_err == X509_V_ERR_IP_ADDRESS_MISMATCH) {
			sc_tls_fail(c, SC_TLS_E_NAME, SC_ERR_TLS, "the server certificate is not for %s "
			    "(it names %s)", c->host, c->peer_names[0] ? c->peer_names : "no DNS name");
		} else
			sc_tls_fail(c, SC_TLS_E_CHAIN, SC_ERR_TLS, "the server certificate is not trusted: %s "
			    "(at depth %d, %s)", verify_text(c->verify_err), c->verify_depth, c->verify_subject);
		return;
	}
	if (c->alert[0] != '\0') {
		if (c->alert_after_cert)
			sc_tls_fail(c, SC_TLS_E_REJECTED, SC_ERR_TLS, "the server rejected the client "
			    "certificate \"%s\" %s: TLS alert \"%s\"", c->choice.label, during, c->alert);
		else if (c->requests > 0 && !c->cert_sent)
			sc_tls_fail(c, SC_TLS_E_NOCERT, SC_ERR_TLS, "the server requires a client certificate "
			    "and none was sent (TLS alert \"%s\" %s): %s", c->alert, during,
			    c->choice.why[0] ? c->choice.why : "no certificate chosen");
		else
			sc_tls_fail(c, SC_TLS_E_HANDSHAKE, SC_ERR_TLS, "TLS failed %s: the server sent the "
			    "alert \"%s\"", during, c->alert);
		return;
	}
	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && saved == 0) ||
	    (e == SSL_ERROR_SSL && strstr(errs, "unexpected eof") != NULL)) {
		if (c->cert_sent)
			sc_tls_fail(c, SC_TLS_E_CLOSED, SC_ERR_TLS, "the server closed the connection %s, "
			    "after it received the client certificate \"%s\", without a TLS alert",
			    during, c->choice.label);
		else if (c->requests > 0)
			sc_tls_fail(c, SC_TLS_E_NOCERT, SC_ERR_TLS, "the server closed the connection %s; it "
			    "had asked for a client certificate and none was sent: %s", during,
			    c->choice.why[0] ? c->choice.why : "no certificate chosen");
		else
			sc_tls_fail(c, SC_TLS_E_HANDSHAKE, SC_ERR_TLS, "the server closed the connection %s", during);
		return;
	}
	if (e == SSL_ERROR_SYSCALL && (saved == EAGAIN || saved == EWOULDBLOCK)) {
		sc_tls_fail(c, SC_TLS_E_TIMEOUT, SC_ERR_TIMEOUT, "no answer from %s:%s %s within %d s",
		    c->host, c->port, during, c->o->timeout_ms / 1000);
		return;
	}
	if (e == SSL_ERROR_SYSCALL) {
		sc_tls_fail(c, c->cert_sent ? SC_TLS_E_CLOSED : c->handshake_done ? SC_TLS_E_IO : SC_TLS_E_HANDSHAKE,
		    SC_ERR_IO, "connection to %s:%s failed %s: %s%s", c->host, c->port, during,
		    strerror(saved), c->cert_sent ? " (after the client certificate was sent)" : "");
		return;
	}
	if (c->requests > 0 && !c->cert_sent && c->choice.why[0] && c->o->offer_cert)
		sc_tls_fail(c, SC_TLS_E_NOCERT, SC_ERR_TLS, "TLS failed %s (%s); no client certificate "
		    "was sent: %s", during, errs[0] ? errs : "unknown error", c->choice.why);
	else
		sc_tls_fail(c, c->handshake_done ? SC_TLS_E_IO : SC_TLS_E_HANDSHAKE, SC_ERR_TLS,
		    "TLS failed %s: %s", during, errs[0] ? errs : "unknown error");
}

void
sc_tls_describe(const struct sc_tls_conn *c, char *buf, size_t len)
{
	if (c->ssl == NULL) {
		snprintf(buf, len, "no TLS");
		return;
	}
	snprintf(buf, len, "%s, %s", SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
}

/*
 * A kept session for this server (and --cert) goes into the ClientHello;
 * while another connection's handshake for it is in flight, this one waits
 * for its session rather than have the card sign in parallel.
 */
static int
offer_session(struct sc_tls_conn *c)
{
	struct sc_tls_sess_fail failed;
	SSL_SESSION *sess;
	int wait_ms = c->o->timeout_ms > 0 ? c->o->timeout_ms : 120000;

	c->sess_epoch = sc_tls_sessions_epoch(c->o->sessions);
	sess = sc_tls_sessions_get(c->o->sessions, c->host, c->port, c->o->cert_fp, &c->sess_id,
	    &c->flight, wait_ms, &failed);
	if (failed.kind != SC_TLS_OK) {
		/* What the tunnel's answer (its 502 page) and the advice need of the failure. */
		c->signer.last_err = failed.sign_err;
		snprintf(c->choice.token, sizeof(c->choice.token), "%s", failed.token);
		return sc_tls_fail(c, failed.kind, SC_ERR_TLS, "%s (the handshake this connection "
		    "waited for; the card was not asked again)", failed.why);
	}
	if (sess == NULL)
		return SC_OK;
	if (SSL_set_session(c->ssl, sess) != 1)
		memset(&c->sess_id, 0, sizeof(c->sess_id));
	else
		sc_tls_note(c, "offering the kept session of certificate \"%s\"", c->sess_id.label);
	SSL_SESSION_free(sess);
	return SC_OK;
}

int
sc_tls_handshake(struct sc_tls_conn *c)
{
	char desc[128];
	int r, ret;

	if ((r = setup_ctx(c)) != SC_OK)
		return r;
	if (keeps_sessions(c) && (r = offer_session(c)) != SC_OK)
		return r;
	ERR_clear_error();
	ret = SSL_connect(c->ssl);
	if (ret != 1) {
		sc_tls_record_failure(c, ret, "during the handshake");
		return SC_ERR_TLS;
	}
	c->handshake_done = 1;
	c->resumed = c->sess_id.sha256[0] != '\0' && SSL_session_reused(c->ssl);
	if (c->sess_id.sha256[0] != '\0')
		sc_tls_note(c, c->resumed ? "session resumed: certificate \"%s\" without a signature" :
		    "the server did not resume the session of \"%s\"", c->sess_id.label);
	if (c->flight != 0) {
		/*
		 * TLS 1.2 kept its session in the handshake; a TLS 1.3 ticket
		 * comes just after it, so the waiters wait a moment more. No
		 * certificate, no card: nothing to wait for.
		 */
		if (SSL_version(c->ssl) >= TLS1_3_VERSION && c->cert_sent)
			sc_tls_sessions_done(c->o->sessions, c->flight, 2000);
		else {
			sc_tls_sessions_end(c->o->sessions, c->flight);
			c->flight = 0;
		}
	}
	sc_tls_describe(c, desc, sizeof(desc));
	sc_tls_note(c, "TLS handshake done: %s", desc);
	if (c->cert_sent)
		sc_tls_note(c, "client certificate \"%s\" sent%s%s", c->choice.label,
		    c->signer.nsigs ? ", signed with " : "", c->signer.nsigs ? c->signer.last_alg : "");
	return SC_OK;
}


int
sc_tls_open(struct sc_tls_conn *c)
{
	struct addrinfo *res = NULL;
	int r;

	if ((r = sc_tls_proxy_choose(c)) != SC_OK || (r = sc_tls_resolve(c, &res)) != SC_OK)
		return r;
	r = sc_tls_tcp(c, res);
	freeaddrinfo(res);
	if (r != SC_OK)
		return r;
	if (c->via_proxy && (r = sc_tls_proxy_connect(c)) != SC_OK)
		return r;
	if ((r = sc_tls_handshake(c)) != SC_OK)
		return r;
	return sc_tls_check_principal(c);
}


/* ---------------------------------------------------------------- I/O */

long
sc_tls_read(struct sc_tls_conn *c, void *buf, size_t len)
{
	size_t got = 0;
	int ret;

	ERR_clear_error();
	ret = SSL_read_ex(c->ssl, buf, len, &got);
	if (ret == 1)
		return (long)got;
	if (SSL_get_error(c->ssl, 0) == SSL_ERROR_ZERO_RETURN && c->alert[0] == '\0')
		return 0;
	sc_tls_record_failure(c, ret, "while reading the response");
	if (c->fail == SC_TLS_E_HANDSHAKE && c->handshake_done)
		c->fail = SC_TLS_E_IO;
	return SC_ERR_TLS;
}

int
sc_tls_write_all(struct sc_tls_conn *c, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	while (len > 0) {
		size_t w = 0;
		int ret;
		ERR_clear_error();
		ret = SSL_write_ex(c->ssl, p, len, &w);
		if (ret != 1) {
			sc_tls_record_failure(c, ret, "while sending the request");
			return SC_ERR_TLS;
		}
		p += w;
		len -= w;
	}
	return SC_OK;
}

/* ---------------------------------------------------------------- advice */

const char sc_tls_principal_advice[] = "set --principal msstd:NAME to the certificate's CN or "
    "a DNS name (msstd:*.domain for a wildcard certificate), or check you reach the right server";

const char *
sc_tls_advice(const struct sc_tls_conn *c)
{
	switch (c->fail) {
	case SC_TLS_E_RESOLVE:
		return "check the host name, DNS, or give the address with --resolve HOST:PORT:ADDR";
	case SC_TLS_E_TCP:
		return "check that the server is up and that no firewall or proxy blocks the port";
	case SC_TLS_E_CHAIN:
		/* One advice per kind of failure: incomplete-chain, untrusted-root, ... */
		return sc_tls_chain_advice(sc_tls_chain_code(c));
	case SC_TLS_E_NAME:
		return "connect with a name the certificate lists (--resolve NAME:PORT:ADDR keeps the "
		    "address), or reissue the server certificate with this name in its SAN";
	case SC_TLS_E_PRINCIPAL:
		return sc_tls_principal_advice;
	case SC_TLS_E_NOCERT:
		return "run `scagent -v list` to see your certificates; the server must trust their "
		    "issuing CA (its CA list names the CAs it accepts), or pick one with --cert REF";
	case SC_TLS_E_SIGN:
		if (c->signer.last_err == SC_ERR_NOT_LOGGED_IN)
			return "log the agent in to the token (it asks through pinentry when the agent "
			    "has one configured)";
		if (c->signer.last_err == SC_ERR_PIN_REQUIRED)
			return "this key asks for its PIN at every signature: run the command at a "
			    "terminal (it asks), or start scagentd with --pinentry PROGRAM";
		if (c->signer.last_err == SC_ERR_PIN_INCORRECT)
			return "the key's PIN was wrong (tried once): run again with the right PIN";
		if (c->signer.last_err == SC_ERR_PIN_LOCKED)
			return "the PIN is locked: unblock it with the PUK or SO PIN "
			    "(`scagent pin unblock --token LABEL`)";
		if (c->signer.last_err == SC_ERR_MECHANISM && strncmp(c->signer.last_alg, "rsa-pss", 7) == 0)
			return "the token cannot make RSA-PSS signatures, which TLS 1.3 requires for RSA "
			    "keys: use --tls-max 1.2, or an EC key";
		return "check the token with `scagent list` and the agent's log";
	case SC_TLS_E_REJECTED:
		return "the server did not accept the certificate: check that it trusts the issuing "
		    "CA (for IIS/Exchange: NTAuth store and the CA chain on the server), that the "
		    "certificate is valid and not revoked, and that it maps to an account";
	case SC_TLS_E_CLOSED:
		return "servers drop the connection when they reject a client certificate without "
		    "saying why: check the server's trust of the issuing CA, its CRL access and its "
		    "logs; on IIS also the certificate mapping and the client certificate negotiation setting";
	case SC_TLS_E_AGENT:
		return "start the agent (eval \"$(scagentd)\") or give --socket";
	case SC_TLS_E_TIMEOUT:
		return "the server or a device on the way does not answer; check it and the network";
	case SC_TLS_E_PROXY:
		if (strstr(c->err, "wants credentials") != NULL)
			return "give the proxy's user and password: --proxy http://user:pass@host:port "
			    "(or in https_proxy)";
		return "check the proxy address (--proxy, https_proxy, HTTPS_PROXY) and that it allows "
		    "CONNECT to this server and port; no_proxy lists hosts reached directly";
	case SC_TLS_E_HANDSHAKE:
		if (c->alert[0] && strstr(c->alert, "protocol version"))
			return "the server and scagent share no TLS version: scagent speaks TLS 1.2 and 1.3";
		return "check the server's TLS settings (protocols, ciphers) and its logs";
	default:
		return "";
	}
}

