/* scagent probe --exchange: every virtual directory of an Exchange server (cmd_exchange.c). */
#ifndef SC_CLI_EXCHANGE_H
#define SC_CLI_EXCHANGE_H

#include "tls/tlsclient.h"

/*
 * Sweep TARGET (HOST, HOST:PORT or an https:// URL whose path is ignored):
 * Exchange's virtual directories and the extra paths, each without and
 * with a client certificate. Prints one table, or JSON; returns the exit
 * status (1 when an endpoint fails, 2 for a bad TARGET).
 */
int probe_exchange(const struct sc_tls_opts *o, const char *target, const char **extra,
    int nextra, int json);
/* The proxy (--proxy, https_proxy, no_proxy) for host:port is usable: EX_SC_OK, or said and EX_SC_USAGE (cmd_tls.c). */
int tls_proxy_check(const struct sc_tls_opts *o, const char *host, const char *port);

#endif
