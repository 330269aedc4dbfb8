/* scagent login, logout, sign, watch, status: commands that need the agent. */
#include "config.h"
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>
#include "cli/cli.h"
#include "cli/commands.h"
#include "common/alg.h"
#include "common/err.h"
#include "common/secmem.h"
#include "proto/proto.h"

#define SIGN_MAX_INPUT (64 * 1024)

static const struct option tok_opts[] = {
	{ "token", required_argument, NULL, 't' },
	{ "pin-stdin", no_argument, NULL, 'P' },
	{ "confirm-final-try", no_argument, NULL, 'F' },
	{ "lifetime", required_argument, NULL, 'L' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 }
};

#define LOGIN_USAGE "usage: scagent login --token LABEL [--pin-stdin] [--confirm-final-try] " \
	"[--lifetime SECONDS]"

static int
agent_fail(struct cli *c, int r)
{
	cli_err("%s", *scagent_error(c->client) ? scagent_error(c->client) : scagent_strerror(r));
	return cli_exit_for(r);
}

int
cmd_login(struct cli *c, int argc, char **argv)
{
	const char *token = NULL;
	int pin_stdin = 0, confirm = 0, ch, rc, r;
	long long lifetime = 0;
	char *pin, prompt[128], *end;
	json_object *args, *res = NULL;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "t:h", tok_opts, NULL)) != -1) {
		switch (ch) {
		case 't': token = optarg; break;
		case 'P': pin_stdin = 1; break;
		case 'F': confirm = 1; break;
		case 'L':
			errno = 0;
			lifetime = strtoll(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || lifetime < 1 ||
			    lifetime > 31536000) {
				cli_err("--lifetime: seconds, from 1 to 31536000 (a year), not '%s'", optarg);
				return EX_SC_USAGE;
			}
			break;
		case 'h':
			printf("%s\n  --lifetime SECONDS: the agent logs out of the token that long "
			    "after the login, used or not (ssh-add -t)\n", LOGIN_USAGE);
			return EX_SC_OK;
		default: return EX_SC_USAGE;
		}
	}
	if (token == NULL || optind != argc) {
		cli_err("%s", LOGIN_USAGE);
		return EX_SC_USAGE;
	}
	if (c->direct) {
		cli_err("login keeps the agent logged in: it does not go with --direct");
		return EX_SC_USAGE;
	}
	if ((rc = cli_open_agent(c)) != EX_SC_OK)
		return rc;
	snprintf(prompt, sizeof(prompt), "PIN for token \"%s\": ", token);
	if ((pin = cli_read_pin(prompt, pin_stdin)) == NULL)
		return EX_SC_FAIL;
	args = json_object_new_object();
	json_object_object_add(args, "token", json_object_new_string(token));
	json_object_object_add(args, "pin", json_object_new_string(pin));
	sc_secstr_free(pin);
	if (confirm)
		json_object_object_add(args, "confirm_final_try", json_object_new_boolean(1));
	if (lifetime > 0)
		json_object_object_add(args, "lifetime", json_object_new_int64(lifetime));
	if ((r = enrol_call(c, "login", args, &res)) != SC_OK)
		return cli_exit_for(r);
	json_object_put(res);
	if (lifetime > 0)
		fprintf(stderr, "scagent: logged in to token \"%s\" for %lld s\n", token, lifetime);
	else
		fprintf(stderr, "scagent: logged in to token \"%s\"\n", token);
	return EX_SC_OK;
}

/* s percent-encoded for a pkcs11: URI attribute value (RFC 7512), appended to b. */
static void
uri_append(char *b, size_t len, const char *s)
{
	size_t o = strlen(b);

	for (; *s && o + 4 < len; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '.' || ch == '_' || ch == '~')
			b[o++] = (char)ch;
		else
			o += (size_t)snprintf(b + o, len - o, "%%%02X", ch);
	}
	b[o] = '\0';
}

/*
 * logout --all: every token the agent is logged in to, each named by a token
 * URI with its serial (two tokens may share a label), one line for each.
 */
