/*
 * scagent-pkcs11.so: a PKCS#11 module whose tokens are the agent's.
 *
 * module.c keeps the module state (slots, sessions, the agent connection)
 * behind one mutex and implements the C_ functions; objects.c turns the
 * agent's certificates into certificate, public key and private key objects
 * with their attributes; sign.c maps PKCS#11 signature mechanisms onto the
 * agent's "sign" operation.
 */
#ifndef SC_P11MOD_H
#define SC_P11MOD_H

#include <stddef.h>
#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

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

/* The mechanisms sign.c implements, with what each needs from the token. */
struct p11_mech_spec {
	CK_MECHANISM_TYPE type;
	CK_KEY_TYPE key_type;
	CK_MECHANISM_TYPE token_mech;	/* the agent signs with this one on the token */
	const char *md;			/* hashed in the module; NULL: input is the hash */
};
extern const struct p11_mech_spec p11_mechs[];
extern const size_t p11_nmechs;
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
 * What to ask the agent for: alg name and the digest (into dgst, *dlen).
 * Consumes nothing: can be called again after a failed size check.
 */
CK_RV p11_signop_prepare(struct p11_signop *op, const char **alg,
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

#endif
