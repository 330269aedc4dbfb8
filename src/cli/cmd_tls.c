/* scagent connect, probe, tunnel: mutual TLS with a key on the card (src/tls). */
#include "config.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "cert/certinfo.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/exchange.h"
#include "common/err.h"
#include "common/text.h"
#include "tls/probe-diag.h"
#include "tls/probe.h"
#include "tls/tlsclient.h"
#include "tls/tunnel.h"

#define MAX_BODY (256u * 1024 * 1024)
#define MAX_DATA (64u * 1024 * 1024)
#define TIMEOUT_MS 30000

/* Options shared by the three commands. */
enum { O_CERT = 1000, O_CAFILE, O_PRINCIPAL, O_RESOLVE, O_TLSMAX, O_JSON, O_LISTEN,
	O_CONNECT, O_REMOTE, O_PROXY };

#define TLS_LONGOPTS \
	{ "cert", required_argument, NULL, O_CERT }, \
	{ "cafile", required_argument, NULL, O_CAFILE }, \
	{ "principal", required_argument, NULL, O_PRINCIPAL }, \
	{ "resolve", required_argument, NULL, O_RESOLVE }, \
	{ "tls-max", required_argument, NULL, O_TLSMAX }, \
	{ "proxy", required_argument, NULL, O_PROXY }, \
	{ "verbose", no_argument, NULL, 'v' }, \
	{ "help", no_argument, NULL, 'h' }

struct tls_args {
	struct sc_tls_opts o;
	struct sc_tls_sessions *sessions;	/* kept for this run (connect, probe) */
	struct sc_tls_agent agent;
	const char **resolve;
	struct cli_chooser *chooser;		/* several certificates fit, none preferred (cmd_prefer.c) */
	char *proxy;				/* --proxy's copy: its argv string is masked */
};

/* terminal: connect and probe may ask at the terminal which certificate goes; the tunnel never. */
static void
tls_args_init(struct cli *c, struct tls_args *a, int argc, int terminal)
{
	memset(a, 0, sizeof(*a));
	a->chooser = cli_chooser_new(c, terminal);
	a->o.choose = a->chooser != NULL ? cli_choose : NULL;
	a->o.choose_arg = a->chooser;
	sc_tls_agent_init(&a->agent, c->socket);
	a->o.agent = &a->agent;
	a->o.verbose = c->verbose;
	a->o.tls_max = TLS1_3_VERSION;
	a->o.timeout_ms = TIMEOUT_MS;
	a->o.offer_cert = 1;
	a->o.strict = 1;
	a->resolve = calloc((size_t)argc + 1, sizeof(*a->resolve));
	a->o.resolve = a->resolve;
}

/* connect and probe keep sessions for this run: a later connection resumes, the card signs once. */
static int
tls_args_sessions(struct tls_args *a)
{
	if ((a->sessions = sc_tls_sessions_new(SC_TLS_SESSION_LIFETIME)) == NULL)
		return -1;
	a->o.sessions = a->sessions;
	return 0;
}

/* The one URL argument of connect and probe, split: EX_SC_OK, or EX_SC_USAGE (said). */
static int
url_arg(int argc, char **argv, const char *usage, const char **url, char *host, size_t hostlen,
    char *port, size_t portlen, char **path)
{
	char why[256];

	if (optind != argc - 1) {
		fputs(usage, stderr);
		return EX_SC_USAGE;
	}
	*url = argv[optind];
	if (sc_tls_parse_url(*url, host, hostlen, port, portlen, path, why, sizeof(why)) != SC_OK) {
		cli_err("%s", why);
		return EX_SC_USAGE;
	}
	return EX_SC_OK;
}

/* connect and probe, at a terminal: the PIN of a key that wants it at every signature. */
static char *
tls_ask_pin(const char *label)
{
	char prompt[300];

	snprintf(prompt, sizeof(prompt), "PIN for the key of \"%s\" (it asks for it at every "
	    "signature): ", label);
	return cli_read_pin(prompt, 0);
}

static void
tls_args_clear(struct tls_args *a)
{
	sc_tls_agent_clear(&a->agent);
	cli_chooser_free(a->chooser);
	sc_tls_sessions_free(a->sessions);
	free(a->resolve);
	free(a->proxy);
	sc_tls_provider_cleanup();
}

/*
 * The password in a proxy URL that is an argv string (http://user:PASSWORD@...)
 * is overwritten with '*': other users read a process's command line
 * (ps, /proc/PID/cmdline) while it runs, a tunnel for hours. The C standard
 * lets a program modify argv's strings.
 */
