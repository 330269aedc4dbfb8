/*
 * Who is at the other end of a TCP connection whose two ends are on this
 * host: the uid that owns the peer's socket, as `ss -e` and /proc/net/tcp
 * show it. For a listener on loopback that wants to serve only its own user
 * (scagent tunnel), as SO_PEERCRED does for a Unix socket.
 */
#ifndef SC_PEERUID_H
#define SC_PEERUID_H
#include <sys/types.h>

/*
 * The uid owning the peer's socket of fd (a connected TCP socket over IPv4
 * or IPv6): sock_diag netlink first (an exact lookup by the connection's
 * four addresses and ports), /proc/net/tcp and tcp6 when netlink fails.
 * SC_OK with *uid; SC_ERR_NOT_FOUND when no process on this host holds the
 * peer's socket (it is remote, or was closed already: a closed socket's owner
 * is no longer known, TIME_WAIT reads as uid 0); SC_ERR_UNSUPPORTED when fd is not
 * TCP over IP; SC_ERR_IO (errno kept) when neither way could be asked.
 */
int sc_peer_uid(int fd, uid_t *uid);
/* Each way alone (tests). */
int sc_peer_uid_diag(int fd, uid_t *uid);
int sc_peer_uid_proc(int fd, uid_t *uid);

#endif
