/*
 * Unit tests for src/cert/ (certinfo.c, cba.c, explain.c): certificates are
 * built here with the OpenSSL API (no token, no files other than a temporary
 * CA file).
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cert/certinfo.h"
#include "common/err.h"
#include "common/util.h"

#define T_2026 ((time_t)1767225600)	/* 2026-01-01T00:00:00Z */
#define T_2027 ((time_t)1798761600)	/* 2027-01-01T00:00:00Z */
#define T_NOW ((time_t)1780000000)	/* 2026-05-28T20:26:40Z */
#define DAY ((time_t)86400)

static EVP_PKEY *k_ec256, *k_ec224, *k_ec384, *k_rsa1024, *k_rsa2048, *k_ca, *k_int;

/* ---- building certificates ---- */

static X509 *
cert_new(EVP_PKEY *key, long serial, time_t nb, time_t na)
{
	X509 *x = X509_new();

	assert_non_null(x);
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
	assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), nb));
	assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), na));
	assert_int_equal(X509_set_pubkey(x, key), 1);
	return x;
}

/* Add one subject attribute; type V_ASN1_* copies the bytes as they are. */
static void
subj_add(X509 *x, const char *field, int type, const void *val, int len)
{
	X509_NAME *n = X509_get_subject_name(x);

	assert_int_equal(X509_NAME_add_entry_by_txt(n, field, type, val, len,
	    -1, 0), 1);
}

static void
subj_utf8(X509 *x, const char *field, const char *val)
{
	subj_add(x, field, MBSTRING_UTF8, val, -1);
}

static void
ext_conf(X509 *x, int nid, const char *value)
{
	X509_EXTENSION *ext;

	ext = X509V3_EXT_nconf_nid(NULL, NULL, nid, value);
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

static GENERAL_NAME *
gn_other(const char *oid, int type, const void *p, int len)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_TYPE *v = ASN1_TYPE_new();
	ASN1_STRING *s = ASN1_STRING_type_new(type);

	assert_non_null(gn);
	assert_non_null(v);
	assert_non_null(s);
	assert_int_equal(ASN1_STRING_set(s, p, len), 1);
	ASN1_TYPE_set(v, type, s);
	assert_int_equal(GENERAL_NAME_set0_othername(gn,
	    OBJ_txt2obj(oid, 1), v), 1);
	return gn;
}

static GENERAL_NAME *
gn_upn(int type, const void *p, int len)
{
	return gn_other(SC_OID_MS_UPN, type, p, len);
}

static GENERAL_NAME *
gn_upn_str(const char *s)
{
	return gn_upn(V_ASN1_UTF8STRING, s, (int)strlen(s));
}

static GENERAL_NAME *
gn_email(const char *s)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();

	assert_non_null(gn);
	assert_non_null(ia5);
	assert_int_equal(ASN1_STRING_set(ia5, s, -1), 1);
	GENERAL_NAME_set0_value(gn, GEN_EMAIL, ia5);
	return gn;
}

/* Set the SAN from a NULL-terminated list of names (consumed). */
static void
san_set(X509 *x, ...)
{
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	GENERAL_NAME *gn;
	va_list ap;

	assert_non_null(gens);
	va_start(ap, x);
	while ((gn = va_arg(ap, GENERAL_NAME *)) != NULL)
		assert_true(sk_GENERAL_NAME_push(gens, gn) > 0);
	va_end(ap);
	assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
	    X509V3_ADD_DEFAULT), 1);
	GENERAL_NAMES_free(gens);
}

/*
 * Sign (self-signed when issuer is NULL) and return the certificate as a
 * relying party sees it: parsed back from DER. Frees x.
 */
static X509 *
cert_sign(X509 *x, X509 *issuer, EVP_PKEY *ikey)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	X509 *y;
	int len;

	assert_int_equal(X509_set_issuer_name(x, issuer != NULL ?
	    X509_get_subject_name(issuer) : X509_get_subject_name(x)), 1);
	assert_true(X509_sign(x, ikey, EVP_sha256()) > 0);
	len = i2d_X509(x, &der);
	assert_true(len > 0);
	p = der;
	y = d2i_X509(NULL, &p, len);
	assert_non_null(y);
	OPENSSL_free(der);
	X509_free(x);
	return y;
}

/* A self-signed CBA-ready user certificate, Alice, unless changed after. */
static X509 *
user_cert(EVP_PKEY *key)
{
	X509 *x = cert_new(key, 1, T_2026, T_2027);

	subj_utf8(x, "O", "Contoso");
	subj_utf8(x, "CN", "Alice");
	return x;
}

/* A CA certificate with these extensions (NULL: left out). */
static X509 *
ca_cert_ext(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey,
    const char *bc, const char *ku, const char *eku)
{
	X509 *x = cert_new(key, 100, T_2026 - 200 * DAY, T_2027 + 200 * DAY);

	subj_utf8(x, "CN", cn);
	if (bc != NULL)
		ext_conf(x, NID_basic_constraints, bc);
	if (ku != NULL)
		ext_conf(x, NID_key_usage, ku);
	if (eku != NULL)
		ext_conf(x, NID_ext_key_usage, eku);
	return cert_sign(x, issuer, ikey);
}

static X509 *
ca_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey,
    time_t nb, time_t na)
{
	X509 *x = cert_new(key, 100, nb, na);

	subj_utf8(x, "CN", cn);
	ext_conf(x, NID_basic_constraints, "critical,CA:TRUE");
	ext_conf(x, NID_key_usage, "critical,keyCertSign,cRLSign");
	return cert_sign(x, issuer, ikey);
}

/* ---- JSON assertions ---- */

static json_object *
jget(json_object *o, const char *key)
{
	json_object *v = NULL;

	assert_true(json_object_object_get_ex(o, key, &v));
	return v;
}

