/*
 * fault-pkcs11: a PKCS#11 module for tests that forwards every call to a real
 * module (SoftHSM) and injects the faults a real token produces only when it
 * breaks. Built by `make check` only, as tests/mock/.libs/fault-pkcs11.so.
 *
 * Load it INSTEAD of SoftHSM (not next to it: both would C_Initialize the
 * same SoftHSM library), e.g.
 *
 *     SCAGENT_FAULT=sign-removed scagentd --module "$FAULT_MODULE" ...
 *
 * Environment:
 *   SCAGENT_FAULT_TARGET  the real module (default /usr/lib/softhsm/libsofthsm2.so)
 *   SCAGENT_FAULT         comma-separated faults (default: none, pure forwarding):
 *     init              C_Initialize returns CKR_DEVICE_ERROR (nothing forwarded)
 *     sign-removed      C_Sign returns CKR_DEVICE_REMOVED (same as
 *                       sign-fail=CKR_DEVICE_REMOVED)
 *     sign-fail=CKR     C_Sign returns CKR (a name below or a number, 0x.. ok)
 *     sign-bad          C_Sign flips one byte of a successful signature (a
 *                       faulty RSA-CRT card's wrong signature stand-in)
 *     sign-delay=MS     C_Sign sleeps MS milliseconds first (a slow card)
 *     delay-sign=T      a signature takes T (ms, or with a unit: 300ms, 0.3s;
 *                       a PIV card's RSA-2048 takes 100-500 ms); unlike
 *                       sign-delay, a length query (no buffer) is not delayed
 *     delay-other=T     every other call that reaches a card (slot, token and
 *                       session information, login, logout, sessions, object
 *                       searches and reads, C_SignInit) sleeps T first, as
 *                       over USB: 20ms is a card's APDU round trip
 *     init-delay=MS     C_Initialize sleeps MS milliseconds first (a module
 *                       slow to start, as a TPM's can be)
 *     delay-keygen=T    C_GenerateKeyPair takes T (as delay-sign), and the
 *                       module serialises its calls meanwhile: every call the
 *                       other delays apply to (signatures, logins, slot,
 *                       token and session information, object searches and
 *                       reads) waits until the key pair is made, as behind a
 *                       TPM module's lock (tpm2-pkcs11 makes an RSA key in
 *                       seconds, with every other call waiting)
 *     login-fail=CKR    C_Login returns CKR without trying the PIN
 *     renumber          every C_Logout numbers the module's objects anew: the
 *                       handles given out before it are refused after it
 *                       (CKR_OBJECT_HANDLE_INVALID, for keys
 *                       CKR_KEY_HANDLE_INVALID), the objects have other
 *                       ones. PKCS#11 lets a module do so (an object's handle
 *                       need not be fixed for the token's life); SoftHSM does
 *                       when a slot's last session closes, which a test
 *                       cannot count on. Once on, it stays on.
 *     renumber-now      the next C_SignInit first numbers the objects anew
 *                       (as renumber does at a logout), so the key handle
 *                       it is given is one of the numbering before, and is
 *                       refused. Once: again only after a C_SignInit that
 *                       did not see the word. Numbering goes on at every
 *                       C_Logout after it, as under renumber.
 *     stale-key         C_SignInit always refuses the key with
 *                       CKR_KEY_HANDLE_INVALID (a token that keeps refusing
 *                       the handles it gives out)
 *     crash-sign        C_Sign dereferences a null pointer (SIGSEGV)
 *     crash-sign-at=N   the same at the process's Nth C_Sign (the ones before work)
 *     hang-sign         C_Sign never returns
 *     hang-find         C_FindObjects never returns
 *     hang-slots        C_GetSlotList never returns
 *     pin-final-try, pin-count-low, pin-locked
 *                       C_GetTokenInfo adds CKF_USER_PIN_FINAL_TRY, ..._COUNT_LOW,
 *                       ..._LOCKED to the real flags (SoftHSM counts no tries)
 *   SCAGENT_FAULT_FILE    when set, the fault list is read from this file
 *                         (first line, same syntax) at every faultable call,
 *                         instead of SCAGENT_FAULT: a test can change the
 *                         faults of a running agent. A missing file = no faults.
 *   SCAGENT_FAULT_TRACE   when set, a line per call is appended to this file:
 *                         "SignInit S", "Sign S" (a signature made or
 *                         refused, S the session), "Login user=U" (U the
 *                         CKU_ user type), "SetPIN rv=R" and "InitPIN rv=R"
 *                         (R the real module's CK_RV), "GenerateKeyPair 0"
 *                         and "GenerateKeyPair done rv=R" (its start and end)
 *                         (a key generation begins), "Logout ops=N" (N
 *                         sessions with a signing operation still started)
 *                         and, under renumber, "Renumbered N" (the objects'
 *                         Nth numbering begins); "SignInit refused rv=R" (R
 *                         the CK_RV), "FindObjectsInit S" and "GetSlotList"
 *                         (token reads)
 * CKR names understood: CKR_DEVICE_ERROR, CKR_DEVICE_REMOVED,
 * CKR_TOKEN_NOT_PRESENT, CKR_PIN_INCORRECT, CKR_PIN_LOCKED, CKR_PIN_EXPIRED,
 * CKR_FUNCTION_FAILED, CKR_GENERAL_ERROR, CKR_SESSION_HANDLE_INVALID,
 * CKR_USER_NOT_LOGGED_IN, CKR_DEVICE_MEMORY, CKR_FUNCTION_CANCELED.
 * An unknown fault word is reported on stderr and makes C_GetFunctionList
 * fail, so a typo in a test cannot pass silently.
 *
 * A failed C_Sign still ends the real module's signing operation (as PKCS#11
 * says a failed C_Sign does), so the session stays usable.
 */
