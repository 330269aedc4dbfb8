/*
 * What a certificate says: names, serial, times, fingerprint, EKU, key
 * usage, key, UPNs and emails (sc_cert_describe). Whether it suits
 * certificate-based authentication is cba.c; the words for its problem codes
 * are explain.c. See certinfo.h and INTERFACE.md for the contract.
 *
 * Choices made here:
 * - DNs are printed with X509_NAME_print_ex() and XN_FLAG_RFC2253 without
 *   ASN1_STRFLGS_ESC_MSB: RFC 2253 order (the last RDN of the encoding, usually
 *   CN, first: "CN=Alice,O=Contoso", as `openssl x509 -nameopt RFC2253` and
 *   Windows show it), RFC 2253 escaping of ',', '+', '"', '\\', '<', '>', ';',
 *   control characters as \XX, and non-ASCII text kept as readable UTF-8.
 *   A name that does not print as valid UTF-8 (OpenSSL will not parse such a
 *   certificate, but an X509_NAME built in memory can hold one) is printed
 *   with every value hex-dumped as DER ("CN=#0C03...") rather than failing.
 * - UPNs: SAN otherName 1.3.6.1.4.1.311.20.2.3 with a UTF8String value that is
 *   well-formed UTF-8 (RFC 3629), not empty and without NUL. Anything else with
 *   that type-id is malformed. Only when the SAN yields no valid UPN, the
 *   subject attribute 1.3.6.1.4.1.311.20.2.3 is used (UTF8String, or an ASCII
 *   PrintableString/IA5String, or a BMPString). Exact duplicates are reported
 *   once.
 * - Emails: SAN rfc822Name, then subject emailAddress; printable ASCII only;
 *   duplicates removed ignoring case, the first spelling kept.
 * - An extension that is present but cannot be decoded (or appears twice)
 *   counts as present without the wanted content: fail closed.
 */
#include "config.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cert/cert-private.h"
#include "cert/certinfo.h"
#include "common/err.h"
#include "common/log.h"
#include "common/text.h"
#include "common/util.h"

/* ---- JSON helpers ---- */

/* Append val to arr; takes ownership of val even on failure. */
static int
json_push(json_object *arr, json_object *val)
{
	if (val == NULL)
		return SC_ERR_NOMEM;
	if (json_object_array_add(arr, val) != 0) {
		json_object_put(val);
		return SC_ERR_NOMEM;
	}
	return 0;
}

int
cert_json_push_str(json_object *arr, const char *s)
{
	return json_push(arr, json_object_new_string(s));
}

/* Append s[0..len) unless arr already holds it (ignoring ASCII case if nocase). */
static int
json_push_unique(json_object *arr, const char *s, size_t len, int nocase)
{
	size_t n = json_object_array_length(arr);

	if (len > INT32_MAX)
		return SC_ERR_TOO_LARGE;
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(arr, i);
		const char *es = json_object_get_string(e);
		size_t elen = (size_t)json_object_get_string_len(e);

		if (elen != len)
			continue;
		if (nocase ? strncasecmp(es, s, len) == 0 : memcmp(es, s, len) == 0)
			return 0;
	}
	return json_push(arr, json_object_new_string_len(s, (int)len));
}

/* ---- string checks ---- */

/*
 * 1 when p[0..len) is non-empty, well-formed UTF-8 (RFC 3629: shortest form,
 * no surrogates, nothing above U+10FFFF) and holds no NUL.
 */
static int
utf8_ok(const unsigned char *p, size_t len)
{
	return p != NULL && len > 0 && memchr(p, 0, len) == NULL &&
	    sc_utf8_valid(p, len);
}

/* 1 when p[0..len) is non-empty printable ASCII (space to tilde). */
static int
ascii_ok(const unsigned char *p, size_t len)
{
	if (p == NULL || len == 0)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return 0;
	return 1;
}

/* A dotted or named OID as text; caller frees. */
static char *
oid_text(const ASN1_OBJECT *obj, int no_name)
{
	char *s;
	int n;

	if ((n = OBJ_obj2txt(NULL, 0, obj, no_name)) <= 0)
		return NULL;
	if ((s = malloc((size_t)n + 1)) == NULL)
		return NULL;
	if (OBJ_obj2txt(s, n + 1, obj, no_name) != n) {
		free(s);
		return NULL;
	}
	return s;
}

/* ---- names, times, digests ---- */

