/*
 * Fuzz target for the agent's dispatcher (src/daemon/dispatch.c and every
 * operation behind it): the input is what a client sends, framed into lines
 * as the agent frames a socket (sc_linebuf on a file descriptor), each line
 * given to dispatch() for one connection that starts without hello. The
 * server runs on a token store with no module (no token, no SoftHSM: fast),
 * no pinentry and no audit log; the connection's socket is one end of a
 * socketpair whose other end is read after every line.
 *
 * Checked: every answer is one line of strict JSON in valid UTF-8 with "id"
 * and "ok" (and "error"."code"/"message" when not ok); no line goes
 * unanswered; dispatch() never asks to drop a connection whose socket is fine.
 */
#include "config.h"
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/server-private.h"
#include "proto/proto.h"
#include "token/token.h"
#include "fuzz.h"

const char sc_fuzz_name[] = "dispatch";

static struct sc_store *store;
static struct sc_server *srv;
static struct client conn;
static int peer = -1;
static char answers[1 << 20];

static void
setup(void)
{
	struct sc_store_opts so = { 0 };
	struct sc_server_opts o = { 0 };
	int sv[2];

	sc_log_init("fuzz-dispatch", SC_LOG_ERROR, 0);
	if ((store = sc_store_new(&so)) == NULL || (srv = sc_server_new(store, -1, &o)) == NULL ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		abort();
	conn.srv = srv;
	conn.fd = sv[0];
	conn.pid = getpid();
	conn.uid = getuid();
	strcpy(conn.exe, "fuzz-dispatch");
	pthread_mutex_init(&conn.wlock, NULL);
	peer = sv[1];
}

/* Every answer waiting on the peer's side, each checked; how many lines. */
static int
read_answers(void)
{
	size_t len = 0;
	int lines = 0;
	char *p, *nl;

	for (;;) {
		ssize_t n = recv(peer, answers + len, sizeof(answers) - len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(answers))
			abort();	/* answers this long cannot come from short requests */
	}
	for (p = answers; p < answers + len; p = nl + 1) {
		json_tokener *tok = json_tokener_new();
		json_object *j, *v, *e;

		if ((nl = memchr(p, '\n', (size_t)(answers + len - p))) == NULL)
			abort();	/* an answer is whole lines */
		if (sc_utf8_check(p, (size_t)(nl - p)) != (size_t)(nl - p))
			abort();
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
		j = json_tokener_parse_ex(tok, p, (int)(nl - p));
		if (j == NULL || json_tokener_get_error(tok) != json_tokener_success ||
		    !json_object_object_get_ex(j, "id", NULL) || !json_object_object_get_ex(j, "ok", &v))
			abort();
		if (!json_object_get_boolean(v) && (!json_object_object_get_ex(j, "error", &e) ||
		    !json_object_object_get_ex(e, "code", NULL) ||
		    !json_object_object_get_ex(e, "message", NULL)))
			abort();
		json_object_put(j);
		json_tokener_free(tok);
		lines++;
	}
	return lines;
}

static void
one_line(char *line, size_t len)
{
	if (dispatch(&conn, line, len) == SC_ERR_IO)
		abort();
	if (read_answers() != 1)
		abort();	/* one answer a request line */
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (srv == NULL)
		setup();
	/* a new connection: no hello yet, not watching */
	conn.hello = 0;
	conn.watching = 0;
	conn.accepted = sc_now_ms();
	fuzz_lines(data, size, SC_PROTO_MAX_REQUEST, one_line);
	return 0;
}