#include "config.h"
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

#define DEFAULT_TARGET "/usr/lib/softhsm/libsofthsm2.so"

struct faults {
	int init;
	CK_RV sign_fail;		/* 0: none */
	int sign_bad;
	long sign_delay_ms;
	long init_delay_ms;
	long other_delay_ms;
	long sign_time_ms;		/* delay-sign */
	long keygen_time_ms;		/* delay-keygen */
	CK_RV login_fail;		/* 0: none */
	CK_FLAGS pin_flags;		/* added to C_GetTokenInfo's flags */
	int renumber;
	int renumber_now;
	int stale_key;
	int crash_sign;
	long crash_sign_at;		/* 0: none */
	int hang_sign, hang_find, hang_slots;
};

static CK_FUNCTION_LIST_PTR real;
static CK_FUNCTION_LIST wrapped;

static void trace(const char *what, unsigned long v);

static const struct {
	const char *name;
	CK_RV rv;
} ckr_names[] = {
	{ "CKR_DEVICE_ERROR", CKR_DEVICE_ERROR },
	{ "CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED },
	{ "CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT },
	{ "CKR_PIN_INCORRECT", CKR_PIN_INCORRECT },
	{ "CKR_PIN_LOCKED", CKR_PIN_LOCKED },
	{ "CKR_PIN_EXPIRED", CKR_PIN_EXPIRED },
	{ "CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED },
	{ "CKR_GENERAL_ERROR", CKR_GENERAL_ERROR },
	{ "CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID },
	{ "CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN },
	{ "CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY },
	{ "CKR_FUNCTION_CANCELED", CKR_FUNCTION_CANCELED },
};

static int
parse_ckr(const char *s, CK_RV *rv)
{
	char *end;
	unsigned long v;

	for (size_t i = 0; i < sizeof(ckr_names) / sizeof(ckr_names[0]); i++)
		if (strcmp(s, ckr_names[i].name) == 0) {
			*rv = ckr_names[i].rv;
			return 0;
		}
	v = strtoul(s, &end, 0);
	if (*s == '\0' || *end != '\0' || v == 0)
		return -1;
	*rv = v;
	return 0;
}

/* "300", "300ms", "0.3s": milliseconds, or -1. */
static long
parse_ms(const char *v)
{
	char *end;
	double d;

	if (v == NULL)
		return -1;
	d = strtod(v, &end);
	if (end == v || d < 0)
		return -1;
	if (*end == 's' && end[1] == '\0')
		d *= 1000;
	else if (!(*end == '\0' || strcmp(end, "ms") == 0))
		return -1;
	return (long)d;
}

/* Parse "a,b=1,..." into f; -1 (with a message) on an unknown word. */
static int
parse_faults(const char *spec, struct faults *f)
{
	char buf[512], *save = NULL, *w, *val;
	int r = 0;

	memset(f, 0, sizeof(*f));
	if (spec == NULL)
		return 0;
	snprintf(buf, sizeof(buf), "%s", spec);
	buf[strcspn(buf, "\r\n")] = '\0';
	for (w = strtok_r(buf, ", ", &save); w != NULL; w = strtok_r(NULL, ", ", &save)) {
		if ((val = strchr(w, '=')) != NULL)
			*val++ = '\0';
		if (strcmp(w, "init") == 0 && val == NULL)
			f->init = 1;
		else if (strcmp(w, "sign-removed") == 0 && val == NULL)
			f->sign_fail = CKR_DEVICE_REMOVED;
		else if (strcmp(w, "sign-bad") == 0 && val == NULL)
			f->sign_bad = 1;
		else if (strcmp(w, "sign-fail") == 0 && val != NULL && parse_ckr(val, &f->sign_fail) == 0)
			;
		else if (strcmp(w, "login-fail") == 0 && val != NULL && parse_ckr(val, &f->login_fail) == 0)
			;
		else if (strcmp(w, "init-delay") == 0 && val != NULL && (f->init_delay_ms = atol(val)) > 0)
			;
		else if (strcmp(w, "sign-delay") == 0 && val != NULL && (f->sign_delay_ms = atol(val)) > 0)
			;
		else if (strcmp(w, "delay-sign") == 0 && (f->sign_time_ms = parse_ms(val)) >= 0)
			;
		else if (strcmp(w, "delay-other") == 0 && (f->other_delay_ms = parse_ms(val)) >= 0)
			;
		else if (strcmp(w, "delay-keygen") == 0 && (f->keygen_time_ms = parse_ms(val)) >= 0)
			;
		else if (strcmp(w, "crash-sign") == 0 && val == NULL)
			f->crash_sign = 1;
		else if (strcmp(w, "crash-sign-at") == 0 && val != NULL && (f->crash_sign_at = atol(val)) > 0)
			;
		else if (strcmp(w, "hang-sign") == 0 && val == NULL)
			f->hang_sign = 1;
		else if (strcmp(w, "hang-find") == 0 && val == NULL)
			f->hang_find = 1;
		else if (strcmp(w, "hang-slots") == 0 && val == NULL)
			f->hang_slots = 1;
		else if (strcmp(w, "renumber") == 0 && val == NULL)
			f->renumber = 1;
		else if (strcmp(w, "renumber-now") == 0 && val == NULL)
			f->renumber_now = 1;
		else if (strcmp(w, "stale-key") == 0 && val == NULL)
			f->stale_key = 1;
		else if (strcmp(w, "pin-final-try") == 0 && val == NULL)
			f->pin_flags |= CKF_USER_PIN_FINAL_TRY;
		else if (strcmp(w, "pin-count-low") == 0 && val == NULL)
			f->pin_flags |= CKF_USER_PIN_COUNT_LOW;
		else if (strcmp(w, "pin-locked") == 0 && val == NULL)
			f->pin_flags |= CKF_USER_PIN_LOCKED;
		else {
			fprintf(stderr, "fault-pkcs11: unknown fault '%s%s%s'\n", w,
			    val ? "=" : "", val ? val : "");
			r = -1;
		}
	}
	return r;
}

/* The faults in force now. */
static void
current_faults(struct faults *f)
{
	const char *file = getenv("SCAGENT_FAULT_FILE");
	char line[512];
	FILE *fp;

	if (file == NULL || *file == '\0') {
		parse_faults(getenv("SCAGENT_FAULT"), f);
		return;
	}
	memset(f, 0, sizeof(*f));
	if ((fp = fopen(file, "r")) == NULL)
		return;
	if (fgets(line, sizeof(line), fp) != NULL)
		parse_faults(line, f);
	fclose(fp);
}

/* Sleep ms milliseconds, through signals. */
static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0)
		;
}

/* Held by a key generation under delay-keygen: the module's calls wait for it. */
static pthread_mutex_t card_lock = PTHREAD_MUTEX_INITIALIZER;

/* delay-keygen: a call waits for a key generation the module is making. */
static void
card_wait(void)
{
	pthread_mutex_lock(&card_lock);
	pthread_mutex_unlock(&card_lock);
}

/* delay-other: the time a card takes to answer a call other than a signature. */
static void
other_delay(void)
{
	struct faults f;

	card_wait();
	current_faults(&f);
	if (f.other_delay_ms > 0)
		sleep_ms(f.other_delay_ms);
}

static CK_RV
fault_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info)
{
	other_delay();
	return real->C_GetSlotInfo(slot, info);
}

static CK_RV
fault_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
    CK_SESSION_HANDLE_PTR s)
{
	other_delay();
	return real->C_OpenSession(slot, flags, app, notify, s);
}

static CK_RV
fault_GetSessionInfo(CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info)
{
	other_delay();
	return real->C_GetSessionInfo(s, info);
}

static CK_RV
fault_FindObjectsInit(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR a, CK_ULONG n)
{
	trace("FindObjectsInit ", s);
	other_delay();
	return real->C_FindObjectsInit(s, a, n);
}

static CK_RV
fault_FindObjectsFinal(CK_SESSION_HANDLE s)
{
	other_delay();
	return real->C_FindObjectsFinal(s);
}

/* A module that hangs: this call never returns (the process must be killed). */
static void
hang(void)
{
	for (;;)
		pause();
}

/*
 * A module that crashes: the process dies of SIGSEGV, as of a bad pointer in
 * a module, without the undefined behaviour of one (a sanitizer build would
 * report that and exit instead) and past any SIGSEGV handler (ASan's).
 */
static void
crash(void)
{
	signal(SIGSEGV, SIG_DFL);
	raise(SIGSEGV);
	_exit(139);	/* not reached */
}

static CK_RV
fault_Initialize(void *args)
{
	struct faults f;

	current_faults(&f);
	if (f.init_delay_ms > 0)
		sleep_ms(f.init_delay_ms);
	if (f.init)
		return CKR_DEVICE_ERROR;
	return real->C_Initialize(args);
}

static CK_RV
fault_Login(CK_SESSION_HANDLE s, CK_USER_TYPE who, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
	struct faults f;

	card_wait();
	current_faults(&f);
	trace("Login user=", who);
	if (f.other_delay_ms > 0)
		sleep_ms(f.other_delay_ms);
	if (f.login_fail != 0)
		return f.login_fail;
	return real->C_Login(s, who, pin, len);
}

/* PIN changes and unblocks are only traced: "SetPIN rv=R", "InitPIN rv=R". */
static CK_RV
fault_SetPIN(CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR old, CK_ULONG oldlen, CK_UTF8CHAR_PTR pin,
    CK_ULONG len)
{
	CK_RV rv = real->C_SetPIN(s, old, oldlen, pin, len);

	trace("SetPIN rv=", rv);
	return rv;
}

static CK_RV
fault_InitPIN(CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
	CK_RV rv = real->C_InitPIN(s, pin, len);

	trace("InitPIN rv=", rv);
	return rv;
}

static CK_RV
fault_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
	struct faults f;
	CK_RV rv;

	card_wait();
	current_faults(&f);
	if (f.other_delay_ms > 0)
		sleep_ms(f.other_delay_ms);
	rv = real->C_GetTokenInfo(slot, info);
	if (rv == CKR_OK && info != NULL)
		info->flags |= f.pin_flags;
	return rv;
}

/* Sessions with a signing operation started, and since when (ms). */
static struct {
	CK_SESSION_HANDLE s;
	long since;
} ops[256];
static size_t nops;
static pthread_mutex_t ops_lock = PTHREAD_MUTEX_INITIALIZER;

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Forget s's operation; its start (ms), or -1 when it had none. */
static long
op_end(CK_SESSION_HANDLE s)
{
	long since = -1;

	pthread_mutex_lock(&ops_lock);
	for (size_t i = 0; i < nops; i++)
		if (ops[i].s == s) {
			since = ops[i].since;
			ops[i] = ops[--nops];
			break;
		}
	pthread_mutex_unlock(&ops_lock);
	return since;
}

static void
trace(const char *what, unsigned long v)
{
	const char *file = getenv("SCAGENT_FAULT_TRACE");
	FILE *fp;

	if (file == NULL || *file == '\0' || (fp = fopen(file, "a")) == NULL)
		return;
	fprintf(fp, "%s%lu\n", what, v);
	fclose(fp);
}

/*
 * Object handles under "renumber": the real module's handle h goes out as
 * h + numbering * HANDLE_STRIDE, numbering being the logouts since the fault
 * came on, and a handle that comes in with another numbering is refused as
 * the real module refuses one it never gave out. SoftHSM's handles are small
 * counters, far below the stride.
 */
#define HANDLE_STRIDE ((CK_OBJECT_HANDLE)1 << 24)
static unsigned long numbering;

static CK_OBJECT_HANDLE
h_out(CK_OBJECT_HANDLE h)
{
	unsigned long n = __atomic_load_n(&numbering, __ATOMIC_ACQUIRE);

	if (n == 0 || h == CK_INVALID_HANDLE)
		return h;
	if (h >= HANDLE_STRIDE) {
		/* Its numbering could not be told: a test must not go on with it. */
		fprintf(stderr, "fault-pkcs11: renumber: the real module's handle %lu is too large\n",
		    (unsigned long)h);
		abort();
	}
	return h + n * HANDLE_STRIDE;
}

/* -1 when h is not a handle of the current numbering; else *h the real one. */
static int
h_in(CK_OBJECT_HANDLE *h)
{
	unsigned long n = __atomic_load_n(&numbering, __ATOMIC_ACQUIRE);

	if (n == 0)
		return 0;
	if (*h / HANDLE_STRIDE != n)
		return -1;
	*h %= HANDLE_STRIDE;
	return 0;
}

static CK_RV
fault_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR n)
{
	struct faults f;

	card_wait();
	current_faults(&f);
	trace("GetSlotList present=", present);
	if (f.hang_slots)
		hang();
	if (f.other_delay_ms > 0)
		sleep_ms(f.other_delay_ms);
	return real->C_GetSlotList(present, list, n);
}