static const char *
jstr(json_object *o, const char *key)
{
	json_object *v = jget(o, key);

	assert_true(json_object_is_type(v, json_type_string));
	return json_object_get_string(v);
}

static void
assert_strarr(json_object *arr, const char *const *want, size_t n)
{
	assert_non_null(arr);
	assert_true(json_object_is_type(arr, json_type_array));
	assert_int_equal(json_object_array_length(arr), n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(json_object_get_string(
		    json_object_array_get_idx(arr, i)), want[i]);
}

#define ASSERT_ARR(arr, ...) do { \
	static const char *const want_[] = { __VA_ARGS__ }; \
	assert_strarr((arr), want_, sizeof(want_) / sizeof(want_[0])); \
} while (0)

static void
assert_empty(json_object *arr)
{
	assert_non_null(arr);
	assert_true(json_object_is_type(arr, json_type_array));
	assert_int_equal(json_object_array_length(arr), 0);
}

static json_object *
describe(X509 *x)
{
	json_object *o = json_object_new_object();

	assert_non_null(o);
	assert_int_equal(sc_cert_describe(x, o), 0);
	return o;
}

/* The PEM file path's certificates as trust anchors; a file not there: none at all. */
static X509_STORE *
anchors_of(const char *path)
{
	X509_STORE *st = NULL;
	char buf[65536];
	size_t n;
	FILE *f;

	if (path == NULL)
		return NULL;
	if ((f = fopen(path, "r")) == NULL)
		return X509_STORE_new();
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	assert_int_equal(sc_cert_anchors_pem(buf, n, &st, NULL), SC_OK);
	return st;
}

static json_object *
cba(X509 *x, int private_key, const char *cafile, STACK_OF(X509) *untrusted,
    char **reason)
{
	struct sc_cba_input in = { private_key, anchors_of(cafile), untrusted, T_NOW };
	json_object *p = sc_cert_cba(x, &in, reason);

	X509_STORE_free(in.anchors);
	assert_non_null(p);
	return p;
}

/* UPNs of x, asserting the malformed count. */
static json_object *
upns(X509 *x, int want_malformed)
{
	int bad = -1;
	json_object *u = sc_cert_upns(x, &bad);

	assert_non_null(u);
	assert_int_equal(bad, want_malformed);
	return u;
}

static char *
write_pem(X509 *const *certs, size_t n)
{
	const char *tmp = getenv("TMPDIR");
	char tmpl[4096];
	char *path;
	FILE *f;
	int fd;

	snprintf(tmpl, sizeof(tmpl), "%s/test-certinfo-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(PEM_write_X509(f, certs[i]), 1);
	assert_int_equal(fclose(f), 0);
	path = strdup(tmpl);
	assert_non_null(path);
	return path;
}

/* ---- fixtures ---- */

static int
group_setup(void **state)
{
	(void)state;
	if ((k_ec256 = EVP_EC_gen("prime256v1")) == NULL ||
	    (k_ec224 = EVP_EC_gen("secp224r1")) == NULL ||
	    (k_ec384 = EVP_EC_gen("secp384r1")) == NULL ||
	    (k_ca = EVP_EC_gen("prime256v1")) == NULL ||
	    (k_int = EVP_EC_gen("prime256v1")) == NULL ||
	    (k_rsa1024 = EVP_RSA_gen(1024)) == NULL ||
	    (k_rsa2048 = EVP_RSA_gen(2048)) == NULL)
		return -1;
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(k_ec256);
	EVP_PKEY_free(k_ec224);
	EVP_PKEY_free(k_ec384);
	EVP_PKEY_free(k_ca);
	EVP_PKEY_free(k_int);
	EVP_PKEY_free(k_rsa1024);
	EVP_PKEY_free(k_rsa2048);
	return 0;
}

/* ---- describe ---- */

static void
test_describe_fields(void **state)
{
	X509 *x = user_cert(k_ec256);
	json_object *o, *key;

	(void)state;
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 0x0123abcd), 1);
	san_set(x, gn_upn_str("alice@contoso.com"),
	    gn_email("alice@contoso.com"), NULL);
	ext_conf(x, NID_ext_key_usage, "clientAuth,msSmartcardLogin,1.2.3.4.5");
	ext_conf(x, NID_key_usage, "critical,digitalSignature,keyEncipherment");
	x = cert_sign(x, NULL, k_ec256);

	o = describe(x);
	assert_string_equal(jstr(o, "subject"), "CN=Alice,O=Contoso");
	assert_string_equal(jstr(o, "issuer"), "CN=Alice,O=Contoso");
	assert_string_equal(jstr(o, "serial"), "0123abcd");
	assert_string_equal(jstr(o, "not_before"), "2026-01-01T00:00:00Z");
	assert_string_equal(jstr(o, "not_after"), "2027-01-01T00:00:00Z");
	assert_int_equal(strlen(jstr(o, "sha256")), 64);
	ASSERT_ARR(jget(o, "upn"), "alice@contoso.com");
	ASSERT_ARR(jget(o, "email"), "alice@contoso.com");
	ASSERT_ARR(jget(o, "eku"), "clientAuth", "msSmartcardLogin", "1.2.3.4.5");
	ASSERT_ARR(jget(o, "key_usage"), "digitalSignature", "keyEncipherment");
	key = jget(o, "key");
	assert_string_equal(jstr(key, "type"), "ec");
	assert_int_equal(json_object_get_int(jget(key, "bits")), 256);
	assert_string_equal(jstr(key, "curve"), "prime256v1");
	json_object_put(o);
	X509_free(x);
}