static int
name_print(const X509_NAME *name, unsigned long flags, char **out)
{
	BIO *bio = NULL;
	char *data, *s = NULL;
	long len;
	int r = SC_ERR_INTERNAL;

	*out = NULL;
	if ((bio = BIO_new(BIO_s_mem())) == NULL) {
		r = SC_ERR_NOMEM;
		goto out;
	}
	if (X509_NAME_print_ex(bio, name, 0, flags) < 0) {
		r = SC_ERR_CERT;
		goto out;
	}
	if ((len = BIO_get_mem_data(bio, &data)) < 0) {
		r = SC_ERR_INTERNAL;
		goto out;
	}
	/*
	 * Control characters come out escaped, but a UTF8String's bytes are
	 * copied as they are: refuse what is not UTF-8 (or holds a NUL).
	 */
	if (len > 0 && !utf8_ok((const unsigned char *)data, (size_t)len)) {
		r = SC_ERR_CERT;
		goto out;
	}
	if ((s = malloc((size_t)len + 1)) == NULL) {
		r = SC_ERR_NOMEM;
		goto out;
	}
	if (len > 0)
		memcpy(s, data, (size_t)len);
	s[len] = '\0';
	*out = s;
	s = NULL;
	r = 0;
 out:
	BIO_free(bio);
	free(s);
	return r;
}

int
cert_name_oneline(const X509_NAME *name, char **out)
{
	const unsigned long flags = XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB;
	int r;

	*out = NULL;
	if (name == NULL)
		return SC_ERR_INVALID;
	if ((r = name_print(name, flags, out)) != SC_ERR_CERT)
		return r;
	ERR_clear_error();
	/* Some value does not convert (bad UTF-8, odd BMPString): dump them all. */
	r = name_print(name, (flags & ~ASN1_STRFLGS_DUMP_UNKNOWN) |
	    ASN1_STRFLGS_DUMP_ALL | ASN1_STRFLGS_DUMP_DER, out);
	ERR_clear_error();
	return r;
}

char *
sc_name_oneline(const X509_NAME *name)
{
	char *s = NULL;

	if (cert_name_oneline(name, &s) != 0)
		return NULL;
	return s;
}

int
sc_cert_sha256_hex(X509 *x, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char *hex = NULL;
	int r = SC_ERR_INTERNAL;

	out[0] = '\0';
	if (x == NULL)
		return SC_ERR_INVALID;
	if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32) {
		ERR_clear_error();
		r = SC_ERR_CERT;
		goto out;
	}
	if ((hex = sc_hex(md, mdlen)) == NULL) {
		r = SC_ERR_NOMEM;
		goto out;
	}
	memcpy(out, hex, 65);
	r = 0;
 out:
	free(hex);
	return r;
}

static int
time_text(const ASN1_TIME *t, char *buf, size_t len)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	/* ASN1_TIME_to_tm(NULL, ...) means "now": never let that happen. */
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
		ERR_clear_error();
		return SC_ERR_CERT;
	}
	if (strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return SC_ERR_CERT;
	return 0;
}

static int
serial_hex(X509 *x, char **out)
{
	BIGNUM *bn = NULL;
	char *h = NULL, *s = NULL;
	int r = SC_ERR_INTERNAL;

	*out = NULL;
	if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL)) == NULL) {
		r = SC_ERR_CERT;
		goto out;
	}
	if ((h = BN_bn2hex(bn)) == NULL || (s = strdup(h)) == NULL) {
		r = SC_ERR_NOMEM;
		goto out;
	}
	for (char *p = s; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	*out = s;
	s = NULL;
	r = 0;
 out:
	ERR_clear_error();
	OPENSSL_free(h);
	BN_free(bn);
	free(s);
	return r;
}

/* ---- extensions ---- */

/*
 * The EKU extension: *present is 1 when the certificate has one (even one
 * that does not decode), and the decoded list (or NULL) is returned.
 */
EXTENDED_KEY_USAGE *
cert_eku_get(X509 *x, int *present)
{
	EXTENDED_KEY_USAGE *eku;
	int crit = -1;

	eku = X509_get_ext_d2i(x, NID_ext_key_usage, &crit, NULL);
	*present = eku != NULL || crit != -1;
	if (eku == NULL)
		ERR_clear_error();
	return eku;
}

