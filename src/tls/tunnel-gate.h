/*
 * The tunnel's browser gate (tunnel-gate.c): the first request of a
 * connection, when it is HTTP, held until it is known that no web page sent
 * it through the owner's browser (cross-site requests, DNS rebinding).
 */
#ifndef SC_TLS_TUNNEL_GATE_H
#define SC_TLS_TUNNEL_GATE_H

#include <stddef.h>

#define SC_GATE_MAX 16384		/* the most of a request head held */

enum { SC_GATE_UNDECIDED, SC_GATE_PASS, SC_GATE_REFUSE };

/* What the tunnel is: names a request may be for. */
struct sc_gate_hosts {
	const char *upstream;		/* --connect's host */
	const char *allow;		/* --allow-host: names, comma-separated; NULL: none */
	char port[8];			/* the port it listens on */
};

struct sc_gate {
	unsigned char buf[SC_GATE_MAX];	/* what the client sent so far, not yet relayed */
	size_t len;
	int state;			/* SC_GATE_* */
	int http;			/* its first line is an HTTP/1.x request line */
	char why[256];			/* SC_GATE_REFUSE: why (client's words unescaped) */
};

void sc_gate_init(struct sc_gate *g);
/*
 * Add n more bytes the client sent (at most SC_GATE_MAX in all are kept):
 * the state after them.
 */
int sc_gate_add(struct sc_gate *g, const struct sc_gate_hosts *h, const void *data, size_t n);

#endif
