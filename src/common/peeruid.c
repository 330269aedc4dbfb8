/* The uid at the other end of a local TCP connection (see peeruid.h). */
#include "config.h"
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include "common/err.h"
#include "common/peeruid.h"

/* The connection seen from the peer's side: its own address first. */
struct ends {
	int family;			/* AF_INET or AF_INET6 */
	struct in6_addr peer, self;	/* AF_INET: the address in s6_addr[0..3] */
	uint16_t peer_port, self_port;	/* network byte order */
};

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it is. */
static void
unmap(struct ends *e)
{
	if (e->family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&e->peer) ||
	    !IN6_IS_ADDR_V4MAPPED(&e->self))
		return;
	e->family = AF_INET;
	memmove(e->peer.s6_addr, e->peer.s6_addr + 12, 4);
	memset(e->peer.s6_addr + 4, 0, 12);
	memmove(e->self.s6_addr, e->self.s6_addr + 12, 4);
	memset(e->self.s6_addr + 4, 0, 12);
}

static int
take(const struct sockaddr_storage *ss, int *family, struct in6_addr *a, uint16_t *port)
{
	memset(a, 0, sizeof(*a));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
		memcpy(a->s6_addr, &s4->sin_addr, 4);
		*port = s4->sin_port;
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		*a = s6->sin6_addr;
		*port = s6->sin6_port;
	} else
		return SC_ERR_UNSUPPORTED;
	*family = ss->ss_family;
	return SC_OK;
}

static int
ends_of(int fd, struct ends *e)
{
	struct sockaddr_storage self, peer;
	socklen_t sl = sizeof(self), pl = sizeof(peer);
	int type = 0, f1 = 0, f2 = 0, r;
	socklen_t tl = sizeof(type);

	memset(e, 0, sizeof(*e));
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
	    getsockname(fd, (struct sockaddr *)&self, &sl) < 0 ||
	    getpeername(fd, (struct sockaddr *)&peer, &pl) < 0)
		return SC_ERR_IO;
	if (type != SOCK_STREAM)
		return SC_ERR_UNSUPPORTED;
	if ((r = take(&self, &f1, &e->self, &e->self_port)) != SC_OK ||
	    (r = take(&peer, &f2, &e->peer, &e->peer_port)) != SC_OK)
		return r;
	if (f1 != f2)
		return SC_ERR_UNSUPPORTED;
	e->family = f1;
	unmap(e);
	return SC_OK;
}

/*
 * Whether an address of a sock_diag answer is a (alen bytes of e's form). An
 * IPv6 socket connected to an IPv4 address is found by the IPv4 lookup but
 * answers as IPv6, with the address IPv4-mapped (::ffff:a.b.c.d).
 */
static int
same_addr(const struct inet_diag_msg *m, const __be32 got[4], const struct in6_addr *a, size_t alen)
{
	struct in6_addr mapped;

	if (alen == 4 && m->idiag_family == AF_INET6) {
		memset(&mapped, 0, sizeof(mapped));
		mapped.s6_addr[10] = mapped.s6_addr[11] = 0xff;
		memcpy(mapped.s6_addr + 12, a->s6_addr, 4);
		return memcmp(got, mapped.s6_addr, 16) == 0;
	}
	return memcmp(got, a->s6_addr, alen) == 0;
}

int
sc_peer_uid_diag(int fd, uid_t *uid)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 r;
	} req;
	struct sockaddr_nl nl;
	struct timeval tv = { 1, 0 };
	struct ends e;
	uint32_t buf[2048];		/* aligned for struct nlmsghdr */
	ssize_t n;
	size_t alen;
	int s = -1, r;

	if ((r = ends_of(fd, &e)) != SC_OK)
		return r;
	alen = e.family == AF_INET ? 4 : 16;
	memset(&req, 0, sizeof(req));
	req.nlh.nlmsg_len = sizeof(req);
	req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.nlh.nlmsg_flags = NLM_F_REQUEST;	/* no NLM_F_DUMP: the one socket with these ends */
	req.nlh.nlmsg_seq = 1;
	req.r.sdiag_family = (uint8_t)e.family;
	req.r.sdiag_protocol = IPPROTO_TCP;
	req.r.idiag_states = ~0u;
	/* The peer's socket: its own end is the source, ours the destination. */
	req.r.id.idiag_sport = e.peer_port;
	req.r.id.idiag_dport = e.self_port;
	memcpy(req.r.id.idiag_src, e.peer.s6_addr, alen);
	memcpy(req.r.id.idiag_dst, e.self.s6_addr, alen);
	req.r.id.idiag_cookie[0] = req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	memset(&nl, 0, sizeof(nl));
	nl.nl_family = AF_NETLINK;
	r = SC_ERR_IO;
	if ((s = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)) < 0 ||
	    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    sendto(s, &req, sizeof(req), 0, (struct sockaddr *)&nl, sizeof(nl)) < 0)
		goto out;
	if ((n = recv(s, buf, sizeof(buf), 0)) < 0)
		goto out;
	for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
		if (h->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *ne = NLMSG_DATA(h);
			if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*ne))) {
				errno = EPROTO;
				goto out;
			}
			errno = -ne->error;
			r = errno == ENOENT ? SC_ERR_NOT_FOUND : SC_ERR_IO;
			goto out;
		}
		if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
		    h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
			const struct inet_diag_msg *m = NLMSG_DATA(h);
			/* The kernel answers for exactly these ends; check anyway. */
			if (m->id.idiag_sport != e.peer_port || m->id.idiag_dport != e.self_port ||
			    !same_addr(m, m->id.idiag_src, &e.peer, alen) ||
			    !same_addr(m, m->id.idiag_dst, &e.self, alen))
				continue;
			/*
			 * No inode: no process holds the socket any more (closed, or a
			 * TIME_WAIT entry, whose uid reads 0): who opened it is unknown.
			 */
			if (m->idiag_inode == 0) {
				r = SC_ERR_NOT_FOUND;
				goto out;
			}
			*uid = (uid_t)m->idiag_uid;
			r = SC_OK;
			goto out;
		}
	}
	errno = EPROTO;
