/*
 * A module's worker process (scagentd --worker MODULE): the token store with
 * that one module, serving the agent's protocol on connections the agent
 * passes over its socketpair, each with the identity of the client it
 * serves (audit lines, pinentry and confirmation texts use it). Only the
 * agent holds the other end, so no client ever reaches a worker directly.
 *
 * A module call that fails with CKR_DEVICE_ERROR or CKR_GENERAL_ERROR (a
 * card or reader that broke, a TPM whose resource manager restarted: its
 * connection is dead until C_Finalize) makes the worker stop after its
 * answer, with exit status SC_WORKER_REINIT: the agent starts it again, which
 * finalises and initialises the module afresh, and its tokens come back
 * logged out. Nothing is retried, least of all a PIN.
 */
#include "config.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "common/err.h"
#include "common/log.h"
#include "daemon/server-private.h"

/*
 * One connection the agent passed on lfd: its fd (and the client's identity
 * in *id), -1 for a message that brought none, -2 when nothing more comes
 * (the agent is gone; with MSG_DONTWAIT, nothing waits).
 */
static int
take_conn(int lfd, int flags, struct worker_ident *id)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { id, sizeof(*id) };
	struct msghdr m;
	struct cmsghdr *cm;
	ssize_t n;
	int fd = -1;

	memset(&m, 0, sizeof(m));
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = cbuf;
	m.msg_controllen = sizeof(cbuf);
	if ((n = recvmsg(lfd, &m, MSG_CMSG_CLOEXEC | flags)) == 0)
		return -2;
	if (n < 0)
		return errno == EINTR || (errno == EAGAIN && !(flags & MSG_DONTWAIT)) ? -1 : -2;
	for (cm = CMSG_FIRSTHDR(&m); cm != NULL; cm = CMSG_NXTHDR(&m, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	if (fd >= 0 && ((size_t)n != sizeof(*id) || (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))) {
		close(fd);
		fd = -1;
	}
	return fd;
}

int
worker_accept(struct sc_server *srv)
{
	struct worker_ident id;
	struct sc_client_ident ident;
	int fd = take_conn(srv->lfd, 0, &id);

	if (fd == -2)
		return SC_ERR_IO;	/* the agent is gone */
	if (fd < 0)
		return SC_OK;
	id.exe[sizeof(id.exe) - 1] = '\0';
	ident.pid = (pid_t)id.pid;
	ident.uid = (uid_t)id.uid;
	ident.exe = id.exe;
	sc_server_add_client(srv, fd, &ident);
	return SC_OK;
}

int
worker_check_reinit(struct sc_server *srv, char *msg, size_t len)
{
	size_t l;

	if (!srv->o.worker || sc_ckr_fatal_count() == srv->fatal_base)
		return 0;
	if (!srv->reinit) {
		srv->reinit = sc_store_vsc_module(srv->st) != NULL ? SC_WORKER_REINIT_TPM :
		    SC_WORKER_REINIT;
		sc_warn("a module call failed with CKR_DEVICE_ERROR or CKR_GENERAL_ERROR (or "
		    "CKR_TOKEN_NOT_RECOGNIZED for a token it had recognised): the module is "
		    "initialised again (its worker restarts)");
		sc_server_stop(srv);
	}
	if (msg != NULL && (l = strlen(msg)) < len)
		snprintf(msg + l, len - l, sc_store_vsc_module(srv->st) != NULL ?
		    "; the TPM service restarted or failed (tpm2-abrmd?): the TPM module is "
		    "initialised again and its tokens are logged out: log in again" :
		    "; the module failed (device error): it is initialised again and its "
		    "tokens are logged out: log in again");
	return 1;
}

void
worker_pending(struct client *c)
{
	static const char line[] = "{\"pending\":\"pinentry\"}\n";

	if (c->srv->o.worker)
		send_line(c, strdup(line), sizeof(line) - 1);
}

int
sc_worker_absent(struct sc_store *st, int fd)
{
	json_object *list = sc_store_list_json(st, NULL), *errs, *e;
	struct worker_ident id;
	const char *why = NULL;
	int fd_in;

	if (json_object_object_get_ex(list, "errors", &errs) &&
	    (e = json_object_array_get_idx(errs, 0)) != NULL)
		why = json_object_get_string(json_object_object_get(e, "error"));
	if (why == NULL)
		why = "the module did not load";
	if (send(fd, why, strlen(why), MSG_NOSIGNAL) < 0)
		sc_debug("cannot tell the agent why the module is absent: %s", strerror(errno));
	/*
	 * Then close the connections the agent passed (its event connection,
	 * whose end tells it the worker ended): unread, they would reset ours.
	 */
	while ((fd_in = take_conn(fd, MSG_DONTWAIT, &id)) != -2)
		if (fd_in >= 0)
			close(fd_in);
	json_object_put(list);
	return SC_WORKER_ABSENT;
}