static CK_RV
fault_FindObjects(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR h, CK_ULONG max, CK_ULONG_PTR n)
{
	struct faults f;
	CK_RV rv;

	card_wait();
	current_faults(&f);
	if (f.hang_find)
		hang();
	if (f.other_delay_ms > 0)
		sleep_ms(f.other_delay_ms);
	rv = real->C_FindObjects(s, h, max, n);
	for (CK_ULONG i = 0; rv == CKR_OK && h != NULL && n != NULL && i < *n; i++)
		h[i] = h_out(h[i]);
	return rv;
}

static CK_RV
fault_GetAttributeValue(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR a, CK_ULONG n)
{
	other_delay();
	return h_in(&o) ? CKR_OBJECT_HANDLE_INVALID : real->C_GetAttributeValue(s, o, a, n);
}

static CK_RV
fault_SetAttributeValue(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR a, CK_ULONG n)
{
	return h_in(&o) ? CKR_OBJECT_HANDLE_INVALID : real->C_SetAttributeValue(s, o, a, n);
}

static CK_RV
fault_GetObjectSize(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ULONG_PTR size)
{
	return h_in(&o) ? CKR_OBJECT_HANDLE_INVALID : real->C_GetObjectSize(s, o, size);
}

static CK_RV
fault_DestroyObject(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o)
{
	return h_in(&o) ? CKR_OBJECT_HANDLE_INVALID : real->C_DestroyObject(s, o);
}