static void
mask_password(char *url)
{
	char *user = strstr(url, "://"), *at, *colon;
	size_t authority;

	if (user == NULL)
		return;
	user += 3;
	authority = strcspn(user, "/");
	/* the last '@' ends the credentials, as sc_tls_proxy_choose reads them */
	if ((at = memrchr(user, '@', authority)) == NULL)
		return;
	if ((colon = memchr(user, ':', (size_t)(at - user))) != NULL)
		memset(colon + 1, '*', (size_t)(at - colon - 1));
}

/* One shared option; 1 when taken, 0 when not ours, -1 on a bad value. */
static int
tls_option(struct cli *c, struct tls_args *a, int ch, char *arg)
{
	switch (ch) {
	case O_CERT:
		a->o.cert_ref = arg;
		return 1;
	case O_CAFILE:
		if (access(arg, R_OK) != 0) {
			cli_err("--cafile %s: %s", arg, strerror(errno));
			return -1;
		}
		a->o.cafile = arg;
		return 1;
	case O_PRINCIPAL:
		if (strncasecmp(arg, "msstd:", 6) != 0 || arg[6] == '\0') {
			cli_err("--principal wants msstd:NAME (as Outlook's \"msstd:mail.contoso.com\"), "
			    "not \"%s\"", arg);
			return -1;
		}
		a->o.principal = arg + 6;
		return 1;
	case O_RESOLVE: {
		const char *c1 = strchr(arg, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (c1 == NULL || c2 == NULL || c1 == arg || c2 == c1 + 1 || c2[1] == '\0') {
			cli_err("--resolve wants HOST:PORT:ADDR (as curl), not \"%s\"", arg);
			return -1;
		}
		a->resolve[a->o.nresolve++] = arg;
		return 1;
	}
	case O_TLSMAX:
		if (strcmp(arg, "1.2") == 0)
			a->o.tls_max = TLS1_2_VERSION;
		else if (strcmp(arg, "1.3") == 0)
			a->o.tls_max = TLS1_3_VERSION;
		else {
			cli_err("--tls-max is 1.2 or 1.3, not \"%s\"", arg);
			return -1;
		}
		return 1;
	case O_PROXY:
		free(a->proxy);
		if ((a->o.proxy = a->proxy = strdup(arg)) == NULL) {
			cli_err("out of memory");
			return -1;
		}
		mask_password(arg);
		return 1;
	case 'v':
		c->verbose++;
		a->o.verbose = c->verbose;
		return 1;
	default:
		return 0;
	}
}

/*
 * --cert REF, resolved through the agent before any connection: a REF that
 * names no certificate, or more than one, is an error listing the
 * candidates (as `scagent sign --cert`), never a connection without one.
 * EX_SC_OK, or the exit status (said).
 */
static int
tls_cert_arg(struct tls_args *a)
{
	char why[2560];
	int r;

	if ((r = sc_tls_find_cert(&a->o, why, sizeof(why))) == SC_OK)
		return EX_SC_OK;
	cli_err("%s", why);
	return r == SC_ERR_AGENT_UNREACHABLE ? EX_SC_AGENT : EX_SC_FAIL;
}

/*
 * The proxy (--proxy, https_proxy, HTTPS_PROXY; no_proxy) for host:port,
 * checked before any connection: EX_SC_OK, or EX_SC_USAGE (said). The
 * message never shows the proxy's credentials.
 */
int
tls_proxy_check(const struct sc_tls_opts *o, const char *host, const char *port)
{
	struct sc_tls_conn conn;
	int rc = EX_SC_OK;

	sc_tls_conn_init(&conn, o, host, port);
	if (sc_tls_proxy_choose(&conn) != SC_OK) {
		cli_err("%s", conn.err);
		rc = EX_SC_USAGE;
	}
	sc_tls_conn_free(&conn);
	return rc;
}

static int
exit_for_fail(const struct sc_tls_conn *conn)
{
	switch (conn->fail) {
	case SC_TLS_E_AGENT:
		return EX_SC_AGENT;
	case SC_TLS_E_USAGE:
		return EX_SC_USAGE;
	default:
		return EX_SC_FAIL;
	}
}

static void
report_failure(const struct sc_tls_conn *conn)
{
	const char *adv = sc_tls_advice(conn);

	cli_err("%s", conn->err[0] ? conn->err : "the TLS connection failed");
	if (adv[0])
		cli_err("advice: %s", adv);
}

/* ================================================================ connect */

static const char connect_usage[] =
    "usage: scagent connect URL [-X METHOD] [-H 'Name: value']... [-d DATA|@FILE] [-o FILE] [-i]\n"
    "                       [--cert REF] [--cafile FILE] [--principal msstd:NAME]\n"
    "                       [--resolve HOST:PORT:ADDR]... [--tls-max 1.2|1.3]\n"
    "                       [--proxy http://[user:pass@]host:port]\n";

static int
read_data(const char *arg, unsigned char **data, size_t *len)
{
	if (arg[0] == '@')
		return cli_read_file(strcmp(arg + 1, "-") == 0 ? NULL : arg + 1, MAX_DATA, data, len);
	*len = strlen(arg);
	if ((*data = (unsigned char *)strdup(arg)) == NULL)
		return SC_ERR_NOMEM;
	return SC_OK;
}

/* connect's answer: the status line said, the response written to -o FILE or stdout. The exit status. */
static int
connect_output(struct cli *c, struct sc_tls_conn *conn, const struct sc_http_resp *resp,
    const char *out, int include)
{
	char desc[128];
	FILE *fp = NULL;
	int rc = EX_SC_FAIL;

	sc_tls_describe(conn, desc, sizeof(desc));
	if (conn->cert_sent)
		cli_verbose(c, "client certificate \"%s\" requested %s; the token signed %d time%s (%s)",
		    conn->choice.label, sc_tls_req_phase_text(conn->req_phase), conn->signer.nsigs,
		    conn->signer.nsigs == 1 ? "" : "s", conn->signer.last_alg[0] ? conn->signer.last_alg : "none");
	else if (conn->requests == 0)
		cli_verbose(c, "the server did not ask for a client certificate");
	cli_err("HTTP %d %s (%s%s%s)", resp->status, resp->reason, desc,
	    conn->cert_sent ? ", client certificate " : "", conn->cert_sent ? conn->choice.label : "");
	if (out != NULL && strcmp(out, "-") != 0 && (fp = fopen(out, "wb")) == NULL) {
		cli_err("cannot create %s: %s", out, strerror(errno));
		goto out;
	}
	if (fp == NULL)
		fp = stdout;
	if ((include && fwrite(resp->head, 1, resp->headlen, fp) != resp->headlen) ||
	    (include && fputs("\r\n", fp) == EOF) ||
	    (resp->bodylen > 0 && fwrite(resp->body, 1, resp->bodylen, fp) != resp->bodylen) ||
	    fflush(fp) != 0) {
		cli_err("cannot write %s: %s", out ? out : "standard output", strerror(errno));
		goto out;
	}
	if (resp->status >= 400) {
		const char *adv = sc_http_advice(conn, resp);
		cli_err("the server answered %d %s", resp->status, resp->reason);
		if (adv[0])
			cli_err("advice: %s", adv);
		goto out;
	}
	rc = EX_SC_OK;
out:
	if (fp != NULL && fp != stdout)
		fclose(fp);
	return rc;
}

int
cmd_connect(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		TLS_LONGOPTS,
		{ "request", required_argument, NULL, 'X' },
		{ "header", required_argument, NULL, 'H' },
		{ "data", required_argument, NULL, 'd' },
		{ "output", required_argument, NULL, 'o' },
		{ "include", no_argument, NULL, 'i' },
		{ NULL, 0, NULL, 0 }
	};
	struct tls_args a;
	struct sc_tls_conn conn;
	struct sc_http_resp resp;
	const char *method = NULL, *out = NULL, *url;
	const char **headers;
	unsigned char *data = NULL;
	size_t datalen = 0;
	char host[256], port[8], *path = NULL;
	int nheaders = 0, include = 0, ch, t, rc = EX_SC_FAIL;

	tls_args_init(c, &a, argc, 1);
	if (cli_have_tty())
		a.o.ask_pin = tls_ask_pin;
	headers = calloc((size_t)argc + 1, sizeof(*headers));
	if (a.resolve == NULL || headers == NULL) {
		tls_args_clear(&a);
		free(headers);
		return EX_SC_FAIL;
	}
	memset(&conn, 0, sizeof(conn));
	conn.fd = -1;
	memset(&resp, 0, sizeof(resp));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "X:H:d:o:ivh", opts, NULL)) != -1) {
		if ((t = tls_option(c, &a, ch, optarg)) < 0) {
			rc = EX_SC_USAGE;
			goto out;
		} else if (t > 0)
			continue;
		switch (ch) {
		case 'X': method = optarg; break;
		case 'H':
			if (strchr(optarg, ':') == NULL || strpbrk(optarg, "\r\n") != NULL) {
				cli_err("-H wants 'Name: value', not \"%s\"", optarg);
				rc = EX_SC_USAGE;
				goto out;
			}
			headers[nheaders++] = optarg;
			break;
		case 'd':
			free(data);
			if (read_data(optarg, &data, &datalen) != SC_OK)
				goto out;
			break;
		case 'o': out = optarg; break;
		case 'i': include = 1; break;
		case 'h':
			fputs(connect_usage, stdout);
			rc = EX_SC_OK;
			goto out;
		default:
			rc = EX_SC_USAGE;
			goto out;
		}
	}
	if ((rc = url_arg(argc, argv, connect_usage, &url, host, sizeof(host), port, sizeof(port),
	    &path)) != EX_SC_OK)
		goto out;
	rc = EX_SC_FAIL;
	if (method == NULL)
		method = data ? "POST" : "GET";
	if (strpbrk(method, " \r\n") != NULL) {
		cli_err("-X \"%s\" is not an HTTP method", method);
		rc = EX_SC_USAGE;
		goto out;
	}
	if ((rc = tls_proxy_check(&a.o, host, port)) != EX_SC_OK || (rc = tls_cert_arg(&a)) != EX_SC_OK)
		goto out;
	rc = EX_SC_FAIL;
	sc_tls_conn_init(&conn, &a.o, host, port);
	if (sc_tls_open(&conn) != SC_OK) {
		report_failure(&conn);
		rc = exit_for_fail(&conn);
		goto out;
	}
	if (sc_http_exchange(&conn, method, path, headers, nheaders, data, datalen, MAX_BODY, &resp) != SC_OK) {
		report_failure(&conn);
		rc = exit_for_fail(&conn);
		goto out;
	}
	rc = connect_output(c, &conn, &resp, out, include);
