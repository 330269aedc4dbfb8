/* scagent vsc create/list/delete: TPM virtual smart cards, through the agent. */
#include "config.h"
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/commands.h"
#include "common/err.h"
#include "common/secmem.h"
#include "proto/proto.h"

static void
vsc_usage(FILE *fp)
{
	fprintf(fp, "usage: scagent vsc create --label LABEL [--pin-stdin]\n"
	    "       scagent vsc list [--json]\n"
	    "       scagent vsc delete --label LABEL [--yes]\n"
	    "create asks for the user PIN and then the SO PIN (twice each on a terminal;\n"
	    "with --pin-stdin one per line: user PIN, then SO PIN).\n");
}

static int
vsc_create(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "label", required_argument, NULL, 'l' },
		{ "pin-stdin", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *label = NULL;
	char *pin = NULL, *sopin = NULL, whose[64];
	json_object *args, *res = NULL;
	int pin_stdin = 0, ch, rc, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "l:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'l': label = optarg; break;
		case 'P': pin_stdin = 1; break;
		case 'h': vsc_usage(stdout); return EX_SC_OK;
		default: return EX_SC_USAGE;
		}
	}
	if (label == NULL || optind != argc) {
		cli_err("usage: scagent vsc create --label LABEL [--pin-stdin]");
		return EX_SC_USAGE;
	}
	if (*label == '\0' || strlen(label) > 32) {
		cli_err("--label: a token label has 1 to 32 bytes");
		return EX_SC_USAGE;
	}
	if ((rc = cli_open_agent(c)) != EX_SC_OK)
		return rc;
	snprintf(whose, sizeof(whose), "the new token \"%s\"", label);
	if ((pin = cli_read_new_pin("user PIN", whose, "nothing was created", pin_stdin)) == NULL ||
	    (sopin = cli_read_new_pin("SO PIN", whose, "nothing was created", pin_stdin)) == NULL) {
		sc_secstr_free(pin);
		return EX_SC_FAIL;
	}
	args = json_object_new_object();
	json_object_object_add(args, "label", json_object_new_string(label));
	json_object_object_add(args, "pin", json_object_new_string(pin));
	json_object_object_add(args, "so_pin", json_object_new_string(sopin));
	sc_secstr_free(pin);
	sc_secstr_free(sopin);
	r = enrol_call(c, "init-token", args, &res);
	if (r != SC_OK)
		return cli_exit_for(r);
	json_object_put(res);
	printf("created TPM virtual smart card \"%s\"; log in with `scagent login --token %s`\n",
	    label, label);
	return EX_SC_OK;
}

static const char *
jstr(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && v != NULL ? json_object_get_string(v) : "";
}

