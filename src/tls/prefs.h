/*
 * Remembered certificate choices (`scagent prefer`): which certificate goes
 * to a server when several fit its request. One line per server,
 * "HOST[:PORT] SHA256" (a HOST alone applies to all its ports; HOST:PORT
 * wins over it), in $XDG_CONFIG_HOME/scagent/preferences (else
 * ~/.config/scagent/preferences), mode 0600. Read by choice.c for connect,
 * probe and tunnel; written by `scagent prefer` and by connect's and probe's
 * "remember for HOST?".
 */
#ifndef SC_TLS_PREFS_H
#define SC_TLS_PREFS_H

#include <stddef.h>

struct sc_tls_pref {
	char where[300];		/* "host:port", "[v6]:port" or "host", lower case */
	char sha256[65];
};

/* The file's path (caller frees), or NULL when neither XDG_CONFIG_HOME nor HOME is set. */
char *sc_tls_prefs_path(void);
/* Every line: 0 with *v (free()) and *n (an absent file has none), or SC_ERR_* with why. */
int sc_tls_prefs_load(struct sc_tls_pref **v, size_t *n, char *why, size_t whylen);
/* where for host and port ("" port: the host alone): lower case, brackets around an IPv6 address. */
void sc_tls_pref_key(const char *host, const char *port, char *where, size_t len);
/* A user's HOST[:PORT] as stored; SC_ERR_INVALID when it is not one. */
int sc_tls_pref_parse(const char *arg, char *where, size_t len);
/* The preference for host:port, else host: 0 with sha256 and where it was found, or SC_ERR_NOT_FOUND. */
int sc_tls_pref_lookup(const char *host, const char *port, char sha256[65], char *where, size_t wlen);
/*
 * Set the line of where to sha256, or remove it (sha256 NULL): 0,
 * SC_ERR_NOT_FOUND (nothing to remove), or SC_ERR_* with why. The file is
 * replaced whole (a temporary file renamed over it).
 */
int sc_tls_pref_store(const char *where, const char *sha256, char *why, size_t whylen);

#endif
