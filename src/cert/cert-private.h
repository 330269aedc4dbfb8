/*
 * What certinfo.c (what a certificate says) lends cba.c (whether it suits
 * CBA). Private to src/cert; no threads or locks here: every function works
 * on the caller's certificate only.
 */
#ifndef SC_CERT_PRIVATE_H
#define SC_CERT_PRIVATE_H

#include <json-c/json.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Append a copy of s to arr: 0 or SC_ERR_NOMEM. */
int cert_json_push_str(json_object *arr, const char *s);
/* The one-line DN of the JSON ("CN=Alice,O=Contoso") in *out (caller frees): 0 or SC_ERR_*. */
int cert_name_oneline(const X509_NAME *name, char **out);
/*
 * The EKU extension: *present is 1 when the certificate has one (even one
 * that does not decode), and the decoded list (or NULL) is returned.
 */
EXTENDED_KEY_USAGE *cert_eku_get(X509 *x, int *present);
/* The key usage extension, as cert_eku_get. */
ASN1_BIT_STRING *cert_ku_get(X509 *x, int *present);
/* 1 when the key is too short for CBA: RSA < 2048 bits, EC < 256 bits. */
int cert_key_weak(X509 *x);

#endif
