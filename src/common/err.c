#include "config.h"
#include <stdio.h>
#include <string.h>
#include "common/err.h"

static const struct {
	int code;
	const char *name;
	const char *msg;
} errtab[] = {
	{ SC_OK, "ok", "success" },
	{ SC_ERR_INTERNAL, "internal", "internal error" },
	{ SC_ERR_NOMEM, "no-memory", "out of memory" },
	{ SC_ERR_INVALID, "invalid", "invalid argument" },
	{ SC_ERR_IO, "io", "input/output error" },
	{ SC_ERR_TOO_LARGE, "too-large", "message too large" },
	{ SC_ERR_PROTOCOL, "protocol", "malformed message" },
	{ SC_ERR_UNSUPPORTED, "unsupported", "operation not supported" },
	{ SC_ERR_NOT_FOUND, "not-found", "no such token, certificate or key" },
	{ SC_ERR_AMBIGUOUS, "ambiguous", "reference matches more than one object" },
	{ SC_ERR_MODULE, "module", "PKCS#11 module failed" },
	{ SC_ERR_PIN_INCORRECT, "pin-incorrect", "PIN incorrect" },
	{ SC_ERR_PIN_LOCKED, "pin-locked", "PIN locked" },
	{ SC_ERR_PIN_INVALID, "pin-invalid", "PIN has an invalid length or characters" },
	{ SC_ERR_PIN_FINAL_TRY, "pin-final-try", "one PIN try left: confirmation required" },
	{ SC_ERR_NOT_LOGGED_IN, "not-logged-in", "token is not logged in" },
	{ SC_ERR_TOKEN_REMOVED, "token-removed", "token removed" },
	{ SC_ERR_DEVICE, "device", "token or reader error" },
	{ SC_ERR_MECHANISM, "mechanism", "the token does not support this algorithm" },
	{ SC_ERR_KEY, "key", "key cannot be used for this operation" },
	{ SC_ERR_BAD_SIGNATURE, "bad-signature", "the token returned a signature that does not verify" },
	{ SC_ERR_AGENT_UNREACHABLE, "agent-unreachable", "agent unreachable" },
	{ SC_ERR_DENIED, "denied", "operation refused" },
	{ SC_ERR_CANCELLED, "cancelled", "operation cancelled" },
	{ SC_ERR_TIMEOUT, "timeout", "operation timed out" },
	{ SC_ERR_TLS, "tls", "TLS failure" },
	{ SC_ERR_CERT, "certificate", "certificate unusable" },
	{ SC_ERR_BUSY, "busy", "resource busy" },
	{ SC_ERR_ALREADY, "already", "already done" },
	{ SC_ERR_PIN_REQUIRED, "pin-required", "the key needs its PIN for every signature" },
};

#define NERR (sizeof(errtab) / sizeof(errtab[0]))

const char *
sc_strerror(int r)
{
	for (size_t i = 0; i < NERR; i++)
		if (errtab[i].code == r)
			return errtab[i].msg;
	return "unknown error";
}

const char *
sc_errname(int r)
{
	for (size_t i = 0; i < NERR; i++)
		if (errtab[i].code == r)
			return errtab[i].name;
	return "internal";
}

int
sc_errcode(const char *name)
{
	if (name == NULL)
		return SC_ERR_INTERNAL;
	for (size_t i = 0; i < NERR; i++)
		if (strcmp(errtab[i].name, name) == 0)
			return errtab[i].code;
	return SC_ERR_INTERNAL;
}

/* CKR_DEVICE_ERROR and CKR_GENERAL_ERROR seen so far (sc_ckr_fatal_count). */
static unsigned long fatal_count;

unsigned long
sc_ckr_fatal_count(void)
{
	return __atomic_load_n(&fatal_count, __ATOMIC_ACQUIRE);
}

int
sc_err_from_ckr_known(CK_RV rv)
{
	if (rv == CKR_TOKEN_NOT_RECOGNIZED)
		__atomic_add_fetch(&fatal_count, 1, __ATOMIC_ACQ_REL);
	return sc_err_from_ckr(rv);
}

