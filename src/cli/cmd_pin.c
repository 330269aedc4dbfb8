/*
 * scagent pin change/unblock: a token's user PIN changed with the old one, or
 * set anew with the SO PIN or PUK, through the agent (each PIN tried once,
 * never retried); scagent stop: the agent ends and its socket goes.
 */
#include "config.h"
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include "cli/cli.h"
#include "cli/commands.h"
#include "common/err.h"
#include "common/secmem.h"

#define STOP_WAIT_MS 5000	/* for the agent's socket to go */

static void
pin_usage(FILE *fp)
{
	fprintf(fp, "usage: scagent pin change --token LABEL [--pin-stdin] [--confirm-final-try]\n"
	    "       scagent pin unblock --token LABEL [--pin-stdin] [--confirm-final-try]\n"
	    "change asks for the PIN, then the new PIN twice; unblock asks for the SO PIN\n"
	    "(or PUK), then the new PIN twice. With --pin-stdin one per line, the new PIN\n"
	    "once: change reads the PIN then the new PIN, unblock the SO PIN then the new PIN.\n"
	    "--confirm-final-try: spend the last try of the PIN (change) or SO PIN (unblock).\n");
}

/* pin change and pin unblock: one option parser, two PINs read, one request. */
static int
pin_set(struct cli *c, int argc, char **argv, int so)
{
	static const struct option opts[] = {
		{ "token", required_argument, NULL, 't' },
		{ "pin-stdin", no_argument, NULL, 'P' },
		{ "confirm-final-try", no_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *token = NULL, *verb = so ? "unblock" : "change";
	char *pin = NULL, *new_pin = NULL, prompt[320], whose[300], undone[64];
	json_object *args, *res = NULL;
	int pin_stdin = 0, confirm = 0, ch, rc, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
		switch (ch) {
		case 't': token = optarg; break;
		case 'P': pin_stdin = 1; break;
		case 'F': confirm = 1; break;
		case 'h': pin_usage(stdout); return EX_SC_OK;
		default: return EX_SC_USAGE;
		}
	}
	if (token == NULL || optind != argc) {
		cli_err("usage: scagent pin %s --token LABEL [--pin-stdin] [--confirm-final-try]", verb);
		return EX_SC_USAGE;
	}
	if ((rc = cli_open_agent(c)) != EX_SC_OK)
		return rc;
	snprintf(whose, sizeof(whose), "token \"%s\"", token);
	snprintf(prompt, sizeof(prompt), "%s for %s: ", so ? "SO PIN or PUK" : "PIN", whose);
	snprintf(undone, sizeof(undone), "the PIN was not %s", so ? "unblocked" : "changed");
	if ((pin = cli_read_pin(prompt, pin_stdin)) == NULL ||
	    (new_pin = cli_read_new_pin("new PIN", whose, undone, pin_stdin)) == NULL) {
		sc_secstr_free(pin);
		return EX_SC_FAIL;
	}
	args = json_object_new_object();
	json_object_object_add(args, "token", json_object_new_string(token));
	json_object_object_add(args, so ? "so_pin" : "pin", json_object_new_string(pin));
	json_object_object_add(args, "new_pin", json_object_new_string(new_pin));
	if (confirm)
		json_object_object_add(args, "confirm_final_try", json_object_new_boolean(1));
	sc_secstr_free(pin);
	sc_secstr_free(new_pin);
	/* Sent once: whatever the answer, no PIN is tried again. */
	if ((r = enrol_call(c, so ? "pin-unblock" : "pin-change", args, &res)) != SC_OK)
		return cli_exit_for(r);
	json_object_put(res);
	cli_say(stdout, "%s the PIN of token \"%s\"%s", so ? "unblocked" : "changed", token,
	    so ? ": a new PIN is set" : "");
	return EX_SC_OK;
}

int
cmd_pin(struct cli *c, int argc, char **argv)
{
	if (c->direct) {
		cli_err("pin goes through the agent; it does not go with --direct");
		return EX_SC_USAGE;
	}
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		pin_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? EX_SC_USAGE : EX_SC_OK;
	}
	if (strcmp(argv[1], "change") == 0)
		return pin_set(c, argc - 1, argv + 1, 0);
	if (strcmp(argv[1], "unblock") == 0)
		return pin_set(c, argc - 1, argv + 1, 1);
	cli_err("unknown pin command '%s': change or unblock", argv[1]);
	return EX_SC_USAGE;
}

/* Until path is gone, at most ms milliseconds: SC_OK or SC_ERR_TIMEOUT. */
static int
wait_gone(const char *path, long ms)
{
	const struct timespec step = { 0, 50 * 1000000L };
	struct stat sb;

	for (long waited = 0; waited <= ms; waited += 50) {
		if (lstat(path, &sb) < 0 && errno == ENOENT)
			return SC_OK;
		nanosleep(&step, NULL);
	}
	return SC_ERR_TIMEOUT;
}

/*
 * The agent is asked to stop (the "stop" operation) rather than sent a
 * signal: the pid behind a socket is not always the agent's (systemd holds
 * an activated socket), and the agent knows whether its socket is its own
 * to remove.
 */
int
cmd_stop(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	json_object *res = NULL, *v;
	char *path = NULL;
	long long pid = 0;
	int kept = 0, ch, rc, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			printf("usage: scagent stop\nends the agent: logins end, its socket is removed\n");
			return EX_SC_OK;
		default: return EX_SC_USAGE;
		}
	}
	if (optind != argc || c->direct) {
		cli_err("usage: scagent stop (through the agent, not with --direct)");
		return EX_SC_USAGE;
	}
	if ((rc = cli_open_agent(c)) != EX_SC_OK)
		return rc;
	if ((r = enrol_call(c, "stop", NULL, &res)) != SC_OK)
		return cli_exit_for(r);
	if (json_object_object_get_ex(res, "pid", &v))
		pid = (long long)json_object_get_int64(v);
	kept = json_object_object_get_ex(res, "socket_kept", &v) && json_object_get_boolean(v);
	json_object_put(res);
	if (kept) {
		printf("stopped the agent (pid %lld); its socket is systemd's and stays: the next "
		    "connection starts an agent again (`systemctl --user stop scagent.socket` stops "
		    "that)\n", pid);
		return EX_SC_OK;
	}
	if ((path = scagent_default_socket(c->socket)) == NULL)
		return EX_SC_FAIL;
	if (wait_gone(path, STOP_WAIT_MS) != SC_OK) {
		cli_err("the agent (pid %lld) said it stops, but its socket %s is still there after "
		    "%d s: see the agent's log", pid, path, STOP_WAIT_MS / 1000);
		rc = EX_SC_FAIL;
	} else
		printf("stopped the agent (pid %lld)\n", pid);
	free(path);
	return rc;
}
