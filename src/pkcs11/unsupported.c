/*
 * What the agent does not offer: every function that answers
 * CKR_FUNCTION_NOT_SUPPORTED (or, where the standard says so,
 * CKR_RANDOM_NO_RNG and CKR_FUNCTION_NOT_PARALLEL), after the usual checks of
 * initialisation and the session handle.
 */
#include "config.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pkcs11/p11mod.h"


static CK_RV
not_supported(void)
{
	return if_initialized(CKR_FUNCTION_NOT_SUPPORTED);
}

/* Functions on a session that this module does not offer. */
static CK_RV
session_not_supported(CK_SESSION_HANDLE h)
{
	struct p11_session *s;
	CK_RV rv;

	pthread_mutex_lock(&g.lock);
	if ((rv = session_get(h, &s, NULL)) == CKR_OK)
		rv = CKR_FUNCTION_NOT_SUPPORTED;
	pthread_mutex_unlock(&g.lock);
	return rv;
}

CK_RV
p11_InitToken(CK_SLOT_ID a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d)
{
	return not_supported();
}

CK_RV
p11_InitPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR b, CK_ULONG c)
{
	return session_not_supported(h);
}

CK_RV
p11_SetPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d, CK_ULONG e)
{
	return session_not_supported(h);
}

CK_RV
p11_GetOperationState(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG_PTR c)
{
	return session_not_supported(h);
}

CK_RV
p11_SetOperationState(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE d,
    CK_OBJECT_HANDLE e)
{
	return session_not_supported(h);
}

CK_RV
p11_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE_PTR d)
{
	return session_not_supported(h);
}

CK_RV
p11_CopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d,
    CK_OBJECT_HANDLE_PTR e)
{
	return session_not_supported(h);
}

CK_RV
p11_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE b)
{
	return session_not_supported(h);
}

CK_RV
p11_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d)
{
	return session_not_supported(h);
}

CK_RV
p11_InitMech(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c)
{
	return session_not_supported(h);
}

CK_RV
p11_OneShot(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e)
{
	return session_not_supported(h);
}

CK_RV
p11_Update(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG c)
{
	return session_not_supported(h);
}

CK_RV
p11_Final(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG_PTR c)
{
	return session_not_supported(h);
}

CK_RV
p11_DigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b)
{
	return session_not_supported(h);
}

CK_RV
p11_DigestKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE b)
{
	return session_not_supported(h);
}


CK_RV
p11_GenerateKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d,
    CK_OBJECT_HANDLE_PTR e)
{
	return session_not_supported(h);
}

CK_RV
p11_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d,
    CK_ATTRIBUTE_PTR e, CK_ULONG f, CK_OBJECT_HANDLE_PTR g_, CK_OBJECT_HANDLE_PTR i)
{
	return session_not_supported(h);
}

CK_RV
p11_WrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_OBJECT_HANDLE d,
    CK_BYTE_PTR e, CK_ULONG_PTR f)
{
	return session_not_supported(h);
}

CK_RV
p11_UnwrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_BYTE_PTR d,
    CK_ULONG e, CK_ATTRIBUTE_PTR f, CK_ULONG g_, CK_OBJECT_HANDLE_PTR i)
{
	return session_not_supported(h);
}

CK_RV
p11_DeriveKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_ATTRIBUTE_PTR d,
    CK_ULONG e, CK_OBJECT_HANDLE_PTR f)
{
	return session_not_supported(h);
}

/* No random number generator on these tokens (no CKF_RNG). */
CK_RV
p11_SeedRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG c)
{
	CK_RV rv = session_not_supported(h);

	return rv == CKR_FUNCTION_NOT_SUPPORTED ? CKR_RANDOM_NO_RNG : rv;
}

CK_RV
p11_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG c)
{
	CK_RV rv = session_not_supported(h);

	return rv == CKR_FUNCTION_NOT_SUPPORTED ? CKR_RANDOM_NO_RNG : rv;
}

/* Legacy functions: the standard says they answer CKR_FUNCTION_NOT_PARALLEL. */
CK_RV
p11_GetFunctionStatus(CK_SESSION_HANDLE h)
{
	CK_RV rv = session_not_supported(h);

	return rv == CKR_FUNCTION_NOT_SUPPORTED ? CKR_FUNCTION_NOT_PARALLEL : rv;
}

CK_RV
p11_CancelFunction(CK_SESSION_HANDLE h)
{
	CK_RV rv = session_not_supported(h);

	return rv == CKR_FUNCTION_NOT_SUPPORTED ? CKR_FUNCTION_NOT_PARALLEL : rv;
}