static CK_RV
fault_CopyObject(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR a, CK_ULONG n,
    CK_OBJECT_HANDLE_PTR copy)
{
	CK_RV rv;

	if (h_in(&o))
		return CKR_OBJECT_HANDLE_INVALID;
	if ((rv = real->C_CopyObject(s, o, a, n, copy)) == CKR_OK)
		*copy = h_out(*copy);
	return rv;
}

static CK_RV
fault_CreateObject(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR a, CK_ULONG n, CK_OBJECT_HANDLE_PTR o)
{
	CK_RV rv = real->C_CreateObject(s, a, n, o);

	if (rv == CKR_OK)
		*o = h_out(*o);
	return rv;
}

static CK_RV
fault_GenerateKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR a, CK_ULONG n,
    CK_OBJECT_HANDLE_PTR key)
{
	CK_RV rv = real->C_GenerateKey(s, m, a, n, key);

	if (rv == CKR_OK)
		*key = h_out(*key);
	return rv;
}

static CK_RV
fault_GenerateKeyPair(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pub, CK_ULONG npub,
    CK_ATTRIBUTE_PTR priv, CK_ULONG npriv, CK_OBJECT_HANDLE_PTR hpub, CK_OBJECT_HANDLE_PTR hpriv)
{
	struct faults f;
	CK_RV rv;

	current_faults(&f);
	trace("GenerateKeyPair ", 0);
	if (f.keygen_time_ms > 0) {
		pthread_mutex_lock(&card_lock);
		sleep_ms(f.keygen_time_ms);
	}
	rv = real->C_GenerateKeyPair(s, m, pub, npub, priv, npriv, hpub, hpriv);
	trace("GenerateKeyPair done rv=", rv);
	if (f.keygen_time_ms > 0)
		pthread_mutex_unlock(&card_lock);
	if (rv == CKR_OK) {
		*hpub = h_out(*hpub);
		*hpriv = h_out(*hpriv);
	}
	return rv;
}

