/*
 * What the tunnel's files share: tunnel.c (threads, admission, relay) and
 * tunnel-listen.c (the listener). The threads and what the lock of
 * struct tunnel guards are written at that struct in tunnel.c; the
 * listener is the main thread's alone.
 */
#ifndef SC_TLS_TUNNEL_PRIVATE_H
#define SC_TLS_TUNNEL_PRIVATE_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/un.h>
#include "tls/tunnel.h"

/* The listening socket. */
struct listener {
	int fd;
	int is_unix;
	int loopback;			/* a loopback address (or a Unix socket) */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];	/* is_unix: removed at the end */
	dev_t dev;			/* the socket file made, so that only it is removed */
	ino_t ino;
};

/* "HOST:PORT" or "[V6]:PORT" into host and port: 0, or -1 when malformed. */
int sc_tunnel_split_hostport(const char *s, char *host, size_t hl, char *port, size_t pl);
/* Listen as --listen says: SC_OK, or SC_ERR_INVALID / SC_ERR_IO (said through o->say_err). */
int sc_tunnel_listen(const struct sc_tunnel_opts *o, struct listener *l);
/* Close the listener; a Unix socket's file goes too, if it is still the one made. */
void sc_tunnel_listener_close(struct listener *l);

#endif
