/*
 * The tunnel's listener (see tunnel.h): the syntax of --listen and
 * --connect, a Unix socket of mode 0600 or a loopback (or, asked for, any)
 * TCP address, and its removal at the end.
 */
#include "config.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "common/err.h"
#include "tls/tunnel.h"
#include "tls/tunnel-private.h"

int
sc_tunnel_split_hostport(const char *s, char *host, size_t hl, char *port, size_t pl)
{
	const char *colon;

	if (s[0] == '[') {
		const char *e = strchr(s, ']');
		if (e == NULL || e[1] != ':')
			return -1;
		snprintf(host, hl, "%.*s", (int)(e - s - 1), s + 1);
		colon = e + 1;
	} else {
		if ((colon = strrchr(s, ':')) == NULL)
			return -1;
		snprintf(host, hl, "%.*s", (int)(colon - s), s);
	}
	if (host[0] == '\0' || strlen(colon + 1) >= pl || colon[1] == '\0' ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1) || atoi(colon + 1) > 65535)
		return -1;
	snprintf(port, pl, "%s", colon + 1);
	return 0;
}

static int
is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a6))
			return 1;
		if (IN6_IS_ADDR_V4MAPPED(a6))
			return a6->s6_addr[12] == 127;
	}
	return 0;
}

/*
 * --listen unix:PATH: a socket only its owner can open (mode 0600 from the
 * umask around bind(), as ssh-agent). A PATH that exists is taken over only
 * when it is a socket nobody listens on any more (a tunnel that was killed);
 * anything else there is refused. SC_OK, or SC_ERR_IO (said).
 */
static int
listen_unix(const struct sc_tunnel_opts *o, const char *path, struct listener *l)
{
	struct sockaddr_un sa;
	struct stat st;
	mode_t old;
	int probe;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);	/* its length checked by sc_tunnel_check() */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			o->say_err("--listen unix:%s: the path exists and is not a socket; remove it or "
			    "choose another path", path);
			return SC_ERR_IO;
		}
		if ((probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
			o->say_err("socket: %s", strerror(errno));
			return SC_ERR_IO;
		}
		if (connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(probe);
			o->say_err("--listen unix:%s: a program is listening on that socket already; stop it "
			    "or choose another path", path);
			return SC_ERR_IO;
		}
		close(probe);
		if (errno != ECONNREFUSED) {
			o->say_err("--listen unix:%s: the socket exists and cannot be tested (%s); remove it "
			    "or choose another path", path, strerror(errno));
			return SC_ERR_IO;
		}
		if (unlink(path) < 0 && errno != ENOENT) {
			o->say_err("--listen unix:%s: cannot remove the stale socket: %s", path, strerror(errno));
			return SC_ERR_IO;
		}
	}
	if ((l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		o->say_err("socket: %s", strerror(errno));
		return SC_ERR_IO;
	}
	old = umask(0177);
	if (bind(l->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		umask(old);
		o->say_err("cannot listen on unix:%s: %s", path, strerror(e));
		return SC_ERR_IO;
	}
	umask(old);
	l->is_unix = 1;
	l->loopback = 1;
	memcpy(l->path, path, strlen(path) + 1);
	if (lstat(path, &st) == 0) {
		l->dev = st.st_dev;
		l->ino = st.st_ino;
	}
	if (listen(l->fd, 64) < 0) {
		o->say_err("cannot listen on unix:%s: %s", path, strerror(errno));
		return SC_ERR_IO;
	}
	return SC_OK;
}

/* --listen ADDR:PORT: loopback, or with allow_remote any address. SC_OK, or SC_ERR_* (said). */
static int
listen_inet(const struct sc_tunnel_opts *o, const char *spec, int allow_remote, struct listener *l)
{
	struct addrinfo hints, *res = NULL;
	char host[256], port[8];
	int e, one = 1, rc = SC_ERR_IO;

	if (sc_tunnel_split_hostport(spec, host, sizeof(host), port, sizeof(port)) != 0)
		return SC_ERR_INVALID;	/* sc_tunnel_check() said why */
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if ((e = getaddrinfo(host, port, &hints, &res)) != 0) {
		o->say_err("--listen %s: %s", spec, gai_strerror(e));
		return SC_ERR_INVALID;
	}
	l->loopback = is_loopback(res->ai_addr);
	if (!l->loopback && !allow_remote) {
		o->say_err("--listen %s is not a loopback address: anyone who reaches it could use your "
		    "card; add --allow-remote if that is what you want", spec);
		rc = SC_ERR_INVALID;
		goto out;
	}
	if ((l->fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(l->fd, res->ai_addr, res->ai_addrlen) < 0 || listen(l->fd, 64) < 0) {
		o->say_err("cannot listen on %s: %s", spec, strerror(errno));
		goto out;
	}
	rc = SC_OK;
out:
	freeaddrinfo(res);
	return rc;
}

/* Close the listener; a Unix socket's file goes too, if it is still the one made. */
void
sc_tunnel_listener_close(struct listener *l)
{
	struct stat st;

	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	if (l->is_unix && lstat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
		unlink(l->path);
	l->is_unix = 0;
}


int
sc_tunnel_listen(const struct sc_tunnel_opts *o, struct listener *l)
{
	if (strncmp(o->listen, "unix:", 5) == 0)
		return listen_unix(o, o->listen + 5, l);
	return listen_inet(o, o->listen, o->allow_remote, l);
}

int
sc_tunnel_check(const struct sc_tunnel_opts *o)
{
	char host[256], port[8];
	size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;

	if (sc_tunnel_split_hostport(o->connect, host, sizeof(host), port, sizeof(port)) != 0) {
		o->say_err("--connect wants HOST:PORT, not \"%s\"", o->connect);
		return SC_ERR_INVALID;
	}
	if (strncmp(o->listen, "unix:", 5) == 0) {
		if (o->listen[5] == '\0' || strlen(o->listen + 5) > max) {
			o->say_err("--listen unix:PATH wants a path of 1 to %zu bytes, not \"%s\"", max,
			    o->listen + 5);
			return SC_ERR_INVALID;
		}
	} else if (sc_tunnel_split_hostport(o->listen, host, sizeof(host), port, sizeof(port)) != 0) {
		o->say_err("--listen wants ADDR:PORT (e.g. 127.0.0.1:8443) or unix:PATH, not \"%s\"",
		    o->listen);
		return SC_ERR_INVALID;
	}
	if (strncmp(o->listen, "unix:", 5) == 0 && (o->allow_remote || o->allow_host != NULL)) {
		o->say_err("%s is for an ADDR:PORT listener: a Unix socket is its owner's only",
		    o->allow_remote ? "--allow-remote" : "--allow-host");
		return SC_ERR_INVALID;
	}
	/* names, each non-empty, no port, no trailing dot (the gate compares without one) */
	for (const char *p = o->allow_host; p != NULL; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
		size_t n = strcspn(p, ",");
		if (n == 0 || p[n - 1] == '.' || strcspn(p, " \t\r\n:/[]") < n) {
			o->say_err("--allow-host wants host names separated by commas (no port, no "
			    "empty entry, no trailing dot), not \"%s\"", o->allow_host);
			return SC_ERR_INVALID;
		}
	}
	return SC_OK;
}

