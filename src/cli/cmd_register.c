/*
 * scagent register: add scagent-pkcs11.so to the NSS databases that browsers
 * and mail clients read their PKCS#11 modules from (p11-kit programs find it
 * through its .module file already). Firefox and Thunderbird keep one
 * database per profile, listed in their profiles.ini; Chromium uses
 * ~/.pki/nssdb. The work is done by NSS's own modutil; whether the module is
 * there is read from the database's pkcs11.txt, which loads nothing. A
 * database whose program is running is left alone: NSS keeps its module list
 * in memory and would write it back.
 */
#include "config.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cli/cli.h"
#include "cli/commands.h"
#include "common/err.h"
#include "common/util.h"

#define NSS_MODULE_NAME "scagent"

struct nssdb {
	char *dir;		/* the database directory (cert9.db, pkcs11.txt) */
	char *what;		/* "Firefox profile \"default\"" */
	char *lockdir;		/* profile directory with lock/.parentlock, or NULL */
	char *singleton;	/* Chromium's SingletonLock paths, ':'-separated, or NULL */
};

struct dblist {
	struct nssdb *db;
	size_t n;
};

static void
dblist_free(struct dblist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->db[i].dir);
		free(l->db[i].what);
		free(l->db[i].lockdir);
		free(l->db[i].singleton);
	}
	free(l->db);
	memset(l, 0, sizeof(*l));
}

static int
dblist_add(struct dblist *l, const char *dir, const char *what, const char *lockdir,
    const char *singleton)
{
	struct nssdb *n, *d;

	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->db[i].dir, dir) == 0)
			return SC_OK;	/* two profiles.ini entries for one directory */
	if ((n = realloc(l->db, (l->n + 1) * sizeof(*n))) == NULL)
		return SC_ERR_NOMEM;
	l->db = n;
	d = &l->db[l->n];
	memset(d, 0, sizeof(*d));
	d->dir = strdup(dir);
	d->what = strdup(what);
	d->lockdir = sc_strdup0(lockdir);
	d->singleton = sc_strdup0(singleton);
	l->n++;
	if (d->dir == NULL || d->what == NULL || (lockdir && !d->lockdir) ||
	    (singleton && !d->singleton))
		return SC_ERR_NOMEM;
	return SC_OK;
}

