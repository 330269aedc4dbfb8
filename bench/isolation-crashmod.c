/*
 * isolation-crashmod.so: a PKCS#11 module that forwards every call to the
 * module named by $CRASHMOD_TARGET and misbehaves in C_Sign on demand, for
 * bench/isolation-bench.sh (issue 21). While the file named by
 * $CRASHMOD_TRIGGER exists, C_Sign reads its first byte: 's' dereferences
 * NULL (SIGSEGV), 'h' sleeps forever (a module call that never returns),
 * anything else behaves.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST real_copy;
static CK_FUNCTION_LIST wrapped;
static CK_C_Sign real_sign;

static int
mode(void)
{
	const char *path = getenv("CRASHMOD_TRIGGER");
	FILE *f;
	int c;

	if (path == NULL || (f = fopen(path, "r")) == NULL)
		return 0;
	c = fgetc(f);
	fclose(f);
	return c;
}

static CK_RV
crash_sign(CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR siglen)
{
	switch (mode()) {
	case 's':
		*(volatile int *)NULL = 1;
		break;
	case 'h':
		for (;;)
			pause();
	default:
		break;
	}
	return real_sign(s, data, len, sig, siglen);
}

CK_RV
C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	const char *target = getenv("CRASHMOD_TARGET");
	CK_C_GetFunctionList gfl;
	CK_FUNCTION_LIST_PTR real;
	void *h;

	if (target == NULL || (h = dlopen(target, RTLD_NOW | RTLD_LOCAL)) == NULL)
		return CKR_GENERAL_ERROR;
	gfl = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
	if (gfl == NULL || gfl(&real) != CKR_OK)
		return CKR_GENERAL_ERROR;
	real_copy = *real;
	wrapped = *real;
	real_sign = real_copy.C_Sign;
	wrapped.C_Sign = crash_sign;
	*list = &wrapped;
	return CKR_OK;
}