static CK_RV
fault_WrapKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key,
    CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
	if (h_in(&wrapping) || h_in(&key))
		return CKR_KEY_HANDLE_INVALID;
	return real->C_WrapKey(s, m, wrapping, key, out, outlen);
}

static CK_RV
fault_UnwrapKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE unwrapping, CK_BYTE_PTR in,
    CK_ULONG inlen, CK_ATTRIBUTE_PTR a, CK_ULONG n, CK_OBJECT_HANDLE_PTR key)
{
	CK_RV rv;

	if (h_in(&unwrapping))
		return CKR_KEY_HANDLE_INVALID;
	if ((rv = real->C_UnwrapKey(s, m, unwrapping, in, inlen, a, n, key)) == CKR_OK)
		*key = h_out(*key);
	return rv;
}

static CK_RV
fault_DeriveKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE base, CK_ATTRIBUTE_PTR a,
    CK_ULONG n, CK_OBJECT_HANDLE_PTR key)
{
	CK_RV rv;

	if (h_in(&base))
		return CKR_KEY_HANDLE_INVALID;
	if ((rv = real->C_DeriveKey(s, m, base, a, n, key)) == CKR_OK)
		*key = h_out(*key);
	return rv;
}

static CK_RV
fault_DigestKey(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key)
{
	return h_in(&key) ? CKR_KEY_HANDLE_INVALID : real->C_DigestKey(s, key);
}