static int
is_file(const char *dir, const char *name)
{
	char path[4096];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/*
 * The profiles of one Mozilla program: [Profile*] sections of BASE/profiles.ini
 * with Path= (relative to BASE when IsRelative=1) and Name=.
 */
static int
add_mozilla(struct dblist *l, const char *home, const char *base_rel, const char *app)
{
	char base[4096], ini[4200], line[4096], path[4096] = "", name[256] = "", dir[8400];
	char what[4200];
	int relative = 1, in_profile = 0, r = SC_OK;
	FILE *fp;

	snprintf(base, sizeof(base), "%s/%s", home, base_rel);
	snprintf(ini, sizeof(ini), "%s/profiles.ini", base);
	if ((fp = fopen(ini, "r")) == NULL)
		return SC_OK;
	for (int more = 1; more && r == SC_OK;) {
		char *s = fgets(line, sizeof(line), fp), *e;
		if (s == NULL || line[0] == '[') {
			/* the end of a section: one profile is complete */
			if (in_profile && path[0]) {
				if (relative)
					snprintf(dir, sizeof(dir), "%s/%s", base, path);
				else
					snprintf(dir, sizeof(dir), "%s", path);
				snprintf(what, sizeof(what), "%s profile \"%s\"", app, name[0] ? name : path);
				r = dblist_add(l, dir, what, dir, NULL);
			}
			in_profile = s != NULL && strncmp(line, "[Profile", 8) == 0;
			path[0] = name[0] = '\0';
			relative = 1;
			more = s != NULL;
			continue;
		}
		for (e = line + strlen(line); e > line && isspace((unsigned char)e[-1]);)
			*--e = '\0';
		if (strncmp(line, "Path=", 5) == 0)
			snprintf(path, sizeof(path), "%s", line + 5);
		else if (strncmp(line, "Name=", 5) == 0)
			snprintf(name, sizeof(name), "%.200s", line + 5);
		else if (strncmp(line, "IsRelative=", 11) == 0)
			relative = atoi(line + 11) != 0;
	}
	fclose(fp);
	return r;
}

static int
find_databases(struct dblist *l, const char *home)
{
	char dir[4096], locks[8400];
	int r;

	if ((r = add_mozilla(l, home, ".mozilla/firefox", "Firefox")) != SC_OK ||
	    (r = add_mozilla(l, home, ".thunderbird", "Thunderbird")) != SC_OK)
		return r;
	snprintf(dir, sizeof(dir), "%s/.pki/nssdb", home);
	snprintf(locks, sizeof(locks), "%s/.config/chromium/SingletonLock:"
	    "%s/.config/google-chrome/SingletonLock", home, home);
	return dblist_add(l, dir, "Chromium's NSS database", NULL, locks);
}

/* A pid that is alive (a process of another user counts). */
static int
alive(long pid)
{
	return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/*
 * The pid of a running program that holds the profile or database, 0 when
 * none, -1 when a lock names another machine (its program cannot be seen).
 * Firefox and Thunderbird: a "lock" symlink to "HOST:+PID" and an fcntl lock
 * on ".parentlock"; Chromium: a "SingletonLock" symlink to "HOST-PID".
 */
static long
lock_holder(const struct nssdb *d)
{
	char host[256] = "", target[512], path[4200];
	const char *p, *sep, *next;
	long pid;
	ssize_t n;
	int fd;

	gethostname(host, sizeof(host) - 1);
	if (d->lockdir != NULL) {
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

		snprintf(path, sizeof(path), "%s/.parentlock", d->lockdir);
		if ((fd = open(path, O_RDWR | O_CLOEXEC)) >= 0) {
			int held = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
			close(fd);
			if (held)
				return fl.l_pid > 0 ? (long)fl.l_pid : -1;
		}
		snprintf(path, sizeof(path), "%s/lock", d->lockdir);
		if ((n = readlink(path, target, sizeof(target) - 1)) > 0) {
			target[n] = '\0';
			if ((sep = strstr(target, ":+")) == NULL)
				return 0;
			pid = atol(sep + 2);
			if ((size_t)(sep - target) != strlen(host) || strncmp(target, host, strlen(host)) != 0)
				return -1;
			return alive(pid) ? pid : 0;
		}
	}
	for (p = d->singleton; p != NULL && *p; p = next) {
		const char *end = strchr(p, ':');

		next = end ? end + 1 : NULL;
		snprintf(path, sizeof(path), "%.*s", (int)(end ? (size_t)(end - p) : strlen(p)), p);
		if ((n = readlink(path, target, sizeof(target) - 1)) <= 0)
			continue;
		target[n] = '\0';
		if ((sep = strrchr(target, '-')) == NULL)
			continue;
		pid = atol(sep + 1);
		if ((size_t)(sep - target) != strlen(host) || strncmp(target, host, strlen(host)) != 0)
			return -1;
		if (alive(pid))
			return pid;
	}
	return 0;
}

/* Whether the database's pkcs11.txt has a module named NSS_MODULE_NAME. */
static int
registered(const char *dir)
{
	char path[4200], line[4096];
	FILE *fp;
	int found = 0;

	snprintf(path, sizeof(path), "%s/pkcs11.txt", dir);
	if ((fp = fopen(path, "r")) == NULL)
		return 0;
	while (!found && fgets(line, sizeof(line), fp) != NULL)
		found = strcmp(line, "name=" NSS_MODULE_NAME "\n") == 0;
	fclose(fp);
	return found;
}

/*
 * modutil ARGS with -force; its output in out (one line kept). Returns its
 * exit status, or -1 when it could not be run.
 */
static int
modutil(char *const argv[], char *out, size_t outlen)
{
	int pfd[2], st = 0;
	size_t len = 0;
	ssize_t n;
	pid_t pid;

	out[0] = '\0';
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -1;
	if ((pid = fork()) < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, 0);
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		execvp("modutil", argv);
		_exit(127);
	}
	close(pfd[1]);
	while ((n = read(pfd[0], out + len, outlen - 1 - len)) > 0 && len + (size_t)n < outlen - 1)
		len += (size_t)n;
	out[len] = '\0';
	while (n > 0) {		/* the rest is not kept */
		char sink[256];
		n = read(pfd[0], sink, sizeof(sink));
	}
	close(pfd[0]);
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
		return -1;
	/* One line of it for a message: the last non-empty one. */
	while (len > 0 && isspace((unsigned char)out[len - 1]))
		out[--len] = '\0';
	if (strrchr(out, '\n') != NULL)
		memmove(out, strrchr(out, '\n') + 1, strlen(strrchr(out, '\n') + 1) + 1);
	return WEXITSTATUS(st);
}

/* Register in or remove from one database; prints one line. 0 or SC_ERR_*. */
static int
do_db(const struct nssdb *d, const char *library, int unregister)
{
	char dbarg[4200], out[1024];
	long holder;
	int st;

	if (!is_file(d->dir, "cert9.db")) {
		if (!is_file(d->dir, "cert8.db"))
			return SC_ERR_NOT_FOUND;	/* no database yet: nothing to say */
		printf("skipped %s (%s): an old dbm database; start the program once to "
		    "upgrade it, then run this again\n", d->what, d->dir);
		return SC_ERR_UNSUPPORTED;
	}
	if (registered(d->dir) == !unregister) {
		printf("%s %s (%s)\n", unregister ? "not registered in" : "already registered in",
		    d->what, d->dir);
		return SC_OK;
	}
	if ((holder = lock_holder(d)) != 0) {
		if (holder > 0)
			cli_err("%s is in use by a running program (pid %ld): close it and run "
			    "`scagent register%s` again; %s is unchanged", d->what, holder,
			    unregister ? " --unregister" : "", d->dir);
		else
			cli_err("%s is locked by a program on another machine: close it there and run "
			    "`scagent register%s` again; %s is unchanged", d->what,
			    unregister ? " --unregister" : "", d->dir);
		return SC_ERR_BUSY;
	}
	snprintf(dbarg, sizeof(dbarg), "sql:%s", d->dir);
	if (unregister) {
		char *argv[] = { "modutil", "-dbdir", dbarg, "-delete", NSS_MODULE_NAME, "-force", NULL };
		st = modutil(argv, out, sizeof(out));
	} else {
		char *argv[] = { "modutil", "-dbdir", dbarg, "-add", NSS_MODULE_NAME, "-libfile",
		    (char *)library, "-force", NULL };
		st = modutil(argv, out, sizeof(out));
	}
	if (st == 127 || st < 0) {
		cli_err("cannot run modutil: install NSS's tools (Debian: libnss3-tools)");
		return SC_ERR_IO;
	}
	if (st != 0) {
		cli_err("modutil failed for %s (%s): %s", d->what, d->dir, out);
		return SC_ERR_IO;
	}
	printf("%s %s (%s)\n", unregister ? "unregistered from" : "registered in", d->what, d->dir);
	return SC_OK;
}

int
cmd_register(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "nss", no_argument, NULL, 'n' },
		{ "unregister", no_argument, NULL, 'u' },
		{ "library", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	static const char usage[] = "usage: scagent register [--nss] [--unregister] [--library PATH]";
	const char *library = LIBDIR "/pkcs11/scagent-pkcs11.so", *home = getenv("HOME");
	struct dblist l = { NULL, 0 };
	int unregister = 0, ch, r, seen = 0, failed = 0;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'n': break;	/* NSS is the one kind of database there is to register in */
		case 'u': unregister = 1; break;
		case 'l': library = optarg; break;
		case 'h':
			printf("%s\nAdds scagent-pkcs11.so to the NSS databases of Firefox and Thunderbird "
			    "profiles and of\nChromium (~/.pki/nssdb), or removes it; --library names "
			    "another module file.\n", usage);
			return EX_SC_OK;
		default: return EX_SC_USAGE;
		}
	}
	if (optind != argc) {
		cli_err("%s", usage);
		return EX_SC_USAGE;
	}
	if (home == NULL || *home == '\0') {
		cli_err("HOME is not set: it is where the browsers' profiles are");
		return EX_SC_FAIL;
	}
	if (!unregister && access(library, R_OK) != 0) {
		cli_err("the module %s is not there (%s): install scagent, or name it with --library",
		    library, strerror(errno));
		return EX_SC_FAIL;
	}
	if ((r = find_databases(&l, home)) != SC_OK) {
		dblist_free(&l);
		cli_err("%s", sc_strerror(r));
		return EX_SC_FAIL;
	}
	for (size_t i = 0; i < l.n; i++) {
		r = do_db(&l.db[i], library, unregister);
		if (r != SC_ERR_NOT_FOUND)
			seen++;
		if (r != SC_OK && r != SC_ERR_NOT_FOUND)
			failed++;
	}
	dblist_free(&l);
	if (seen == 0) {
		cli_err("no NSS database found (Firefox and Thunderbird profiles, ~/.pki/nssdb): "
		    "start the browser once so that it makes one, then run this again");
		return EX_SC_FAIL;
	}
	(void)c;
	return failed ? EX_SC_FAIL : EX_SC_OK;
}
