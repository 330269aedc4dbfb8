/*
 * The tunnel's browser gate (tunnel-gate.c): every request of an HTTP/1.x
 * connection is held until it is known that no web page sent it through the
 * owner's browser (cross-site requests, DNS rebinding); the bodies between
 * the requests go through as they come.
 */
#ifndef SC_TLS_TUNNEL_GATE_H
#define SC_TLS_TUNNEL_GATE_H

#include <stddef.h>

#define SC_GATE_MAX 16384		/* the most of a request head held */

/*
 * UNDECIDED: following an HTTP/1.x connection (or its first line is yet to
 * come); PASS: nothing more to judge (not HTTP, or the protocol switched);
 * REFUSE: a request was refused (why).
 */
enum { SC_GATE_UNDECIDED, SC_GATE_PASS, SC_GATE_REFUSE };

/* What the tunnel is: names a request may be for. */
struct sc_gate_hosts {
	const char *upstream;		/* --connect's host */
	const char *allow;		/* --allow-host: names, comma-separated; NULL: none */
	char port[8];			/* the port it listens on */
};

struct sc_gate {
	unsigned char buf[SC_GATE_MAX];	/* what the client sent, not yet taken */
	size_t len;
	size_t ok;			/* the first ok bytes of buf may go upstream */
	int state;			/* SC_GATE_* */
	int http;			/* the connection's first line is an HTTP/1.x request line */
	unsigned long requests;		/* request heads that passed */
	int phase;			/* where in the stream (tunnel-gate.c) */
	unsigned long long left;	/* bytes of the body or chunk still to come */
	size_t linelen;			/* of the chunk-size or trailer line so far */
	int digits;			/* hex digits of the chunk size so far */
	char why[256];			/* SC_GATE_REFUSE: why (client's words unescaped) */
};

void sc_gate_init(struct sc_gate *g);
/* How many more bytes sc_gate_add takes now. */
size_t sc_gate_room(const struct sc_gate *g);
/* Add n (at most sc_gate_room) more bytes the client sent: the state after them. */
int sc_gate_add(struct sc_gate *g, const struct sc_gate_hosts *h, const void *data, size_t n);
/*
 * Move what may go upstream now (at most cap bytes) to out: how many. What
 * is held (a request head not yet judged) stays; after a refusal, what came
 * before the refused request may be taken (the tunnel sends none of it).
 */
size_t sc_gate_take(struct sc_gate *g, void *out, size_t cap);

#endif