/* The operations other than signing that start with a key. */
#define KEY_INIT(op) \
static CK_RV \
fault_##op(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key) \
{ \
	return h_in(&key) ? CKR_KEY_HANDLE_INVALID : real->C_##op(s, m, key); \
}
KEY_INIT(VerifyInit)
KEY_INIT(VerifyRecoverInit)
KEY_INIT(SignRecoverInit)
KEY_INIT(EncryptInit)
KEY_INIT(DecryptInit)

/* renumber-now has numbered the objects anew since a C_SignInit last went without it. */
static int renumbered_now;

static CK_RV
fault_SignInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
	struct faults f;
	CK_RV rv;

	card_wait();
	current_faults(&f);
	if (!f.renumber_now)
		__atomic_store_n(&renumbered_now, 0, __ATOMIC_RELEASE);
	else if (!__atomic_exchange_n(&renumbered_now, 1, __ATOMIC_ACQ_REL))
		trace("Renumbered ", __atomic_add_fetch(&numbering, 1, __ATOMIC_ACQ_REL));
	if (f.stale_key || h_in(&key)) {
		rv = CKR_KEY_HANDLE_INVALID;
	} else {
		if (f.other_delay_ms > 0)
			sleep_ms(f.other_delay_ms);
		rv = real->C_SignInit(s, m, key);
	}
	if (rv != CKR_OK) {
		trace("SignInit refused rv=", rv);
	} else {
		op_end(s);
		pthread_mutex_lock(&ops_lock);
		if (nops < sizeof(ops) / sizeof(ops[0])) {
			ops[nops].s = s;
			ops[nops++].since = now_ms();
		}
		pthread_mutex_unlock(&ops_lock);
		trace("SignInit ", s);
	}
	return rv;
}

