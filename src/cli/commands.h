/*
 * Subcommands added by other parts (TLS, enrolment, virtual smart cards):
 * each adds its table rows here so that scagent.c stays one list.
 */
#ifndef SC_CLI_COMMANDS_H
#define SC_CLI_COMMANDS_H
#define SC_CLI_MORE_COMMANDS
#endif
