/* Where the CLI gets its answers: the agent, or the modules in-process (--direct). */
#include "config.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <p11-kit/uri.h>
#include "cert/certinfo.h"
#include "cli/cli.h"
#include "common/conf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/secmem.h"
#include "common/text.h"
#include "proto/proto.h"
#include "token/pcsc.h"

/* Each line: a prefix, then the text escaped for the terminal (common/text.h). */
void
cli_say(FILE *fp, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sc_term_vsay(fp, "", fmt, ap);
	va_end(ap);
}

void
cli_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sc_term_vsay(stderr, "scagent: ", fmt, ap);
	va_end(ap);
}

void
cli_verbose(struct cli *c, const char *fmt, ...)
{
	va_list ap;

	if (!c->verbose)
		return;
	va_start(ap, fmt);
	sc_term_vsay(stderr, "scagent: ", fmt, ap);
	va_end(ap);
}

int
cli_escape_json(json_object *o)
{
	int r = sc_json_term_escape(o, sc_term_utf8());

	if (r != 0)
		cli_err("%s", sc_strerror(r));
	return r;
}

/*
 * The agent connection cli_open_agent() opened. A timeout after which
 * libscagent closed it means the agent did not answer (exit 3); a timeout
 * the agent reports (nobody answered its pinentry) is the operation's
 * failure (exit 1).
 */
static const scagent_client *agent_conn;

int
cli_exit_for(int r)
{
	switch (r) {
	case SC_OK:
		return EX_SC_OK;
	case SC_ERR_AGENT_UNREACHABLE:
		return EX_SC_AGENT;
	case SC_ERR_TIMEOUT:
		return agent_conn != NULL && scagent_fd(agent_conn) < 0 ? EX_SC_AGENT : EX_SC_FAIL;
	default:
		return EX_SC_FAIL;
	}
}

int
cli_open_agent(struct cli *c)
{
	char *path = scagent_default_socket(c->socket);
	int r = scagent_connect(c->socket, &c->client);

	if (r != SC_OK) {
		if (r == SC_ERR_AGENT_UNREACHABLE)
			cli_err("no agent at %s: start one with `eval \"$(scagentd)\"`, or use "
			    "--direct --module PATH for list and check", path ? path : "(unknown)");
		else if (r == SC_ERR_BUSY)
			cli_err("busy agent at %s: %s", path ? path : "(unknown)",
			    *scagent_error(NULL) ? scagent_error(NULL) : scagent_strerror(r));
		else
			cli_err("%s", *scagent_error(NULL) ? scagent_error(NULL) : scagent_strerror(r));
		free(path);
		return r == SC_ERR_INVALID ? EX_SC_USAGE : EX_SC_AGENT;
	}
	agent_conn = c->client;
	cli_verbose(c, "connected to the agent at %s", path);
	free(path);
	return EX_SC_OK;
}

int
cli_open(struct cli *c)
{
	struct sc_config cfg;
	char *errmsg = NULL;
	int loaded = 0;

	if (!c->direct) {
		if (c->nmodules > 0) {
			cli_err("--module goes with --direct; the agent loads its own modules");
			return EX_SC_USAGE;
		}
		return cli_open_agent(c);
	}
	if ((c->store = sc_store_new(NULL)) == NULL)
		return EX_SC_FAIL;
	if (c->nmodules > 0) {
		for (int i = 0; i < c->nmodules; i++)
			if (sc_store_add_module(c->store, c->modules[i]) == SC_OK)
				loaded++;
	} else {
		if (sc_config_load(c->config, &cfg, &errmsg) != SC_OK) {
			cli_err("%s", errmsg ? errmsg : "cannot read the configuration");
			free(errmsg);
			sc_config_clear(&cfg);	/* what was read before the error */
			return EX_SC_USAGE;
		}
		for (size_t i = 0; i < cfg.nmodules; i++)
			if (sc_store_add_module(c->store, cfg.modules[i]) == SC_OK)
				loaded++;
		if (cfg.nmodules == 0)
			cli_err("no PKCS#11 modules configured in %s: use --module PATH", cfg.module_dir);
		sc_config_clear(&cfg);
	}
	sc_store_refresh(c->store, NULL);
	cli_verbose(c, "%d module%s loaded in-process", loaded, loaded == 1 ? "" : "s");
	return EX_SC_OK;
}

void
cli_close(struct cli *c)
{
	scagent_close(c->client);
	c->client = NULL;
	agent_conn = NULL;
	sc_store_free(c->store);
	c->store = NULL;
}

