/*
 * scagent-pkcs11.so: a PKCS#11 module whose tokens are the agent's. Laid
 * out as OpenSC's module is:
 *
 *   global.c       the state `g`, C_Initialize, C_Finalize, C_GetInfo, fork,
 *                  the function list and the exported C_ names
 *   agent.c        the connection to the agent, its answers, its errors as CK_RVs
 *   listing.c      the agent's tokens become slots and objects (refresh)
 *   slot.c         slots, tokens, mechanisms, slot events
 *   session.c      sessions, login and logout
 *   objects.c      the objects made from a certificate, their attributes,
 *                  C_FindObjects and C_GetAttributeValue
 *   sign.c         the mechanisms and C_Sign*, C_Verify* (verifying is in-process)
 *   unsupported.c  every function the module does not offer
 *
 * Locks. The module's threads are the application's: any C_ function may be
 * called from any thread at once.
 *
 * g.lock guards all of the state in g: initialized, the slots and their
 * objects and mechanisms, the sessions and their operations, the certificate
 * cache, the counters of handles, the listing's time, the shared connection
 * (g.conn and each agent_conn's refs and dead) and the waiters count. Every
 * C_ function takes it; it is never held across a call to the agent (a
 * signature marks its session sign_busy and lets the lock go while the agent
 * signs). g.cond goes with it: C_Finalize waits on it until the
 * C_WaitForSlotEvent callers have left. Around fork() the atfork handlers
 * hold it, so that the child gets a consistent state.
 *
 * g.refresh_lock serialises listings: refresh() holds it across the agent
 * calls of one listing (list, then get-cert for new certificates), and takes
 * g.lock inside it, briefly. Order: g.refresh_lock before g.lock; never the
 * other way round.
 *
 * A p11_cert is immutable once built; its refs are atomic, so an object or a
 * signature in progress keeps it without a lock. Calls on one connection to
 * the agent are serialised by the client library's own lock.
 */
#ifndef SC_P11MOD_H
#define SC_P11MOD_H

#include <stddef.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <json-c/json.h>
#include <p11-kit/pkcs11.h>
#include "scagent/scagent.h"

/* ------------------------------------------------------------------ */
/* Objects (objects.c) */

/*
 * What the module derives from one certificate's DER: immutable once built,
 * shared (reference counted) by every object made from it. Cached by its
 * SHA-256 so that a re-list does not fetch it again.
 */
struct p11_cert {
	int refs;
	char sha256[65];
	unsigned char *der;
	size_t derlen;
	unsigned char *subject, *issuer, *serial, *spki;	/* DER */
	size_t subjectlen, issuerlen, seriallen, spkilen;
	CK_KEY_TYPE key_type;		/* CKK_RSA, CKK_EC, or P11_KEY_NONE */
	CK_ULONG bits;			/* RSA modulus bits, EC order bits */
	CK_ULONG siglen;		/* signature length in PKCS#11 form */
	unsigned char *modulus, *exponent;	/* RSA, big-endian */
	size_t moduluslen, exponentlen;
	unsigned char *ec_params, *ec_point;	/* EC: DER OID, DER OCTET STRING */
	size_t ec_paramslen, ec_pointlen;
	int is_ca;			/* basicConstraints CA (or a v1 self-signed root) */
};

#define P11_KEY_NONE ((CK_KEY_TYPE)-1)

/* One object of a slot. */
struct p11_object {
	CK_OBJECT_HANDLE handle;
	CK_OBJECT_CLASS cls;		/* certificate, public key or private key */
	struct p11_cert *cert;		/* referenced */
	char *label;
	unsigned char *id;
	size_t idlen;
	char *ref;			/* the agent's REF of the certificate (sign) */
	int private_obj;		/* CKA_PRIVATE */
	int always_auth;
};

/* Parse DER into a new p11_cert (refs = 1); NULL when it is not a certificate. */
struct p11_cert *p11_cert_new(const char *sha256, const unsigned char *der, size_t derlen);
void p11_cert_unref(struct p11_cert *c);
void p11_object_clear(struct p11_object *o);