static int
logout_all(struct cli *c)
{
	json_object *root = NULL, *toks, *t, *f, *v;
	char *json = NULL, uri[1024];
	int r, rc = EX_SC_OK, n = 0;

	if ((r = scagent_list(c->client, &json)) != SC_OK)
		return agent_fail(c, r);
	if ((root = json_tokener_parse(json)) == NULL ||
	    !json_object_object_get_ex(root, "tokens", &toks)) {
		cli_err("the agent's token list is not JSON: is it the same version as scagent?");
		rc = EX_SC_FAIL;
		goto out;
	}
	for (size_t i = 0; i < json_object_array_length(toks); i++) {
		const char *label = "", *serial = NULL;

		t = json_object_array_get_idx(toks, i);
		if (!json_object_object_get_ex(t, "flags", &f) ||
		    !json_object_object_get_ex(f, "logged_in", &v) || !json_object_get_boolean(v))
			continue;
		if (json_object_object_get_ex(t, "label", &v))
			label = json_object_get_string(v);
		if (json_object_object_get_ex(t, "serial", &v))
			serial = json_object_get_string(v);
		snprintf(uri, sizeof(uri), "pkcs11:token=");
		uri_append(uri, sizeof(uri), label);
		if (serial != NULL && *serial) {
			strncat(uri, ";serial=", sizeof(uri) - strlen(uri) - 1);
			uri_append(uri, sizeof(uri), serial);
		}
		n++;
		if ((r = scagent_logout(c->client, uri)) != SC_OK) {
			cli_err("logging out of token \"%s\" failed: %s", label,
			    *scagent_error(c->client) ? scagent_error(c->client) : scagent_strerror(r));
			rc = cli_exit_for(r);
		} else
			printf("logged out of token \"%s\"%s%s\n", label, serial && *serial ?
			    ", serial " : "", serial && *serial ? serial : "");
	}
	if (n == 0)
		printf("not logged in to any token\n");
out:
	json_object_put(root);
	scagent_free(json);
	return rc;
}

int
cmd_logout(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "token", required_argument, NULL, 't' },
		{ "all", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *token = NULL;
	int all = 0, ch, rc, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "t:ah", opts, NULL)) != -1) {
		switch (ch) {
		case 't': token = optarg; break;
		case 'a': all = 1; break;
		case 'h':
			printf("usage: scagent logout --token LABEL | --all\n");
			return EX_SC_OK;
		default: return EX_SC_USAGE;
		}
	}
	if ((token == NULL) == !all || optind != argc) {
		cli_err("usage: scagent logout --token LABEL | --all");
		return EX_SC_USAGE;
	}
	if ((rc = cli_open_agent(c)) != EX_SC_OK)
		return rc;
	if (all)
		return logout_all(c);
	if ((r = scagent_logout(c->client, token)) != SC_OK)
		return agent_fail(c, r);
	return EX_SC_OK;
}