static int
agent_json(struct cli *c, const char *op, json_object *args, json_object **out)
{
	char *res = NULL;
	int r;

	*out = NULL;
	r = scagent_call(c->client, op, args ? sc_json_text(args) : NULL, &res);
	json_object_put(args);
	if (r != SC_OK) {
		cli_err("%s", scagent_error(c->client));
		return r;
	}
	*out = json_tokener_parse(res);
	scagent_free(res);
	if (*out == NULL) {
		cli_err("the agent sent an answer that is not JSON");
		return SC_ERR_PROTOCOL;
	}
	return SC_OK;
}

/* --direct: the trust anchors of cas (read and checked by the command), or NULL. */
static int
direct_anchors(const char *cas, X509_STORE **anchors)
{
	int r;

	*anchors = NULL;
	if (cas != NULL && (r = sc_cert_anchors_pem(cas, strlen(cas), anchors, NULL)) != SC_OK) {
		cli_err("the CA certificates do not parse: %s", sc_strerror(r));
		return r;
	}
	return SC_OK;
}

int
cli_list(struct cli *c, const char *cas, json_object **out)
{
	json_object *args = NULL;
	X509_STORE *anchors;
	int r;

	if (c->store != NULL) {
		json_object *readers = NULL;
		char reason[256];

		if ((r = direct_anchors(cas, &anchors)) != SC_OK)
			return r;
		*out = sc_store_list_json(c->store, anchors);
		X509_STORE_free(anchors);
		if (*out == NULL)
			return SC_ERR_NOMEM;
		/* One look at the readers, as the agent's watcher would report them. */
		if (sc_pcsc_snapshot(&readers, reason, sizeof(reason)) != SC_OK)
			cli_verbose(c, "no readers: %s", reason);
		sc_pcsc_list_add_readers(*out, readers, reason);
		return SC_OK;
	}
	if (cas != NULL) {
		args = json_object_new_object();
		json_object_object_add(args, "cas", json_object_new_string(cas));
	}
	return agent_json(c, "list", args, out);
}

/* What p11-kit finds wrong with a pkcs11: URI. */
static const char *
uri_problem(const char *ref)
{
	P11KitUri *uri = p11_kit_uri_new();
	int r = uri ? p11_kit_uri_parse(ref, P11_KIT_URI_FOR_ANY, uri) : P11_KIT_URI_NO_MEMORY;

	p11_kit_uri_free(uri);
	return r == P11_KIT_URI_OK ? "unsupported" : p11_kit_uri_message(r);
}

int
cli_find(struct cli *c, const char *ref, const char *cas, json_object **out)
{
	json_object *args, *cand = NULL;
	X509_STORE *anchors;
	int r;

	if (c->store != NULL) {
		if ((r = direct_anchors(cas, &anchors)) != SC_OK)
			return r;
		r = sc_store_find_cert(c->store, ref, anchors, out, &cand);
		X509_STORE_free(anchors);
		if (r == SC_ERR_NOT_FOUND || r == SC_ERR_AMBIGUOUS) {
			size_t n = cand ? json_object_array_length(cand) : 0;
			cli_err(r == SC_ERR_AMBIGUOUS ? "\"%s\" matches more than one certificate; "
			    "use a longer fingerprint or a pkcs11: URI. Candidates:" :
			    "no certificate matches \"%s\". Available:", ref);
			for (size_t i = 0; i < n; i++)
				cli_say(stderr, "  %s", json_object_get_string(json_object_array_get_idx(cand, i)));
			if (n == 0)
				fprintf(stderr, "  (no certificates on any token)\n");
		} else if (r == SC_ERR_INVALID)
			cli_err("\"%s\" is not a valid pkcs11: URI (%s): write it as RFC 7512 says, "
			    "e.g. pkcs11:token=LABEL;object=LABEL;type=cert", ref, uri_problem(ref));
		else if (r != SC_OK)
			cli_err("%s", sc_strerror(r));
		json_object_put(cand);
		return r;
	}
	args = json_object_new_object();
	json_object_object_add(args, "ref", json_object_new_string(ref));
	if (cas != NULL)
		json_object_object_add(args, "cas", json_object_new_string(cas));
	return agent_json(c, "find", args, out);
}