/* Attribute values: one attribute at a time, into a caller's scratch space. */
struct p11_attr_val {
	const void *ptr;
	CK_ULONG len;
	union {
		CK_BBOOL b;
		CK_ULONG ul;
		CK_MECHANISM_TYPE mechs[16];
		unsigned char bytes[16];
	} scratch;
};

/*
 * The value of attribute type on o: CKR_OK with v->ptr/v->len set,
 * CKR_ATTRIBUTE_SENSITIVE, or CKR_ATTRIBUTE_TYPE_INVALID.
 */
CK_RV p11_object_attr(const struct p11_object *o, CK_ATTRIBUTE_TYPE type,
    struct p11_attr_val *v);
/* 1 when every attribute of the template is on o with exactly that value. */
int p11_object_matches(const struct p11_object *o, const CK_ATTRIBUTE *tmpl, CK_ULONG n);
/*
 * C_GetAttributeValue on o, with the standard's rules: every attribute is
 * answered; the return value is the last error met (or CKR_OK).
 */
CK_RV p11_object_get_attrs(const struct p11_object *o, CK_ATTRIBUTE *tmpl, CK_ULONG n);

/* ------------------------------------------------------------------ */
/* Signing (sign.c) */

/* The mechanisms sign.c implements (from common/alg.c), with what each needs from the token. */
struct p11_mech_spec {
	CK_MECHANISM_TYPE type;
	CK_KEY_TYPE key_type;
	CK_MECHANISM_TYPE token_mech;	/* the agent signs with this one on the token */
	int alg;			/* hashed in the module for this enum sc_alg; -1: input is the hash */
};
/* All of them, in the order C_GetMechanismList gives them; *n of them. */
const struct p11_mech_spec *p11_mech_list(size_t *n);
const struct p11_mech_spec *p11_mech_find(CK_MECHANISM_TYPE type);

/* A signature operation in progress on a session. */
struct p11_signop {
	const struct p11_mech_spec *spec;
	CK_RSA_PKCS_PSS_PARAMS pss;	/* CKM_*_PSS */
	CK_OBJECT_HANDLE key;
	struct p11_cert *cert;		/* referenced */
	char *ref;
	EVP_MD_CTX *md;			/* hashing mechanisms */
	unsigned char *buf;		/* single-part mechanisms: the input so far */
	size_t buflen;
	int multi;			/* C_SignUpdate was called */
	int always_auth;		/* the key wants a PIN for this signature */
	char *ctx_pin;			/* C_Login(CKU_CONTEXT_SPECIFIC)'s, for the agent */
};

/*
 * Check mech against the key and set up op. CKR_MECHANISM_INVALID,
 * CKR_MECHANISM_PARAM_INVALID, CKR_KEY_TYPE_INCONSISTENT as the standard
 * says.
 */
CK_RV p11_signop_init(struct p11_signop *op, const CK_MECHANISM *mech,
    const struct p11_object *key);
void p11_signop_clear(struct p11_signop *op);
CK_RV p11_signop_update(struct p11_signop *op, const unsigned char *data, size_t len);
/*
 * What to ask the agent for: the algorithm (enum sc_alg) and the digest (into dgst, *dlen).
 * Consumes nothing: can be called again after a failed size check.
 */
CK_RV p11_signop_prepare(struct p11_signop *op, int *alg,
    unsigned char *dgst, size_t *dlen);
/*
 * Turn the agent's signature into the PKCS#11 form (ECDSA: DER to r||s of
 * op->cert->siglen bytes). out must hold op->cert->siglen bytes.
 */
CK_RV p11_signop_finish(const struct p11_signop *op, const unsigned char *sig,
    size_t siglen, unsigned char *out, CK_ULONG *outlen);
/*
 * Check sig (PKCS#11 form) over what op was given with its certificate's
 * public key, in-process: CKR_OK, CKR_SIGNATURE_INVALID,
 * CKR_SIGNATURE_LEN_RANGE, or what p11_signop_prepare says of the data.
 */
CK_RV p11_signop_verify(struct p11_signop *op, const unsigned char *sig, size_t siglen);

/* ------------------------------------------------------------------ */
/* The module's state (global.c) */

