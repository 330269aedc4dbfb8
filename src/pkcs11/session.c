/*
 * Sessions (OpenSC's pkcs11-session.c): C_OpenSession, C_CloseSession,
 * C_CloseAllSessions, C_GetSessionInfo, C_Login, C_Logout. The agent's login
 * state is the token's login state here: a session is a user session when
 * the agent is logged in to its token, whoever logged it in.
 */
#include "config.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include "common/err.h"
#include "pkcs11/p11mod.h"
#include "scagent/scagent.h"

void
session_free(struct p11_session *s)
{
	if (s == NULL)
		return;
	free(s->found);
	p11_signop_clear(&s->sign);
	p11_signop_clear(&s->verify);
	free(s);
}

void
sessions_close_slot(CK_SLOT_ID slot)
{
	struct p11_session **pp = &g.sessions, *s;

	while ((s = *pp) != NULL) {
		if (s->slot == slot) {
			*pp = s->next;
			session_free(s);
		} else
			pp = &s->next;
	}
}

/* ------------------------------------------------------------------ */
/* Sessions (g.lock held) */

CK_RV
session_get(CK_SESSION_HANDLE h, struct p11_session **out, struct p11_slot **slot)
{
	*out = NULL;
	if (slot)
		*slot = NULL;
	if (!g.initialized)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	for (struct p11_session *s = g.sessions; s != NULL; s = s->next)
		if (s->handle == h) {
			*out = s;
			if (slot && (*slot = slot_get(s->slot)) == NULL)
				return CKR_GENERAL_ERROR;
			return CKR_OK;
		}
	return CKR_SESSION_HANDLE_INVALID;
}

CK_ULONG
session_count(CK_SLOT_ID slot)
{
	CK_ULONG n = 0;

	for (struct p11_session *s = g.sessions; s != NULL; s = s->next)
		if (s->slot == slot)
			n++;
	return n;
}

CK_ULONG
rw_session_count(CK_SLOT_ID slot)
{
	CK_ULONG n = 0;

	for (struct p11_session *s = g.sessions; s != NULL; s = s->next)
		if (s->slot == slot && (s->flags & CKF_RW_SESSION))
			n++;
	return n;
}


/* ------------------------------------------------------------------ */
/* Sessions */

CK_RV
p11_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication,
    CK_NOTIFY Notify, CK_SESSION_HANDLE_PTR phSession)
{
	struct p11_session *sess;
	struct p11_slot *s;
	CK_RV rv = CKR_OK;

	refresh(0);
	pthread_mutex_lock(&g.lock);
	if (!g.initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	else if (phSession == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else if ((s = slot_get(slotID)) == NULL)
		rv = CKR_SLOT_ID_INVALID;
	else if (!s->present)
		rv = CKR_TOKEN_NOT_PRESENT;
	else if (!(flags & CKF_SERIAL_SESSION))
		rv = CKR_SESSION_PARALLEL_NOT_SUPPORTED;
	else if ((flags & CKF_RW_SESSION) && s->write_protected)
		rv = CKR_TOKEN_WRITE_PROTECTED;
	else if ((sess = calloc(1, sizeof(*sess))) == NULL)
		rv = CKR_HOST_MEMORY;
	else {
		sess->handle = g.next_session++;
		sess->slot = slotID;
		sess->flags = CKF_SERIAL_SESSION | (flags & CKF_RW_SESSION);
		sess->next = g.sessions;
		g.sessions = sess;
		*phSession = sess->handle;
	}
	pthread_mutex_unlock(&g.lock);
	return rv;
}

CK_RV
p11_CloseSession(CK_SESSION_HANDLE hSession)
{
	struct p11_session *s, **pp;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, NULL)) == CKR_OK) {
		for (pp = &g.sessions; *pp != s; pp = &(*pp)->next)
			;
		*pp = s->next;
		session_free(s);
	}
	pthread_mutex_unlock(&g.lock);
	return rv;
}

CK_RV
p11_CloseAllSessions(CK_SLOT_ID slotID)
{
	CK_RV rv = CKR_OK;

	pthread_mutex_lock(&g.lock);
	if (!g.initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	else if (slot_get(slotID) == NULL)
		rv = CKR_SLOT_ID_INVALID;
	else
		sessions_close_slot(slotID);
	pthread_mutex_unlock(&g.lock);
	return rv;
}

CK_RV
p11_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo)
{
	struct p11_session *s;
	struct p11_slot *slot;
	CK_RV rv;

	refresh(0);
	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, &slot)) == CKR_OK) {
		if (pInfo == NULL)
			rv = CKR_ARGUMENTS_BAD;
		else {
			pInfo->slotID = s->slot;
			pInfo->flags = s->flags;
			if (s->flags & CKF_RW_SESSION)
				pInfo->state = slot->logged_in ? CKS_RW_USER_FUNCTIONS : CKS_RW_PUBLIC_SESSION;
			else
				pInfo->state = slot->logged_in ? CKS_RO_USER_FUNCTIONS : CKS_RO_PUBLIC_SESSION;
			pInfo->ulDeviceError = 0;
		}
	}
	pthread_mutex_unlock(&g.lock);
	return rv;
}