static void
test_describe_rsa_and_small_serial(void **state)
{
	X509 *x = user_cert(k_rsa2048);
	json_object *o, *key;

	(void)state;
	x = cert_sign(x, NULL, k_rsa2048);
	o = describe(x);
	assert_string_equal(jstr(o, "serial"), "01");
	key = jget(o, "key");
	assert_string_equal(jstr(key, "type"), "rsa");
	assert_int_equal(json_object_get_int(jget(key, "bits")), 2048);
	assert_false(json_object_object_get_ex(key, "curve", NULL));
	/* No extensions at all: empty arrays, not missing fields. */
	assert_empty(jget(o, "eku"));
	assert_empty(jget(o, "key_usage"));
	assert_empty(jget(o, "upn"));
	assert_empty(jget(o, "email"));
	json_object_put(o);
	X509_free(x);
}

static void
test_describe_ec_curves(void **state)
{
	X509 *x;
	json_object *o, *key;

	(void)state;
	x = cert_sign(user_cert(k_ec384), NULL, k_ec384);
	o = describe(x);
	key = jget(o, "key");
	assert_string_equal(jstr(key, "curve"), "secp384r1");
	assert_int_equal(json_object_get_int(jget(key, "bits")), 384);
	json_object_put(o);
	X509_free(x);

	x = cert_sign(user_cert(k_ec224), NULL, k_ec224);
	o = describe(x);
	key = jget(o, "key");
	assert_string_equal(jstr(key, "curve"), "secp224r1");
	assert_int_equal(json_object_get_int(jget(key, "bits")), 224);
	json_object_put(o);
	X509_free(x);
}