int
sc_err_from_ckr(CK_RV rv)
{
	if (rv == CKR_DEVICE_ERROR || rv == CKR_GENERAL_ERROR)
		__atomic_add_fetch(&fatal_count, 1, __ATOMIC_ACQ_REL);
	switch (rv) {
	case CKR_OK:
		return SC_OK;
	case CKR_HOST_MEMORY:
	case CKR_DEVICE_MEMORY:
		return SC_ERR_NOMEM;
	case CKR_PIN_INCORRECT:
		return SC_ERR_PIN_INCORRECT;
	case CKR_PIN_LOCKED:
		return SC_ERR_PIN_LOCKED;
	case CKR_PIN_LEN_RANGE:
	case CKR_PIN_INVALID:
		return SC_ERR_PIN_INVALID;
	case CKR_USER_NOT_LOGGED_IN:
		return SC_ERR_NOT_LOGGED_IN;
	case CKR_USER_ALREADY_LOGGED_IN:
		return SC_ERR_ALREADY;
	case CKR_DEVICE_REMOVED:
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_TOKEN_NOT_RECOGNIZED:
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_SESSION_CLOSED:
	case CKR_SLOT_ID_INVALID:
		return SC_ERR_TOKEN_REMOVED;
	case CKR_DEVICE_ERROR:
	case CKR_GENERAL_ERROR:
	case CKR_FUNCTION_FAILED:
		return SC_ERR_DEVICE;
	case CKR_MECHANISM_INVALID:
	case CKR_MECHANISM_PARAM_INVALID:
		return SC_ERR_MECHANISM;
	case CKR_KEY_HANDLE_INVALID:
	case CKR_KEY_TYPE_INCONSISTENT:
	case CKR_KEY_FUNCTION_NOT_PERMITTED:
	case CKR_OBJECT_HANDLE_INVALID:
		return SC_ERR_KEY;
	case CKR_DATA_LEN_RANGE:
	case CKR_DATA_INVALID:
	case CKR_ARGUMENTS_BAD:
	case CKR_ATTRIBUTE_VALUE_INVALID:
	case CKR_TEMPLATE_INCOMPLETE:
	case CKR_TEMPLATE_INCONSISTENT:
		return SC_ERR_INVALID;
	case CKR_FUNCTION_NOT_SUPPORTED:
		return SC_ERR_UNSUPPORTED;
	case CKR_FUNCTION_CANCELED:
		return SC_ERR_CANCELLED;
	case CKR_SESSION_COUNT:
	case CKR_OPERATION_ACTIVE:
		return SC_ERR_BUSY;
	case CKR_CRYPTOKI_NOT_INITIALIZED:
	case CKR_CANT_LOCK:
		return SC_ERR_MODULE;
	default:
		return SC_ERR_DEVICE;
	}
}

const char *
sc_ckr_name(CK_RV rv)
{
	static const struct { CK_RV rv; const char *name; } names[] = {
#define N(x) { x, #x }
		N(CKR_OK), N(CKR_CANCEL), N(CKR_HOST_MEMORY), N(CKR_SLOT_ID_INVALID),
		N(CKR_GENERAL_ERROR), N(CKR_FUNCTION_FAILED), N(CKR_ARGUMENTS_BAD),
		N(CKR_NO_EVENT), N(CKR_CANT_LOCK), N(CKR_ATTRIBUTE_TYPE_INVALID),
		N(CKR_ATTRIBUTE_VALUE_INVALID), N(CKR_DATA_INVALID), N(CKR_DATA_LEN_RANGE),
		N(CKR_DEVICE_ERROR), N(CKR_DEVICE_MEMORY), N(CKR_DEVICE_REMOVED),
		N(CKR_FUNCTION_CANCELED), N(CKR_FUNCTION_NOT_SUPPORTED),
		N(CKR_KEY_HANDLE_INVALID), N(CKR_KEY_TYPE_INCONSISTENT),
		N(CKR_KEY_FUNCTION_NOT_PERMITTED), N(CKR_MECHANISM_INVALID),
		N(CKR_MECHANISM_PARAM_INVALID), N(CKR_OBJECT_HANDLE_INVALID),
		N(CKR_OPERATION_ACTIVE), N(CKR_OPERATION_NOT_INITIALIZED),
		N(CKR_PIN_INCORRECT), N(CKR_PIN_INVALID), N(CKR_PIN_LEN_RANGE),
		N(CKR_PIN_EXPIRED), N(CKR_PIN_LOCKED), N(CKR_SESSION_CLOSED),
		N(CKR_SESSION_COUNT), N(CKR_SESSION_HANDLE_INVALID),
		N(CKR_SESSION_READ_ONLY), N(CKR_SIGNATURE_INVALID),
		N(CKR_TEMPLATE_INCOMPLETE), N(CKR_TEMPLATE_INCONSISTENT),
		N(CKR_TOKEN_NOT_PRESENT), N(CKR_TOKEN_NOT_RECOGNIZED),
		N(CKR_TOKEN_WRITE_PROTECTED), N(CKR_USER_ALREADY_LOGGED_IN),
		N(CKR_USER_NOT_LOGGED_IN), N(CKR_USER_PIN_NOT_INITIALIZED),
		N(CKR_USER_TYPE_INVALID), N(CKR_BUFFER_TOO_SMALL),
		N(CKR_CRYPTOKI_NOT_INITIALIZED), N(CKR_CRYPTOKI_ALREADY_INITIALIZED),
#undef N
	};
	static __thread char buf[32];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].rv == rv)
			return names[i].name;
	snprintf(buf, sizeof(buf), "CKR_0x%08lx", (unsigned long)rv);
	return buf;
}
