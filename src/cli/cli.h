/* The scagent command line: shared state and helpers of the subcommands. */
#ifndef SC_CLI_H
#define SC_CLI_H

#include <stdio.h>
#include <sys/types.h>
#include <json-c/json.h>
#include "scagent/scagent.h"
#include "token/token.h"

/* Exit codes of INTERFACE.md. */
#define EX_SC_OK 0
#define EX_SC_FAIL 1
#define EX_SC_USAGE 2
#define EX_SC_AGENT 3

struct cli {
	const char *socket;
	const char *config;
	int direct;
	const char **modules;
	int nmodules;
	int verbose;
	struct sc_store *store;		/* --direct */
	scagent_client *client;		/* through the agent */
};

/*
 * Lines that may hold untrusted text (labels, names, what a server says):
 * the formatted text is escaped for the terminal (sc_term_escape: no control
 * character, newline or invalid UTF-8 reaches it), then a newline is added.
 */
/* Print "scagent: <msg>" to stderr (one line). */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* -v diagnostics to stderr. */
void cli_verbose(struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One line to fp. */
void cli_say(FILE *fp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Before printing a JSON answer for people: every string in it escaped for
 * the terminal, in place (sc_json_term_escape). 0, or an error (printed).
 */
int cli_escape_json(json_object *o);

/* Open the backend: the in-process store (--direct) or the agent. Returns an exit code. */
int cli_open(struct cli *c);
/* Only the agent (commands that need it); exit code. */
int cli_open_agent(struct cli *c);
void cli_close(struct cli *c);

/* Backend calls: 0 or SC_ERR_*, with a message printed on failure. */
/* cas: PEM text of trust anchors (what --cafile holds) or NULL: the chain is not checked. */
int cli_list(struct cli *c, const char *cas, json_object **out);
int cli_find(struct cli *c, const char *ref, const char *cas, json_object **out);
/* Map an SC_ERR_* to the exit status. */
int cli_exit_for(int r);

/* Read one PIN: from stdin (one line) when pin_stdin, else from the terminal without echo. */
char *cli_read_pin(const char *prompt, int pin_stdin);
/*
 * A new PIN ("user PIN", "SO PIN", "new PIN") for whose ("token \"L\""): on a
 * terminal asked twice, from stdin once. NULL on error, or when the two
 * differ ("the two Xs differ: " undone is printed).
 */
char *cli_read_new_pin(const char *what, const char *whose, const char *undone, int pin_stdin);
/* One line from fd, a byte at a time (nothing read past it): bytes read, 0 at end, -1 on error. */
ssize_t cli_read_line(int fd, char *buf, size_t cap);
/* Whether there is a terminal to ask on (cli_read_pin without pin_stdin). */
int cli_have_tty(void);
/* Read a whole file (or stdin for NULL / "-"); max bytes. */
int cli_read_file(const char *path, size_t max, unsigned char **buf, size_t *len);
int cli_write_file(const char *path, const unsigned char *buf, size_t len);

/* Subcommands: argc/argv start at the subcommand's name. */
int cmd_list(struct cli *c, int argc, char **argv);
int cmd_check(struct cli *c, int argc, char **argv);
int cmd_login(struct cli *c, int argc, char **argv);
int cmd_logout(struct cli *c, int argc, char **argv);
int cmd_sign(struct cli *c, int argc, char **argv);
int cmd_watch(struct cli *c, int argc, char **argv);
int cmd_status(struct cli *c, int argc, char **argv);
int cmd_refresh(struct cli *c, int argc, char **argv);
/* cmd_pin.c: change or unblock a token's PIN; stop the agent. */
int cmd_pin(struct cli *c, int argc, char **argv);
int cmd_stop(struct cli *c, int argc, char **argv);

#endif