static void
test_sha256_matches_openssl(void **state)
{
	X509 *x = cert_sign(user_cert(k_ec256), NULL, k_ec256);
	unsigned char md[EVP_MAX_MD_SIZE], md2[EVP_MAX_MD_SIZE], *der = NULL;
	unsigned int mdlen = 0, md2len = 0;
	char out[65], *hex;
	json_object *o;
	int len;

	(void)state;
	/* `openssl x509 -fingerprint -sha256`: SHA-256 over the DER. */
	assert_int_equal(X509_digest(x, EVP_sha256(), md, &mdlen), 1);
	len = i2d_X509(x, &der);
	assert_true(len > 0);
	assert_int_equal(EVP_Digest(der, (size_t)len, md2, &md2len,
	    EVP_sha256(), NULL), 1);
	assert_int_equal(mdlen, 32);
	assert_memory_equal(md, md2, 32);
	hex = sc_hex(md, mdlen);
	assert_non_null(hex);

	assert_int_equal(sc_cert_sha256_hex(x, out), 0);
	assert_string_equal(out, hex);
	o = describe(x);
	assert_string_equal(jstr(o, "sha256"), hex);
	for (const char *p = out; *p; p++)
		assert_true((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'));
	json_object_put(o);
	free(hex);
	OPENSSL_free(der);
	X509_free(x);
}

static void
test_dn_format(void **state)
{
	X509 *x = cert_new(k_ec256, 1, T_2026, T_2027);
	X509_NAME *empty;
	json_object *o;
	char *s;

	(void)state;
	subj_utf8(x, "C", "DE");
	subj_utf8(x, "O", "Doe, Inc.");
	subj_utf8(x, "CN", "J\xc3\xbcrgen M\xc3\xbcller");
	x = cert_sign(x, NULL, k_ec256);
	o = describe(x);
	/* RFC 2253 order and escaping, UTF-8 left readable. */
	assert_string_equal(jstr(o, "subject"),
	    "CN=J\xc3\xbcrgen M\xc3\xbcller,O=Doe\\, Inc.,C=DE");
	s = sc_name_oneline(X509_get_subject_name(x));
	assert_non_null(s);
	assert_string_equal(s, jstr(o, "subject"));
	free(s);
	json_object_put(o);
	X509_free(x);

	empty = X509_NAME_new();
	assert_non_null(empty);
	s = sc_name_oneline(empty);
	assert_non_null(s);
	assert_string_equal(s, "");
	free(s);
	/*
	 * OpenSSL will neither encode nor parse a name with bad UTF-8, but one
	 * built in memory can reach us: every value is then hex-dumped.
	 */
	assert_int_equal(X509_NAME_add_entry_by_txt(empty, "O", MBSTRING_UTF8,
	    (const unsigned char *)"Contoso", -1, -1, 0), 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(empty, "CN",
	    V_ASN1_UTF8STRING, (const unsigned char *)"a\xc3\x28", -1, -1, 0), 1);
	s = sc_name_oneline(empty);
	assert_non_null(s);
	assert_string_equal(s, "CN=#0C0361C328,O=#0C07436F6E746F736F");
	free(s);
	X509_NAME_free(empty);
	assert_null(sc_name_oneline(NULL));
}

static void
test_eku_and_key_usage_names(void **state)
{
	X509 *x = user_cert(k_ec256);
	json_object *o;

	(void)state;
	ext_conf(x, NID_ext_key_usage,
	    "serverAuth,clientAuth,1.3.6.1.4.1.311.20.2.2,1.3.6.1.4.1.99999.1");
	ext_conf(x, NID_key_usage, "digitalSignature,nonRepudiation,"
	    "keyEncipherment,dataEncipherment,keyAgreement,keyCertSign,cRLSign,"
	    "encipherOnly,decipherOnly");
	x = cert_sign(x, NULL, k_ec256);
	o = describe(x);
	ASSERT_ARR(jget(o, "eku"), "serverAuth", "clientAuth",
	    "msSmartcardLogin", "1.3.6.1.4.1.99999.1");
	ASSERT_ARR(jget(o, "key_usage"), "digitalSignature", "nonRepudiation",
	    "keyEncipherment", "dataEncipherment", "keyAgreement", "keyCertSign",
	    "cRLSign", "encipherOnly", "decipherOnly");
	json_object_put(o);
	X509_free(x);
}

static void
test_emails_dedup(void **state)
{
	X509 *x = cert_new(k_ec256, 1, T_2026, T_2027);
	json_object *o;

	(void)state;
	subj_utf8(x, "CN", "Alice");
	subj_add(x, "emailAddress", V_ASN1_IA5STRING, "Alice@Contoso.com", -1);
	subj_add(x, "emailAddress", V_ASN1_IA5STRING, "a.other@contoso.com", -1);
	san_set(x, gn_email("alice@contoso.com"), gn_email("ALICE@contoso.com"),
	    gn_email("al\x01ice@contoso.com"), NULL);
	x = cert_sign(x, NULL, k_ec256);
	o = describe(x);
	ASSERT_ARR(jget(o, "email"), "alice@contoso.com", "a.other@contoso.com");
	/* An email address is never a UPN. */
	assert_empty(jget(o, "upn"));
	json_object_put(o);
	X509_free(x);
}

/* ---- UPN ---- */

static void
test_upn_one(void **state)
{
	X509 *x = user_cert(k_ec256);
	json_object *u;

	(void)state;
	san_set(x, gn_email("alice@mail.contoso.com"),
	    gn_upn_str("alice@contoso.com"), NULL);
	x = cert_sign(x, NULL, k_ec256);
	u = upns(x, 0);
	ASSERT_ARR(u, "alice@contoso.com");
	json_object_put(u);
	assert_non_null(u = sc_cert_upns(x, NULL));
	json_object_put(u);
	X509_free(x);
}

static void
test_upn_multiple(void **state)
{
	X509 *x = user_cert(k_ec256);
	json_object *u;

	(void)state;
	san_set(x, gn_upn_str("alice@contoso.com"),
	    gn_other("1.3.6.1.4.1.99999.7", V_ASN1_UTF8STRING, "x@y", 3),
	    gn_upn_str("alice@fabrikam.com"),
	    gn_upn_str("alice@contoso.com"), NULL);
	subj_add(x, SC_OID_MS_UPN, V_ASN1_UTF8STRING, "subject@contoso.com", -1);
	x = cert_sign(x, NULL, k_ec256);
	/* All SAN UPNs, duplicates once; the subject is not consulted. */
	u = upns(x, 0);
	ASSERT_ARR(u, "alice@contoso.com", "alice@fabrikam.com");
	json_object_put(u);
	X509_free(x);
}

static void
test_upn_utf8_non_ascii(void **state)
{
	X509 *x = user_cert(k_ec256);
	json_object *u;

	(void)state;
	san_set(x, gn_upn_str("j\xc3\xbcrgen@m\xc3\xbcller.example"),
	    gn_upn_str("\xe7\x8e\x8b@\xf0\x9f\x98\x80.example"), NULL);
	x = cert_sign(x, NULL, k_ec256);
	u = upns(x, 0);
	ASSERT_ARR(u, "j\xc3\xbcrgen@m\xc3\xbcller.example",
	    "\xe7\x8e\x8b@\xf0\x9f\x98\x80.example");
	json_object_put(u);
	X509_free(x);
}

static void
test_upn_wrong_type(void **state)
{
	X509 *x = user_cert(k_ec256);
	json_object *u, *p;

	(void)state;
	san_set(x, gn_upn(V_ASN1_IA5STRING, "ia5@contoso.com", 15),
	    gn_upn(V_ASN1_OCTET_STRING, "oct@contoso.com", 15),
	    gn_upn(V_ASN1_PRINTABLESTRING, "printable", 9),
	    gn_upn_str("good@contoso.com"), NULL);
	x = cert_sign(x, NULL, k_ec256);
	u = upns(x, 3);
	ASSERT_ARR(u, "good@contoso.com");
	json_object_put(u);
	X509_free(x);

	/* Only malformed ones: no UPN at all. */
	x = user_cert(k_ec256);
	san_set(x, gn_upn(V_ASN1_IA5STRING, "ia5@contoso.com", 15),
	    gn_upn(V_ASN1_OCTET_STRING, "oct@contoso.com", 15), NULL);
	x = cert_sign(x, NULL, k_ec256);
	u = upns(x, 2);
	assert_empty(u);
	json_object_put(u);
	p = cba(x, 1, NULL, NULL, NULL);
	ASSERT_ARR(p, "no-upn");
	json_object_put(p);
	X509_free(x);
}

static void
test_upn_invalid_utf8(void **state)
{
	static const struct {
		const char *bytes;
		int len;
	} bad[] = {
		{ "a\xc3\x28@x", 5 },		/* bad continuation byte */
		{ "a\xc0\xaf@x", 5 },		/* overlong '/' */
		{ "a\xe0\x80\xaf@x", 6 },	/* overlong, 3 bytes */
		{ "a\xed\xa0\x80@x", 6 },	/* UTF-16 surrogate */
		{ "a\xf4\x90\x80\x80@x", 7 },	/* above U+10FFFF */
		{ "a\xff@x", 4 },		/* never valid */
		{ "a@x\xe2\x82", 5 },		/* truncated at the end */
		{ "", 0 },			/* empty */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		X509 *x = user_cert(k_ec256);
		json_object *u;

		san_set(x, gn_upn(V_ASN1_UTF8STRING, bad[i].bytes, bad[i].len),
		    gn_upn_str("ok@contoso.com"), NULL);
		x = cert_sign(x, NULL, k_ec256);
		u = upns(x, 1);
		ASSERT_ARR(u, "ok@contoso.com");
		json_object_put(u);
		X509_free(x);
	}
}

static void
test_upn_embedded_nul(void **state)
{
	X509 *x = user_cert(k_ec256);
	json_object *u, *o;

	(void)state;
	san_set(x, gn_upn(V_ASN1_UTF8STRING, "admin@contoso.com\0.evil.com", 27),
	    NULL);
	x = cert_sign(x, NULL, k_ec256);
	u = upns(x, 1);
	assert_empty(u);
	json_object_put(u);
	o = describe(x);
	assert_empty(jget(o, "upn"));
	json_object_put(o);
	X509_free(x);
}

static void
test_upn_subject_only(void **state)
{
	X509 *x = user_cert(k_ec256);
	json_object *u, *p;

	(void)state;
	subj_add(x, SC_OID_MS_UPN, V_ASN1_UTF8STRING, "bob@contoso.com", -1);
	san_set(x, gn_email("bob@contoso.com"), NULL);
	ext_conf(x, NID_ext_key_usage, "clientAuth");
	x = cert_sign(x, NULL, k_ec256);
	u = upns(x, 0);
	ASSERT_ARR(u, "bob@contoso.com");
	json_object_put(u);
	p = cba(x, 1, NULL, NULL, NULL);
	assert_empty(p);
	json_object_put(p);
	X509_free(x);

	/* No SAN at all, subject UPN. */
	x = user_cert(k_ec256);
	subj_add(x, "msUPN", V_ASN1_UTF8STRING, "carol@contoso.com", -1);
	x = cert_sign(x, NULL, k_ec256);
	u = upns(x, 0);
	ASSERT_ARR(u, "carol@contoso.com");
	json_object_put(u);
	X509_free(x);

	/* Malformed SAN UPN: fall back to the subject, count the bad one. */
	x = user_cert(k_ec256);
	subj_add(x, SC_OID_MS_UPN, V_ASN1_UTF8STRING, "dave@contoso.com", -1);
	san_set(x, gn_upn(V_ASN1_IA5STRING, "dave@contoso.com", 16), NULL);
	x = cert_sign(x, NULL, k_ec256);
	u = upns(x, 1);
	ASSERT_ARR(u, "dave@contoso.com");
	json_object_put(u);
	X509_free(x);

	/* A subject UPN attribute of another string type is malformed. */
	x = user_cert(k_ec256);
	subj_add(x, SC_OID_MS_UPN, V_ASN1_T61STRING, "eve@contoso.com", -1);
	x = cert_sign(x, NULL, k_ec256);
	u = upns(x, 1);
	assert_empty(u);
	json_object_put(u);
	X509_free(x);
}

static void
test_no_upn(void **state)
{
	X509 *x = cert_new(k_ec256, 1, T_2026, T_2027);
	json_object *u, *p;

	(void)state;
	/* A CN or an email that looks like a UPN is not one. */
	subj_utf8(x, "CN", "frank@contoso.com");
	san_set(x, gn_email("frank@contoso.com"), NULL);
	x = cert_sign(x, NULL, k_ec256);
	u = upns(x, 0);
	assert_empty(u);
	json_object_put(u);
	p = cba(x, -1, NULL, NULL, NULL);
	ASSERT_ARR(p, "no-upn");
	json_object_put(p);
	X509_free(x);
}

/* ---- CBA ---- */

static X509 *
good_leaf(EVP_PKEY *key, time_t nb, time_t na)
{
	X509 *x = cert_new(key, 7, nb, na);

	subj_utf8(x, "CN", "Alice");
	san_set(x, gn_upn_str("alice@contoso.com"), NULL);
	ext_conf(x, NID_ext_key_usage, "clientAuth,msSmartcardLogin");
	ext_conf(x, NID_key_usage, "critical,digitalSignature");
	return x;
}

static void
test_cba_suitable(void **state)
{
	X509 *x = cert_sign(good_leaf(k_ec256, T_2026, T_2027), NULL, k_ec256);
	char *reason = (char *)"untouched";
	json_object *p;

	(void)state;
	p = cba(x, 1, NULL, NULL, &reason);
	assert_empty(p);
	assert_null(reason);
	json_object_put(p);
	p = cba(x, -1, NULL, NULL, NULL);
	assert_empty(p);
	json_object_put(p);
	p = cba(x, 0, NULL, NULL, NULL);
	ASSERT_ARR(p, "no-private-key");
	json_object_put(p);
	X509_free(x);
}

static void
test_cba_eku(void **state)
{
	X509 *x;
	json_object *p;

	(void)state;
	/* Absent EKU: any purpose. */
	x = user_cert(k_ec256);
	san_set(x, gn_upn_str("alice@contoso.com"), NULL);
	x = cert_sign(x, NULL, k_ec256);
	p = cba(x, 1, NULL, NULL, NULL);
	assert_empty(p);
	json_object_put(p);
	X509_free(x);

	/* anyExtendedKeyUsage is fine. */
	x = user_cert(k_ec256);
	san_set(x, gn_upn_str("alice@contoso.com"), NULL);
	ext_conf(x, NID_ext_key_usage, "anyExtendedKeyUsage");
	x = cert_sign(x, NULL, k_ec256);
	p = cba(x, 1, NULL, NULL, NULL);
	assert_empty(p);
	json_object_put(p);
	X509_free(x);

	/* Smart card logon without clientAuth is not enough. */
	x = user_cert(k_ec256);
	san_set(x, gn_upn_str("alice@contoso.com"), NULL);
	ext_conf(x, NID_ext_key_usage, "msSmartcardLogin,emailProtection");
	x = cert_sign(x, NULL, k_ec256);
	p = cba(x, 1, NULL, NULL, NULL);
	ASSERT_ARR(p, "no-client-auth-eku");
	json_object_put(p);
	X509_free(x);
}

static void
test_cba_key_usage(void **state)
{
	X509 *x = user_cert(k_ec256);
	json_object *p;

	(void)state;
	san_set(x, gn_upn_str("alice@contoso.com"), NULL);
	ext_conf(x, NID_key_usage, "critical,keyEncipherment,nonRepudiation");
	x = cert_sign(x, NULL, k_ec256);
	p = cba(x, 1, NULL, NULL, NULL);
	ASSERT_ARR(p, "no-digital-signature");
	json_object_put(p);
	X509_free(x);
}

static void
test_cba_validity(void **state)
{
	X509 *x;
	json_object *p;
	struct sc_cba_input in = { 1, NULL, NULL, 0 };

	(void)state;
	x = cert_sign(good_leaf(k_ec256, T_2026 - 400 * DAY, T_NOW - 1), NULL,
	    k_ec256);
	p = cba(x, 1, NULL, NULL, NULL);
	ASSERT_ARR(p, "expired");
	json_object_put(p);
	X509_free(x);

	x = cert_sign(good_leaf(k_ec256, T_NOW + 1, T_2027), NULL, k_ec256);
	p = cba(x, 1, NULL, NULL, NULL);
	ASSERT_ARR(p, "not-yet-valid");
	json_object_put(p);
	X509_free(x);

	/* The boundaries themselves are inside the validity period. */
	x = cert_sign(good_leaf(k_ec256, T_NOW, T_NOW), NULL, k_ec256);
	p = cba(x, 1, NULL, NULL, NULL);
	assert_empty(p);
	json_object_put(p);
	X509_free(x);

	/* now == 0: the current time; 1970..1971 is long over. */
	x = cert_sign(good_leaf(k_ec256, 0, 365 * DAY), NULL, k_ec256);
	p = sc_cert_cba(x, &in, NULL);
	ASSERT_ARR(p, "expired");
	json_object_put(p);
	X509_free(x);
}

static void
test_cba_weak_keys(void **state)
{
	X509 *x;
	json_object *p, *o, *key;

	(void)state;
	x = cert_sign(good_leaf(k_rsa1024, T_2026, T_2027), NULL, k_rsa1024);
	p = cba(x, 1, NULL, NULL, NULL);
	ASSERT_ARR(p, "weak-key");
	json_object_put(p);
	o = describe(x);
	key = jget(o, "key");
	assert_string_equal(jstr(key, "type"), "rsa");
	assert_int_equal(json_object_get_int(jget(key, "bits")), 1024);
	json_object_put(o);
	X509_free(x);

	x = cert_sign(good_leaf(k_ec224, T_2026, T_2027), NULL, k_ec224);
	p = cba(x, 1, NULL, NULL, NULL);
	ASSERT_ARR(p, "weak-key");
	json_object_put(p);
	X509_free(x);

	x = cert_sign(good_leaf(k_rsa2048, T_2026, T_2027), NULL, k_rsa2048);
	p = cba(x, 1, NULL, NULL, NULL);
	assert_empty(p);
	json_object_put(p);
	X509_free(x);

	x = cert_sign(good_leaf(k_ec384, T_2026, T_2027), NULL, k_ec384);
	p = cba(x, 1, NULL, NULL, NULL);
	assert_empty(p);
	json_object_put(p);
	X509_free(x);
}

static void
test_cba_every_code_in_order(void **state)
{
	X509 *x = cert_new(k_rsa1024, 9, T_2027, T_2026);	/* both ways invalid */
	char *reason = NULL;
	json_object *p;

	(void)state;
	subj_utf8(x, "CN", "Mallory");
	ext_conf(x, NID_ext_key_usage, "serverAuth");
	ext_conf(x, NID_key_usage, "keyEncipherment");
	x = cert_sign(x, NULL, k_rsa1024);
	p = cba(x, 0, "/nonexistent/scagent-test/ca.pem", NULL, &reason);
	ASSERT_ARR(p, "no-client-auth-eku", "no-upn", "expired", "not-yet-valid",
	    "no-digital-signature", "no-private-key", "weak-key",
	    "chain-untrusted");
	assert_non_null(reason);
	json_object_put(p);
	free(reason);
	X509_free(x);
}

/* ---- chain ---- */

struct pki {
	X509 *root, *inter, *leaf;
	char *cafile;
	STACK_OF(X509) *untrusted;
};

static void
pki_make(struct pki *k, time_t inter_na, time_t leaf_na)
{
	X509 *l;

	memset(k, 0, sizeof(*k));
	k->root = ca_cert("Contoso Root CA", k_ca, NULL, k_ca, T_2026 - 400 * DAY,
	    T_2027 + 400 * DAY);
	k->inter = ca_cert("Contoso Issuing CA", k_int, k->root, k_ca,
	    T_2026 - 200 * DAY, inter_na);
	l = good_leaf(k_ec256, T_2026 - 100 * DAY, leaf_na);
	k->leaf = cert_sign(l, k->inter, k_int);
	k->cafile = write_pem(&k->root, 1);
	k->untrusted = sk_X509_new_null();
	assert_non_null(k->untrusted);
	assert_true(sk_X509_push(k->untrusted, k->inter) > 0);
}

static void
pki_free(struct pki *k)
{
	unlink(k->cafile);
	free(k->cafile);
	sk_X509_free(k->untrusted);
	X509_free(k->root);
	X509_free(k->inter);
	X509_free(k->leaf);
}

static void
test_chain_good(void **state)
{
	struct pki k;
	char *reason = NULL;
	json_object *p, *o;

	(void)state;
	pki_make(&k, T_2027 + 200 * DAY, T_2027);
	p = cba(k.leaf, 1, k.cafile, k.untrusted, &reason);
	assert_empty(p);
	assert_null(reason);
	json_object_put(p);
	o = describe(k.leaf);
	assert_string_equal(jstr(o, "subject"), "CN=Alice");
	assert_string_equal(jstr(o, "issuer"), "CN=Contoso Issuing CA");
	json_object_put(o);
	/* No cafile: chain not checked, even without intermediates. */
	p = cba(k.leaf, 1, NULL, NULL, &reason);
	assert_empty(p);
	assert_null(reason);
	json_object_put(p);
	pki_free(&k);
}

static void
test_chain_missing_intermediate(void **state)
{
	struct pki k;
	char *reason = NULL;
	json_object *p;

	(void)state;
	pki_make(&k, T_2027 + 200 * DAY, T_2027);
	p = cba(k.leaf, 1, k.cafile, NULL, &reason);
	ASSERT_ARR(p, "chain-untrusted");
	assert_non_null(reason);
	assert_string_equal(reason, "unable to get local issuer certificate");
	json_object_put(p);
	free(reason);
	pki_free(&k);
}

static void
test_chain_wrong_anchor(void **state)
{
	struct pki k;
	X509 *other;
	char *reason = NULL, *otherfile;
	json_object *p;

	(void)state;
	pki_make(&k, T_2027 + 200 * DAY, T_2027);
	other = ca_cert("Fabrikam Root CA", k_int, NULL, k_int, T_2026, T_2027);
	otherfile = write_pem(&other, 1);
	p = cba(k.leaf, 1, otherfile, k.untrusted, &reason);
	ASSERT_ARR(p, "chain-untrusted");
	/* Where it stopped: the issuing CA has no issuer in the CA file. */
	assert_string_equal(reason,
	    "CN=Contoso Issuing CA: unable to get local issuer certificate");
	json_object_put(p);
	free(reason);
	unlink(otherfile);
	free(otherfile);
	X509_free(other);
	pki_free(&k);
}

static void
test_chain_expired_leaf_reported_once(void **state)
{
	struct pki k;
	char *reason = NULL;
	json_object *p;

	(void)state;
	pki_make(&k, T_2027 + 200 * DAY, T_NOW - DAY);
	p = cba(k.leaf, 1, k.cafile, k.untrusted, &reason);
	ASSERT_ARR(p, "expired");
	assert_null(reason);
	json_object_put(p);
	pki_free(&k);
}

static void
test_chain_expired_intermediate(void **state)
{
	struct pki k;
	char *reason = NULL;
	json_object *p;

	(void)state;
	pki_make(&k, T_NOW - DAY, T_2027);
	p = cba(k.leaf, 1, k.cafile, k.untrusted, &reason);
	ASSERT_ARR(p, "chain-untrusted");
	/* The intermediate's expiry is the chain's problem, and named. */
	assert_string_equal(reason, "CN=Contoso Issuing CA: certificate has expired");
	json_object_put(p);
	free(reason);
	pki_free(&k);
}

static void
test_anchors_pem(void **state)
{
	static const char *const bad[] = {
		"", "not a certificate\n",
		"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
	};
	struct pki k;
	X509_STORE *st = (X509_STORE *)1;
	char *text, *pem;
	BIO *b;
	long n;
	int count = -1;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(sc_cert_anchors_pem(bad[i], strlen(bad[i]), &st, &count), SC_ERR_CERT);
		assert_null(st);
		assert_int_equal(count, 0);
	}
	/* Two certificates with text around them (openssl x509 -text) are read; a bad one after is not. */
	pki_make(&k, T_2027 + 200 * DAY, T_2027);
	assert_non_null(b = BIO_new(BIO_s_mem()));
	assert_true(BIO_puts(b, "Certificate:\n    Data: ...\n") > 0);
	assert_int_equal(PEM_write_bio_X509(b, k.root), 1);
	assert_true(BIO_puts(b, "subject=CN = Contoso Issuing CA\n") > 0);
	assert_int_equal(PEM_write_bio_X509(b, k.inter), 1);
	n = BIO_get_mem_data(b, &pem);
	assert_non_null(text = malloc((size_t)n + 80));
	memcpy(text, pem, (size_t)n);
	assert_int_equal(sc_cert_anchors_pem(text, (size_t)n, &st, &count), SC_OK);
	assert_int_equal(count, 2);
	X509_STORE_free(st);
	memcpy(text + n, bad[2], strlen(bad[2]));
	assert_int_equal(sc_cert_anchors_pem(text, (size_t)n + strlen(bad[2]), &st, &count), SC_ERR_CERT);
	assert_null(st);
	free(text);
	BIO_free(b);
	pki_free(&k);
}

/*
 * Root -> intermediate with these extensions -> good leaf (clientAuth),
 * checked against the root: the problems, and the reason in *reason.
 */
static json_object *
chain_with_inter(const char *bc, const char *ku, const char *eku, char **reason)
{
	struct pki k;
	json_object *p;

	pki_make(&k, T_2027 + 200 * DAY, T_2027);
	X509_free(k.inter);
	X509_free(k.leaf);
	k.inter = ca_cert_ext("Contoso Issuing CA", k_int, k.root, k_ca, bc, ku, eku);
	k.leaf = cert_sign(good_leaf(k_ec256, T_2026 - 100 * DAY, T_2027), k.inter, k_int);
	sk_X509_zero(k.untrusted);
	assert_true(sk_X509_push(k.untrusted, k.inter) > 0);
	p = cba(k.leaf, 1, k.cafile, k.untrusted, reason);
	pki_free(&k);
	return p;
}

static void
test_chain_purpose(void **state)
{
	char *reason = NULL;
	json_object *p;

	(void)state;
	/* An issuing CA limited to serverAuth: a TLS server refuses the leaf. */
	p = chain_with_inter("critical,CA:TRUE", "critical,keyCertSign,cRLSign",
	    "serverAuth", &reason);
	ASSERT_ARR(p, "chain-purpose");
	assert_string_equal(reason, "CN=Contoso Issuing CA: unsuitable certificate purpose");
	json_object_put(p);
	free(reason);
	reason = NULL;
	/* One that lists clientAuth (among others) is fine. */
	p = chain_with_inter("critical,CA:TRUE", "critical,keyCertSign,cRLSign",
	    "serverAuth,clientAuth", &reason);
	assert_empty(p);
	assert_null(reason);
	json_object_put(p);
}

static void
test_chain_invalid_ca(void **state)
{
	static const char *const cases[][2] = {
		{ "critical,CA:FALSE", "critical,keyCertSign,cRLSign" },
		{ "critical,CA:TRUE", "critical,digitalSignature,cRLSign" },
		{ NULL, "critical,keyCertSign,cRLSign" },
	};
	char *reason = NULL;
	json_object *p;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		p = chain_with_inter(cases[i][0], cases[i][1], NULL, &reason);
		ASSERT_ARR(p, "chain-invalid-ca");
		assert_string_equal(reason, "CN=Contoso Issuing CA: invalid CA certificate");
		json_object_put(p);
		free(reason);
		reason = NULL;
	}
}