out:
	if (s >= 0) {
		int saved = errno;
		close(s);
		errno = saved;
	}
	return r;
}

/* An address as /proc/net/tcp[6] prints it: the 32-bit words as numbers, then :PORT. */
static void
proc_form(const struct in6_addr *a, int v6, uint16_t port, char *out, size_t outlen)
{
	uint32_t w[4];
	size_t o = 0;

	memcpy(w, a->s6_addr, sizeof(w));
	for (int i = 0; i < (v6 ? 4 : 1); i++)
		o += (size_t)snprintf(out + o, outlen - o, "%08X", w[i]);
	snprintf(out + o, outlen - o, ":%04X", ntohs(port));
}

/* 1 found, 0 not there, -1 cannot read (errno). */
static int
proc_find(const char *file, const char *peer, const char *self, uid_t *uid)
{
	char line[512], local[80], remote[80];
	unsigned long u, inode;
	int found = 0;
	FILE *f = fopen(file, "re");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		/* sl local rem st tx:rx tr:when retrnsmt uid timeout inode ... */
		if (sscanf(line, " %*u: %79s %79s %*x %*x:%*x %*x:%*x %*x %lu %*d %lu", local, remote,
		    &u, &inode) == 4 && strcasecmp(local, peer) == 0 && strcasecmp(remote, self) == 0) {
			/* inode 0: held by no process (as for sock_diag above) */
			if (inode != 0) {
				*uid = (uid_t)u;
				found = 1;
			}
			break;
		}
	}
	fclose(f);
	return found;
}

int
sc_peer_uid_proc(int fd, uid_t *uid)
{
	char peer[48], self[48];
	struct ends e, m;
	int r, got, any = 0;

	if ((r = ends_of(fd, &e)) != SC_OK)
		return r;
	if (e.family == AF_INET6) {
		proc_form(&e.peer, 1, e.peer_port, peer, sizeof(peer));
		proc_form(&e.self, 1, e.self_port, self, sizeof(self));
		got = proc_find("/proc/net/tcp6", peer, self, uid);
		return got > 0 ? SC_OK : got == 0 ? SC_ERR_NOT_FOUND : SC_ERR_IO;
	}
	proc_form(&e.peer, 0, e.peer_port, peer, sizeof(peer));
	proc_form(&e.self, 0, e.self_port, self, sizeof(self));
	if ((got = proc_find("/proc/net/tcp", peer, self, uid)) > 0)
		return SC_OK;
	any |= got == 0;
	/* An IPv6 socket may have connected to an IPv4 address: ::ffff:a.b.c.d in tcp6. */
	m = e;
	memset(m.peer.s6_addr, 0, 16);
	memset(m.self.s6_addr, 0, 16);
	m.peer.s6_addr[10] = m.peer.s6_addr[11] = m.self.s6_addr[10] = m.self.s6_addr[11] = 0xff;
	memcpy(m.peer.s6_addr + 12, e.peer.s6_addr, 4);
	memcpy(m.self.s6_addr + 12, e.self.s6_addr, 4);
	proc_form(&m.peer, 1, m.peer_port, peer, sizeof(peer));
	proc_form(&m.self, 1, m.self_port, self, sizeof(self));
	if ((got = proc_find("/proc/net/tcp6", peer, self, uid)) > 0)
		return SC_OK;
	any |= got == 0;
	return any ? SC_ERR_NOT_FOUND : SC_ERR_IO;
}

int
sc_peer_uid(int fd, uid_t *uid)
{
	int r = sc_peer_uid_diag(fd, uid);

	if (r == SC_OK || r == SC_ERR_UNSUPPORTED)
		return r;
	return sc_peer_uid_proc(fd, uid);
}