static int
eku_names(X509 *x, json_object *arr)
{
	EXTENDED_KEY_USAGE *eku;
	int present, r = 0;

	if ((eku = cert_eku_get(x, &present)) == NULL) {
		if (present)
			sc_debug("certificate EKU extension does not decode");
		return 0;
	}
	for (int i = 0; i < sk_ASN1_OBJECT_num(eku); i++) {
		const ASN1_OBJECT *obj = sk_ASN1_OBJECT_value(eku, i);
		int nid = OBJ_obj2nid(obj);
		const char *sn = nid != NID_undef ? OBJ_nid2sn(nid) : NULL;
		char *txt = NULL;

		if (sn == NULL && (txt = oid_text(obj, 1)) == NULL) {
			r = SC_ERR_NOMEM;
			goto out;
		}
		r = cert_json_push_str(arr, sn != NULL ? sn : txt);
		free(txt);
		if (r != 0)
			goto out;
	}
 out:
	EXTENDED_KEY_USAGE_free(eku);
	return r;
}

static const char *const ku_names[] = {
	"digitalSignature", "nonRepudiation", "keyEncipherment",
	"dataEncipherment", "keyAgreement", "keyCertSign", "cRLSign",
	"encipherOnly", "decipherOnly",
};

ASN1_BIT_STRING *
cert_ku_get(X509 *x, int *present)
{
	ASN1_BIT_STRING *ku;
	int crit = -1;

	ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
	*present = ku != NULL || crit != -1;
	if (ku == NULL)
		ERR_clear_error();
	return ku;
}

static int
ku_list(X509 *x, json_object *arr)
{
	ASN1_BIT_STRING *ku;
	int present, r = 0;

	if ((ku = cert_ku_get(x, &present)) == NULL)
		return 0;
	for (size_t i = 0; i < sizeof(ku_names) / sizeof(ku_names[0]); i++) {
		if (!ASN1_BIT_STRING_get_bit(ku, (int)i))
			continue;
		if ((r = cert_json_push_str(arr, ku_names[i])) != 0)
			break;
	}
	ASN1_BIT_STRING_free(ku);
	return r;
}

/* ---- key ---- */

static int
key_is(const EVP_PKEY *pk, const char *name)
{
	return pk != NULL && EVP_PKEY_is_a(pk, name);
}

static int
key_describe(X509 *x, json_object *obj)
{
	json_object *k = NULL;
	EVP_PKEY *pk;
	char type[64], curve[80];
	const char *tn, *cn = NULL;
	size_t clen = 0;
	int r = SC_ERR_INTERNAL;

	if ((k = json_object_new_object()) == NULL)
		return SC_ERR_NOMEM;
	if ((pk = X509_get0_pubkey(x)) == NULL) {
		/* An algorithm this OpenSSL does not know: say so, keep going. */
		ERR_clear_error();
		snprintf(type, sizeof(type), "unknown");
	} else if (key_is(pk, "RSA"))
		snprintf(type, sizeof(type), "rsa");
	else if (key_is(pk, "EC"))
		snprintf(type, sizeof(type), "ec");
	else {
		tn = EVP_PKEY_get0_type_name(pk);
		snprintf(type, sizeof(type), "%s", tn != NULL ? tn : "unknown");
		for (char *p = type; *p != '\0'; p++)
			*p = (char)tolower((unsigned char)*p);
	}
	if ((r = sc_json_set(k, "type", json_object_new_string(type))) != 0 ||
	    (r = sc_json_set(k, "bits", json_object_new_int(
	    pk != NULL ? EVP_PKEY_get_bits(pk) : 0))) != 0)
		goto out;
	if (key_is(pk, "EC")) {
		if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME,
		    curve, sizeof(curve), &clen) == 1) {
			int nid = EC_curve_nist2nid(curve);

			/* "P-256" -> "prime256v1": OpenSSL's short names. */
			if (nid != NID_undef)
				cn = OBJ_nid2sn(nid);
			if (cn == NULL)
				cn = curve;
		} else {
			ERR_clear_error();
			cn = "explicit";	/* parameters without a named curve */
		}
		if ((r = sc_json_set(k, "curve", json_object_new_string(cn))) != 0)
			goto out;
	}
	r = sc_json_set(obj, "key", k);
	k = NULL;
 out:
	json_object_put(k);
	return r;
}

