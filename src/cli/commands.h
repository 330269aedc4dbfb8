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

#define SC_CLI_MORE_COMMANDS \
	{ "vsc", cmd_vsc, "TPM virtual smart cards: create, list, delete" }, \
	{ "keygen", cmd_keygen, "generate a key pair on a token" }, \
	{ "csr", cmd_csr, "PKCS#10 certificate request signed on the token" }, \
	{ "import", cmd_import, "store an issued certificate next to its key" },
#endif