static CK_RV
fault_CloseSession(CK_SESSION_HANDLE s)
{
	op_end(s);
	return real->C_CloseSession(s);
}

static CK_RV
fault_Logout(CK_SESSION_HANDLE s)
{
	struct faults f;
	size_t n;
	CK_RV rv;

	pthread_mutex_lock(&ops_lock);
	n = nops;
	pthread_mutex_unlock(&ops_lock);
	trace("Logout ops=", n);
	card_wait();
	current_faults(&f);
	if (f.other_delay_ms > 0)
		sleep_ms(f.other_delay_ms);
	if ((rv = real->C_Logout(s)) == CKR_OK &&
	    (f.renumber || __atomic_load_n(&numbering, __ATOMIC_ACQUIRE) > 0))
		trace("Renumbered ", __atomic_add_fetch(&numbering, 1, __ATOMIC_ACQ_REL));
	return rv;
}

/* End the real module's signing operation after an injected failure. */
static void
end_sign(CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len)
{
	CK_ULONG n = 0;
	CK_BYTE_PTR buf;

	if (real->C_Sign(s, data, len, NULL, &n) != CKR_OK || n == 0)
		return;
	if ((buf = malloc(n)) == NULL)
		return;
	real->C_Sign(s, data, len, buf, &n);
	free(buf);
}

static CK_RV
fault_Sign(CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
    CK_ULONG_PTR siglen)
{
	struct faults f;
	CK_RV rv;

	static long nsign;

	card_wait();
	current_faults(&f);
	if (f.sign_delay_ms > 0)
		sleep_ms(f.sign_delay_ms);
	if (f.sign_time_ms > 0 && sig != NULL)
		sleep_ms(f.sign_time_ms);
	if (sig != NULL && (f.crash_sign ||
	    (f.crash_sign_at > 0 && __atomic_add_fetch(&nsign, 1, __ATOMIC_ACQ_REL) == f.crash_sign_at)))
		crash();
	if (f.hang_sign)
		hang();
	if (sig == NULL && f.sign_fail == 0)	/* a length query: the operation goes on */
		return real->C_Sign(s, data, len, sig, siglen);
	op_end(s);
	trace("Sign ", s);
	if (f.sign_fail != 0) {
		end_sign(s, data, len);
		return f.sign_fail;
	}
	rv = real->C_Sign(s, data, len, sig, siglen);
	if (rv == CKR_OK && f.sign_bad && *siglen > 0)
		sig[*siglen / 2] ^= 0x01;
	return rv;
}

