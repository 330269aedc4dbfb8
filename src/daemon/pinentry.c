/*
 * A minimal Assuan client for pinentry: SETDESC, SETPROMPT, GETPIN or
 * CONFIRM, BYE. The program is started with posix_spawn (no fork of this
 * multi-threaded process with PKCS#11 modules in it).
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common/err.h"
#include "common/log.h"
#include "common/secmem.h"
#include "daemon/pinentry.h"

extern char **environ;

#define PINENTRY_TIMEOUT_MS (120 * 1000)
#define PINENTRY_PATH_MAX 4096
#define LINE_MAX_ 2048

struct pe {
	pid_t pid;
	int in;		/* we write */
	int out;	/* we read */
	char *buf;	/* secure: may hold the PIN */
	size_t len;
	int watch;	/* its peer's close ends the asking (-1: none) */
};

/* The first of names that is an executable file in $PATH, into buf. */
static int
find_in_path(const char *const *names, char *buf, size_t len)
{
	const char *path = getenv("PATH");

	if (path == NULL || *path == '\0')
		path = "/usr/local/bin:/usr/bin:/bin";
	for (; *names != NULL; names++) {
		for (const char *d = path, *end; d != NULL; d = *end ? end + 1 : NULL) {
			struct stat st;

			end = d + strcspn(d, ":");
			if (end == d)
				continue;	/* an empty entry: not the working directory of a daemon */
			if ((size_t)snprintf(buf, len, "%.*s/%s", (int)(end - d), d, *names) >= len)
				continue;
			if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
				return 1;
		}
	}
	return 0;
}

