/*
 * Which certificate goes to a server when several fit its request (issue
 * 24). `scagent prefer HOST[:PORT] REF` remembers one (tls/prefs.h; choice.c
 * reads it for connect, probe and tunnel). Without one, the chooser here is
 * asked: at a terminal (connect and probe, never the tunnel) a numbered
 * list, then the picker program of scagent.conf (`picker`, "auto": zenity
 * when there is a display). With nobody to ask, choice.c fails with the
 * candidates. A choice made is kept for the rest of the run, so that the
 * connections of a probe or of a tunnel ask once.
 */
#include "config.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <json-c/json.h>
#include "cli/cli.h"
#include "cli/commands.h"
#include "common/conf.h"
#include "common/err.h"
#include "tls/prefs.h"
#include "tls/tlsclient.h"

struct cli_chooser {
	int terminal;			/* may ask at the terminal (stdin and stderr are one) */
	char *picker;			/* the picker program, or NULL: none */
	int fail;			/* scagent.conf several-fit = fail: nobody to ask is an error */
	int verbose;
	pthread_mutex_t lock;		/* one question at a time; guards made */
	struct sc_tls_pref *made;	/* choices made in this run */
	size_t nmade;
};

/* 1 when prog (a name) is an executable file in PATH. */
static int
in_path(const char *prog)
{
	const char *path = getenv("PATH"), *p, *e;
	char full[4096];

	for (p = path; p != NULL && *p != '\0'; p = *e ? e + 1 : e) {
		e = p + strcspn(p, ":");
		snprintf(full, sizeof(full), "%.*s/%s", (int)(e - p), p, prog);
		if (e > p && access(full, X_OK) == 0)
			return 1;
	}
	return 0;
}

/*
 * scagent.conf's picker ("auto" is zenity when there is a display and zenity
 * is installed) and several-fit (*fail).
 */
static char *
picker_of(struct cli *c, int *fail)
{
	struct sc_config cfg;
	char *errmsg = NULL, *p = NULL;
	const char *d = getenv("DISPLAY"), *w = getenv("WAYLAND_DISPLAY");

	if (sc_config_load(c->config, &cfg, &errmsg) != SC_OK) {
		cli_verbose(c, "picker: %s; the picker is \"auto\"", errmsg ? errmsg : "no configuration");
		free(errmsg);
		sc_config_clear(&cfg);
		if ((cfg.picker = strdup("auto")) == NULL)
			return NULL;
	}
	*fail = cfg.several_fit_fail;
	if (cfg.picker != NULL && strcmp(cfg.picker, "auto") != 0)
		p = strdup(cfg.picker);
	else if (cfg.picker != NULL && ((d && *d) || (w && *w)) && in_path("zenity"))
		p = strdup("zenity");
	sc_config_clear(&cfg);
	return p;
}

struct cli_chooser *
cli_chooser_new(struct cli *c, int terminal)
{
	struct cli_chooser *ch = calloc(1, sizeof(*ch));

	if (ch == NULL)
		return NULL;
	ch->terminal = terminal && isatty(0) && isatty(2);
	ch->picker = picker_of(c, &ch->fail);
	ch->verbose = c->verbose;
	pthread_mutex_init(&ch->lock, NULL);
	return ch;
}

void
cli_chooser_free(struct cli_chooser *ch)
{
	if (ch == NULL)
		return;
	pthread_mutex_destroy(&ch->lock);
	free(ch->picker);
	free(ch->made);
	free(ch);
}

/* The candidate whose fingerprint is answer (or starts with it, 8 digits at least); -1 when none or several. */
static int
cand_of(const struct sc_tls_cand *cands, int n, const char *answer)
{
	size_t len = strlen(answer);
	int found = -1;

	if (len < 8)
		return -1;
	for (int i = 0; i < n; i++)
		if (strncasecmp(cands[i].sha256, answer, len) == 0) {
			if (found >= 0)
				return -1;
			found = i;
		}
	return found;
}

