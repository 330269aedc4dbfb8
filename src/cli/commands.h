/*
 * Subcommands added by other parts (TLS, enrolment, virtual smart cards):
 * each adds its table rows here so that scagent.c stays one list.
 */
#ifndef SC_CLI_COMMANDS_H
#define SC_CLI_COMMANDS_H
#include <json-c/json.h>

struct cli;

/* Enrolment (cmd_enrol.c) and TPM virtual smart cards (cmd_vsc.c). */
int cmd_keygen(struct cli *c, int argc, char **argv);
int cmd_csr(struct cli *c, int argc, char **argv);
int cmd_import(struct cli *c, int argc, char **argv);
int cmd_vsc(struct cli *c, int argc, char **argv);
/* One agent operation with a JSON result; the agent's message is printed on failure. */
int enrol_call(struct cli *c, const char *op, json_object *args, json_object **out);

/* src/cli/cmd_tls.c: mutual TLS with the card's key. */
int cmd_connect(struct cli *c, int argc, char **argv);
int cmd_probe(struct cli *c, int argc, char **argv);
int cmd_tunnel(struct cli *c, int argc, char **argv);

/*
 * src/cli/cmd_prefer.c: `scagent prefer`, and who chooses when several
 * certificates fit a server and none is remembered for it (tls/prefs.h).
 */
struct sc_tls_cand;
struct cli_chooser;
int cmd_prefer(struct cli *c, int argc, char **argv);
/*
 * The chooser of connect and probe (terminal 1: a numbered list at the
 * terminal when stdin and stderr are one, then the picker) or of the tunnel
 * (terminal 0: the picker only). The picker is scagent.conf's `picker`.
 * NULL when out of memory.
 */
struct cli_chooser *cli_chooser_new(struct cli *c, int terminal);
void cli_chooser_free(struct cli_chooser *ch);
/* An sc_tls_chooser (tls/tlsclient.h) whose arg is a struct cli_chooser. */
int cli_choose(void *arg, const char *host, const char *port, const struct sc_tls_cand *cands,
    int n, char *why, size_t whylen);

/* src/cli/cmd_testcard.c: runs the installed test kit. */
int cmd_testcard(struct cli *c, int argc, char **argv);
/* src/cli/cmd_register.c: the PKCS#11 module in browsers' NSS databases. */
int cmd_register(struct cli *c, int argc, char **argv);

#define SC_CLI_MORE_COMMANDS \
	{ "connect", cmd_connect, "an HTTPS request with mutual TLS (curl-like)" }, \
	{ "probe", cmd_probe, "step-by-step connectivity analysis of an HTTPS URL" }, \
	{ "tunnel", cmd_tunnel, "local plain-TCP listener forwarding over mutual TLS" }, \
	{ "prefer", cmd_prefer, "remember which certificate goes to a server when several fit" }, \
	{ "vsc", cmd_vsc, "TPM virtual smart cards: create, list, delete" }, \
	{ "keygen", cmd_keygen, "generate a key pair on a token" }, \
	{ "csr", cmd_csr, "PKCS#10 certificate request signed on the token" }, \
	{ "import", cmd_import, "store an issued certificate next to its key" }, \
	{ "testcard", cmd_testcard, "test kit: SoftHSM PKI, TLS server, emulated PIV card" }, \
	{ "register", cmd_register, "add the PKCS#11 module to Firefox, Thunderbird, Chromium" },
#endif
