/*
 * The module as a whole (OpenSC's pkcs11-global.c): its state `g`,
 * C_Initialize, C_Finalize, C_GetInfo, fork handling, the function list and
 * the exported C_ names. The locks: p11mod.h.
 */
#include "config.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include "pkcs11/p11mod.h"

#define EXPORT __attribute__((visibility("default")))

struct p11_global g = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.refresh_lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.wake = { -1, -1 },
};

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* rv, or CKR_CRYPTOKI_NOT_INITIALIZED outside C_Initialize..C_Finalize. */
CK_RV
if_initialized(CK_RV rv)
{
	pthread_mutex_lock(&g.lock);
	if (!g.initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_unlock(&g.lock);
	return rv;
}

/* ------------------------------------------------------------------ */
/* General */

static void
atfork_prepare(void)
{
	pthread_mutex_lock(&g.lock);
}

static void
atfork_parent(void)
{
	pthread_mutex_unlock(&g.lock);
}

static void
atfork_child(void)
{
	/* The child has one thread: whatever the others held is void here. */
	pthread_mutex_init(&g.refresh_lock, NULL);
	pthread_cond_init(&g.cond, NULL);
	g.waiters = 0;
	g.forked = 1;
	pthread_mutex_unlock(&g.lock);
}

static void
register_atfork(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static int
inside_agent(void)
{
	/* Loaded by scagentd itself, the module would forward to itself. */
	extern char *program_invocation_short_name;

	return strcmp(program_invocation_short_name, "scagentd") == 0 ||
	    strcmp(program_invocation_short_name, "lt-scagentd") == 0;
}

CK_RV
p11_Initialize(CK_VOID_PTR pInitArgs)
{
	CK_C_INITIALIZE_ARGS *a = pInitArgs;
	CK_RV rv = CKR_OK;

	if (a != NULL) {
		int nfn = (a->CreateMutex != NULL) + (a->DestroyMutex != NULL) +
		    (a->LockMutex != NULL) + (a->UnlockMutex != NULL);
		if (a->pReserved != NULL || (nfn != 0 && nfn != 4))
			return CKR_ARGUMENTS_BAD;
		/* Only the OS's locks are used: the application's cannot be. */
		if (nfn == 4 && !(a->flags & CKF_OS_LOCKING_OK))
			return CKR_CANT_LOCK;
	}
	if (inside_agent())
		return CKR_FUNCTION_FAILED;
	pthread_once(&atfork_once, register_atfork);
	pthread_mutex_lock(&g.lock);
	if (g.initialized) {
		rv = CKR_CRYPTOKI_ALREADY_INITIALIZED;
		goto out;
	}
	drop_after_fork_locked();
	if (pipe2(g.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	g.next_slot = 1;
	g.next_handle = 1;
	g.next_session = 1;
	g.listed = 0;
	g.last_refresh = 0;
	g.initialized = 1;
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

CK_RV
p11_Finalize(CK_VOID_PTR pReserved)
{
	struct p11_session *s;

	if (pReserved != NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&g.lock);
	if (!g.initialized) {
		pthread_mutex_unlock(&g.lock);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	g.initialized = 0;
	if (write(g.wake[1], "x", 1) < 0) {
		/* the pipe already holds a byte: waiters are being woken */
	}
	while (g.waiters > 0)
		pthread_cond_wait(&g.cond, &g.lock);
	while ((s = g.sessions) != NULL) {
		g.sessions = s->next;
		session_free(s);
	}
	for (size_t i = 0; i < g.nslots; i++)
		slot_free(g.slots[i]);
	free(g.slots);
	g.slots = NULL;
	g.nslots = 0;
	for (size_t i = 0; i < g.ncache; i++)
		p11_cert_unref(g.cache[i]);
	free(g.cache);
	g.cache = NULL;
	g.ncache = 0;
	drop_after_fork_locked();
	conn_unref_locked(g.conn);
	g.conn = NULL;
	close(g.wake[0]);
	close(g.wake[1]);
	g.wake[0] = g.wake[1] = -1;
	pthread_mutex_unlock(&g.lock);
	return CKR_OK;
}

CK_RV
p11_GetInfo(CK_INFO_PTR pInfo)
{
	CK_RV rv = CKR_OK;

	pthread_mutex_lock(&g.lock);
	if (!g.initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_unlock(&g.lock);
	if (rv != CKR_OK)
		return rv;
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	memset(pInfo, 0, sizeof(*pInfo));
	pInfo->cryptokiVersion.major = 2;
	pInfo->cryptokiVersion.minor = 40;
	pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), "scagent");
	pad(pInfo->libraryDescription, sizeof(pInfo->libraryDescription),
	    "scagent agent forwarding module");
	pInfo->libraryVersion.major = 0;
	pInfo->libraryVersion.minor = 1;
	return CKR_OK;
}


static CK_FUNCTION_LIST function_list = {
	{ 2, 40 },
	p11_Initialize,
	p11_Finalize,
	p11_GetInfo,
	p11_GetFunctionList,
	p11_GetSlotList,
	p11_GetSlotInfo,
	p11_GetTokenInfo,
	p11_GetMechanismList,
	p11_GetMechanismInfo,
	p11_InitToken,
	p11_InitPIN,
	p11_SetPIN,
	p11_OpenSession,
	p11_CloseSession,
	p11_CloseAllSessions,
	p11_GetSessionInfo,
	p11_GetOperationState,
	p11_SetOperationState,
	p11_Login,
	p11_Logout,
	p11_CreateObject,
	p11_CopyObject,
	p11_DestroyObject,
	p11_GetObjectSize,
	p11_GetAttributeValue,
	p11_SetAttributeValue,
	p11_FindObjectsInit,
	p11_FindObjects,
	p11_FindObjectsFinal,
	p11_InitMech,		/* C_EncryptInit */
	p11_OneShot,		/* C_Encrypt */
	p11_OneShot,		/* C_EncryptUpdate */
	p11_Final,		/* C_EncryptFinal */
	p11_InitMech,		/* C_DecryptInit */
	p11_OneShot,		/* C_Decrypt */
	p11_OneShot,		/* C_DecryptUpdate */
	p11_Final,		/* C_DecryptFinal */
	p11_DigestInit,
	p11_OneShot,		/* C_Digest */
	p11_Update,		/* C_DigestUpdate */
	p11_DigestKey,
	p11_Final,		/* C_DigestFinal */
	p11_SignInit,
	p11_Sign,
	p11_SignUpdate,
	p11_SignFinal,
	p11_InitMech,		/* C_SignRecoverInit */
	p11_OneShot,		/* C_SignRecover */
	p11_VerifyInit,
	p11_Verify,
	p11_VerifyUpdate,
	p11_VerifyFinal,
	p11_InitMech,		/* C_VerifyRecoverInit */
	p11_OneShot,		/* C_VerifyRecover */
	p11_OneShot,		/* C_DigestEncryptUpdate */
	p11_OneShot,		/* C_DecryptDigestUpdate */
	p11_OneShot,		/* C_SignEncryptUpdate */
	p11_OneShot,		/* C_DecryptVerifyUpdate */
	p11_GenerateKey,
	p11_GenerateKeyPair,
	p11_WrapKey,
	p11_UnwrapKey,
	p11_DeriveKey,
	p11_SeedRandom,
	p11_GenerateRandom,
	p11_GetFunctionStatus,
	p11_CancelFunction,
	p11_WaitForSlotEvent,
};

CK_RV
p11_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
	if (ppFunctionList == NULL)
		return CKR_ARGUMENTS_BAD;
	*ppFunctionList = &function_list;
	return CKR_OK;
}

/* ------------------------------------------------------------------ */
/* Exports: C_GetFunctionList and, for programs that link directly, every C_ name. */

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR p) { return p11_GetFunctionList(p); }
EXPORT CK_RV C_Initialize(CK_VOID_PTR a) { return p11_Initialize(a); }
EXPORT CK_RV C_Finalize(CK_VOID_PTR a) { return p11_Finalize(a); }
EXPORT CK_RV C_GetInfo(CK_INFO_PTR a) { return p11_GetInfo(a); }
EXPORT CK_RV C_GetSlotList(CK_BBOOL a, CK_SLOT_ID_PTR b, CK_ULONG_PTR c) { return p11_GetSlotList(a, b, c); }
EXPORT CK_RV C_GetSlotInfo(CK_SLOT_ID a, CK_SLOT_INFO_PTR b) { return p11_GetSlotInfo(a, b); }
EXPORT CK_RV C_GetTokenInfo(CK_SLOT_ID a, CK_TOKEN_INFO_PTR b) { return p11_GetTokenInfo(a, b); }
EXPORT CK_RV C_WaitForSlotEvent(CK_FLAGS a, CK_SLOT_ID_PTR b, CK_VOID_PTR c) { return p11_WaitForSlotEvent(a, b, c); }
EXPORT CK_RV C_GetMechanismList(CK_SLOT_ID a, CK_MECHANISM_TYPE_PTR b, CK_ULONG_PTR c) { return p11_GetMechanismList(a, b, c); }
EXPORT CK_RV C_GetMechanismInfo(CK_SLOT_ID a, CK_MECHANISM_TYPE b, CK_MECHANISM_INFO_PTR c) { return p11_GetMechanismInfo(a, b, c); }
EXPORT CK_RV C_OpenSession(CK_SLOT_ID a, CK_FLAGS b, CK_VOID_PTR c, CK_NOTIFY d, CK_SESSION_HANDLE_PTR e) { return p11_OpenSession(a, b, c, d, e); }
EXPORT CK_RV C_CloseSession(CK_SESSION_HANDLE a) { return p11_CloseSession(a); }
EXPORT CK_RV C_CloseAllSessions(CK_SLOT_ID a) { return p11_CloseAllSessions(a); }
EXPORT CK_RV C_GetSessionInfo(CK_SESSION_HANDLE a, CK_SESSION_INFO_PTR b) { return p11_GetSessionInfo(a, b); }
EXPORT CK_RV C_Login(CK_SESSION_HANDLE a, CK_USER_TYPE b, CK_UTF8CHAR_PTR c, CK_ULONG d) { return p11_Login(a, b, c, d); }
EXPORT CK_RV C_Logout(CK_SESSION_HANDLE a) { return p11_Logout(a); }
EXPORT CK_RV C_FindObjectsInit(CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c) { return p11_FindObjectsInit(a, b, c); }
EXPORT CK_RV C_FindObjects(CK_SESSION_HANDLE a, CK_OBJECT_HANDLE_PTR b, CK_ULONG c, CK_ULONG_PTR d) { return p11_FindObjects(a, b, c, d); }
EXPORT CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE a) { return p11_FindObjectsFinal(a); }
EXPORT CK_RV C_GetAttributeValue(CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d) { return p11_GetAttributeValue(a, b, c, d); }
EXPORT CK_RV C_GetObjectSize(CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ULONG_PTR c) { return p11_GetObjectSize(a, b, c); }
EXPORT CK_RV C_SignInit(CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c) { return p11_SignInit(a, b, c); }
EXPORT CK_RV C_Sign(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e) { return p11_Sign(a, b, c, d, e); }
EXPORT CK_RV C_SignUpdate(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c) { return p11_SignUpdate(a, b, c); }
EXPORT CK_RV C_SignFinal(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c) { return p11_SignFinal(a, b, c); }