int
cmd_sign(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cert", required_argument, NULL, 'c' },
		{ "alg", required_argument, NULL, 'a' },
		{ "digest", no_argument, NULL, 'd' },
		{ "in", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'o' },
		{ "pin-stdin", no_argument, NULL, 'P' },
		{ "confirm-final-try", no_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	static const char usage[] = "usage: scagent sign --cert REF --alg ALG [--digest] [--in FILE] "
	    "[--out FILE] [--pin-stdin --in FILE] [--confirm-final-try]";
	const char *ref = NULL, *alg = NULL, *in = NULL, *out = NULL;
	unsigned char *data = NULL, *sig = NULL;
	char *pin = NULL, prompt[300];
	size_t len = 0, siglen = 0;
	int is_digest = 0, pin_stdin = 0, confirm = 0, ch, rc, r, a;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:a:di:o:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': ref = optarg; break;
		case 'a': alg = optarg; break;
		case 'd': is_digest = 1; break;
		case 'i': in = optarg; break;
		case 'o': out = optarg; break;
		case 'P': pin_stdin = 1; break;
		case 'F': confirm = 1; break;
		case 'h':
			printf("%s\n  --pin-stdin: the PIN of a key that needs it for every signature "
			    "(CKA_ALWAYS_AUTHENTICATE);\n  without it such a key's PIN is asked on the "
			    "terminal, or by the agent's pinentry\n", usage);
			return EX_SC_OK;
		default: return EX_SC_USAGE;
		}
	}
	if (ref == NULL || alg == NULL || optind != argc) {
		cli_err("%s", usage);
		return EX_SC_USAGE;
	}
	if (pin_stdin && (in == NULL || strcmp(in, "-") == 0)) {
		cli_err("--pin-stdin reads the PIN from standard input: give the data with --in FILE");
		return EX_SC_USAGE;
	}
	if ((a = sc_alg_parse(alg)) < 0) {
		cli_err("unknown --alg '%s': use %s", alg, sc_alg_names_hint());
		return EX_SC_USAGE;
	}
	if (c->direct) {
		cli_err("sign goes through the agent; it does not go with --direct");
		return EX_SC_USAGE;
	}
	if (cli_read_file(in, SIGN_MAX_INPUT, &data, &len) != SC_OK)
		return EX_SC_FAIL;
	if (is_digest && len != (size_t)EVP_MD_get_size(sc_alg_md(a))) {
		cli_err("--digest: %s wants a %d-byte hash, the input has %zu bytes", alg,
		    EVP_MD_get_size(sc_alg_md(a)), len);
		free(data);
		return EX_SC_FAIL;
	}
	if ((rc = cli_open_agent(c)) != EX_SC_OK) {
		free(data);
		return rc;
	}
	snprintf(prompt, sizeof(prompt), "PIN for the key of \"%s\" (it asks for it at every "
	    "signature): ", ref);
	if (pin_stdin && (pin = cli_read_pin(prompt, 1)) == NULL) {
		free(data);
		return EX_SC_FAIL;
	}
	r = scagent_sign_pin(c->client, ref, alg, is_digest, data, len, pin, confirm, &sig, &siglen);
	if (r == SC_ERR_PIN_REQUIRED && pin == NULL && cli_have_tty()) {
		/* No PIN was tried: this is the first and only one. */
		if ((pin = cli_read_pin(prompt, 0)) == NULL) {
			free(data);
			return EX_SC_FAIL;
		}
		r = scagent_sign_pin(c->client, ref, alg, is_digest, data, len, pin, confirm,
		    &sig, &siglen);
	}
	sc_secstr_free(pin);
	free(data);
	if (r != SC_OK)
		return agent_fail(c, r);
	r = cli_write_file(out, sig, siglen);
	free(sig);
	return r == SC_OK ? EX_SC_OK : EX_SC_FAIL;
}

static const char *
ev_str(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return NULL;
	return json_object_get_string(v);
}

/*
 * One line per event: local time with milliseconds, the event's name, then
 * what it is about in words ("reader \"X\", ATR ..."); fields without words
 * follow as key=value.
 */
static void
print_event(FILE *fp, json_object *o)
{
	const char *ev = ev_str(o, "event"), *reader = ev_str(o, "reader");
	const char *token = ev_str(o, "token");
	struct timespec now;
	struct tm tm;
	char ts[32];
	int described = 1;

	clock_gettime(CLOCK_REALTIME, &now);
	localtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(fp, "%s.%03ld  %-16s", ts, now.tv_nsec / 1000000L, ev ? ev : "event");
	if (ev == NULL)
		described = 0;
	else if (strcmp(ev, "token-added") == 0 || strcmp(ev, "token-removed") == 0)
		fprintf(fp, " token \"%s\"%s%s%s", token ? token : "",
		    reader && *reader ? (ev[6] == 'a' ? " in \"" : " from \"") : "",
		    reader && *reader ? reader : "", reader && *reader ? "\"" : "");
	else if (strncmp(ev, "reader-", 7) == 0 || strncmp(ev, "card-", 5) == 0)
		fprintf(fp, " reader \"%s\"", reader ? reader : "");
	else if (strcmp(ev, "pcsc-unavailable") == 0)
		fprintf(fp, " %s; readers unknown until it is back", ev_str(o, "reason") ?
		    ev_str(o, "reason") : "PC/SC is not reachable");
	else if (strcmp(ev, "pcsc-available") == 0)
		fprintf(fp, " PC/SC service reachable, %s reader(s)", ev_str(o, "readers") ?
		    ev_str(o, "readers") : "?");
	else
		described = 0;
	json_object_object_foreach(o, key, val) {
		if (strcmp(key, "event") == 0 || (described && (strcmp(key, "reader") == 0 ||
		    strcmp(key, "token") == 0 || strcmp(key, "reason") == 0 ||
		    strcmp(key, "readers") == 0)))
			continue;
		if (strcmp(key, "atr") == 0)
			fprintf(fp, ", ATR %s", json_object_get_string(val));
		else
			fprintf(fp, " %s=%s", key, val ? json_object_get_string(val) : "null");
	}
	fputc('\n', fp);
}