out:
	if (conn.ssl != NULL && conn.fail == SC_TLS_OK)
		SSL_shutdown(conn.ssl);
	sc_http_resp_free(&resp);
	sc_tls_conn_free(&conn);
	free(path);
	free(data);
	free(headers);
	tls_args_clear(&a);
	return rc;
}

/* ================================================================ probe */

/* The checks of tls/probe.c, as text or JSON. */
static void
print_checks(const char *url, const struct sc_probe_check *k, int failed, int json)
{
	if (json) {
		json_object *o = json_object_new_object(), *arr = json_object_new_array();
		json_object_object_add(o, "url", sc_json_new_text(url));
		json_object_object_add(o, "result", json_object_new_string(failed ? "fail" : "pass"));
		for (int i = 0; i < SC_PROBE_COUNT; i++) {
			json_object *e;
			if (strcmp(k[i].status, "absent") == 0)
				continue;	/* proxy, when none is used */
			e = json_object_new_object();
			json_object_object_add(e, "id", json_object_new_string(sc_probe_check_ids[i]));
			json_object_object_add(e, "status", json_object_new_string(k[i].status));
			json_object_object_add(e, "detail", sc_json_new_text(k[i].detail));
			if (k[i].code != NULL)
				json_object_object_add(e, "code", json_object_new_string(k[i].code));
			if (strcmp(k[i].status, "pass") != 0 && k[i].advice[0])
				json_object_object_add(e, "advice", sc_json_new_text(k[i].advice));
			if (k[i].extra != NULL && i == SC_PROBE_CHAIN)
				json_object_object_add(e, "chain", json_object_get(k[i].extra));
			if (k[i].resumption != 0)
				json_object_object_add(e, "resumption", json_object_new_boolean(k[i].resumption > 0));
			json_object_array_add(arr, e);
		}
		json_object_object_add(o, "checks", arr);
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
		    JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
	} else {
		printf("probe %s\n", url);
		for (int i = 0; i < SC_PROBE_COUNT; i++) {
			char up[8];
			if (strcmp(k[i].status, "absent") == 0)
				continue;
			snprintf(up, sizeof(up), "%s", k[i].status);
			for (char *p = up; *p; p++)
				*p = (char)(*p - 'a' + 'A');
			cli_say(stdout, "  %-4s  %-20s %s%s%s%s", up, sc_probe_check_ids[i], k[i].code ? "[" : "",
			    k[i].code ? k[i].code : "", k[i].code ? "] " : "", k[i].detail);
			if (strcmp(k[i].status, "pass") != 0 && k[i].advice[0])
				cli_say(stdout, "        %-20s advice: %s", "", k[i].advice);
		}
		printf("result: %s\n", failed ? "fail" : "pass");
	}
}