/* 1 when the key is too short for CBA: RSA < 2048 bits, EC < 256 bits. */
int
cert_key_weak(X509 *x)
{
	EVP_PKEY *pk = X509_get0_pubkey(x);

	if (pk == NULL) {
		ERR_clear_error();
		return 0;
	}
	if (key_is(pk, "RSA") || key_is(pk, "RSA-PSS"))
		return EVP_PKEY_get_bits(pk) < 2048;
	if (key_is(pk, "EC"))
		return EVP_PKEY_get_bits(pk) < 256;
	return 0;
}

/* ---- UPN and email ---- */

static GENERAL_NAMES *
san_get(X509 *x, int *present)
{
	GENERAL_NAMES *gens;
	int crit = -1;

	gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
	*present = gens != NULL || crit != -1;
	if (gens == NULL)
		ERR_clear_error();
	return gens;
}

/* Subject UPN attribute values into arr; bad ones counted in *bad. */
static int
subject_upns(X509 *x, json_object *arr, int *bad)
{
	const X509_NAME *name = X509_get_subject_name(x);
	unsigned char *u = NULL;
	int pos = -1, r = 0;

	while ((pos = X509_NAME_get_index_by_NID(name, NID_ms_upn, pos)) >= 0) {
		const ASN1_STRING *v;
		const unsigned char *p;
		size_t len;
		int ok, n;

		v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, pos));
		if (v == NULL) {
			(*bad)++;
			continue;
		}
		p = ASN1_STRING_get0_data(v);
		len = (size_t)ASN1_STRING_length(v);
		switch (ASN1_STRING_type(v)) {
		case V_ASN1_UTF8STRING:
			ok = utf8_ok(p, len);
			break;
		case V_ASN1_PRINTABLESTRING:
		case V_ASN1_IA5STRING:
			ok = ascii_ok(p, len);
			break;
		case V_ASN1_BMPSTRING:
			if ((n = ASN1_STRING_to_UTF8(&u, v)) < 0) {
				ERR_clear_error();
				ok = 0;
				break;
			}
			p = u;
			len = (size_t)n;
			ok = utf8_ok(p, len);
			break;
		default:
			ok = 0;
			break;
		}
		if (!ok) {
			sc_debug("skipping malformed UPN attribute in the subject");
			(*bad)++;
		} else if ((r = json_push_unique(arr, (const char *)p, len, 0)) != 0)
			goto out;
		OPENSSL_free(u);
		u = NULL;
	}
 out:
	OPENSSL_free(u);
	return r;
}

json_object *
sc_cert_upns(X509 *x, int *malformed)
{
	GENERAL_NAMES *gens = NULL;
	json_object *arr = NULL, *ret = NULL;
	int bad = 0, present;

	if (malformed != NULL)
		*malformed = 0;
	if ((arr = json_object_new_array()) == NULL)
		goto out;
	if (x == NULL) {
		ret = arr;
		arr = NULL;
		goto out;
	}
	if ((gens = san_get(x, &present)) == NULL && present) {
		sc_debug("certificate SAN extension does not decode");
		bad++;
	}
	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *gen = sk_GENERAL_NAME_value(gens, i);
		const OTHERNAME *on;
		const ASN1_UTF8STRING *s;

		if (gen->type != GEN_OTHERNAME)
			continue;
		on = gen->d.otherName;
		if (on == NULL || OBJ_obj2nid(on->type_id) != NID_ms_upn)
			continue;
		if (on->value == NULL || on->value->type != V_ASN1_UTF8STRING ||
		    (s = on->value->value.utf8string) == NULL ||
		    !utf8_ok(ASN1_STRING_get0_data(s),
		    (size_t)ASN1_STRING_length(s))) {
			sc_debug("skipping malformed UPN otherName in the SAN");
			bad++;
			continue;
		}
		if (json_push_unique(arr, (const char *)ASN1_STRING_get0_data(s),
		    (size_t)ASN1_STRING_length(s), 0) != 0)
			goto out;
	}
	if (json_object_array_length(arr) == 0 &&
	    subject_upns(x, arr, &bad) != 0)
		goto out;
	ret = arr;
	arr = NULL;
 out:
	GENERAL_NAMES_free(gens);
	json_object_put(arr);
	if (malformed != NULL)
		*malformed = bad;
	return ret;
}