static int
jbool(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

static int
vsc_list(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	json_object *res = NULL, *toks, *lock, *flags;
	int json = 0, ch, rc, r;
	size_t n;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (ch) {
		case 'j': json = 1; break;
		case 'h': vsc_usage(stdout); return EX_SC_OK;
		default: return EX_SC_USAGE;
		}
	}
	if (optind != argc) {
		cli_err("usage: scagent vsc list [--json]");
		return EX_SC_USAGE;
	}
	if ((rc = cli_open_agent(c)) != EX_SC_OK)
		return rc;
	if ((r = enrol_call(c, "vsc-list", NULL, &res)) != SC_OK)
		return cli_exit_for(r);
	if (json) {
		printf("%s\n", json_object_to_json_string_ext(res, JSON_C_TO_STRING_PRETTY |
		    JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(res);
		return EX_SC_OK;
	}
	if (*jstr(res, "module") == '\0' || cli_escape_json(res) != SC_OK) {
		if (*jstr(res, "module") == '\0')
			cli_err("the agent has no TPM virtual smart card module: configure tpm2-pkcs11");
		json_object_put(res);
		return EX_SC_FAIL;
	}
	printf("module %s, TPM %s, store %s\n", jstr(res, "module"),
	    *jstr(res, "tcti") ? jstr(res, "tcti") : "(default TCTI)",
	    *jstr(res, "store") ? jstr(res, "store") : "(tpm2-pkcs11 default)");
	if (json_object_object_get_ex(res, "lockout", &lock))
		printf("dictionary-attack lockout: %s failed tries of %s counted%s\n",
		    jstr(lock, "counter"), jstr(lock, "max_tries"),
		    jbool(lock, "in_lockout") ? " (LOCKED)" : "");
	json_object_object_get_ex(res, "tokens", &toks);
	n = toks ? json_object_array_length(toks) : 0;
	if (n == 0)
		printf("no TPM virtual smart cards; create one with `scagent vsc create --label LABEL`\n");
	else
		printf("%-24s %-16s %4s %5s  %s\n", "LABEL", "SERIAL", "KEYS", "CERTS", "PIN");
	for (size_t i = 0; i < n; i++) {
		json_object *t = json_object_array_get_idx(toks, i);
		char pinflags[128];
		json_object_object_get_ex(t, "flags", &flags);
		snprintf(pinflags, sizeof(pinflags), "%s%s%s%s",
		    jbool(flags, "logged_in") ? "logged-in" : "logged-out",
		    jbool(flags, "pin_locked") ? ",locked" : "",
		    jbool(flags, "pin_final_try") ? ",final-try" : "",
		    jbool(flags, "pin_count_low") ? ",count-low" : "");
		printf("%-24s %-16s %4s %5s  %s\n", jstr(t, "label"), jstr(t, "serial"),
		    jstr(t, "keys"), jstr(t, "certificates"), pinflags);
	}
	json_object_put(res);
	return EX_SC_OK;
}

/* "y" on the terminal. */
static int
confirm_tty(const char *question)
{
	char line[64];
	FILE *tty = fopen("/dev/tty", "r+");
	int yes;

	if (tty == NULL)
		return -1;
	fprintf(tty, "%s [y/N] ", question);
	fflush(tty);
	yes = fgets(line, sizeof(line), tty) != NULL && (line[0] == 'y' || line[0] == 'Y');
	fclose(tty);
	return yes;
}

static int
vsc_delete(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "label", required_argument, NULL, 'l' },
		{ "yes", no_argument, NULL, 'y' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *label = NULL;
	json_object *args, *res = NULL;
	char q[256];
	int yes = 0, ch, rc, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "l:yh", opts, NULL)) != -1) {
		switch (ch) {
		case 'l': label = optarg; break;
		case 'y': yes = 1; break;
		case 'h': vsc_usage(stdout); return EX_SC_OK;
		default: return EX_SC_USAGE;
		}
	}
	if (label == NULL || optind != argc) {
		cli_err("usage: scagent vsc delete --label LABEL [--yes]");
		return EX_SC_USAGE;
	}
	if (!yes) {
		snprintf(q, sizeof(q), "Delete the TPM virtual smart card \"%s\" with all its keys and "
		    "certificates? This cannot be undone.", label);
		if ((r = confirm_tty(q)) < 0) {
			cli_err("no terminal to confirm the deletion: add --yes");
			return EX_SC_USAGE;
		}
		if (r == 0) {
			cli_err("not deleted");
			return EX_SC_FAIL;
		}
	}
	if ((rc = cli_open_agent(c)) != EX_SC_OK)
		return rc;
	args = json_object_new_object();
	json_object_object_add(args, "label", json_object_new_string(label));
	if ((r = enrol_call(c, "delete-token", args, &res)) != SC_OK)
		return cli_exit_for(r);
	json_object_put(res);
	printf("deleted TPM virtual smart card \"%s\"\n", label);
	return EX_SC_OK;
}

int
cmd_vsc(struct cli *c, int argc, char **argv)
{
	if (c->direct) {
		cli_err("vsc goes through the agent; it does not go with --direct");
		return EX_SC_USAGE;
	}
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		vsc_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? EX_SC_USAGE : EX_SC_OK;
	}
	if (strcmp(argv[1], "create") == 0)
		return vsc_create(c, argc - 1, argv + 1);
	if (strcmp(argv[1], "list") == 0)
		return vsc_list(c, argc - 1, argv + 1);
	if (strcmp(argv[1], "delete") == 0)
		return vsc_delete(c, argc - 1, argv + 1);
	cli_err("unknown vsc command '%s': create, list or delete", argv[1]);
	return EX_SC_USAGE;
}