static const char probe_usage[] =
    "usage: scagent probe URL [--json] [--cert REF] [--cafile FILE] [--principal msstd:NAME]\n"
    "                     [--resolve HOST:PORT:ADDR]... [--tls-max 1.2|1.3]\n"
    "                     [--proxy http://[user:pass@]host:port]\n"
    "       scagent probe --exchange HOST[:PORT] [--path P]... [--json] [options as above]\n";

enum { O_EXCHANGE = 1200, O_VDIR_PATH };

int
cmd_probe(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		TLS_LONGOPTS,
		{ "json", no_argument, NULL, O_JSON },
		{ "exchange", required_argument, NULL, O_EXCHANGE },
		{ "path", required_argument, NULL, O_VDIR_PATH },
		{ NULL, 0, NULL, 0 }
	};
	struct tls_args a;
	const char *exchange = NULL, **paths = calloc((size_t)argc + 1, sizeof(*paths));
	int npaths = 0;
	struct sc_probe_opts po;
	struct sc_probe_result res;
	const char *url = NULL;
	char host[256], port[8], *path = NULL;
	int json = 0, ch, t, rc = EX_SC_FAIL;

	tls_args_init(c, &a, argc, 1);
	if (cli_have_tty())
		a.o.ask_pin = tls_ask_pin;
	memset(&res, 0, sizeof(res));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		if ((t = tls_option(c, &a, ch, optarg)) < 0) {
			rc = EX_SC_USAGE;
			goto out;
		} else if (t > 0)
			continue;
		switch (ch) {
		case O_JSON: json = 1; break;
		case O_EXCHANGE: exchange = optarg; break;
		case O_VDIR_PATH:
			if (optarg[0] != '/' || strpbrk(optarg, " \r\n") != NULL || paths == NULL) {
				cli_err("--path wants an absolute path such as /owa/, not \"%s\"", optarg);
				rc = EX_SC_USAGE;
				goto out;
			}
			paths[npaths++] = optarg;
			break;
		case 'h':
			fputs(probe_usage, stdout);
			rc = EX_SC_OK;
			goto out;
		default:
			rc = EX_SC_USAGE;
			goto out;
		}
	}
	if (exchange != NULL || npaths > 0) {
		/* The sweep of every virtual directory (cmd_exchange.c). */
		if (exchange == NULL || optind != argc) {
			fputs(probe_usage, stderr);
			rc = EX_SC_USAGE;
			goto out;
		}
		if ((rc = tls_cert_arg(&a)) != EX_SC_OK)
			goto out;
		/* The sessions of the sweep: one signature for all paths where the server resumes. */
		rc = tls_args_sessions(&a) < 0 ? EX_SC_FAIL :
		    probe_exchange(&a.o, exchange, paths, npaths, json);
		goto out;
	}
	if ((rc = url_arg(argc, argv, probe_usage, &url, host, sizeof(host), port, sizeof(port),
	    &path)) != EX_SC_OK)
		goto out;
	if ((rc = tls_proxy_check(&a.o, host, port)) != EX_SC_OK || (rc = tls_cert_arg(&a)) != EX_SC_OK)
		goto out;
	rc = EX_SC_FAIL;
	if (tls_args_sessions(&a) < 0)
		goto out;
	memset(&po, 0, sizeof(po));
	po.tls = &a.o;
	po.host = host;
	po.port = port;
	po.path = path;
	po.say = cli_err;
	sc_probe_run(&po, &res);
	print_checks(url, res.checks, sc_probe_failed(&res), json);
	rc = sc_probe_failed(&res) ? EX_SC_FAIL : EX_SC_OK;
