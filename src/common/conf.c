#include "config.h"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/conf.h"
#include "common/err.h"

const char *
sc_config_default_path(void)
{
	return SYSCONFDIR "/scagent/scagent.conf";
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static int
set_errmsg(char **errmsg, const char *file, int line, const char *what)
{
	char buf[1024];

	if (line > 0)
		snprintf(buf, sizeof(buf), "%s:%d: %s", file, line, what);
	else
		snprintf(buf, sizeof(buf), "%s: %s", file, what);
	if (errmsg)
		*errmsg = strdup(buf);
	return SC_ERR_INVALID;
}

/* "key: value" or "key = value"; returns 0 for blank and comment lines. */
static int
split_line(char *line, char **key, char **val)
{
	char *p, *s = trim(line);

	if (*s == '\0' || *s == '#')
		return 0;
	p = s + strcspn(s, ":=");
	if (*p == '\0')
		return -1;
	*p = '\0';
	*key = trim(s);
	*val = trim(p + 1);
	return 1;
}

static int
parse_bool(const char *v, int *out)
{
	if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "on"))
		*out = 1;
	else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "off"))
		*out = 0;
	else
		return -1;
	return 0;
}

int
sc_config_read_module_file(const char *path, char **module, char **errmsg)
{
	FILE *fp;
	char line[1024], *key, *val, *mod = NULL, *base;
	int lineno = 0, enabled = 1, r = SC_OK;

	*module = NULL;
	if ((fp = fopen(path, "r")) == NULL) {
		char msg[256];
		snprintf(msg, sizeof(msg), "cannot open: %s", strerror(errno));
		return set_errmsg(errmsg, path, 0, msg);
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		int k;
		lineno++;
		if ((k = split_line(line, &key, &val)) == 0)
			continue;
		if (k < 0) {
			r = set_errmsg(errmsg, path, lineno, "expected 'name: value'");
			break;
		}
		if (strcmp(key, "module") == 0) {
			free(mod);
			if (val[0] == '/')
				mod = strdup(val);
			else if (asprintf(&mod, "%s/pkcs11/%s", LIBDIR, val) < 0)
				mod = NULL;
		} else if (strcmp(key, "disable-in") == 0) {
			if (strstr(val, "scagent") != NULL)
				enabled = 0;
		} else if (strcmp(key, "enable-in") == 0) {
			if (strstr(val, "scagent") == NULL)
				enabled = 0;
		}
		/* Other p11-kit keys (priority, trust-policy, ...) are not ours. */
	}
	fclose(fp);
	if (r != SC_OK) {
		free(mod);
		return r;
	}
	if (mod == NULL)
		return set_errmsg(errmsg, path, 0, "no 'module:' line");
	/* The agent's own PKCS#11 module would make it forward to itself. */
	base = strrchr(mod, '/');
	if (strcmp(base ? base + 1 : mod, "scagent-pkcs11.so") == 0)
		enabled = 0;
	if (!enabled) {
		free(mod);
		mod = NULL;
	}
	*module = mod;
	return SC_OK;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
load_module_dir(struct sc_config *cfg, char **errmsg)
{
	DIR *d;
	struct dirent *de;
	char **names = NULL, **nn;
	size_t n = 0;
	int r = SC_OK;

	if ((d = opendir(cfg->module_dir)) == NULL)
		return errno == ENOENT ? SC_OK : set_errmsg(errmsg, cfg->module_dir, 0,
		    "cannot read the module directory");
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (len < 8 || strcmp(de->d_name + len - 7, ".module") != 0 || de->d_name[0] == '.')
			continue;
		if ((nn = realloc(names, (n + 1) * sizeof(*nn))) == NULL) {
			r = SC_ERR_NOMEM;
			break;
		}
		names = nn;
		if (asprintf(&names[n], "%s/%s", cfg->module_dir, de->d_name) < 0) {
			r = SC_ERR_NOMEM;
			break;
		}
		n++;
	}
	closedir(d);
	if (r == SC_OK && n > 0) {
		qsort(names, n, sizeof(*names), name_cmp);
		if ((cfg->modules = calloc(n, sizeof(char *))) == NULL)
			r = SC_ERR_NOMEM;
	}
	for (size_t i = 0; r == SC_OK && i < n; i++) {
		char *mod = NULL;
		if ((r = sc_config_read_module_file(names[i], &mod, errmsg)) != SC_OK)
			break;
		if (mod != NULL)
			cfg->modules[cfg->nmodules++] = mod;
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return r;
}

/*
 * One "key = value" line of scagent.conf into cfg: NULL, or what is wrong
 * with it (val's text).
 */
static const char *
apply_setting(struct sc_config *cfg, const char *key, const char *val)
{
	if (strcmp(key, "idle-timeout") == 0) {
		char *end;
		errno = 0;
		cfg->idle_timeout = strtoul(val, &end, 10);
		if (errno || *end || *val == '\0' || *val == '-') {
			return "idle-timeout wants seconds (0: never)";
		}
	} else if (strcmp(key, "module-timeout") == 0 || strcmp(key, "keygen-timeout") == 0) {
		char *end;
		unsigned long v;
		errno = 0;
		v = strtoul(val, &end, 10);
		if (errno || *end || *val == '\0' || *val == '-' || v < 1 || v > 3600) {
			return "module-timeout and keygen-timeout "
			    "want seconds from 1 to 3600";
		}
		*(key[0] == 'm' ? &cfg->module_timeout : &cfg->keygen_timeout) = v;
	} else if (strcmp(key, "notify") == 0) {
		if (strcmp(val, "once") == 0)
			cfg->notify = 0;
		else if (strcmp(val, "always") == 0)
			cfg->notify = 1;
		else if (strcmp(val, "no") == 0)
			cfg->notify = 2;
		else {
			return "notify is once, always or no";
		}
	} else if (strcmp(key, "verify-ecdsa") == 0 || strcmp(key, "confirm-sign") == 0 ||
	    strcmp(key, "logout-on-lock") == 0) {
		if (parse_bool(val, key[0] == 'v' ? &cfg->verify_ecdsa : key[0] == 'c' ?
		    &cfg->confirm_sign : &cfg->logout_on_lock) < 0) {
			return "expected yes or no";
		}
	} else if (strcmp(key, "pinentry") == 0) {
		free(cfg->pinentry);
		cfg->pinentry = NULL;
		/* "no": never ask, as an agent without pinentry */
		if (strcmp(val, "no") != 0 && strcmp(val, "none") != 0 && *val != '\0')
			cfg->pinentry = strdup(val);
	} else if (strcmp(key, "several-fit") == 0) {
		if (strcmp(val, "first") == 0)
			cfg->several_fit_fail = 0;
		else if (strcmp(val, "fail") == 0)
			cfg->several_fit_fail = 1;
		else {
			return "several-fit is first or fail";
		}
	} else if (strcmp(key, "picker") == 0) {
		free(cfg->picker);
		cfg->picker = NULL;
		if (strcmp(val, "no") != 0 && strcmp(val, "none") != 0 && *val != '\0')
			cfg->picker = strdup(val);
	} else if (strcmp(key, "log-level") == 0) {
		if (strcmp(val, "error") && strcmp(val, "warn") && strcmp(val, "info") &&
		    strcmp(val, "debug")) {
			return "log-level is error, warn, info or debug";
		}
		free(cfg->log_level);
		cfg->log_level = strdup(val);
	} else if (strcmp(key, "audit-log") == 0) {
		free(cfg->audit_log);
		cfg->audit_log = strdup(val);
	} else if (strcmp(key, "tpm-tcti") == 0) {
		free(cfg->tpm_tcti);
		cfg->tpm_tcti = strdup(val);
	} else if (strcmp(key, "tpm-store") == 0) {
		free(cfg->tpm_store);
		cfg->tpm_store = strdup(val);
	} else if (strcmp(key, "vsc-module") == 0) {
		free(cfg->vsc_module);
		cfg->vsc_module = strdup(val);
	} else if (strcmp(key, "module-dir") == 0) {
		free(cfg->module_dir);
		cfg->module_dir = strdup(val);
	} else {
		return "unknown setting";
	}
	return NULL;
}

int
sc_config_load(const char *file, struct sc_config *cfg, char **errmsg)
{
	FILE *fp;
	char line[1024], *key, *val, *slash;
	const char *why;
	int lineno = 0, r = SC_OK, explicit = file != NULL;

	memset(cfg, 0, sizeof(*cfg));
	if (errmsg)
		*errmsg = NULL;
	cfg->idle_timeout = 600;
	cfg->module_timeout = 30;
	cfg->keygen_timeout = 300;
	cfg->logout_on_lock = 1;
	/* The system's pinentry, chosen when a PIN is needed (daemon/pinentry.c). */
	if ((cfg->pinentry = strdup("auto")) == NULL)
		return SC_ERR_NOMEM;
	/* Which certificate goes when several fit (src/cli/cmd_prefer.c): zenity with a display. */
	if ((cfg->picker = strdup("auto")) == NULL)
		return SC_ERR_NOMEM;
	if (file == NULL)
		file = sc_config_default_path();
	cfg->file = strdup(file);
	if ((fp = fopen(file, "r")) == NULL) {
		if (explicit || errno != ENOENT) {
			char msg[256];
			snprintf(msg, sizeof(msg), "cannot open: %s", strerror(errno));
			return set_errmsg(errmsg, file, 0, msg);
		}
	}
	while (fp != NULL && fgets(line, sizeof(line), fp) != NULL) {
		int k;
		lineno++;
		if ((k = split_line(line, &key, &val)) == 0)
			continue;
		if (k < 0) {
			r = set_errmsg(errmsg, file, lineno, "expected 'name = value'");
			break;
		}
		if ((why = apply_setting(cfg, key, val)) != NULL) {
			char msg[300];
			if (strcmp(why, "unknown setting") == 0)
				snprintf(msg, sizeof(msg), "unknown setting '%s'", key);
			else
				snprintf(msg, sizeof(msg), "%s", why);
			r = set_errmsg(errmsg, file, lineno, msg);
			break;
		}
	}
	if (fp != NULL)
		fclose(fp);
	if (r != SC_OK)
		return r;
	if (cfg->module_dir == NULL) {
		/* modules.d beside the configuration file */
		char *dir = strdup(file);
		if (dir == NULL)
			return SC_ERR_NOMEM;
		if ((slash = strrchr(dir, '/')) != NULL)
			*slash = '\0';
		else
			strcpy(dir, ".");
		if (asprintf(&cfg->module_dir, "%s/modules.d", dir) < 0)
			cfg->module_dir = NULL;
		free(dir);
		if (cfg->module_dir == NULL)
			return SC_ERR_NOMEM;
	}
	return load_module_dir(cfg, errmsg);
}

void
sc_config_clear(struct sc_config *cfg)
{
	for (size_t i = 0; i < cfg->nmodules; i++)
		free(cfg->modules[i]);
	free(cfg->modules);
	free(cfg->pinentry);
	free(cfg->picker);
	free(cfg->log_level);
	free(cfg->audit_log);
	free(cfg->tpm_tcti);
	free(cfg->tpm_store);
	free(cfg->vsc_module);
	free(cfg->module_dir);
	free(cfg->file);
	memset(cfg, 0, sizeof(*cfg));
}