/* Whether $GPG_TTY names a terminal this process can open. */
static int
have_terminal(void)
{
	const char *tty = getenv("GPG_TTY");
	int fd, yes;

	if (tty == NULL || *tty == '\0' || (fd = open(tty, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
		return 0;
	yes = isatty(fd);
	close(fd);
	return yes;
}

int
sc_pinentry_resolve(const char *program, char *buf, size_t len)
{
	static const char *const gui[] = { "pinentry-gnome3", "pinentry-qt", "pinentry-gtk-2",
	    "pinentry-x11", "pinentry", NULL };
	static const char *const tty[] = { "pinentry-curses", "pinentry-tty", "pinentry", NULL };
	const char *display = getenv("DISPLAY"), *wayland = getenv("WAYLAND_DISPLAY");

	if (program == NULL || *program == '\0' || strcmp(program, "no") == 0 ||
	    strcmp(program, "none") == 0)
		return 0;
	if (strcmp(program, "auto") != 0) {
		if ((size_t)snprintf(buf, len, "%s", program) >= len)
			return 0;
		return 1;
	}
	if ((display != NULL && *display) || (wayland != NULL && *wayland)) {
		if (find_in_path(gui, buf, len))
			return 1;
		sc_debug("pinentry auto: a display, but no pinentry program in PATH");
	}
	if (have_terminal()) {
		if (find_in_path(tty, buf, len))
			return 1;
		sc_debug("pinentry auto: a terminal (GPG_TTY), but no pinentry program in PATH");
	}
	sc_debug("pinentry auto: no display and no terminal: nobody to ask");
	return 0;
}

static int
pe_start(struct pe *p, const char *program)
{
	posix_spawn_file_actions_t fa;
	int to[2], from[2], r;
	char *argv[] = { (char *)program, NULL };

	p->in = p->out = -1;
	if (pipe2(to, O_CLOEXEC) < 0)
		return SC_ERR_IO;
	if (pipe2(from, O_CLOEXEC) < 0) {
		close(to[0]);
		close(to[1]);
		return SC_ERR_IO;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, to[0], 0);
	posix_spawn_file_actions_adddup2(&fa, from[1], 1);
	r = posix_spawn(&p->pid, program, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(to[0]);
	close(from[1]);
	if (r != 0) {
		sc_warn("cannot run pinentry %s: %s", program, strerror(r));
		close(to[1]);
		close(from[0]);
		return SC_ERR_IO;
	}
	p->in = to[1];
	p->out = from[0];
	if ((p->buf = sc_secmem_alloc(LINE_MAX_)) == NULL)
		return SC_ERR_NOMEM;
	return SC_OK;
}

static void
pe_end(struct pe *p)
{
	if (p->in >= 0) {
		if (write(p->in, "BYE\n", 4) < 0) {
			/* it is gone already */
		}
		close(p->in);
	}
	if (p->out >= 0)
		close(p->out);
	if (p->pid > 0) {
		int st;
		for (int i = 0; i < 50 && waitpid(p->pid, &st, WNOHANG) == 0; i++)
			usleep(20000);
		if (waitpid(p->pid, &st, WNOHANG) == 0) {
			kill(p->pid, SIGKILL);
			waitpid(p->pid, &st, 0);
		}
	}
	sc_secmem_free(p->buf);
}

/*
 * One line from pinentry into p->buf (NUL-terminated, no '\n');
 * SC_ERR_CANCELLED when p->watch's peer closed (nobody waits for the answer).
 */
static int
pe_line(struct pe *p)
{
	p->len = 0;
	for (;;) {
		struct pollfd pf[2] = { { p->out, POLLIN, 0 }, { p->watch, POLLRDHUP, 0 } };
		char ch;
		ssize_t n;

		if (poll(pf, 2, PINENTRY_TIMEOUT_MS) <= 0)
			return SC_ERR_TIMEOUT;
		if (pf[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
			sc_info("the request that asked for the PIN is gone: its prompt is closed");
			return SC_ERR_CANCELLED;
		}
		if (!(pf[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		if ((n = read(p->out, &ch, 1)) <= 0)
			return SC_ERR_IO;
		if (ch == '\n')
			break;
		if (p->len + 1 >= LINE_MAX_)
			return SC_ERR_TOO_LARGE;
		p->buf[p->len++] = ch;
	}
	p->buf[p->len] = '\0';
	return SC_OK;
}

/* Skip status and comment lines; SC_OK for OK, SC_ERR_CANCELLED for ERR. */
static int
pe_wait_ok(struct pe *p)
{
	int r;

	for (;;) {
		if ((r = pe_line(p)) != SC_OK)
			return r;
		if (strncmp(p->buf, "OK", 2) == 0)
			return SC_OK;
		if (strncmp(p->buf, "ERR", 3) == 0)
			return SC_ERR_CANCELLED;
	}
}

static int
pe_cmd(struct pe *p, const char *cmd, const char *arg)
{
	char line[1024];
	size_t o;

	o = (size_t)snprintf(line, sizeof(line), "%s", cmd);
	if (arg != NULL) {
		line[o++] = ' ';
		for (const char *s = arg; *s && o < sizeof(line) - 5; s++) {
			if (*s == '%' || *s == '\n' || *s == '\r')
				o += (size_t)snprintf(line + o, 4, "%%%02X", (unsigned char)*s);
			else
				line[o++] = *s;
		}
	}
	line[o++] = '\n';
	if (write(p->in, line, o) != (ssize_t)o)
		return SC_ERR_IO;
	return pe_wait_ok(p);
}

static int
unescape(char *s)
{
	char *d = s;

	for (; *s; s++) {
		if (*s == '%' && s[1] && s[2]) {
			char hex[3] = { s[1], s[2], 0 };
			*d++ = (char)strtol(hex, NULL, 16);
			s += 2;
		} else
			*d++ = *s;
	}
	*d = '\0';
	return SC_OK;
}

/*
 * Tell pinentry which terminal to use, as gpg-agent does: $GPG_TTY and $TERM
 * of the agent's environment. Terminal pinentries (pinentry-tty, -curses)
 * need it; an ERR (option unknown to this pinentry) is not a failure.
 */
static int
pe_options(struct pe *p)
{
	const char *tty = getenv("GPG_TTY"), *term = getenv("TERM");
	char opt[512];
	int r;

	if (tty != NULL && *tty) {
		snprintf(opt, sizeof(opt), "ttyname=%s", tty);
		if ((r = pe_cmd(p, "OPTION", opt)) != SC_OK && r != SC_ERR_CANCELLED)
			return r;
		if (term != NULL && *term) {
			snprintf(opt, sizeof(opt), "ttytype=%s", term);
			if ((r = pe_cmd(p, "OPTION", opt)) != SC_OK && r != SC_ERR_CANCELLED)
				return r;
		}
	}
	return SC_OK;
}

int
sc_pinentry_getpin(const char *program, const char *desc, int watch, char **pin)
{
	char path[PINENTRY_PATH_MAX];
	struct pe p;
	int r;

	*pin = NULL;
	memset(&p, 0, sizeof(p));
	p.in = p.out = -1;
	p.watch = watch;
	if (!sc_pinentry_resolve(program, path, sizeof(path))) {
		r = SC_ERR_NOT_LOGGED_IN;	/* nobody to ask: as without pinentry */
		goto out;
	}
	if ((r = pe_start(&p, path)) != SC_OK)
		goto out;
	if ((r = pe_wait_ok(&p)) != SC_OK || (r = pe_options(&p)) != SC_OK ||
	    (r = pe_cmd(&p, "SETDESC", desc)) != SC_OK ||
	    (r = pe_cmd(&p, "SETPROMPT", "PIN:")) != SC_OK)
		goto out;
	if (write(p.in, "GETPIN\n", 7) != 7) {
		r = SC_ERR_IO;
		goto out;
	}
	for (;;) {
		if ((r = pe_line(&p)) != SC_OK)
			goto out;
		if (strncmp(p.buf, "D ", 2) == 0) {
			unescape(p.buf + 2);
			sc_secstr_free(*pin);
			if ((*pin = sc_secstr_dup(p.buf + 2)) == NULL) {
				r = SC_ERR_NOMEM;
				goto out;
			}
		} else if (strncmp(p.buf, "OK", 2) == 0) {
			r = *pin ? SC_OK : SC_ERR_CANCELLED;
			break;
		} else if (strncmp(p.buf, "ERR", 3) == 0) {
			r = SC_ERR_CANCELLED;
			break;
		}
	}
out:
	if (r != SC_OK) {
		sc_secstr_free(*pin);
		*pin = NULL;
	}
	pe_end(&p);
	return r;
}

int
sc_pinentry_confirm(const char *program, const char *desc, int watch)
{
	char path[PINENTRY_PATH_MAX];
	struct pe p;
	int r;

	memset(&p, 0, sizeof(p));
	p.watch = watch;
	/* Nobody to ask is no confirmation: the signature is refused. */
	if (!sc_pinentry_resolve(program, path, sizeof(path)))
		return SC_ERR_DENIED;
	/*
	 * Both buttons named: without SETCANCEL, pinentry-tty offers only "OK"
	 * for CONFIRM, and the user could not refuse.
	 */
	if ((r = pe_start(&p, path)) == SC_OK &&
	    (r = pe_wait_ok(&p)) == SC_OK && (r = pe_options(&p)) == SC_OK &&
	    (r = pe_cmd(&p, "SETDESC", desc)) == SC_OK &&
	    (r = pe_cmd(&p, "SETOK", "Allow")) == SC_OK &&
	    (r = pe_cmd(&p, "SETCANCEL", "Deny")) == SC_OK)
		r = pe_cmd(&p, "CONFIRM", NULL);
	pe_end(&p);
	return r;
}
