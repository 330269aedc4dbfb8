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

#endif