/* One answer from the terminal, trimmed: 0, or -1 at end of input. */
static int
read_answer(char *buf, size_t cap)
{
	char *s = buf, *e;

	if (cli_read_line(0, buf, cap) <= 0)
		return -1;
	while (isspace((unsigned char)*s))
		s++;
	memmove(buf, s, strlen(s) + 1);
	e = buf + strlen(buf);
	while (e > buf && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return 0;
}

/* A numbered list, a number read (three tries), then whether to remember it. */
static int
ask_terminal(const char *server, const struct sc_tls_cand *cands, int n, int *remember,
    char *why, size_t whylen)
{
	char line[64], *end;
	long k = 0;

	*remember = 0;
	cli_say(stderr, "scagent: several certificates fit %s:", server);
	for (int i = 0; i < n; i++)
		cli_say(stderr, "  %d) \"%s\" on %s: %s, issued by %s, expires %s, SHA-256 %.16s", i + 1,
		    cands[i].label, cands[i].token[0] ? cands[i].token : "?", cands[i].subject,
		    cands[i].issuer, cands[i].expires, cands[i].sha256);
	for (int tries = 0; ; tries++) {
		if (tries == 3) {
			snprintf(why, whylen, "no certificate chosen: three answers that were not a "
			    "number from 1 to %d", n);
			return SC_ERR_INVALID;
		}
		fprintf(stderr, "Certificate for %s [1-%d]: ", server, n);
		fflush(stderr);
		if (read_answer(line, sizeof(line)) < 0) {
			snprintf(why, whylen, "no certificate chosen: the terminal closed");
			return SC_ERR_CANCELLED;
		}
		errno = 0;
		k = strtol(line, &end, 10);
		if (errno == 0 && end != line && *end == '\0' && k >= 1 && k <= n)
			break;
		fprintf(stderr, "scagent: answer with a number from 1 to %d\n", n);
	}
	fprintf(stderr, "Remember it for %s? [y/N]: ", server);
	fflush(stderr);
	if (read_answer(line, sizeof(line)) == 0 && (strcasecmp(line, "y") == 0 ||
	    strcasecmp(line, "yes") == 0))
		*remember = 1;
	return (int)k - 1;
}

/* Run the picker with the candidates as a zenity --list; its answer (a fingerprint) into out. */
static int
run_picker(const char *prog, const char *server, const struct sc_tls_cand *cands, int n,
    char *out, size_t outlen, char *why, size_t whylen)
{
	enum { FIXED = 14, COLS = 6 };
	const char **argv = calloc((size_t)(FIXED + COLS * n + 1), sizeof(*argv));
	char text[400];
	int pfd[2] = { -1, -1 }, status = 0, a = 0, r = SC_ERR_IO;
	size_t got = 0;
	ssize_t k;
	pid_t pid;

	out[0] = '\0';
	if (argv == NULL) {
		snprintf(why, whylen, "out of memory");
		return SC_ERR_NOMEM;
	}
	snprintf(text, sizeof(text), "--text=Several certificates fit %s. Which one signs you in?", server);
	argv[a++] = prog;
	argv[a++] = "--list";
	argv[a++] = "--title=scagent: choose a certificate";
	argv[a++] = text;
	argv[a++] = "--column=Label";
	argv[a++] = "--column=Token";
	argv[a++] = "--column=Subject";
	argv[a++] = "--column=Issuer";
	argv[a++] = "--column=Expires";
	argv[a++] = "--column=SHA-256";
	argv[a++] = "--print-column=6";
	argv[a++] = "--width=900";
	argv[a++] = "--height=320";
	argv[a++] = "--";
	for (int i = 0; i < n; i++) {
		argv[a++] = cands[i].label;
		argv[a++] = cands[i].token;
		argv[a++] = cands[i].subject;
		argv[a++] = cands[i].issuer;
		argv[a++] = cands[i].expires;
		argv[a++] = cands[i].sha256;
	}
	if (pipe2(pfd, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
		snprintf(why, whylen, "cannot run the picker %s: %s", prog, strerror(errno));
		goto out;
	}
	if (pid == 0) {
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, 0);
		dup2(pfd[1], 1);
		execvp(prog, (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	pfd[1] = -1;
	while (got + 1 < outlen && ((k = read(pfd[0], out + got, outlen - 1 - got)) > 0 ||
	    (k < 0 && errno == EINTR)))
		if (k > 0)
			got += (size_t)k;
	out[got] = '\0';
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	out[strcspn(out, "\r\n|")] = '\0';
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		snprintf(why, whylen, "the picker %s could not be run (scagent.conf `picker`)", prog);
	else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(why, whylen, "the picker %s was closed without a choice", prog);
		r = SC_ERR_CANCELLED;
	} else
		r = SC_OK;
out:
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	free(argv);
	return r;
}

/* A choice made earlier in this run for server: its index in cands, or -1. */
static int
made_before(const struct cli_chooser *ch, const char *server, const struct sc_tls_cand *cands, int n)
{
	for (size_t i = 0; i < ch->nmade; i++)
		if (strcmp(ch->made[i].where, server) == 0)
			for (int k = 0; k < n; k++)
				if (strcmp(cands[k].sha256, ch->made[i].sha256) == 0)
					return k;
	return -1;
}

static void
keep_made(struct cli_chooser *ch, const char *server, const char *sha256)
{
	struct sc_tls_pref *nv = realloc(ch->made, (ch->nmade + 1) * sizeof(*nv));

	if (nv == NULL)
		return;	/* asked again next time */
	ch->made = nv;
	snprintf(nv[ch->nmade].where, sizeof(nv[ch->nmade].where), "%s", server);
	snprintf(nv[ch->nmade].sha256, sizeof(nv[ch->nmade].sha256), "%s", sha256);
	ch->nmade++;
}

int
cli_choose(void *arg, const char *host, const char *port, const struct sc_tls_cand *cands,
    int n, char *why, size_t whylen)
{
	struct cli_chooser *ch = arg;
	char server[300], answer[256], err[256];
	int i = -1, remember = 0, r = SC_ERR_AMBIGUOUS;

	why[0] = '\0';
	sc_tls_pref_key(host, port, server, sizeof(server));
	pthread_mutex_lock(&ch->lock);
	if ((i = made_before(ch, server, cands, n)) >= 0)
		goto out;
	if (ch->terminal) {
		if ((i = ask_terminal(server, cands, n, &remember, why, whylen)) < 0)
			r = i;
	} else if (ch->picker != NULL) {
		if ((r = run_picker(ch->picker, server, cands, n, answer, sizeof(answer), why,
		    whylen)) == SC_OK && (i = cand_of(cands, n, answer)) < 0) {
			snprintf(why, whylen, "the picker %s answered \"%.70s\", which is none of the "
			    "candidates' SHA-256", ch->picker, answer);
			r = SC_ERR_INVALID;
		}
		if (i >= 0 && ch->verbose)
			cli_say(stderr, "scagent: the picker %s chose \"%s\" for %s", ch->picker,
			    cands[i].label, server);
	}
	if (i < 0 && r == SC_ERR_AMBIGUOUS && why[0] == '\0' && !ch->fail) {
		/*
		 * Nobody to ask and nothing remembered: the first that fits, as
		 * `--cert` "otherwise chosen automatically" has always meant,
		 * said once per server and run (several-fit = fail refuses).
		 */
		i = 0;
		cli_say(stderr, "scagent: %d certificates fit %s: \"%s\" (%s, SHA-256 %.16s) goes, "
		    "the first; choose with --cert REF or `scagent prefer %s REF`", n, server,
		    cands[0].label, cands[0].subject, cands[0].sha256, server);
		for (int k = 1; k < n; k++)
			cli_say(stderr, "scagent:   also fits: \"%s\" (%s, SHA-256 %.16s)", cands[k].label,
			    cands[k].subject, cands[k].sha256);
	}
	if (i < 0)
		goto out;	/* r and why say why; nobody to ask: SC_ERR_AMBIGUOUS and "" */
	keep_made(ch, server, cands[i].sha256);
	if (remember) {
		if (sc_tls_pref_store(server, cands[i].sha256, err, sizeof(err)) == SC_OK)
			cli_say(stderr, "scagent: \"%s\" is remembered for %s (`scagent prefer --forget "
			    "%s` forgets it)", cands[i].label, server, server);
		else
			cli_say(stderr, "scagent: not remembered: %s", err);
	}
out:
	pthread_mutex_unlock(&ch->lock);
	return i >= 0 ? i : r;
}

/* ---------------------------------------------------------------- prefer */

static const char prefer_usage[] =
    "usage: scagent prefer HOST[:PORT] REF      the certificate REF goes to HOST (that port only)\n"
    "       scagent prefer --list               the remembered choices\n"
    "       scagent prefer --forget HOST[:PORT] forget one\n"
    "  when several certificates fit a server's request (connect, probe, tunnel)\n";

static int
prefer_list(struct cli *c)
{
	struct sc_tls_pref *v = NULL;
	char why[512], *path = sc_tls_prefs_path();
	size_t n = 0;

	cli_verbose(c, "preferences: %s", path ? path : "(no XDG_CONFIG_HOME, no HOME)");
	free(path);
	if (sc_tls_prefs_load(&v, &n, why, sizeof(why)) != SC_OK) {
		cli_err("%s", why);
		return EX_SC_FAIL;
	}
	for (size_t i = 0; i < n; i++)
		cli_say(stdout, "%s %s", v[i].where, v[i].sha256);
	if (n == 0)
		cli_verbose(c, "no preference remembered");
	free(v);
	return EX_SC_OK;
}

static int
prefer_set(struct cli *c, const char *where, const char *ref)
{
	json_object *found = NULL, *v;
	const char *sha = NULL, *label = "", *token = "";
	char why[512];
	int r, rc;

	if ((rc = cli_open_agent(c)) != EX_SC_OK)
		return rc;
	/* The agent's find: an unknown or ambiguous REF is said with the candidates. */
	if ((r = cli_find(c, ref, NULL, &found)) != SC_OK)
		return cli_exit_for(r);
	if (json_object_object_get_ex(found, "sha256", &v))
		sha = json_object_get_string(v);
	if (json_object_object_get_ex(found, "label", &v))
		label = json_object_get_string(v);
	if (json_object_object_get_ex(found, "token", &v))
		token = json_object_get_string(v);
	if (sha == NULL || strlen(sha) != 64) {
		cli_err("the agent's answer for \"%s\" names no certificate", ref);
		rc = EX_SC_FAIL;
	} else if ((r = sc_tls_pref_store(where, sha, why, sizeof(why))) != SC_OK) {
		cli_err("%s", why);
		rc = EX_SC_FAIL;
	} else {
		cli_say(stdout, "%s: \"%s\" on token %s (SHA-256 %.16s) when several certificates fit",
		    where, label, token, sha);
		rc = EX_SC_OK;
	}
	json_object_put(found);
	return rc;
}

int
cmd_prefer(struct cli *c, int argc, char **argv)
{
	enum { O_LIST = 1000, O_FORGET };
	static const struct option opts[] = {
		{ "list", no_argument, NULL, O_LIST },
		{ "forget", required_argument, NULL, O_FORGET },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *forget = NULL;
	char where[300], why[512];
	int list = 0, ch, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (ch) {
		case O_LIST: list = 1; break;
		case O_FORGET: forget = optarg; break;
		case 'v': c->verbose++; break;
		case 'h':
			fputs(prefer_usage, stdout);
			return EX_SC_OK;
		default:
			fputs(prefer_usage, stderr);
			return EX_SC_USAGE;
		}
	}
	if (list + (forget != NULL) + (optind < argc) != 1 || (optind < argc && optind != argc - 2)) {
		fputs(prefer_usage, stderr);
		return EX_SC_USAGE;
	}
	if (list)
		return prefer_list(c);
	if (sc_tls_pref_parse(forget ? forget : argv[optind], where, sizeof(where)) != SC_OK) {
		cli_err("\"%s\" is not HOST or HOST:PORT (as mail.contoso.com:443, [::1]:8443)",
		    forget ? forget : argv[optind]);
		return EX_SC_USAGE;
	}
	if (forget == NULL)
		return prefer_set(c, where, argv[optind + 1]);
	if ((r = sc_tls_pref_store(where, NULL, why, sizeof(why))) != SC_OK) {
		cli_err("%s", why);
		return EX_SC_FAIL;
	}
	cli_say(stdout, "%s: forgotten", where);
	return EX_SC_OK;
}
