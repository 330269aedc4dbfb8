/*
 * The module's side of the agent: one connection shared by all threads
 * (reconnected after a failure, dropped in a child after fork()), reading
 * the agent's JSON answers, and the one place where an agent error becomes
 * a CK_RV.
 */
#include "config.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>
#include "common/err.h"
#include "pkcs11/p11mod.h"
#include "scagent/scagent.h"

/* ------------------------------------------------------------------ */
/* Small helpers */

void
pad(unsigned char *dst, size_t n, const char *src)
{
	size_t len = src ? strlen(src) : 0;

	memset(dst, ' ', n);
	memcpy(dst, src ? src : "", len < n ? len : n);
}

const char *
jstr(json_object *o, const char *key)
{
	json_object *v;

	if (o != NULL && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return "";
}

int
jbool(json_object *o, const char *key)
{
	json_object *v;

	return o != NULL && json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

json_object *
jarr(json_object *o, const char *key)
{
	json_object *v;

	if (o != NULL && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_array))
		return v;
	return NULL;
}

/* The one place where an agent error becomes a CK_RV. */
CK_RV
ckr_from_agent(int r)
{
	switch (r) {
	case SC_OK:
		return CKR_OK;
	case SC_ERR_NOMEM:
		return CKR_HOST_MEMORY;
	case SC_ERR_PIN_INCORRECT:
	case SC_ERR_PIN_INVALID:	/* a PIN of a length the token refuses is not its PIN */
		return CKR_PIN_INCORRECT;
	case SC_ERR_PIN_LOCKED:
		return CKR_PIN_LOCKED;
	case SC_ERR_PIN_FINAL_TRY:
		/* The agent keeps the last try for an explicit `scagent login --confirm-final-try`. */
		return CKR_FUNCTION_CANCELED;
	case SC_ERR_NOT_LOGGED_IN:
	case SC_ERR_PIN_REQUIRED:	/* C_Sign without C_Login(CKU_CONTEXT_SPECIFIC) */
		return CKR_USER_NOT_LOGGED_IN;
	case SC_ERR_ALREADY:
		return CKR_USER_ALREADY_LOGGED_IN;
	case SC_ERR_TOKEN_REMOVED:
	case SC_ERR_NOT_FOUND:
	case SC_ERR_AMBIGUOUS:
		return CKR_DEVICE_REMOVED;
	case SC_ERR_DENIED:
		return CKR_FUNCTION_REJECTED;
	case SC_ERR_CANCELLED:
		return CKR_FUNCTION_CANCELED;
	case SC_ERR_INVALID:
		return CKR_DATA_INVALID;
	case SC_ERR_AGENT_UNREACHABLE:
	case SC_ERR_IO:
	case SC_ERR_PROTOCOL:
	case SC_ERR_TIMEOUT:
	case SC_ERR_TOO_LARGE:
	case SC_ERR_DEVICE:
	case SC_ERR_BAD_SIGNATURE:
		return CKR_DEVICE_ERROR;
	default:
		return CKR_FUNCTION_FAILED;
	}
}

static int
conn_broken(int r)
{
	return r == SC_ERR_AGENT_UNREACHABLE || r == SC_ERR_IO || r == SC_ERR_PROTOCOL ||
	    r == SC_ERR_TOO_LARGE || r == SC_ERR_TIMEOUT;
}

/* ------------------------------------------------------------------ */
/* The agent connection */

void
conn_unref_locked(struct agent_conn *ac)
{
	if (ac == NULL || --ac->refs > 0)
		return;
	scagent_close(ac->c);
	free(ac);
}

/* In a child after fork(): the parent's connection is not ours to use. */
void
drop_after_fork_locked(void)
{
	if (!g.forked)
		return;
	g.forked = 0;
	if (g.conn != NULL) {
		scagent_close(g.conn->c);
		free(g.conn);
		g.conn = NULL;
	}
}

/* A referenced connection, connecting if needed; NULL when the agent is unreachable. */
struct agent_conn *
conn_get(void)
{
	struct agent_conn *ac;
	scagent_client *c = NULL;

	pthread_mutex_lock(&g.lock);
	drop_after_fork_locked();
	if ((ac = g.conn) != NULL && !ac->dead) {
		ac->refs++;
		pthread_mutex_unlock(&g.lock);
		return ac;
	}
	pthread_mutex_unlock(&g.lock);
	if (scagent_connect(NULL, &c) != SC_OK)
		return NULL;
	pthread_mutex_lock(&g.lock);
	if (g.conn != NULL && !g.conn->dead) {
		ac = g.conn;
		ac->refs++;
		pthread_mutex_unlock(&g.lock);
		scagent_close(c);
		return ac;
	}
	if ((ac = calloc(1, sizeof(*ac))) == NULL) {
		pthread_mutex_unlock(&g.lock);
		scagent_close(c);
		return NULL;
	}
	ac->c = c;
	ac->refs = 2;		/* g.conn's and the caller's */
	if (g.conn != NULL)
		conn_unref_locked(g.conn);
	g.conn = ac;
	pthread_mutex_unlock(&g.lock);
	return ac;
}

/* Done with ac; r is what the call returned (a broken connection is dropped). */
void
conn_put(struct agent_conn *ac, int r)
{
	if (ac == NULL)
		return;
	pthread_mutex_lock(&g.lock);
	if (conn_broken(r) && !ac->dead) {
		ac->dead = 1;
		if (g.conn == ac) {
			g.conn = NULL;
			ac->refs--;	/* g.conn's; the caller's is still held */
		}
	}
	conn_unref_locked(ac);
	pthread_mutex_unlock(&g.lock);
}