CK_RV
p11_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
	struct agent_conn *ac;
	struct p11_session *s;
	struct p11_slot *slot;
	char *label = NULL, *ident = NULL, *pin = NULL;
	int r = SC_ERR_AGENT_UNREACHABLE;
	CK_RV rv;

	if (userType != CKU_CONTEXT_SPECIFIC)
		refresh(1);	/* a per-signature PIN concerns the operation, not the token */
	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, &slot)) != CKR_OK)
		goto out_locked;
	if (userType != CKU_USER && userType != CKU_CONTEXT_SPECIFIC) {
		/* The agent logs in users only: no SO. */
		rv = CKR_USER_TYPE_INVALID;
		goto out_locked;
	}
	if (pPin == NULL && ulPinLen != 0) {
		rv = CKR_ARGUMENTS_BAD;
		goto out_locked;
	}
	if (pPin != NULL && memchr(pPin, '\0', ulPinLen) != NULL) {
		rv = CKR_ARGUMENTS_BAD;
		goto out_locked;
	}
	if (userType == CKU_CONTEXT_SPECIFIC) {
		/*
		 * The PIN for the signature being made with a key that asks for
		 * it every time: kept for C_Sign, which hands it to the agent,
		 * which tries it once. A NULL PIN leaves it to the agent's
		 * pinentry.
		 */
		if (!s->signing || s->sign_busy || !s->sign.always_auth)
			rv = CKR_OPERATION_NOT_INITIALIZED;
		else if (pPin != NULL) {
			if (s->sign.ctx_pin != NULL) {
				OPENSSL_cleanse(s->sign.ctx_pin, strlen(s->sign.ctx_pin));
				free(s->sign.ctx_pin);
			}
			if ((s->sign.ctx_pin = malloc(ulPinLen + 1)) == NULL)
				rv = CKR_HOST_MEMORY;
			else {
				memcpy(s->sign.ctx_pin, pPin, ulPinLen);
				s->sign.ctx_pin[ulPinLen] = '\0';
			}
		}
		goto out_locked;
	}
	if (slot->app_login) {
		rv = CKR_USER_ALREADY_LOGGED_IN;
		goto out_locked;
	}
	if (slot->logged_in && pPin == NULL) {
		/*
		 * The agent is logged in to the token already (one login for all
		 * its clients), and no PIN was given to check: this application
		 * is logged in too. A PIN given is sent: the agent checks it
		 * against the one it logged in with, without the card.
		 */
		slot->app_login = 1;
		goto out_locked;
	}
	if ((label = slot_token_uri(slot)) == NULL || (ident = strdup(slot->ident)) == NULL) {
		free(label);
		rv = CKR_HOST_MEMORY;
		goto out_locked;
	}
	pthread_mutex_unlock(&g.lock);
	if (pPin != NULL) {
		if ((pin = malloc(ulPinLen + 1)) == NULL) {
			free(label);
			free(ident);
			return CKR_HOST_MEMORY;
		}
		memcpy(pin, pPin, ulPinLen);
		pin[ulPinLen] = '\0';
	}
	/* NULL PIN: the agent asks for it itself (pinentry), if it can. */
	if ((ac = conn_get()) != NULL)
		r = scagent_login(ac->c, label, pin, 0);
	conn_put(ac, r);
	if (pin != NULL) {
		OPENSSL_cleanse(pin, ulPinLen);
		free(pin);
	}
	refresh(1);
	if (r == SC_OK || r == SC_ERR_ALREADY) {
		/* "already": someone logged the agent in meanwhile; that login is ours. */
		pthread_mutex_lock(&g.lock);
		for (size_t i = 0; i < g.nslots; i++)
			if (g.slots[i]->present && strcmp(g.slots[i]->ident, ident) == 0)
				g.slots[i]->app_login = 1;
		pthread_mutex_unlock(&g.lock);
		r = SC_OK;
	}
	free(label);
	free(ident);
	if (r == SC_ERR_NOT_LOGGED_IN && pPin == NULL)
		return CKR_ARGUMENTS_BAD;	/* no PIN, and the agent has no way to ask */
	return ckr_from_agent(r);
out_locked:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

CK_RV
p11_Logout(CK_SESSION_HANDLE hSession)
{
	struct agent_conn *ac;
	struct p11_session *s;
	struct p11_slot *slot;
	char *label = NULL, *ident = NULL;
	int r = SC_ERR_AGENT_UNREACHABLE;
	CK_RV rv;

	refresh(1);
	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(hSession, &s, &slot)) == CKR_OK) {
		if (!slot->logged_in)
			rv = CKR_USER_NOT_LOGGED_IN;
		else if ((label = slot_token_uri(slot)) == NULL || (ident = strdup(slot->ident)) == NULL)
			rv = CKR_HOST_MEMORY;
	}
	pthread_mutex_unlock(&g.lock);
	if (rv != CKR_OK) {
		free(label);
		return rv;
	}
	if ((ac = conn_get()) != NULL)
		r = scagent_logout(ac->c, label);
	conn_put(ac, r);
	pthread_mutex_lock(&g.lock);
	for (size_t i = 0; i < g.nslots; i++)
		if (g.slots[i]->present && strcmp(g.slots[i]->ident, ident) == 0)
			g.slots[i]->app_login = 0;
	pthread_mutex_unlock(&g.lock);
	free(label);
	free(ident);
	refresh(1);
	return ckr_from_agent(r);
}

