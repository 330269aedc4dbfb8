/* scagent login, logout, sign, watch, status: commands that need the agent. */
#include "config.h"
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>
#include "cli/cli.h"
#include "common/err.h"
#include "common/secmem.h"
#include "proto/proto.h"

#define SIGN_MAX_INPUT (64 * 1024)

static const struct option tok_opts[] = {
	{ "token", required_argument, NULL, 't' },
	{ "pin-stdin", no_argument, NULL, 'P' },
	{ "confirm-final-try", no_argument, NULL, 'F' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 }
};

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
	char *pin, prompt[128];

	optind = 1;
	while ((ch = getopt_long(argc, argv, "t:h", tok_opts, NULL)) != -1) {
		switch (ch) {
		case 't': token = optarg; break;
		case 'P': pin_stdin = 1; break;
		case 'F': confirm = 1; break;
		case 'h':
			printf("usage: scagent login --token LABEL [--pin-stdin] [--confirm-final-try]\n");
			return EX_SC_OK;
		default: return EX_SC_USAGE;
		}
	}
	if (token == NULL || optind != argc) {
		cli_err("usage: scagent login --token LABEL [--pin-stdin]");
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
	r = scagent_login(c->client, token, pin, confirm);
	sc_secstr_free(pin);
	if (r != SC_OK)
		return agent_fail(c, r);
	fprintf(stderr, "scagent: logged in to token \"%s\"\n", token);
	return EX_SC_OK;
}

int
cmd_logout(struct cli *c, int argc, char **argv)
{
	const char *token = NULL;
	int ch, rc, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "t:h", tok_opts, NULL)) != -1) {
		switch (ch) {
		case 't': token = optarg; break;
		case 'h':
			printf("usage: scagent logout --token LABEL\n");
			return EX_SC_OK;
		default: return EX_SC_USAGE;
		}
	}
	if (token == NULL || optind != argc) {
		cli_err("usage: scagent logout --token LABEL");
		return EX_SC_USAGE;
	}
	if ((rc = cli_open_agent(c)) != EX_SC_OK)
		return rc;
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
		cli_err("unknown --alg '%s': use rsa-pkcs1-sha256|384|512, rsa-pss-sha256|384|512 "
		    "or ecdsa-sha256|384|512", alg);
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

int
cmd_status(struct cli *c, int argc, char **argv)
{
	char *res = NULL;
	int rc, r;

	if ((rc = cli_open_agent(c)) != EX_SC_OK)
		return rc;
	if ((r = scagent_call(c->client, "status", NULL, &res)) != SC_OK)
		return agent_fail(c, r);
	printf("%s\n", res);
	scagent_free(res);
	return EX_SC_OK;
}
