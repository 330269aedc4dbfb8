/*
 * common/peeruid: the uid owning the other end of a loopback TCP connection,
 * by sock_diag netlink and by /proc/net/tcp[6], over IPv4 and IPv6 (and an
 * IPv6 client of an IPv4 listener, ::ffff:127.0.0.1), for a client of this
 * uid and one of another uid (argv[1], needs root). TAP.
 */
#include "config.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common/err.h"
#include "common/peeruid.h"

static int n, failed;

static void
ok(int cond, const char *what, long got)
{
	n++;
	if (!cond)
		failed++;
	printf("%sok %d - %s (got %ld)\n", cond ? "" : "not ", n, what, got);
}

/* A listener on the loopback address of family, its address in sa. */
static int
listener(int family, struct sockaddr_storage *sa, socklen_t *sl)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(sa, 0, sizeof(*sa));
	if (family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		*sl = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
		*sl = sizeof(*s6);
	}
	if (fd < 0 || bind(fd, (struct sockaddr *)sa, *sl) < 0 || listen(fd, 4) < 0 ||
	    getsockname(fd, (struct sockaddr *)sa, sl) < 0) {
		perror("listener");
		exit(99);
	}
	return fd;
}

/*
 * The address a client connects to: sa itself, or with mapped (sa IPv4) the
 * same as ::ffff:a.b.c.d for an IPv6 socket. Its family.
 */
static int
client_addr(const struct sockaddr_storage *sa, socklen_t sl, int mapped,
    struct sockaddr_storage *ca, socklen_t *cl)
{
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ca;

	*ca = *sa;
	*cl = sl;
	if (!mapped)
		return sa->ss_family;
	memset(ca, 0, sizeof(*ca));
	s6->sin6_family = AF_INET6;
	s6->sin6_port = s4->sin_port;
	s6->sin6_addr.s6_addr[10] = s6->sin6_addr.s6_addr[11] = 0xff;
	memcpy(s6->sin6_addr.s6_addr + 12, &s4->sin_addr, 4);
	*cl = sizeof(*s6);
	return AF_INET6;
}

/*
 * Connect to sa as uid (fork when it is not ours), accept, look the peer up
 * both ways. mapped: an IPv6 client of an IPv4 listener.
 */
static void
one(int family, uid_t as, int mapped)
{
	struct sockaddr_storage sa, ca;
	socklen_t sl, cl;
	int lfd = listener(family, &sa, &sl), cfd = -1, afd, p[2], cfam;
	pid_t child = -1;
	uid_t u1 = (uid_t)-1, u2 = (uid_t)-1;
	int r1, r2;
	char what[160], c;
	const char *fam = mapped ? "IPv6 client of IPv4 (::ffff:127.0.0.1)" :
	    family == AF_INET ? "IPv4" : "IPv6";

	cfam = client_addr(&sa, sl, mapped, &ca, &cl);
	if (as == getuid()) {
		cfd = socket(cfam, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (cfd < 0 || connect(cfd, (struct sockaddr *)&ca, cl) < 0) {
			perror("connect");
			exit(99);
		}
	} else {
		if (pipe(p) < 0 || (child = fork()) < 0)
			exit(99);
		if (child == 0) {
			int s;
			close(p[1]);
			if (setgroups(0, NULL) < 0 || setgid(as) < 0 || setuid(as) < 0)
				_exit(98);
			s = socket(cfam, SOCK_STREAM, 0);
			if (s < 0 || connect(s, (struct sockaddr *)&ca, cl) < 0)
				_exit(97);
			(void)!read(p[0], &c, 1);	/* keep the connection until the parent is done */
			_exit(0);
		}
		close(p[0]);
	}
	if ((afd = accept(lfd, NULL, NULL)) < 0) {
		perror("accept");
		exit(99);
	}
	r1 = sc_peer_uid_diag(afd, &u1);
	r2 = sc_peer_uid_proc(afd, &u2);
	snprintf(what, sizeof(what), "%s, client uid %lu: sock_diag finds it", fam, (unsigned long)as);
	ok(r1 == SC_OK && u1 == as, what, r1 == SC_OK ? (long)u1 : r1);
	snprintf(what, sizeof(what), "%s, client uid %lu: /proc/net finds it", fam, (unsigned long)as);
	ok(r2 == SC_OK && u2 == as, what, r2 == SC_OK ? (long)u2 : r2);
	close(afd);
	if (cfd >= 0)
		close(cfd);
	if (child > 0) {
		close(p[1]);
		waitpid(child, NULL, 0);
	}
	close(lfd);
}

/*
 * A client that connects, writes and closes before the accept: its socket is
 * held by no process (FIN_WAIT2 or TIME_WAIT, whose uid reads 0 as root's):
 * not found either way, never taken for uid 0.
 */
static void
closed(int family)
{
	struct sockaddr_storage sa;
	socklen_t sl;
	int lfd = listener(family, &sa, &sl), cfd, afd, r1, r2;
	uid_t u1 = 12345, u2 = 12345;
	char what[160];

	cfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cfd < 0 || connect(cfd, (struct sockaddr *)&sa, sl) < 0 || write(cfd, "GET /\r\n", 7) != 7) {
		perror("connect");
		exit(99);
	}
	close(cfd);
	usleep(100000);
	if ((afd = accept(lfd, NULL, NULL)) < 0) {
		perror("accept");
		exit(99);
	}
	r1 = sc_peer_uid_diag(afd, &u1);
	r2 = sc_peer_uid_proc(afd, &u2);
	snprintf(what, sizeof(what), "%s, client closed before the accept: sock_diag does not "
	    "find it", family == AF_INET ? "IPv4" : "IPv6");
	ok(r1 == SC_ERR_NOT_FOUND && u1 == 12345, what, r1 == SC_OK ? (long)u1 : r1);
	snprintf(what, sizeof(what), "%s, client closed before the accept: /proc/net does not "
	    "find it", family == AF_INET ? "IPv4" : "IPv6");
	ok(r2 == SC_ERR_NOT_FOUND && u2 == 12345, what, r2 == SC_OK ? (long)u2 : r2);
	close(afd);
	close(lfd);
}

int
main(int argc, char **argv)
{
	uid_t other = argc > 1 ? (uid_t)strtoul(argv[1], NULL, 10) : 65534;
	int sv[2];
	uid_t u;

	one(AF_INET, getuid(), 0);
	one(AF_INET6, getuid(), 0);
	one(AF_INET, getuid(), 1);
	if (getuid() == 0) {
		one(AF_INET, other, 0);
		one(AF_INET6, other, 0);
		one(AF_INET, other, 1);
	}
	closed(AF_INET);
	closed(AF_INET6);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0) {
		ok(sc_peer_uid(sv[0], &u) == SC_ERR_UNSUPPORTED, "a Unix socket is not looked up", 0);
		close(sv[0]);
		close(sv[1]);
	}
	printf("1..%d\n", n);
	return failed ? 1 : 0;
}