struct p11_slot {
	CK_SLOT_ID id;
	char *ident;			/* module, serial and label of its token */
	int present, seen, event;
	char *label, *serial, *manufacturer, *model, *reader;
	int login_required, logged_in, count_low, final_try, locked, protected_path;
	int write_protected;
	int app_login;			/* this process called C_Login (and no logout since) */
	struct p11_object *objs;
	size_t nobjs;
	CK_MECHANISM_TYPE *mechs;
	CK_MECHANISM_INFO *minfo;
	size_t nmechs;
	int mechs_loaded;
};

struct p11_session {
	CK_SESSION_HANDLE handle;
	CK_SLOT_ID slot;
	CK_FLAGS flags;
	int finding;
	CK_OBJECT_HANDLE *found;
	size_t nfound, pos;
	int signing, sign_busy;
	struct p11_signop sign;
	int verifying;			/* C_VerifyInit done: verify holds the operation */
	struct p11_signop verify;
	struct p11_session *next;
};

struct agent_conn {
	int refs;
	int dead;
	scagent_client *c;
};

struct p11_global {
	pthread_mutex_t lock;
	pthread_mutex_t refresh_lock;
	pthread_cond_t cond;		/* C_WaitForSlotEvent callers leaving */
	int initialized;
	int forked;			/* in a child: drop inherited connections */
	struct agent_conn *conn;
	struct p11_slot **slots;
	size_t nslots;
	CK_SLOT_ID next_slot;
	CK_OBJECT_HANDLE next_handle;
	CK_SESSION_HANDLE next_session;
	struct p11_session *sessions;
	struct p11_cert **cache;
	size_t ncache;
	uint64_t last_refresh;
	int listed;
	int wake[2];			/* C_Finalize wakes C_WaitForSlotEvent */
	int waiters;
};
extern struct p11_global g;

/* rv, or CKR_CRYPTOKI_NOT_INITIALIZED outside C_Initialize..C_Finalize. */
CK_RV if_initialized(CK_RV rv);

/* ------------------------------------------------------------------ */
/* The agent (agent.c) */

/* Copy src into a blank-padded PKCS#11 text field of n bytes. */
void pad(unsigned char *dst, size_t n, const char *src);
/* o's string, boolean or array member; "", 0 or NULL when absent or of another type. */
const char *jstr(json_object *o, const char *key);
int jbool(json_object *o, const char *key);
json_object *jarr(json_object *o, const char *key);
/* The one place where an agent error becomes a CK_RV. */
CK_RV ckr_from_agent(int r);
/* A referenced connection, connecting if needed; NULL when the agent is unreachable. */
struct agent_conn *conn_get(void);
/* Done with ac; r is what the call returned (a broken connection is dropped). */
void conn_put(struct agent_conn *ac, int r);
void conn_unref_locked(struct agent_conn *ac);
/* In a child after fork(): the parent's connection is not ours to use. g.lock held. */
void drop_after_fork_locked(void);

/* ------------------------------------------------------------------ */
/* Listing (listing.c) */

/* Re-list the agent's tokens unless the last listing is recent (force: always). */
void refresh(int force);

/* ------------------------------------------------------------------ */
/* Slots (slot.c); g.lock held unless said otherwise */

struct p11_slot *slot_get(CK_SLOT_ID id);
/* Slot id, when it exists and has a token. */
CK_RV present_slot(CK_SLOT_ID id, struct p11_slot **s);
void slot_drop_mechs(struct p11_slot *s);
void slot_drop_objs(struct p11_slot *s);
void slot_free(struct p11_slot *s);
struct p11_object *slot_object(struct p11_slot *s, CK_OBJECT_HANDLE h);
/* Private objects are seen in user sessions only. */
int object_visible(const struct p11_slot *s, const struct p11_object *o);
/* The token URI the agent is told a slot's token by; freed with free(). */
char *slot_token_uri(const struct p11_slot *s);
/* Load the slot's mechanisms from the agent once per token insertion (g.lock not held). */
CK_RV slot_load_mechs(CK_SLOT_ID id);
int slot_has_mech(const struct p11_slot *s, CK_MECHANISM_TYPE m);