/* The only export (the build hides everything else). */
__attribute__((visibility("default"))) CK_RV
C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	const char *target = getenv("SCAGENT_FAULT_TARGET");
	CK_C_GetFunctionList getfl;
	struct faults f;
	void *dl;
	CK_RV rv;

	if (list == NULL)
		return CKR_ARGUMENTS_BAD;
	if (getenv("SCAGENT_FAULT_FILE") == NULL && parse_faults(getenv("SCAGENT_FAULT"), &f) < 0)
		return CKR_GENERAL_ERROR;
	if (real == NULL) {
		if (target == NULL || *target == '\0')
			target = DEFAULT_TARGET;
		if ((dl = dlopen(target, RTLD_NOW | RTLD_LOCAL)) == NULL) {
			fprintf(stderr, "fault-pkcs11: cannot load %s: %s\n", target, dlerror());
			return CKR_GENERAL_ERROR;
		}
		if ((getfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList")) == NULL ||
		    (rv = getfl(&real)) != CKR_OK || real == NULL) {
			fprintf(stderr, "fault-pkcs11: %s is not a PKCS#11 module\n", target);
			real = NULL;
			dlclose(dl);
			return CKR_GENERAL_ERROR;
		}
		/* Everything forwarded; only the faultable entries replaced. */
		wrapped = *real;
		wrapped.C_GetFunctionList = C_GetFunctionList;
		wrapped.C_Initialize = fault_Initialize;
		wrapped.C_Login = fault_Login;
		wrapped.C_SetPIN = fault_SetPIN;
		wrapped.C_InitPIN = fault_InitPIN;
		wrapped.C_GetTokenInfo = fault_GetTokenInfo;
		wrapped.C_GetSlotList = fault_GetSlotList;
		wrapped.C_GetSlotInfo = fault_GetSlotInfo;
		wrapped.C_OpenSession = fault_OpenSession;
		wrapped.C_GetSessionInfo = fault_GetSessionInfo;
		wrapped.C_FindObjectsInit = fault_FindObjectsInit;
		wrapped.C_FindObjectsFinal = fault_FindObjectsFinal;
		wrapped.C_Sign = fault_Sign;
		wrapped.C_SignInit = fault_SignInit;
		wrapped.C_CloseSession = fault_CloseSession;
		wrapped.C_Logout = fault_Logout;
		wrapped.C_FindObjects = fault_FindObjects;
		wrapped.C_GetAttributeValue = fault_GetAttributeValue;
		wrapped.C_SetAttributeValue = fault_SetAttributeValue;
		wrapped.C_GetObjectSize = fault_GetObjectSize;
		wrapped.C_DestroyObject = fault_DestroyObject;
		wrapped.C_CopyObject = fault_CopyObject;
		wrapped.C_CreateObject = fault_CreateObject;
		wrapped.C_GenerateKey = fault_GenerateKey;
		wrapped.C_GenerateKeyPair = fault_GenerateKeyPair;
		wrapped.C_WrapKey = fault_WrapKey;
		wrapped.C_UnwrapKey = fault_UnwrapKey;
		wrapped.C_DeriveKey = fault_DeriveKey;
		wrapped.C_DigestKey = fault_DigestKey;
		wrapped.C_VerifyInit = fault_VerifyInit;
		wrapped.C_VerifyRecoverInit = fault_VerifyRecoverInit;
		wrapped.C_SignRecoverInit = fault_SignRecoverInit;
		wrapped.C_EncryptInit = fault_EncryptInit;
		wrapped.C_DecryptInit = fault_DecryptInit;
	}
	*list = &wrapped;
	return CKR_OK;
}