int
cli_have_tty(void)
{
	int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

/*
 * One line from fd into buf (cap bytes, NUL-terminated), a byte at a time:
 * stdio would keep a copy of the PIN in its buffer, freed unwiped, and read
 * past the line (a second PIN on the next line of standard input). Returns
 * the bytes read, the line end included: 0 at end of file, -1 on error.
 */
static ssize_t
read_pin_line(int fd, char *buf, size_t cap)
{
	size_t n = 0, got = 0;
	char ch;

	while (n + 1 < cap) {
		ssize_t r = read(fd, &ch, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			buf[n] = '\0';
			return -1;
		}
		if (r == 0)
			break;
		got++;
		if (ch == '\n')
			break;
		buf[n++] = ch;
	}
	buf[n] = '\0';
	return (ssize_t)got;
}

ssize_t
cli_read_line(int fd, char *buf, size_t cap)
{
	return read_pin_line(fd, buf, cap);
}

char *
cli_read_pin(const char *prompt, int pin_stdin)
{
	char *buf = sc_secmem_alloc(256), *nl;
	struct termios old, noecho;
	int tty = -1, restore = 0;
	ssize_t n;

	if (buf == NULL)
		return NULL;
	if (pin_stdin) {
		if ((n = read_pin_line(STDIN_FILENO, buf, 256)) <= 0) {
			cli_err("--pin-stdin: no PIN on standard input");
			sc_secmem_free(buf);
			return NULL;
		}
	} else {
		if ((tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
			cli_err("no terminal to ask for the PIN: use --pin-stdin");
			sc_secmem_free(buf);
			return NULL;
		}
		/* Echo off before the prompt: what is typed after it is never shown or flushed. */
		if (tcgetattr(tty, &old) == 0) {
			noecho = old;
			noecho.c_lflag &= ~(tcflag_t)ECHO;
			restore = tcsetattr(tty, TCSAFLUSH, &noecho) == 0;
		}
		if (write(tty, prompt, strlen(prompt)) < 0 || read_pin_line(tty, buf, 256) < 0)
			buf[0] = '\0';
		if (restore)
			tcsetattr(tty, TCSAFLUSH, &old);
		if (write(tty, "\n", 1) < 0) {
			/* Only the line end after the hidden PIN is lost. */
		}
		close(tty);
	}
	if ((nl = strchr(buf, '\r')) != NULL)
		*nl = '\0';
	if (buf[0] == '\0') {
		cli_err("empty PIN: nothing was sent to the token");
		sc_secmem_free(buf);
		return NULL;
	}
	return buf;
}

int
cli_read_file(const char *path, size_t max, unsigned char **buf, size_t *len)
{
	FILE *fp = (path == NULL || strcmp(path, "-") == 0) ? stdin : fopen(path, "rb");
	unsigned char *b = NULL, *nb;
	size_t cap = 0, n = 0, got;

	*buf = NULL;
	*len = 0;
	if (fp == NULL) {
		cli_err("cannot open %s: %s", path, strerror(errno));
		return SC_ERR_IO;
	}
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			if (cap > max + 1)
				cap = max + 1;
			if ((nb = realloc(b, cap)) == NULL) {
				free(b);
				if (fp != stdin)
					fclose(fp);
				return SC_ERR_NOMEM;
			}
			b = nb;
		}
		got = fread(b + n, 1, cap - n, fp);
		n += got;
		if (n > max) {
			cli_err("%s is larger than %zu bytes", path ? path : "standard input", max);
			free(b);
			if (fp != stdin)
				fclose(fp);
			return SC_ERR_TOO_LARGE;
		}
		if (got == 0)
			break;
	}
	if (fp != stdin)
		fclose(fp);
	*buf = b;
	*len = n;
	return SC_OK;
}

int
cli_write_file(const char *path, const unsigned char *buf, size_t len)
{
	FILE *fp = (path == NULL || strcmp(path, "-") == 0) ? stdout : fopen(path, "wb");

	if (fp == NULL) {
		cli_err("cannot create %s: %s", path, strerror(errno));
		return SC_ERR_IO;
	}
	if (fwrite(buf, 1, len, fp) != len || fflush(fp) != 0) {
		cli_err("cannot write %s: %s", path ? path : "standard output", strerror(errno));
		if (fp != stdout)
			fclose(fp);
		return SC_ERR_IO;
	}
	if (fp != stdout && fclose(fp) != 0)
		return SC_ERR_IO;
	return SC_OK;
}

char *
cli_read_new_pin(const char *what, const char *whose, const char *undone, int pin_stdin)
{
	char prompt[160], *a, *b;
	size_t n;

	snprintf(prompt, sizeof(prompt), "%c%s for %s: ", toupper((unsigned char)what[0]), what + 1,
	    whose);
	if ((a = cli_read_pin(prompt, pin_stdin)) == NULL || pin_stdin)
		return a;
	snprintf(prompt, sizeof(prompt), "Repeat the %s: ", what);
	if ((b = cli_read_pin(prompt, 0)) == NULL) {
		sc_secstr_free(a);
		return NULL;
	}
	n = strlen(a);
	if (n != strlen(b) || sc_secmem_cmp(a, b, n) != 0) {
		cli_err("the two %ss differ: %s", what, undone);
		sc_secstr_free(a);
		sc_secstr_free(b);
		return NULL;
	}
	sc_secstr_free(b);
	return a;
}