out:
	sc_probe_result_free(&res);
	free(path);
	free(paths);
	tls_args_clear(&a);
	return rc;
}

/* ================================================================ tunnel */

/* The relay itself, and who may use it, are in tls/tunnel.c. */

enum { O_MAXCONN = 1100, O_LIFETIME, O_KEEP, O_ALLOWHOST };

/* --session-lifetime N[s|m|h]: seconds, or -1 (said). */
static long
parse_lifetime(const char *arg)
{
	char *end;
	long n, mul = 1;

	errno = 0;
	n = strtol(arg, &end, 10);
	if (end == arg)
		n = -1;		/* no number ("h" alone): refused below */
	if (*end == 'h')
		mul = 3600;
	else if (*end == 'm')
		mul = 60;
	if (*end != '\0' && end[1] == '\0' && (*end == 'h' || *end == 'm' || *end == 's'))
		end++;
	if (errno != 0 || end == arg || *end != '\0' || n < 0 || n > 7 * 24 * 3600 / mul) {
		cli_err("--session-lifetime wants a duration from 0 to 168h (as 3600, 90m, 8h), not "
		    "\"%s\"", arg);
		return -1;
	}
	return n * mul;
}

/* The exit status for what the tunnel engine returned. */
static int
tunnel_exit(int r)
{
	return r == SC_OK ? EX_SC_OK : r == SC_ERR_INVALID ? EX_SC_USAGE : EX_SC_FAIL;
}

