/*
 * Edge cases of scagent-pkcs11.so through its function list, against a real
 * agent serving the SoftHSM demo card (tests/pkcs11/module-edges.sh sets it
 * up): return codes before initialisation, initialisation arguments, an
 * unreachable agent, session handles, C_FindObjects templates,
 * C_GetAttributeValue rules, C_Sign size queries, multi-part signing,
 * mechanism checks, login state, slot events, threads and fork.
 *
 * Environment: P11_MODULE (the .so), SCAGENT_SOCKET, P11_ALICE_DER (alice's
 * certificate, DER), SOFTHSM2_CONF (for the slot event test), P11_PIN.
 */
#include "config.h"
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST_PTR f;
static void *dl;
static CK_SLOT_ID demo;
static const char *pin;

static void
load_module(void)
{
	CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
	const char *path = getenv("P11_MODULE");

	if (path == NULL || (dl = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		fprintf(stderr, "cannot load P11_MODULE=%s: %s\n", path ? path : "(unset)", dlerror());
		exit(99);
	}
	*(void **)&get = dlsym(dl, "C_GetFunctionList");
	if (get == NULL || get(&f) != CKR_OK) {
		fprintf(stderr, "no C_GetFunctionList\n");
		exit(99);
	}
}

static CK_SLOT_ID
find_slot(const char *label)
{
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16;
	CK_TOKEN_INFO ti;
	char lbl[33];

	assert_int_equal(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	for (CK_ULONG i = 0; i < n; i++) {
		assert_int_equal(f->C_GetTokenInfo(slots[i], &ti), CKR_OK);
		memcpy(lbl, ti.label, 32);
		lbl[32] = '\0';
		for (int k = 31; k >= 0 && lbl[k] == ' '; k--)
			lbl[k] = '\0';
		if (strcmp(lbl, label) == 0)
			return slots[i];
	}
	fail_msg("no token %s", label);
	return 0;
}

static CK_SESSION_HANDLE
open_session(void)
{
	CK_SESSION_HANDLE s;

	assert_int_equal(f->C_OpenSession(demo, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
	return s;
}

static CK_ULONG
find(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *first)
{
	CK_OBJECT_HANDLE h[64];
	CK_ULONG cnt = 0;

	assert_int_equal(f->C_FindObjectsInit(s, t, n), CKR_OK);
	assert_int_equal(f->C_FindObjects(s, h, 64, &cnt), CKR_OK);
	assert_int_equal(f->C_FindObjectsFinal(s), CKR_OK);
	if (first != NULL)
		*first = cnt ? h[0] : CK_INVALID_HANDLE;
	return cnt;
}

static CK_OBJECT_HANDLE
object(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char *label)
{
	CK_ATTRIBUTE t[2] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};
	CK_OBJECT_HANDLE h;

	assert_int_equal(find(s, t, 2, &h), 1);
	return h;
}

/* ------------------------------------------------------------------ */

static void
test_not_initialized(void **state)
{
	CK_ULONG n = 0;
	CK_SESSION_HANDLE s;
	CK_INFO info;

	assert_int_equal(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
	assert_int_equal(f->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
	assert_int_equal(f->C_OpenSession(1, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_CRYPTOKI_NOT_INITIALIZED);
	assert_int_equal(f->C_CloseSession(1), CKR_CRYPTOKI_NOT_INITIALIZED);
	assert_int_equal(f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
	assert_int_equal(f->C_Encrypt(1, NULL, 0, NULL, NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
}

static CK_RV dummy_create(CK_VOID_PTR_PTR m) { return CKR_OK; }
static CK_RV dummy_mutex(CK_VOID_PTR m) { return CKR_OK; }

static void
test_initialize_args(void **state)
{
	CK_C_INITIALIZE_ARGS a;

	memset(&a, 0, sizeof(a));
	a.CreateMutex = dummy_create;
	assert_int_equal(f->C_Initialize(&a), CKR_ARGUMENTS_BAD);
	a.DestroyMutex = dummy_mutex;
	a.LockMutex = dummy_mutex;
	a.UnlockMutex = dummy_mutex;
	assert_int_equal(f->C_Initialize(&a), CKR_CANT_LOCK);
	memset(&a, 0, sizeof(a));
	a.pReserved = &a;
	assert_int_equal(f->C_Initialize(&a), CKR_ARGUMENTS_BAD);
	memset(&a, 0, sizeof(a));
	a.flags = CKF_OS_LOCKING_OK;
	assert_int_equal(f->C_Initialize(&a), CKR_OK);
	assert_int_equal(f->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
	assert_int_equal(f->C_Finalize(&a), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	assert_int_equal(f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
}

static void
test_agent_unreachable(void **state)
{
	char *saved = strdup(getenv("SCAGENT_SOCKET"));
	CK_ULONG n = 99;
	CK_SLOT_ID slot = 0;
	CK_INFO info;

	setenv("SCAGENT_SOCKET", "/nonexistent/scagent/agent.sock", 1);
	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	assert_int_equal(f->C_GetInfo(&info), CKR_OK);
	assert_int_equal(f->C_GetSlotList(CK_TRUE, NULL, &n), CKR_OK);
	assert_int_equal(n, 0);
	n = 99;
	assert_int_equal(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
	assert_int_equal(n, 0);
	assert_int_equal(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_NO_EVENT);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	setenv("SCAGENT_SOCKET", saved, 1);
	free(saved);
}

/* The tests below run initialised, with demo found, logged out at first. */
static int
setup_init(void **state)
{
	if (f->C_Initialize(NULL) != CKR_OK)
		return -1;
	demo = find_slot("demo");
	return 0;
}

static int
teardown_fini(void **state)
{
	return f->C_Finalize(NULL) == CKR_OK ? 0 : -1;
}

static void
test_slots_and_sessions(void **state)
{
	CK_SLOT_ID slots[16];
	CK_ULONG n = 0, small = 1;
	CK_SESSION_HANDLE s;
	CK_SESSION_INFO si;
	CK_OBJECT_HANDLE h;
	CK_ULONG cnt;
	CK_SLOT_INFO sli;

	assert_int_equal(f->C_GetSlotList(CK_TRUE, NULL, NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_GetSlotList(CK_TRUE, NULL, &n), CKR_OK);
	assert_int_equal(n, 2);	/* demo and negatives */
	assert_int_equal(f->C_GetSlotList(CK_TRUE, slots, &small), CKR_BUFFER_TOO_SMALL);
	assert_int_equal(small, 2);
	assert_int_equal(f->C_GetSlotInfo(demo, &sli), CKR_OK);
	assert_true(sli.flags & CKF_TOKEN_PRESENT);
	assert_int_equal(f->C_GetSlotInfo(4242, &sli), CKR_SLOT_ID_INVALID);
	assert_int_equal(f->C_OpenSession(4242, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_SLOT_ID_INVALID);
	assert_int_equal(f->C_OpenSession(demo, 0, NULL, NULL, &s), CKR_SESSION_PARALLEL_NOT_SUPPORTED);
	assert_int_equal(f->C_OpenSession(demo, CKF_SERIAL_SESSION, NULL, NULL, NULL), CKR_ARGUMENTS_BAD);

	/* Handles that are not sessions. */
	assert_int_equal(f->C_CloseSession(4242), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(f->C_GetSessionInfo(4242, &si), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(f->C_FindObjectsInit(4242, NULL, 0), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(f->C_Sign(4242, NULL, 0, NULL, &cnt), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(f->C_Login(4242, CKU_USER, (CK_UTF8CHAR_PTR)"x", 1), CKR_SESSION_HANDLE_INVALID);

	s = open_session();
	assert_int_equal(f->C_GetSessionInfo(s, &si), CKR_OK);
	assert_int_equal(si.slotID, demo);
	assert_int_equal(si.state, CKS_RO_PUBLIC_SESSION);
	assert_int_equal(f->C_GetSessionInfo(s, NULL), CKR_ARGUMENTS_BAD);
	/* Operations not started. */
	assert_int_equal(f->C_FindObjects(s, &h, 1, &cnt), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(f->C_FindObjectsFinal(s), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(f->C_Sign(s, (CK_BYTE_PTR)"x", 1, NULL, &cnt), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(f->C_SignUpdate(s, (CK_BYTE_PTR)"x", 1), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(f->C_SignFinal(s, NULL, &cnt), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(f->C_Verify(s, (CK_BYTE_PTR)"x", 1, (CK_BYTE_PTR)"y", 1), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(f->C_VerifyUpdate(s, (CK_BYTE_PTR)"x", 1), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(f->C_VerifyFinal(s, (CK_BYTE_PTR)"y", 1), CKR_OPERATION_NOT_INITIALIZED);
	/* A per-signature PIN needs a signature being made with a key that asks for one. */
	assert_int_equal(f->C_Login(s, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)"x", 1),
	    CKR_OPERATION_NOT_INITIALIZED);
	/* Not offered. */
	assert_int_equal(f->C_DigestInit(s, NULL), CKR_FUNCTION_NOT_SUPPORTED);
	assert_int_equal(f->C_GenerateRandom(s, (CK_BYTE_PTR)&cnt, 1), CKR_RANDOM_NO_RNG);
	assert_int_equal(f->C_Logout(s), CKR_USER_NOT_LOGGED_IN);
	assert_int_equal(f->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)"x", 1), CKR_USER_TYPE_INVALID);
	assert_int_equal(f->C_CloseSession(s), CKR_OK);
	assert_int_equal(f->C_CloseSession(s), CKR_SESSION_HANDLE_INVALID);
	/* C_CloseAllSessions closes them all. */
	s = open_session();
	assert_int_equal(f->C_CloseAllSessions(demo), CKR_OK);
	assert_int_equal(f->C_GetSessionInfo(s, &si), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(f->C_CloseAllSessions(4242), CKR_SLOT_ID_INVALID);
}

static void
test_find_templates(void **state)
{
	CK_SESSION_HANDLE s = open_session();
	CK_OBJECT_CLASS cert = CKO_CERTIFICATE, pub = CKO_PUBLIC_KEY, priv = CKO_PRIVATE_KEY;
	CK_CERTIFICATE_TYPE x509 = CKC_X_509;
	CK_BBOOL yes = CK_TRUE;
	CK_BYTE id1[] = { 0x01 };
	CK_OBJECT_HANDLE h[64];
	CK_ULONG cnt;
	CK_ATTRIBUTE t[3];

	/* Empty template: every visible object (4 certificates, 3 public keys). */
	assert_int_equal(find(s, NULL, 0, NULL), 7);
	t[0] = (CK_ATTRIBUTE){ CKA_CLASS, &cert, sizeof(cert) };
	assert_int_equal(find(s, t, 1, NULL), 4);
	t[1] = (CK_ATTRIBUTE){ CKA_CERTIFICATE_TYPE, &x509, sizeof(x509) };
	assert_int_equal(find(s, t, 2, NULL), 4);
	t[1] = (CK_ATTRIBUTE){ CKA_LABEL, "alice", 5 };
	assert_int_equal(find(s, t, 2, NULL), 1);
	/* A label is the whole value, not a prefix. */
	t[1] = (CK_ATTRIBUTE){ CKA_LABEL, "alic", 4 };
	assert_int_equal(find(s, t, 2, NULL), 0);
	/* By ID: certificate and public key, but no private key before login. */
	t[0] = (CK_ATTRIBUTE){ CKA_ID, id1, sizeof(id1) };
	assert_int_equal(find(s, t, 1, NULL), 2);
	t[1] = (CK_ATTRIBUTE){ CKA_CLASS, &pub, sizeof(pub) };
	assert_int_equal(find(s, t, 2, NULL), 1);
	t[1] = (CK_ATTRIBUTE){ CKA_CLASS, &priv, sizeof(priv) };
	assert_int_equal(find(s, t, 2, NULL), 0);
	/* An attribute no object has, or of an unknown type: no match. */
	t[0] = (CK_ATTRIBUTE){ CKA_CLASS, &cert, sizeof(cert) };
	t[1] = (CK_ATTRIBUTE){ CKA_VENDOR_DEFINED + 77, &yes, sizeof(yes) };
	assert_int_equal(find(s, t, 2, NULL), 0);
	t[1] = (CK_ATTRIBUTE){ CKA_MODULUS, &yes, sizeof(yes) };
	assert_int_equal(find(s, t, 2, NULL), 0);
	/* The right value with the wrong length does not match. */
	t[0] = (CK_ATTRIBUTE){ CKA_CLASS, &cert, sizeof(cert) - 1 };
	assert_int_equal(find(s, t, 1, NULL), 0);
	/* CKA_TOKEN true is every object. */
	t[0] = (CK_ATTRIBUTE){ CKA_TOKEN, &yes, sizeof(yes) };
	assert_int_equal(find(s, t, 1, NULL), 7);

	/* Paging through results, and the rules around an active search. */
	assert_int_equal(f->C_FindObjectsInit(s, NULL, 1), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_FindObjectsInit(s, NULL, 0), CKR_OK);
	assert_int_equal(f->C_FindObjectsInit(s, NULL, 0), CKR_OPERATION_ACTIVE);
	assert_int_equal(f->C_FindObjects(s, NULL, 1, &cnt), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_FindObjects(s, h, 3, &cnt), CKR_OK);
	assert_int_equal(cnt, 3);
	assert_int_equal(f->C_FindObjects(s, h, 64, &cnt), CKR_OK);
	assert_int_equal(cnt, 4);
	assert_int_equal(f->C_FindObjects(s, h, 64, &cnt), CKR_OK);
	assert_int_equal(cnt, 0);
	assert_int_equal(f->C_FindObjectsFinal(s), CKR_OK);
	f->C_CloseSession(s);
}

static unsigned char *
read_file(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	unsigned char *b = malloc(65536);

	assert_non_null(fp);
	*len = fread(b, 1, 65536, fp);
	fclose(fp);
	return b;
}

static void
test_attributes(void **state)
{
	CK_SESSION_HANDLE s = open_session();
	CK_OBJECT_HANDLE c = object(s, CKO_CERTIFICATE, "alice");
	CK_OBJECT_HANDLE p = object(s, CKO_PUBLIC_KEY, "alice");
	unsigned char buf[4096], small[8];
	size_t derlen;
	unsigned char *der = read_file(getenv("P11_ALICE_DER"), &derlen);
	CK_KEY_TYPE kt = 0;
	CK_ULONG bits = 0, sz = 0;
	CK_BBOOL b;

	/* Size query, then the value: alice's certificate exactly. */
	CK_ATTRIBUTE a[1] = { { CKA_VALUE, NULL, 0 } };
	assert_int_equal(f->C_GetAttributeValue(s, c, a, 1), CKR_OK);
	assert_int_equal(a[0].ulValueLen, derlen);
	a[0].pValue = buf;
	a[0].ulValueLen = sizeof(buf);
	assert_int_equal(f->C_GetAttributeValue(s, c, a, 1), CKR_OK);
	assert_int_equal(a[0].ulValueLen, derlen);
	assert_memory_equal(buf, der, derlen);
	/* Too small: CKR_BUFFER_TOO_SMALL, length unavailable. */
	a[0].pValue = small;
	a[0].ulValueLen = sizeof(small);
	assert_int_equal(f->C_GetAttributeValue(s, c, a, 1), CKR_BUFFER_TOO_SMALL);
	assert_int_equal(a[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);

	/* Every attribute is answered; the invalid one says so, the others are filled. */
	CK_ATTRIBUTE m[3] = {
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_PRIVATE_EXPONENT, buf, sizeof(buf) },
		{ CKA_MODULUS_BITS, &bits, sizeof(bits) },
	};
	assert_int_equal(f->C_GetAttributeValue(s, p, m, 3), CKR_ATTRIBUTE_TYPE_INVALID);
	assert_int_equal(kt, CKK_RSA);
	assert_int_equal(m[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	assert_int_equal(bits, 2048);
	/* The certificate's public key is the public key object's. */
	CK_ATTRIBUTE mod = { CKA_MODULUS, buf, sizeof(buf) };
	assert_int_equal(f->C_GetAttributeValue(s, p, &mod, 1), CKR_OK);
	assert_int_equal(mod.ulValueLen, 256);
	{
		const unsigned char *q = der;
		X509 *x = d2i_X509(NULL, &q, (long)derlen);
		BIGNUM *n = NULL;
		unsigned char nb[256];
		assert_non_null(x);
		assert_true(EVP_PKEY_get_bn_param(X509_get0_pubkey(x), "n", &n));
		assert_int_equal(BN_bn2binpad(n, nb, 256), 256);
		assert_memory_equal(nb, buf, 256);
		BN_free(n);
		X509_free(x);
	}
	/* Booleans and handles. */
	CK_ATTRIBUTE bo = { CKA_PRIVATE, &b, sizeof(b) };
	assert_int_equal(f->C_GetAttributeValue(s, c, &bo, 1), CKR_OK);
	assert_int_equal(b, CK_FALSE);
	assert_int_equal(f->C_GetAttributeValue(s, 987654, &bo, 1), CKR_OBJECT_HANDLE_INVALID);
	assert_int_equal(f->C_GetAttributeValue(s, c, NULL, 1), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_GetObjectSize(s, c, &sz), CKR_OK);
	assert_int_equal(sz, derlen);
	free(der);
	f->C_CloseSession(s);
}

static void
test_login(void **state)
{
	CK_SESSION_HANDLE s = open_session(), s2;
	CK_SESSION_INFO si;
	CK_OBJECT_CLASS priv = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t = { CKA_CLASS, &priv, sizeof(priv) };

	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)"000000", 6), CKR_PIN_INCORRECT);
	assert_int_equal(f->C_GetSessionInfo(s, &si), CKR_OK);
	assert_int_equal(si.state, CKS_RO_PUBLIC_SESSION);
	assert_int_equal(f->C_Login(s, CKU_USER, NULL, 3), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_OK);
	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_USER_ALREADY_LOGGED_IN);
	/* All sessions of the token are user sessions now, new ones too. */
	assert_int_equal(f->C_GetSessionInfo(s, &si), CKR_OK);
	assert_int_equal(si.state, CKS_RO_USER_FUNCTIONS);
	assert_int_equal(f->C_OpenSession(demo, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s2), CKR_OK);
	assert_int_equal(f->C_GetSessionInfo(s2, &si), CKR_OK);
	assert_int_equal(si.state, CKS_RW_USER_FUNCTIONS);
	assert_int_equal(find(s2, &t, 1, NULL), 3);	/* alice, bob, carol */
	f->C_CloseSession(s2);
	f->C_CloseSession(s);
}

static void
test_private_key_attributes(void **state)
{
	CK_SESSION_HANDLE s = open_session();
	CK_OBJECT_HANDLE k = object(s, CKO_PRIVATE_KEY, "alice");
	CK_OBJECT_HANDLE e = object(s, CKO_PRIVATE_KEY, "bob");
	CK_BBOOL sens = 0, extr = 1, asens = 0, nextr = 0, sign = 0, aauth = 1, priv = 0;
	unsigned char buf[512];
	CK_ATTRIBUTE a[7] = {
		{ CKA_SENSITIVE, &sens, 1 }, { CKA_EXTRACTABLE, &extr, 1 },
		{ CKA_ALWAYS_SENSITIVE, &asens, 1 }, { CKA_NEVER_EXTRACTABLE, &nextr, 1 },
		{ CKA_SIGN, &sign, 1 }, { CKA_ALWAYS_AUTHENTICATE, &aauth, 1 },
		{ CKA_PRIVATE, &priv, 1 },
	};
	assert_int_equal(f->C_GetAttributeValue(s, k, a, 7), CKR_OK);
	assert_true(sens && !extr && asens && nextr && sign && !aauth && priv);
	/* Secret parts: sensitive, their length unavailable. */
	CK_ATTRIBUTE d[2] = { { CKA_PRIVATE_EXPONENT, buf, sizeof(buf) }, { CKA_PRIME_1, NULL, 0 } };
	assert_int_equal(f->C_GetAttributeValue(s, k, d, 2), CKR_ATTRIBUTE_SENSITIVE);
	assert_int_equal(d[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	assert_int_equal(d[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	CK_ATTRIBUTE v = { CKA_VALUE, buf, sizeof(buf) };
	assert_int_equal(f->C_GetAttributeValue(s, e, &v, 1), CKR_ATTRIBUTE_SENSITIVE);
	assert_int_equal(v.ulValueLen, CK_UNAVAILABLE_INFORMATION);
	/* EC parameters of P-256 on bob's key. */
	static const unsigned char p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
	CK_ATTRIBUTE ep = { CKA_EC_PARAMS, buf, sizeof(buf) };
	assert_int_equal(f->C_GetAttributeValue(s, e, &ep, 1), CKR_OK);
	assert_int_equal(ep.ulValueLen, sizeof(p256));
	assert_memory_equal(buf, p256, sizeof(p256));
	f->C_CloseSession(s);
}

static EVP_PKEY *
cert_key(CK_SESSION_HANDLE s, const char *label)
{
	CK_OBJECT_HANDLE c = object(s, CKO_CERTIFICATE, label);
	unsigned char buf[4096];
	const unsigned char *q = buf;
	CK_ATTRIBUTE a = { CKA_VALUE, buf, sizeof(buf) };
	X509 *x;
	EVP_PKEY *k;

	assert_int_equal(f->C_GetAttributeValue(s, c, &a, 1), CKR_OK);
	assert_non_null(x = d2i_X509(NULL, &q, (long)a.ulValueLen));
	k = X509_get_pubkey(x);
	X509_free(x);
	return k;
}

static int
verify(EVP_PKEY *k, const EVP_MD *md, int pss, const unsigned char *data, size_t len,
    const unsigned char *sig, size_t siglen)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pc = NULL;
	int ok;

	EVP_DigestVerifyInit(c, &pc, md, NULL, k);
	if (pss) {
		EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING);
		EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST);
	}
	ok = EVP_DigestVerify(c, sig, siglen, data, len) == 1;
	EVP_MD_CTX_free(c);
	return ok;
}

static const unsigned char msg[] = "a message signed through scagent-pkcs11.so";

static void
test_sign_size_rules(void **state)
{
	CK_SESSION_HANDLE s = open_session();
	CK_OBJECT_HANDLE k = object(s, CKO_PRIVATE_KEY, "alice");
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	unsigned char sig[512];
	CK_ULONG len = 0;
	EVP_PKEY *pk = cert_key(s, "alice");

	assert_int_equal(f->C_SignInit(s, &m, k), CKR_OK);
	assert_int_equal(f->C_SignInit(s, &m, k), CKR_OPERATION_ACTIVE);
	/* Size query: the length, the operation stays. */
	assert_int_equal(f->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), NULL, &len), CKR_OK);
	assert_int_equal(len, 256);
	/* Too small: the length, the operation stays. */
	len = 100;
	assert_int_equal(f->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), sig, &len), CKR_BUFFER_TOO_SMALL);
	assert_int_equal(len, 256);
	len = sizeof(sig);
	assert_int_equal(f->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), sig, &len), CKR_OK);
	assert_int_equal(len, 256);
	assert_true(verify(pk, EVP_sha256(), 0, msg, sizeof(msg), sig, len));
	/* A signature by another message does not verify: the check is real. */
	assert_false(verify(pk, EVP_sha256(), 0, msg, sizeof(msg) - 1, sig, len));
	/* The operation ended. */
	assert_int_equal(f->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), sig, &len), CKR_OPERATION_NOT_INITIALIZED);
	/* An error ends it too. */
	assert_int_equal(f->C_SignInit(s, &m, k), CKR_OK);
	assert_int_equal(f->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), sig, NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_SignFinal(s, NULL, &len), CKR_OPERATION_NOT_INITIALIZED);
	EVP_PKEY_free(pk);
	f->C_CloseSession(s);
}

static void
test_sign_multipart_and_raw(void **state)
{
	CK_SESSION_HANDLE s = open_session();
	CK_OBJECT_HANDLE ka = object(s, CKO_PRIVATE_KEY, "alice");
	CK_OBJECT_HANDLE kb = object(s, CKO_PRIVATE_KEY, "bob");
	CK_OBJECT_HANDLE kc = object(s, CKO_CERTIFICATE, "alice");
	CK_OBJECT_HANDLE kp = object(s, CKO_PUBLIC_KEY, "alice");
	EVP_PKEY *pa = cert_key(s, "alice"), *pb = cert_key(s, "bob");
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	unsigned char sig[512], h[32], der[128], *dp = der;
	CK_ULONG len = sizeof(sig);
	unsigned int hl;
	ECDSA_SIG *es;
	int derlen;

	/* ECDSA-SHA256 in three parts; r||s of 64 bytes. */
	assert_int_equal(f->C_SignInit(s, &m, kb), CKR_OK);
	assert_int_equal(f->C_SignUpdate(s, (CK_BYTE_PTR)msg, 10), CKR_OK);
	assert_int_equal(f->C_SignUpdate(s, (CK_BYTE_PTR)msg + 10, sizeof(msg) - 10), CKR_OK);
	len = 0;
	assert_int_equal(f->C_SignFinal(s, NULL, &len), CKR_OK);
	assert_int_equal(len, 64);
	len = sizeof(sig);
	assert_int_equal(f->C_SignFinal(s, sig, &len), CKR_OK);
	assert_int_equal(len, 64);
	es = ECDSA_SIG_new();
	ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
	derlen = i2d_ECDSA_SIG(es, &dp);
	ECDSA_SIG_free(es);
	assert_true(verify(pb, EVP_sha256(), 0, msg, sizeof(msg), der, (size_t)derlen));

	/* RSA-PSS over a hash, with the parameters the agent makes. */
	EVP_Digest(msg, sizeof(msg), h, &hl, EVP_sha256(), NULL);
	CK_RSA_PKCS_PSS_PARAMS pss = { CKM_SHA256, CKG_MGF1_SHA256, 32 };
	CK_MECHANISM mp = { CKM_RSA_PKCS_PSS, &pss, sizeof(pss) };
	assert_int_equal(f->C_SignInit(s, &mp, ka), CKR_OK);
	len = sizeof(sig);
	assert_int_equal(f->C_Sign(s, h, 32, sig, &len), CKR_OK);
	assert_true(verify(pa, EVP_sha256(), 1, msg, sizeof(msg), sig, len));
	/* Parameters it cannot make. */
	pss.sLen = 20;
	assert_int_equal(f->C_SignInit(s, &mp, ka), CKR_MECHANISM_PARAM_INVALID);
	pss.sLen = 32;
	pss.mgf = CKG_MGF1_SHA1;
	assert_int_equal(f->C_SignInit(s, &mp, ka), CKR_MECHANISM_PARAM_INVALID);
	mp.pParameter = NULL;
	mp.ulParameterLen = 0;
	assert_int_equal(f->C_SignInit(s, &mp, ka), CKR_MECHANISM_PARAM_INVALID);

	/* CKM_RSA_PKCS wants a DigestInfo of SHA-256/384/512. */
	static const unsigned char sha1_di[] = { 0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e,
		0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
		14, 15, 16, 17, 18, 19, 20 };
	CK_MECHANISM mr = { CKM_RSA_PKCS, NULL, 0 };
	assert_int_equal(f->C_SignInit(s, &mr, ka), CKR_OK);
	len = sizeof(sig);
	assert_int_equal(f->C_Sign(s, (CK_BYTE_PTR)sha1_di, sizeof(sha1_di), sig, &len), CKR_DATA_INVALID);
	assert_int_equal(f->C_SignInit(s, &mr, ka), CKR_OK);
	len = sizeof(sig);
	assert_int_equal(f->C_Sign(s, (CK_BYTE_PTR)"plain text", 10, sig, &len), CKR_DATA_INVALID);

	/* CKM_ECDSA over a 20-byte (SHA-1) hash: zero-padded, still valid. */
	unsigned char h1[20];
	CK_MECHANISM me = { CKM_ECDSA, NULL, 0 };
	EVP_Digest(msg, sizeof(msg), h1, &hl, EVP_sha1(), NULL);
	assert_int_equal(f->C_SignInit(s, &me, kb), CKR_OK);
	len = sizeof(sig);
	assert_int_equal(f->C_Sign(s, h1, 20, sig, &len), CKR_OK);
	assert_int_equal(len, 64);
	es = ECDSA_SIG_new();
	ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
	dp = der;
	derlen = i2d_ECDSA_SIG(es, &dp);
	ECDSA_SIG_free(es);
	assert_true(verify(pb, EVP_sha1(), 0, msg, sizeof(msg), der, (size_t)derlen));

	/* Wrong keys and mechanisms. */
	assert_int_equal(f->C_SignInit(s, &me, ka), CKR_KEY_TYPE_INCONSISTENT);
	assert_int_equal(f->C_SignInit(s, &mr, kc), CKR_KEY_HANDLE_INVALID);
	assert_int_equal(f->C_SignInit(s, &mr, kp), CKR_KEY_FUNCTION_NOT_PERMITTED);
	assert_int_equal(f->C_SignInit(s, &mr, 987654), CKR_KEY_HANDLE_INVALID);
	CK_MECHANISM md5 = { CKM_MD5_RSA_PKCS, NULL, 0 };
	assert_int_equal(f->C_SignInit(s, &md5, ka), CKR_MECHANISM_INVALID);
	assert_int_equal(f->C_SignInit(s, NULL, ka), CKR_ARGUMENTS_BAD);
	EVP_PKEY_free(pa);
	EVP_PKEY_free(pb);
	f->C_CloseSession(s);
}

static void
test_mechanisms(void **state)
{
	CK_MECHANISM_TYPE ml[64];
	CK_ULONG n = 0, one = 1;
	CK_MECHANISM_INFO mi;
	int pss = 0, ecdsa = 0;

	assert_int_equal(f->C_GetMechanismList(demo, NULL, &n), CKR_OK);
	assert_int_equal(n, 12);
	assert_int_equal(f->C_GetMechanismList(demo, ml, &one), CKR_BUFFER_TOO_SMALL);
	assert_int_equal(one, 12);
	assert_int_equal(f->C_GetMechanismList(demo, ml, &n), CKR_OK);
	for (CK_ULONG i = 0; i < n; i++) {
		pss |= ml[i] == CKM_SHA256_RSA_PKCS_PSS;
		ecdsa |= ml[i] == CKM_ECDSA;
	}
	assert_true(pss && ecdsa);
	assert_int_equal(f->C_GetMechanismInfo(demo, CKM_ECDSA, &mi), CKR_OK);
	assert_true(mi.flags & CKF_SIGN);
	assert_false(mi.flags & CKF_DECRYPT);
	assert_true(mi.ulMaxKeySize >= 256);
	assert_int_equal(f->C_GetMechanismInfo(demo, CKM_AES_CBC, &mi), CKR_MECHANISM_INVALID);
	assert_int_equal(f->C_GetMechanismInfo(4242, CKM_ECDSA, &mi), CKR_SLOT_ID_INVALID);
}

struct thr {
	CK_OBJECT_HANDLE key;
	int ok;
};

static void *
signer(void *arg)
{
	struct thr *t = arg;
	CK_SESSION_HANDLE s;
	CK_MECHANISM m = { CKM_ECDSA_SHA384, NULL, 0 };
	unsigned char sig[128];

	if (f->C_OpenSession(demo, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
		return NULL;
	for (int i = 0; i < 5; i++) {
		CK_ULONG len = sizeof(sig);
		if (f->C_SignInit(s, &m, t->key) == CKR_OK &&
		    f->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), sig, &len) == CKR_OK && len == 64)
			t->ok++;
	}
	f->C_CloseSession(s);
	return NULL;
}

static void
test_threads(void **state)
{
	CK_SESSION_HANDLE s = open_session();
	struct thr t[4];
	pthread_t th[4];

	for (int i = 0; i < 4; i++) {
		t[i].key = object(s, CKO_PRIVATE_KEY, "bob");
		t[i].ok = 0;
		assert_int_equal(pthread_create(&th[i], NULL, signer, &t[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].ok, 5);
	}
	f->C_CloseSession(s);
}

static void
test_fork(void **state)
{
	CK_ULONG n = 0;
	pid_t pid;
	int st;

	assert_int_equal(f->C_GetSlotList(CK_TRUE, NULL, &n), CKR_OK);
	if ((pid = fork()) == 0) {
		/* The child talks to the agent on its own connection. */
		CK_ULONG cn = 0;
		CK_SESSION_HANDLE s;
		int ok = f->C_GetSlotList(CK_TRUE, NULL, &cn) == CKR_OK && cn == 2 &&
		    f->C_OpenSession(demo, CKF_SERIAL_SESSION, NULL, NULL, &s) == CKR_OK &&
		    find(s, NULL, 0, NULL) > 0;
		_exit(ok ? 0 : 1);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* And the parent's connection still works. */
	n = 0;
	assert_int_equal(f->C_GetSlotList(CK_TRUE, NULL, &n), CKR_OK);
	assert_int_equal(n, 2);
}

struct waiter {
	CK_RV rv;
	CK_SLOT_ID slot;
};

static void *
wait_main(void *arg)
{
	struct waiter *w = arg;

	w->rv = f->C_WaitForSlotEvent(0, &w->slot, NULL);
	return NULL;
}

static void
test_slot_events(void **state)
{
	struct waiter w = { CKR_GENERAL_ERROR, 0 };
	pthread_t th;
	CK_SLOT_ID slot = 0, seen[2];
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	CK_ULONG n = 0;

	assert_int_equal(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, NULL, NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_NO_EVENT);
	/* The agent goes away: its tokens leave their slots; a blocked wait wakes. */
	assert_int_equal(pthread_create(&th, NULL, wait_main, &w), 0);
	usleep(300 * 1000);
	assert_int_equal(system(getenv("P11_STOP_AGENT")), 0);
	pthread_join(th, NULL);
	assert_int_equal(w.rv, CKR_OK);
	seen[0] = w.slot;
	assert_int_equal(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &seen[1], NULL), CKR_OK);
	assert_true(seen[0] != seen[1]);
	assert_int_equal(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_NO_EVENT);
	assert_int_equal(f->C_GetSlotInfo(demo, &si), CKR_OK);
	assert_false(si.flags & CKF_TOKEN_PRESENT);
	assert_int_equal(f->C_GetTokenInfo(demo, &ti), CKR_TOKEN_NOT_PRESENT);
	assert_int_equal(f->C_GetSlotList(CK_TRUE, NULL, &n), CKR_OK);
	assert_int_equal(n, 0);
	assert_int_equal(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
	assert_int_equal(n, 2);
	/* It comes back: the same tokens in the same slots, one event each. */
	w.rv = CKR_GENERAL_ERROR;
	assert_int_equal(pthread_create(&th, NULL, wait_main, &w), 0);
	assert_int_equal(system(getenv("P11_START_AGENT")), 0);
	pthread_join(th, NULL);
	assert_int_equal(w.rv, CKR_OK);
	assert_true(w.slot == seen[0] || w.slot == seen[1]);
	assert_int_equal(f->C_GetTokenInfo(demo, &ti), CKR_OK);
	assert_memory_equal(ti.label, "demo ", 5);
}

static void
test_finalize_wakes_waiter(void **state)
{
	struct waiter w = { CKR_GENERAL_ERROR, 0 };
	pthread_t th;

	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	assert_int_equal(pthread_create(&th, NULL, wait_main, &w), 0);
	usleep(300 * 1000);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	pthread_join(th, NULL);
	assert_int_equal(w.rv, CKR_CRYPTOKI_NOT_INITIALIZED);
}

static void
test_logout(void **state)
{
	CK_SESSION_HANDLE s = open_session();
	CK_SESSION_INFO si;
	CK_OBJECT_CLASS priv = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t = { CKA_CLASS, &priv, sizeof(priv) };

	assert_int_equal(f->C_Logout(s), CKR_OK);
	assert_int_equal(f->C_GetSessionInfo(s, &si), CKR_OK);
	assert_int_equal(si.state, CKS_RO_PUBLIC_SESSION);
	assert_int_equal(find(s, &t, 1, NULL), 0);
	assert_int_equal(f->C_Logout(s), CKR_USER_NOT_LOGGED_IN);
	f->C_CloseSession(s);
}

int
main(void)
{
	const struct CMUnitTest before[] = {
		cmocka_unit_test(test_not_initialized),
		cmocka_unit_test(test_initialize_args),
		cmocka_unit_test(test_agent_unreachable),
		cmocka_unit_test(test_finalize_wakes_waiter),
	};
	/* In this order: the later ones need the login of test_login. */
	const struct CMUnitTest ready[] = {
		cmocka_unit_test(test_slots_and_sessions),
		cmocka_unit_test(test_mechanisms),
		cmocka_unit_test(test_find_templates),
		cmocka_unit_test(test_attributes),
		cmocka_unit_test(test_login),
		cmocka_unit_test(test_private_key_attributes),
		cmocka_unit_test(test_sign_size_rules),
		cmocka_unit_test(test_sign_multipart_and_raw),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_fork),
		cmocka_unit_test(test_logout),
		cmocka_unit_test(test_slot_events),
	};
	int r;

	if ((pin = getenv("P11_PIN")) == NULL)
		pin = "123456";
	load_module();
	r = cmocka_run_group_tests_name("before initialisation", before, NULL, NULL);
	r += cmocka_run_group_tests_name("with the agent", ready, setup_init, teardown_fini);
	dlclose(dl);
	return r == 0 ? 0 : 1;
}