static void
test_chain_leaf_purpose_not_twice(void **state)
{
	struct pki k;
	char *reason = NULL;
	json_object *p;
	X509 *l;

	(void)state;
	/* A serverAuth-only leaf under a good chain: its EKU code, no chain code. */
	pki_make(&k, T_2027 + 200 * DAY, T_2027);
	l = cert_new(k_ec256, 7, T_2026 - 100 * DAY, T_2027);
	subj_utf8(l, "CN", "Alice");
	ext_conf(l, NID_ext_key_usage, "serverAuth");
	san_set(l, gn_upn_str("alice@contoso.com"), NULL);
	l = cert_sign(l, k.inter, k_int);
	p = cba(l, 1, k.cafile, k.untrusted, &reason);
	ASSERT_ARR(p, "no-client-auth-eku");
	assert_null(reason);
	json_object_put(p);
	X509_free(l);
	pki_free(&k);
}

/* ---- words ---- */

static void
test_explain_advice(void **state)
{
	static const char *const codes[] = {
		"no-client-auth-eku", "no-upn", "expired", "not-yet-valid",
		"no-digital-signature", "no-private-key", "weak-key",
		"chain-untrusted", "chain-purpose", "chain-invalid-ca",
	};
	const size_t n = sizeof(codes) / sizeof(codes[0]);
	const char *generic_e = sc_cba_explain("no-such-code");
	const char *generic_a = sc_cba_advice("no-such-code");

	(void)state;
	assert_non_null(generic_e);
	assert_non_null(generic_a);
	assert_true(strlen(generic_e) > 20);
	assert_true(strlen(generic_a) > 20);
	assert_string_equal(sc_cba_explain(NULL), generic_e);
	assert_string_equal(sc_cba_advice(NULL), generic_a);
	for (size_t i = 0; i < n; i++) {
		const char *e = sc_cba_explain(codes[i]);
		const char *a = sc_cba_advice(codes[i]);

		assert_non_null(e);
		assert_non_null(a);
		assert_true(strlen(e) > 20);
		assert_true(strlen(a) > 20);
		assert_string_not_equal(e, generic_e);
		assert_string_not_equal(a, generic_a);
		assert_string_not_equal(e, a);
		assert_int_equal(e[strlen(e) - 1], '.');
		assert_int_equal(a[strlen(a) - 1], '.');
		for (size_t j = 0; j < i; j++) {
			assert_string_not_equal(e, sc_cba_explain(codes[j]));
			assert_string_not_equal(a, sc_cba_advice(codes[j]));
		}
	}
	assert_string_equal(sc_cba_explain("no-upn"),
	    "The certificate carries no user principal name (UPN), so Exchange "
	    "cannot map it to a mailbox account.");
}

