/*
 * What a certificate says, and whether it suits certificate-based
 * authentication (CBA): the fields and problem codes of `scagent list --json`
 * and `scagent check` (see ../shared/INTERFACE.md, kept in docs/ too).
 */
#ifndef SC_CERTINFO_H
#define SC_CERTINFO_H

#include <time.h>
#include <json-c/json.h>
#include <openssl/x509.h>

/* Microsoft's UPN otherName and smart card logon EKU. */
#define SC_OID_MS_UPN "1.3.6.1.4.1.311.20.2.3"
#define SC_OID_MS_SCLOGON "1.3.6.1.4.1.311.20.2.2"

/*
 * Add to obj the certificate's fields, exactly as `scagent list --json` names
 * them: "subject", "issuer" (RFC 2253-like one-line DN "CN=Alice,O=Contoso"),
 * "serial" (lowercase hex), "not_before", "not_after" (UTC, "YYYY-MM-DDTHH:MM:SSZ"),
 * "sha256" (64 lowercase hex of the DER), "upn" (array), "email" (array),
 * "eku" (array: OpenSSL short names where one exists, else dotted OIDs; empty
 * when the extension is absent), "key_usage" (array of names:
 * digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment,
 * keyAgreement, keyCertSign, cRLSign, encipherOnly, decipherOnly),
 * "key" ({"type": "rsa"|"ec"|other lowercase name, "bits": N, and for ec
 * "curve": "prime256v1"}).
 * Returns 0, or a negative SC_ERR_* code (nothing half-added is left behind
 * that a caller would misread: on error obj may have some fields, and the
 * caller reports the certificate as unparseable).
 */
int sc_cert_describe(X509 *x, json_object *obj);

/*
 * UPNs of a certificate: every SAN otherName 1.3.6.1.4.1.311.20.2.3 whose value
 * is a UTF8String (malformed ones are skipped, and counted in *malformed when
 * that is not NULL), and, when the SAN has none, a subject attribute that
 * carries a UPN (the subject's userPrincipalName-style attribute
 * 1.3.6.1.4.1.311.20.2.3 if present). Returns a JSON array (new reference).
 */
json_object *sc_cert_upns(X509 *x, int *malformed);

/*
 * The certificates in PEM text (text between the blocks and blocks of other
 * kinds are skipped) as a store of trust anchors, in *out (X509_STORE_free).
 * SC_ERR_CERT when it holds no certificate or one that does not parse;
 * *count (may be NULL) gets how many it holds.
 */
int sc_cert_anchors_pem(const char *pem, size_t len, X509_STORE **out, int *count);

/* What the caller knows beyond the certificate itself. */
struct sc_cba_input {
	int private_key;		/* 1 present, 0 absent, -1 unknown (not checked) */
	X509_STORE *anchors;		/* trust anchors; NULL: chain not checked */
	STACK_OF(X509) *untrusted;	/* intermediates found on the token, or NULL */
	time_t now;			/* 0: the current time */
};

/*
 * CBA problems, in the order of INTERFACE.md's table: "no-client-auth-eku",
 * "no-upn", "expired", "not-yet-valid", "no-digital-signature",
 * "no-private-key" (only when private_key == 0), "weak-key" (RSA < 2048,
 * EC < 256), and with anchors at most one of "chain-untrusted",
 * "chain-purpose" (a CA's EKU does not allow clientAuth: the chain is
 * checked for OpenSSL's ssl_client purpose, the leaf's own purpose aside)
 * and "chain-invalid-ca" (an issuer is not a CA). Then *chain_reason gets
 * OpenSSL's verify error string, after "SUBJECT: " when the certificate it
 * concerns is not the leaf (caller frees); NULL otherwise.
 * Returns a JSON array of code strings (new reference), never NULL unless
 * out of memory.
 */
json_object *sc_cert_cba(X509 *x, const struct sc_cba_input *in, char **chain_reason);

/* One human sentence saying what a problem code means for this user. */
const char *sc_cba_explain(const char *code);
/* One sentence on why Exchange / CBA needs it, with what to do. */
const char *sc_cba_advice(const char *code);

/* One-line DN in the form used in the JSON ("CN=Alice,O=Contoso"); caller frees. */
char *sc_name_oneline(const X509_NAME *name);
/* SHA-256 of the DER encoding in lowercase hex (65 bytes with NUL), 0 or SC_ERR_*. */
int sc_cert_sha256_hex(X509 *x, char out[65]);

#endif