static int
email_list(X509 *x, json_object *arr)
{
	GENERAL_NAMES *gens = NULL;
	const X509_NAME *name = X509_get_subject_name(x);
	int present, pos = -1, r = 0;

	gens = san_get(x, &present);
	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *gen = sk_GENERAL_NAME_value(gens, i);
		const ASN1_IA5STRING *s;

		if (gen->type != GEN_EMAIL || (s = gen->d.rfc822Name) == NULL)
			continue;
		if (!ascii_ok(ASN1_STRING_get0_data(s),
		    (size_t)ASN1_STRING_length(s)))
			continue;
		if ((r = json_push_unique(arr,
		    (const char *)ASN1_STRING_get0_data(s),
		    (size_t)ASN1_STRING_length(s), 1)) != 0)
			goto out;
	}
	while ((pos = X509_NAME_get_index_by_NID(name, NID_pkcs9_emailAddress,
	    pos)) >= 0) {
		const ASN1_STRING *v;
		int t;

		v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, pos));
		if (v == NULL)
			continue;
		t = ASN1_STRING_type(v);
		if (t != V_ASN1_IA5STRING && t != V_ASN1_UTF8STRING &&
		    t != V_ASN1_PRINTABLESTRING)
			continue;
		if (!ascii_ok(ASN1_STRING_get0_data(v),
		    (size_t)ASN1_STRING_length(v)))
			continue;
		if ((r = json_push_unique(arr,
		    (const char *)ASN1_STRING_get0_data(v),
		    (size_t)ASN1_STRING_length(v), 1)) != 0)
			goto out;
	}
 out:
	GENERAL_NAMES_free(gens);
	return r;
}

/* ---- describe ---- */

static int
set_array(json_object *obj, const char *key, json_object **arrp)
{
	json_object *arr;
	int r;

	*arrp = NULL;
	if ((arr = json_object_new_array()) == NULL)
		return SC_ERR_NOMEM;
	/* The object owns it now; the caller fills it in place. */
	if ((r = sc_json_set(obj, key, arr)) != 0)
		return r;
	*arrp = arr;
	return 0;
}

int
sc_cert_describe(X509 *x, json_object *obj)
{
	json_object *arr, *upns = NULL;
	char *subject = NULL, *issuer = NULL, *serial = NULL;
	char nb[32], na[32], sha[65];
	int r = SC_ERR_INTERNAL;

	if (x == NULL || obj == NULL || !json_object_is_type(obj, json_type_object))
		return SC_ERR_INVALID;
	if ((r = cert_name_oneline(X509_get_subject_name(x), &subject)) != 0 ||
	    (r = cert_name_oneline(X509_get_issuer_name(x), &issuer)) != 0 ||
	    (r = serial_hex(x, &serial)) != 0 ||
	    (r = time_text(X509_get0_notBefore(x), nb, sizeof(nb))) != 0 ||
	    (r = time_text(X509_get0_notAfter(x), na, sizeof(na))) != 0 ||
	    (r = sc_cert_sha256_hex(x, sha)) != 0)
		goto out;
	/* Valid UTF-8 already (cert_name_oneline): the JSON rule is kept all the same. */
	if ((r = sc_json_add_text(obj, "subject", subject)) != 0 ||
	    (r = sc_json_add_text(obj, "issuer", issuer)) != 0 ||
	    (r = sc_json_set(obj, "serial", json_object_new_string(serial))) != 0 ||
	    (r = sc_json_set(obj, "not_before", json_object_new_string(nb))) != 0 ||
	    (r = sc_json_set(obj, "not_after", json_object_new_string(na))) != 0 ||
	    (r = sc_json_set(obj, "sha256", json_object_new_string(sha))) != 0)
		goto out;
	if ((upns = sc_cert_upns(x, NULL)) == NULL) {
		r = SC_ERR_NOMEM;
		goto out;
	}
	r = sc_json_set(obj, "upn", upns);
	upns = NULL;
	if (r != 0)
		goto out;
	if ((r = set_array(obj, "email", &arr)) != 0 ||
	    (r = email_list(x, arr)) != 0)
		goto out;
	if ((r = set_array(obj, "eku", &arr)) != 0 ||
	    (r = eku_names(x, arr)) != 0)
		goto out;
	if ((r = set_array(obj, "key_usage", &arr)) != 0 ||
	    (r = ku_list(x, arr)) != 0)
		goto out;
	if ((r = key_describe(x, obj)) != 0)
		goto out;
	r = 0;
 out:
	json_object_put(upns);
	free(subject);
	free(issuer);
	free(serial);
	return r;
}