static const char tunnel_usage[] =
    "usage: scagent tunnel --listen ADDR:PORT|unix:PATH --connect HOST:PORT [--allow-remote]\n"
    "                      [--max-connections N] [--cert REF] [--cafile FILE]\n"
    "                      [--principal msstd:NAME] [--resolve HOST:PORT:ADDR]...\n"
    "                      [--tls-max 1.2|1.3] [--session-lifetime DURATION]\n"
    "                      [--keep-on-removal] [--proxy http://[user:pass@]host:port]\n"
    "                      [--allow-host NAME[,NAME...]]\n";

int
cmd_tunnel(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		TLS_LONGOPTS,
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "connect", required_argument, NULL, O_CONNECT },
		{ "allow-remote", no_argument, NULL, O_REMOTE },
		{ "max-connections", required_argument, NULL, O_MAXCONN },
		{ "session-lifetime", required_argument, NULL, O_LIFETIME },
		{ "keep-on-removal", no_argument, NULL, O_KEEP },
		{ "allow-host", required_argument, NULL, O_ALLOWHOST },
		{ NULL, 0, NULL, 0 }
	};
	struct tls_args a;
	struct sc_tunnel_opts to;
	char *end;
	long n;
	int ch, tt, rc = EX_SC_USAGE;

	tls_args_init(c, &a, argc, 0);
	memset(&to, 0, sizeof(to));
	to.tls = &a.o;
	to.max_connections = SC_TUNNEL_MAX_CONNECTIONS;
	to.say_err = cli_err;
	to.session_lifetime = SC_TLS_SESSION_LIFETIME;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		if ((tt = tls_option(c, &a, ch, optarg)) < 0)
			goto out;
		else if (tt > 0)
			continue;
		switch (ch) {
		case O_LISTEN: to.listen = optarg; break;
		case O_CONNECT: to.connect = optarg; break;
		case O_REMOTE: to.allow_remote = 1; break;
		case O_MAXCONN:
			errno = 0;
			n = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || n < 1 ||
			    n > SC_TUNNEL_MAX_CONNECTIONS_LIMIT) {
				cli_err("--max-connections wants a number from 1 to %d, not \"%s\"",
				    SC_TUNNEL_MAX_CONNECTIONS_LIMIT, optarg);
				goto out;
			}
			to.max_connections = (int)n;
			break;
		case O_LIFETIME:
			if ((to.session_lifetime = parse_lifetime(optarg)) < 0)
				goto out;
			break;
		case O_KEEP: to.keep_on_removal = 1; break;
		case O_ALLOWHOST:
			if (to.allow_host != NULL) {
				cli_err("--allow-host is given once, its names separated by commas");
				goto out;
			}
			to.allow_host = optarg;	/* checked with --listen (sc_tunnel_check) */
			break;
		case 'h':
			fputs(tunnel_usage, stdout);
			rc = EX_SC_OK;
			goto out;
		default:
			goto out;
		}
	}
	if (optind != argc || to.listen == NULL || to.connect == NULL) {
		fputs(tunnel_usage, stderr);
		goto out;
	}
	if ((rc = tunnel_exit(sc_tunnel_check(&to))) != EX_SC_OK)
		goto out;
	{
		char host[256], port[8];

		sc_tunnel_split_hostport(to.connect, host, sizeof(host), port, sizeof(port));
		if ((rc = tls_proxy_check(&a.o, host, port)) != EX_SC_OK)
			goto out;
	}
	if ((rc = tls_cert_arg(&a)) != EX_SC_OK)
		goto out;	/* --cert names nothing usable: no listener */
	rc = tunnel_exit(sc_tunnel_run(&to));
out:
	tls_args_clear(&a);
	return rc;
}