/* ------------------------------------------------------------------ */
/* Sessions (session.c); g.lock held */

void session_free(struct p11_session *s);
void sessions_close_slot(CK_SLOT_ID slot);
CK_RV session_get(CK_SESSION_HANDLE h, struct p11_session **out, struct p11_slot **slot);
CK_ULONG session_count(CK_SLOT_ID slot);
CK_ULONG rw_session_count(CK_SLOT_ID slot);

/* The object h as session s sees it; NULL when invalid. g.lock held (objects.c). */
struct p11_object *session_object(struct p11_slot *slot, CK_OBJECT_HANDLE h);

/* ------------------------------------------------------------------ */
/* The functions of the function list, in the files above */

CK_RV p11_Initialize(CK_VOID_PTR pInitArgs);
CK_RV p11_Finalize(CK_VOID_PTR pReserved);
CK_RV p11_GetInfo(CK_INFO_PTR pInfo);
CK_RV p11_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount);
CK_RV p11_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo);
CK_RV p11_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo);
CK_RV p11_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved);
CK_RV p11_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount);
CK_RV p11_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo);
CK_RV p11_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication,
    CK_NOTIFY Notify, CK_SESSION_HANDLE_PTR phSession);
CK_RV p11_CloseSession(CK_SESSION_HANDLE hSession);
CK_RV p11_CloseAllSessions(CK_SLOT_ID slotID);
CK_RV p11_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo);
CK_RV p11_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen);
CK_RV p11_Logout(CK_SESSION_HANDLE hSession);
CK_RV p11_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount);
CK_RV p11_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject,
    CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount);
CK_RV p11_FindObjectsFinal(CK_SESSION_HANDLE hSession);
CK_RV p11_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
    CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount);
CK_RV p11_GetObjectSize(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize);
CK_RV p11_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey);
CK_RV p11_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
    CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen);
CK_RV p11_SignUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen);
CK_RV p11_SignFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen);
CK_RV p11_VerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey);
CK_RV p11_Verify(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
    CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen);
CK_RV p11_VerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen);
CK_RV p11_VerifyFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen);
CK_RV p11_InitToken(CK_SLOT_ID a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d);
CK_RV p11_InitPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR b, CK_ULONG c);
CK_RV p11_SetPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d, CK_ULONG e);
CK_RV p11_GetOperationState(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG_PTR c);
CK_RV p11_SetOperationState(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE d,
    CK_OBJECT_HANDLE e);
CK_RV p11_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE_PTR d);
CK_RV p11_CopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d,
    CK_OBJECT_HANDLE_PTR e);
CK_RV p11_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE b);
CK_RV p11_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d);
CK_RV p11_InitMech(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c);
CK_RV p11_OneShot(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e);
CK_RV p11_Update(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG c);
CK_RV p11_Final(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG_PTR c);
CK_RV p11_DigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b);
CK_RV p11_DigestKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE b);
CK_RV p11_GenerateKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d,
    CK_OBJECT_HANDLE_PTR e);
CK_RV p11_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d,
    CK_ATTRIBUTE_PTR e, CK_ULONG f, CK_OBJECT_HANDLE_PTR g_, CK_OBJECT_HANDLE_PTR i);
CK_RV p11_WrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_OBJECT_HANDLE d,
    CK_BYTE_PTR e, CK_ULONG_PTR f);
CK_RV p11_UnwrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_BYTE_PTR d,
    CK_ULONG e, CK_ATTRIBUTE_PTR f, CK_ULONG g_, CK_OBJECT_HANDLE_PTR i);
CK_RV p11_DeriveKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_ATTRIBUTE_PTR d,
    CK_ULONG e, CK_OBJECT_HANDLE_PTR f);
CK_RV p11_SeedRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG c);
CK_RV p11_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG c);
CK_RV p11_GetFunctionStatus(CK_SESSION_HANDLE h);
CK_RV p11_CancelFunction(CK_SESSION_HANDLE h);
CK_RV p11_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList);

#endif