static void
test_bad_arguments(void **state)
{
	json_object *o = json_object_new_object(), *p;
	char out[65];
	int bad = -1;

	(void)state;
	assert_int_equal(sc_cert_describe(NULL, o), SC_ERR_INVALID);
	assert_int_equal(sc_cert_sha256_hex(NULL, out), SC_ERR_INVALID);
	p = sc_cert_upns(NULL, &bad);
	assert_empty(p);
	assert_int_equal(bad, 0);
	json_object_put(p);
	json_object_put(o);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_describe_fields),
		cmocka_unit_test(test_describe_rsa_and_small_serial),
		cmocka_unit_test(test_describe_ec_curves),
		cmocka_unit_test(test_sha256_matches_openssl),
		cmocka_unit_test(test_dn_format),
		cmocka_unit_test(test_eku_and_key_usage_names),
		cmocka_unit_test(test_emails_dedup),
		cmocka_unit_test(test_upn_one),
		cmocka_unit_test(test_upn_multiple),
		cmocka_unit_test(test_upn_utf8_non_ascii),
		cmocka_unit_test(test_upn_wrong_type),
		cmocka_unit_test(test_upn_invalid_utf8),
		cmocka_unit_test(test_upn_embedded_nul),
		cmocka_unit_test(test_upn_subject_only),
		cmocka_unit_test(test_no_upn),
		cmocka_unit_test(test_cba_suitable),
		cmocka_unit_test(test_cba_eku),
		cmocka_unit_test(test_cba_key_usage),
		cmocka_unit_test(test_cba_validity),
		cmocka_unit_test(test_cba_weak_keys),
		cmocka_unit_test(test_cba_every_code_in_order),
		cmocka_unit_test(test_chain_good),
		cmocka_unit_test(test_chain_missing_intermediate),
		cmocka_unit_test(test_chain_wrong_anchor),
		cmocka_unit_test(test_chain_expired_leaf_reported_once),
		cmocka_unit_test(test_chain_expired_intermediate),
		cmocka_unit_test(test_anchors_pem),
		cmocka_unit_test(test_chain_purpose),
		cmocka_unit_test(test_chain_invalid_ca),
		cmocka_unit_test(test_chain_leaf_purpose_not_twice),
		cmocka_unit_test(test_explain_advice),
		cmocka_unit_test(test_bad_arguments),
	};

	return cmocka_run_group_tests_name("certinfo", tests, group_setup,
	    group_teardown);
}
