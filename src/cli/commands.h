/*
 * Subcommands added by other parts (TLS, enrolment, virtual smart cards):
 * each adds its table rows here so that scagent.c stays one list.
 */
#ifndef SC_CLI_COMMANDS_H
#define SC_CLI_COMMANDS_H

struct cli;

/* src/cli/cmd_tls.c: mutual TLS with the card's key. */
int cmd_connect(struct cli *c, int argc, char **argv);
int cmd_probe(struct cli *c, int argc, char **argv);
int cmd_tunnel(struct cli *c, int argc, char **argv);
#define SC_CLI_TLS_COMMANDS \
	{ "connect", cmd_connect, "an HTTPS request with mutual TLS (curl-like)" }, \
	{ "probe", cmd_probe, "step-by-step connectivity analysis of an HTTPS URL" }, \
	{ "tunnel", cmd_tunnel, "local plain-TCP listener forwarding over mutual TLS" },

#define SC_CLI_MORE_COMMANDS SC_CLI_TLS_COMMANDS
#endif
