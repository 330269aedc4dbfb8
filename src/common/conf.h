/*
 * The agent's settings (scagent.conf) and the PKCS#11 modules it loads
 * (p11-kit style .module files in modules.d/ beside it).
 */
#ifndef SC_CONFIG_H
#define SC_CONFIG_H
#include <stddef.h>

struct sc_config {
	char **modules;			/* module paths, in file name order */
	size_t nmodules;
	unsigned long idle_timeout;	/* seconds a login is kept unused; 0 forever */
	unsigned long module_timeout;	/* seconds a module's worker has to answer (30) */
	unsigned long keygen_timeout;	/* the same for keygen, import, init/delete-token (300) */
	char *pinentry;			/* pinentry program, "auto" (default), or NULL ("no") */
	int several_fit_fail;		/* several certificates fit, none preferred, nobody to ask: fail (1) or take the first (0, default) */
	char *picker;			/* connect/probe/tunnel's certificate picker: "auto" (default), a program, or NULL ("no") */
	int verify_ecdsa;		/* verify ECDSA signatures before returning them */
	int confirm_sign;		/* ask through pinentry before every signature */
	int notify;			/* desktop notifications: 0 once per program per login, 1 always, 2 no */
	int logout_on_lock;		/* log out when the screen locks or the machine sleeps (1) */
	char *log_level;		/* error|warn|info|debug */
	char *audit_log;		/* "syslog", a file path, or NULL (stderr log only) */
	char *tpm_tcti;			/* exported as TPM2_PKCS11_TCTI when set */
	char *tpm_store;		/* exported as TPM2_PKCS11_STORE when set */
	char *vsc_module;		/* module for TPM virtual smart cards (default: tpm2-pkcs11) */
	char *module_dir;
	char *file;			/* the file that was read, or NULL */
};

/* The default configuration file: $(sysconfdir)/scagent/scagent.conf. */
const char *sc_config_default_path(void);

/*
 * Read file (NULL: the default, which may be absent). Errors name the file,
 * the line and what is wrong in *errmsg (caller frees). Returns 0 or SC_ERR_*.
 */
int sc_config_load(const char *file, struct sc_config *cfg, char **errmsg);
void sc_config_clear(struct sc_config *cfg);

/*
 * Parse one p11-kit .module file: *module gets its "module:" path (relative
 * paths are under $(libdir)/pkcs11) or NULL when the file disables scagent
 * ("disable-in: scagent", or an "enable-in:" list without it).
 */
int sc_config_read_module_file(const char *path, char **module, char **errmsg);

#endif