int
cmd_watch(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int json = 0, ch, rc, r;
	char *ev;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (ch) {
		case 'j': json = 1; break;
		case 'h':
			printf("usage: scagent watch [--json]\n");
			return EX_SC_OK;
		default: return EX_SC_USAGE;
		}
	}
	if ((rc = cli_open_agent(c)) != EX_SC_OK)
		return rc;
	if ((r = scagent_watch(c->client)) != SC_OK)
		return agent_fail(c, r);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (;;) {
		json_object *o;
		if ((r = scagent_next_event(c->client, -1, &ev)) != SC_OK) {
			cli_err("%s", scagent_error(c->client));
			return cli_exit_for(r == SC_ERR_AGENT_UNREACHABLE ? SC_ERR_AGENT_UNREACHABLE : r);
		}
		if ((o = json_tokener_parse(ev)) == NULL) {
			cli_err("the agent sent an event that is not JSON");
		} else if (json) {
			/* One compact object per line, whatever the agent's spacing. */
			printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
			    JSON_C_TO_STRING_NOSLASHESCAPE));
		} else if (cli_escape_json(o) == SC_OK)
			print_event(stdout, o);
		json_object_put(o);
		scagent_free(ev);
	}
}

/* The agent's status in words: one line a fact, then the tokens. */
static void
print_status(FILE *fp, json_object *o)
{
	json_object *v, *toks, *pcsc, *procs = NULL;
	int64_t up = json_object_object_get_ex(o, "uptime", &v) ? json_object_get_int64(v) : 0;
	size_t nproc = 0, nabsent = 0;

	fprintf(fp, "agent:    %s, pid %s, up %lldh %02lldm %02llds, protocol %s\n",
	    ev_str(o, "agent") ? ev_str(o, "agent") : "?", ev_str(o, "pid") ? ev_str(o, "pid") : "?",
	    (long long)(up / 3600), (long long)(up / 60 % 60), (long long)(up % 60),
	    ev_str(o, "protocol") ? ev_str(o, "protocol") : "?");
	fprintf(fp, "clients:  %s\n", ev_str(o, "clients") ? ev_str(o, "clients") : "?");
	/* "modules" counts those loaded; with workers, say how many there are and are absent. */
	if (json_object_object_get_ex(o, "processes", &procs))
		nproc = json_object_array_length(procs);
	for (size_t i = 0; i < nproc; i++)
		nabsent += strcmp(ev_str(json_object_array_get_idx(procs, i), "state") ?
		    ev_str(json_object_array_get_idx(procs, i), "state") : "", "absent") == 0;
	if (nabsent > 0)
		fprintf(fp, "modules:  %zu, %s loaded, %zu absent\n", nproc,
		    ev_str(o, "modules") ? ev_str(o, "modules") : "?", nabsent);
	else
		fprintf(fp, "modules:  %s\n", ev_str(o, "modules") ? ev_str(o, "modules") : "?");
	/* Each module's worker process: its state, restarts and what last stopped it. */
	for (size_t i = 0; i < nproc; i++) {
		json_object *p = json_object_array_get_idx(procs, i);
		if (strcmp(ev_str(p, "state") ? ev_str(p, "state") : "", "absent") == 0) {
			fprintf(fp, "  %s: absent: %s\n", ev_str(p, "module") ? ev_str(p, "module") : "?",
			    ev_str(p, "last_error") ? ev_str(p, "last_error") : "did not load");
			continue;
		}
		fprintf(fp, "  %s: %s, pid %s, %s restart(s)%s%s\n",
		    ev_str(p, "module") ? ev_str(p, "module") : "?",
		    ev_str(p, "state") ? ev_str(p, "state") : "?",
		    ev_str(p, "pid") ? ev_str(p, "pid") : "-",
		    ev_str(p, "restarts") ? ev_str(p, "restarts") : "0",
		    ev_str(p, "last_error") ? "; last stopped: " : "",
		    ev_str(p, "last_error") ? ev_str(p, "last_error") : "");
	}
	if (json_object_object_get_ex(o, "pcsc", &pcsc)) {
		if (json_object_object_get_ex(pcsc, "available", &v) && json_object_get_boolean(v))
			fprintf(fp, "PC/SC:    %s reader(s)\n", ev_str(pcsc, "readers") ?
			    ev_str(pcsc, "readers") : "?");
		else
			fprintf(fp, "PC/SC:    not available: %s\n", ev_str(pcsc, "reason") ?
			    ev_str(pcsc, "reason") : "unknown");
	}
	if (!json_object_object_get_ex(o, "tokens", &toks) || json_object_array_length(toks) == 0) {
		fprintf(fp, "tokens:   none\n");
		return;
	}
	fprintf(fp, "tokens:\n");
	for (size_t i = 0; i < json_object_array_length(toks); i++) {
		json_object *t = json_object_array_get_idx(toks, i);
		int in = json_object_object_get_ex(t, "logged_in", &v) && json_object_get_boolean(v);
		fprintf(fp, "  %-32s %s\n", ev_str(t, "label") ? ev_str(t, "label") : "",
		    in ? "logged in" : "not logged in");
	}
}

