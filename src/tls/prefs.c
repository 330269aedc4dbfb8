/* Remembered certificate choices per server (see prefs.h). */
#include "config.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/err.h"
#include "tls/prefs.h"

char *
sc_tls_prefs_path(void)
{
	const char *x = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	char *p = NULL;

	if (x != NULL && x[0] == '/') {
		if (asprintf(&p, "%s/scagent/preferences", x) < 0)
			p = NULL;
	} else if (home != NULL && home[0] != '\0') {
		if (asprintf(&p, "%s/.config/scagent/preferences", home) < 0)
			p = NULL;
	}
	return p;
}

static void
lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

void
sc_tls_pref_key(const char *host, const char *port, char *where, size_t len)
{
	int v6 = strchr(host, ':') != NULL && host[0] != '[';

	if (port == NULL || port[0] == '\0')
		snprintf(where, len, "%s", host);
	else
		snprintf(where, len, "%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port);
	lower(where);
}

/* 1 when s is a port number. */
static int
is_port(const char *s)
{
	return s[0] != '\0' && strlen(s) <= 5 && strspn(s, "0123456789") == strlen(s) &&
	    atoi(s) >= 1 && atoi(s) <= 65535;
}

int
sc_tls_pref_parse(const char *arg, char *where, size_t len)
{
	const char *colon = strchr(arg, ':'), *close = strchr(arg, ']');
	size_t n = strlen(arg);

	if (n == 0 || n >= len || strpbrk(arg, " \t\r\n/#") != NULL)
		return SC_ERR_INVALID;
	if (arg[0] == '[') {
		/* [v6] or [v6]:PORT */
		if (close == NULL || close == arg + 1 || (close[1] != '\0' &&
		    (close[1] != ':' || !is_port(close + 2))))
			return SC_ERR_INVALID;
	} else if (colon != NULL && strchr(colon + 1, ':') == NULL) {
		/* HOST:PORT */
		if (colon == arg || !is_port(colon + 1))
			return SC_ERR_INVALID;
	} else if (colon != NULL && strspn(arg, "0123456789abcdefABCDEF:.") != n) {
		return SC_ERR_INVALID;	/* two colons or more: only an IPv6 address alone */
	}
	snprintf(where, len, "%s", arg);
	lower(where);
	return SC_OK;
}

int
sc_tls_prefs_load(struct sc_tls_pref **v, size_t *n, char *why, size_t whylen)
{
	char *path = sc_tls_prefs_path(), line[512];
	struct sc_tls_pref *all = NULL, *nv;
	size_t cnt = 0;
	FILE *fp;
	int r = SC_OK;

	*v = NULL;
	*n = 0;
	if (path == NULL)
		return SC_OK;	/* no home: nothing remembered */
	if ((fp = fopen(path, "re")) == NULL) {
		if (errno != ENOENT) {
			snprintf(why, whylen, "%s: %s", path, strerror(errno));
			r = SC_ERR_IO;
		}
		goto out;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		char w[300], fp64[65];
		if (sscanf(line, " %299s %64s", w, fp64) != 2 || w[0] == '#' || strlen(fp64) != 64 ||
		    strspn(fp64, "0123456789abcdef") != 64)
			continue;	/* comments, and lines not ours */
		if ((nv = realloc(all, (cnt + 1) * sizeof(*all))) == NULL) {
			snprintf(why, whylen, "out of memory");
			r = SC_ERR_NOMEM;
			break;
		}
		all = nv;
		snprintf(all[cnt].where, sizeof(all[cnt].where), "%s", w);
		lower(all[cnt].where);
		memcpy(all[cnt].sha256, fp64, sizeof(all[cnt].sha256));
		cnt++;
	}
	fclose(fp);
out:
	free(path);
	if (r != SC_OK) {
		free(all);
		return r;
	}
	*v = all;
	*n = cnt;
	return SC_OK;
}

int
sc_tls_pref_lookup(const char *host, const char *port, char sha256[65], char *where, size_t wlen)
{
	struct sc_tls_pref *v;
	char keys[2][300], why[256];
	size_t n;

	sha256[0] = '\0';
	if (sc_tls_prefs_load(&v, &n, why, sizeof(why)) != SC_OK)
		return SC_ERR_NOT_FOUND;
	sc_tls_pref_key(host, port, keys[0], sizeof(keys[0]));
	sc_tls_pref_key(host, NULL, keys[1], sizeof(keys[1]));
	for (int k = 0; k < 2 && sha256[0] == '\0'; k++)
		for (size_t i = 0; i < n; i++)
			if (strcmp(v[i].where, keys[k]) == 0) {
				memcpy(sha256, v[i].sha256, 65);
				snprintf(where, wlen, "%s", keys[k]);
				break;
			}
	free(v);
	return sha256[0] ? SC_OK : SC_ERR_NOT_FOUND;
}

/* mkdir -p of path's directory, mode 0700 for what it makes. */
static int
make_dirs(const char *path)
{
	char *d = strdup(path), *s;

	if (d == NULL)
		return -1;
	for (s = d + 1; (s = strchr(s, '/')) != NULL; s++) {
		*s = '\0';
		if (mkdir(d, 0700) < 0 && errno != EEXIST) {
			free(d);
			return -1;
		}
		*s = '/';
	}
	free(d);
	return 0;
}

int
sc_tls_pref_store(const char *where, const char *sha256, char *why, size_t whylen)
{
	struct sc_tls_pref *v = NULL;
	char *path = sc_tls_prefs_path(), *tmp = NULL;
	size_t n = 0;
	FILE *fp = NULL;
	int r, fd = -1, found = 0, bad;

	if (path == NULL) {
		snprintf(why, whylen, "neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep preferences");
		return SC_ERR_INVALID;
	}
	if ((r = sc_tls_prefs_load(&v, &n, why, whylen)) != SC_OK)
		goto out;
	r = SC_ERR_IO;
	if (make_dirs(path) < 0 || asprintf(&tmp, "%s.XXXXXX", path) < 0 || (fd = mkstemp(tmp)) < 0 ||
	    (fp = fdopen(fd, "w")) == NULL) {
		snprintf(why, whylen, "cannot write %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	fprintf(fp, "# scagent: the certificate (SHA-256) for each server, HOST[:PORT] SHA256;\n"
	    "# written by `scagent prefer`\n");
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].where, where) == 0) {
			found = 1;
			continue;
		}
		fprintf(fp, "%s %s\n", v[i].where, v[i].sha256);
	}
	if (sha256 != NULL)
		fprintf(fp, "%s %s\n", where, sha256);
	bad = fflush(fp) != 0 || fsync(fd) != 0;
	if (fclose(fp) != 0 || bad || rename(tmp, path) < 0) {
		snprintf(why, whylen, "cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	r = sha256 == NULL && !found ? SC_ERR_NOT_FOUND : SC_OK;
	if (r == SC_ERR_NOT_FOUND)
		snprintf(why, whylen, "no preference for %s in %s", where, path);
out:
	free(tmp);
	free(path);
	free(v);
	return r;
}
