/*
 * scagent testcard: the test kit (SoftHSM tokens with a demo PKI, a local
 * server asking for client certificates, an emulated PIV card). The kit is a
 * shell script with two Python helpers, installed as
 * $(pkglibexecdir)/scagent-testcard and $(pkgdatadir)/testcard/; this command
 * only runs it, so the kit needs neither the agent nor root, and users and CI
 * jobs can read what it does. SCAGENT_TESTCARD names another script (the
 * source tree's, for scagent's own tests).
 */
#include "config.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "cli/commands.h"

#ifndef PKGLIBEXECDIR
#error "PKGLIBEXECDIR must be defined by the build"
#endif
#ifndef PKGDATADIR
#error "PKGDATADIR must be defined by the build"
#endif

int
cmd_testcard(struct cli *c, int argc, char **argv)
{
	const char *script = getenv("SCAGENT_TESTCARD");

	(void)c;
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fprintf(argc < 2 ? stderr : stdout,
		    "usage: scagent testcard init DIR [--json]\n"
		    "       scagent testcard server DIR --port N [--verify require|optional] "
		    "[--tls 1.2|1.3] [--renegotiate PATH]\n"
		    "       scagent testcard piv DIR [--port 35963] [--log FILE]\n"
		    "See docs/TESTCARD.md.\n");
		return argc < 2 ? EX_SC_USAGE : EX_SC_OK;
	}
	if (script == NULL || *script == '\0')
		script = PKGLIBEXECDIR "/scagent-testcard";
	/* An explicit SCAGENT_TESTCARD_DATA wins; the script falls back to its own folder. */
	if (setenv("SCAGENT_TESTCARD_DATA", PKGDATADIR "/testcard", 0) != 0) {
		cli_err("testcard: cannot set SCAGENT_TESTCARD_DATA: %s", strerror(errno));
		return EX_SC_FAIL;
	}
	argv[0] = (char *)script;
	execv(script, argv);
	cli_err("testcard: cannot run %s: %s; reinstall scagent or set SCAGENT_TESTCARD",
	    script, strerror(errno));
	return EX_SC_FAIL;
}