int
cmd_status(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	json_object *o;
	char *res = NULL;
	int json = 0, ch, rc, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (ch) {
		case 'j': json = 1; break;
		case 'h':
			printf("usage: scagent status [--json]\n");
			return EX_SC_OK;
		default: return EX_SC_USAGE;
		}
	}
	if (optind != argc) {
		cli_err("usage: scagent status [--json]");
		return EX_SC_USAGE;
	}
	if ((rc = cli_open_agent(c)) != EX_SC_OK)
		return rc;
	if ((r = scagent_call(c->client, "status", NULL, &res)) != SC_OK)
		return agent_fail(c, r);
	if (json)
		printf("%s\n", res);
	else if ((o = json_tokener_parse(res)) == NULL) {
		cli_err("the agent's status is not JSON: is it the same version as scagent?");
		rc = EX_SC_FAIL;
	} else {
		/* token labels and module errors are others' words: escaped for the terminal */
		if (cli_escape_json(o) == SC_OK)
			print_status(stdout, o);
		else
			rc = EX_SC_FAIL;
		json_object_put(o);
	}
	scagent_free(res);
	return rc;
}

/*
 * The agent reads every module's slots again now, and tries each absent
 * module (no TPM, no pcscd when it started) again, waiting for it.
 */
int
cmd_refresh(struct cli *c, int argc, char **argv)
{
	json_object *o;
	char *res = NULL;
	int rc, r;

	if (argc == 2 && strcmp(argv[1], "--help") == 0) {
		printf("usage: scagent refresh\n");
		return EX_SC_OK;
	}
	if (argc != 1) {
		cli_err("usage: scagent refresh");
		return EX_SC_USAGE;
	}
	if ((rc = cli_open_agent(c)) != EX_SC_OK)
		return rc;
	if ((r = scagent_call(c->client, "refresh", NULL, &res)) != SC_OK)
		return agent_fail(c, r);
	if ((o = json_tokener_parse(res)) != NULL) {
		printf("%s\n", json_object_get_boolean(json_object_object_get(o, "changed")) ?
		    "the tokens changed" : "no change");
		if (ev_str(o, "warning") != NULL)
			cli_err("%s", ev_str(o, "warning"));
		json_object_put(o);
	}
	scagent_free(res);
	return rc;
}
