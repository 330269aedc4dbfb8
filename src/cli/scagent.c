/* scagent: the command-line client of the smart card agent. */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/commands.h"
#include "common/log.h"

static const struct {
	const char *name;
	int (*fn)(struct cli *, int, char **);
	const char *help;
} commands[] = {
	{ "list", cmd_list, "tokens and readers with their certificates" },
	{ "check", cmd_check, "certificate-based-authentication suitability of one certificate" },
	{ "login", cmd_login, "log the agent in to a token" },
	{ "logout", cmd_logout, "log the agent out of a token, or of all" },
	{ "sign", cmd_sign, "sign data or a digest with a token's key" },
	{ "watch", cmd_watch, "stream token and reader events" },
	{ "status", cmd_status, "the agent's state" },
	{ "refresh", cmd_refresh, "read the tokens again; try absent modules again" },
	{ "pin", cmd_pin, "change a token's PIN, or unblock it with the SO PIN or PUK" },
	{ "stop", cmd_stop, "stop the agent" },
	SC_CLI_MORE_COMMANDS
};

static void
usage(FILE *fp)
{
	fprintf(fp, "usage: scagent [--socket PATH] [--direct] [--module PATH]... [--config FILE] [-v]\n"
	    "               COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(fp, "  %-9s %s\n", commands[i].name, commands[i].help);
	fprintf(fp, "\n`scagent COMMAND --help` shows a command's options. The agent's socket is\n"
	    "--socket, else $SCAGENT_SOCKET, else $XDG_RUNTIME_DIR/scagent/agent.sock.\n");
}

int
main(int argc, char **argv)
{
	struct cli c;
	int i, rc = EX_SC_USAGE;

	memset(&c, 0, sizeof(c));
	sc_log_init("scagent", SC_LOG_ERROR, 0);
	if ((c.modules = calloc((size_t)argc, sizeof(*c.modules))) == NULL)
		return EX_SC_FAIL;
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		if ((!strcmp(a, "--socket") || !strcmp(a, "--module") || !strcmp(a, "--config")) && i + 1 >= argc) {
			cli_err("%s needs a value", a);
			goto out;
		}
		if (!strcmp(a, "--socket"))
			c.socket = argv[++i];
		else if (!strncmp(a, "--socket=", 9))
			c.socket = a + 9;
		else if (!strcmp(a, "--module"))
			c.modules[c.nmodules++] = argv[++i];
		else if (!strncmp(a, "--module=", 9))
			c.modules[c.nmodules++] = a + 9;
		else if (!strcmp(a, "--config"))
			c.config = argv[++i];
		else if (!strcmp(a, "--direct"))
			c.direct = 1;
		else if (!strcmp(a, "-v") || !strcmp(a, "--verbose"))
			c.verbose++;
		else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			rc = EX_SC_OK;
			goto out;
		} else if (!strcmp(a, "--version")) {
			printf("scagent %s\n", PACKAGE_VERSION);
			rc = EX_SC_OK;
			goto out;
		} else {
			cli_err("unknown option '%s' (global options come before the command)", a);
			usage(stderr);
			goto out;
		}
	}
	if (i >= argc) {
		usage(stderr);
		goto out;
	}
	if (c.verbose > 1)
		sc_log_set_level(SC_LOG_DEBUG);
	else if (c.verbose)
		sc_log_set_level(SC_LOG_WARN);
	for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
		if (strcmp(commands[k].name, argv[i]) == 0) {
			rc = commands[k].fn(&c, argc - i, argv + i);
			cli_close(&c);
			goto out;
		}
	cli_err("unknown command '%s'", argv[i]);
	usage(stderr);
out:
	free(c.modules);
	return rc;
}
