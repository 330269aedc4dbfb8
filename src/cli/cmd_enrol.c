/*
 * scagent keygen, csr, import: enrolment of a key pair that never leaves its
 * token. The certificate request is built here with OpenSSL and only the
 * hash of its to-be-signed part goes to the agent to be signed on the token.
 */
#include "config.h"
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include "cli/cli.h"
#include "cli/commands.h"
#include "common/err.h"
#include "common/util.h"
#include "proto/proto.h"

#define CERT_FILE_MAX (1024 * 1024)
#define OID_UPN "1.3.6.1.4.1.311.20.2.3"
#define OID_TEMPLATE_NAME "1.3.6.1.4.1.311.20.2"	/* szOID_ENROLL_CERTTYPE_EXTENSION */

int
enrol_call(struct cli *c, const char *op, json_object *args, json_object **out)
{
	const char *text = args != NULL ? sc_proto_text(args) : NULL;
	char *res = NULL;
	int r;

	*out = NULL;
	r = args != NULL && text == NULL ? SC_ERR_NOMEM : scagent_call(c->client, op, text, &res);
	if (text != NULL)
		explicit_bzero((char *)text, strlen(text));	/* may hold PINs */
	sc_proto_wipe_pins(args);
	json_object_put(args);
	if (r != SC_OK) {
		cli_err("%s", *scagent_error(c->client) ? scagent_error(c->client) : scagent_strerror(r));
		return r;
	}
	*out = json_tokener_parse(res);
	scagent_free(res);
	if (*out == NULL) {
		cli_err("the agent sent an answer that is not JSON");
		return SC_ERR_PROTOCOL;
	}
	return SC_OK;
}

static const char *
jstr(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && v != NULL ? json_object_get_string(v) : "";
}

/* ------------------------------------------------------------------ */
/* keygen */

int
cmd_keygen(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "token", required_argument, NULL, 't' },
		{ "type", required_argument, NULL, 'T' },
		{ "label", required_argument, NULL, 'l' },
		{ "id", required_argument, NULL, 'i' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	static const char use[] = "usage: scagent keygen --token LABEL --type rsa:2048|rsa:3072|ec:p256 "
	    "[--label L] [--id HEX] [--json]";
	const char *token = NULL, *type = NULL, *label = NULL, *id = NULL;
	json_object *args, *res = NULL;
	unsigned char *tmp = NULL;
	size_t tmplen = 0;
	int json = 0, ch, rc, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "t:T:l:i:jh", opts, NULL)) != -1) {
		switch (ch) {
		case 't': token = optarg; break;
		case 'T': type = optarg; break;
		case 'l': label = optarg; break;
		case 'i': id = optarg; break;
		case 'j': json = 1; break;
		case 'h': printf("%s\n", use); return EX_SC_OK;
		default: return EX_SC_USAGE;
		}
	}
	if (token == NULL || type == NULL || optind != argc) {
		cli_err("%s", use);
		return EX_SC_USAGE;
	}
	if (sc_keytype_parse(type) < 0) {
		cli_err("--type '%s': use rsa:2048, rsa:3072 or ec:p256", type);
		return EX_SC_USAGE;
	}
	if (id != NULL && (sc_unhex(id, &tmp, &tmplen) != SC_OK || tmplen == 0)) {
		cli_err("--id '%s': give the key ID as hex digits, two per byte (e.g. 01)", id);
		return EX_SC_USAGE;
	}
	free(tmp);
	if (c->direct) {
		cli_err("keygen goes through the agent; it does not go with --direct");
		return EX_SC_USAGE;
	}
	if ((rc = cli_open_agent(c)) != EX_SC_OK)
		return rc;
	args = json_object_new_object();
	json_object_object_add(args, "token", json_object_new_string(token));
	json_object_object_add(args, "type", json_object_new_string(type));
	if (label != NULL)
		json_object_object_add(args, "label", json_object_new_string(label));
	if (id != NULL)
		json_object_object_add(args, "key_id", json_object_new_string(id));
	if ((r = enrol_call(c, "keygen", args, &res)) != SC_OK)
		return cli_exit_for(r);
	if (json)
		printf("%s\n", json_object_to_json_string_ext(res, JSON_C_TO_STRING_PRETTY |
		    JSON_C_TO_STRING_NOSLASHESCAPE));
	else if (cli_escape_json(res) == SC_OK)
		printf("generated %s %s key \"%s\" (id %s) on token \"%s\"\n%s\n",
		    jstr(res, "type"), *jstr(res, "curve") ? jstr(res, "curve") : jstr(res, "bits"),
		    jstr(res, "label"), jstr(res, "id"), jstr(res, "token"), jstr(res, "uri"));
	json_object_put(res);
	return EX_SC_OK;
}

/* ------------------------------------------------------------------ */
/* csr */

/* One attribute-value pair of a DN being parsed. */
struct ava {
	char *type, *value;
	int rdn;		/* index of its RDN (multi-valued RDNs share one) */
};

static void
avas_free(struct ava *v, int n)
{
	for (int i = 0; i < n; i++) {
		free(v[i].type);
		free(v[i].value);
	}
	free(v);
}

static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * Parse a DN: RFC 4514 ("CN=Alice,O=Contoso", most significant RDN last;
 * '+' joins multi-valued RDNs; backslash escapes, \XX hex bytes) or
 * OpenSSL's "/O=Contoso/CN=Alice" (most significant first). Values are UTF-8.
 */
static int
parse_dn(const char *s, X509_NAME **out, char *why, size_t whylen)
{
	int slash = *s == '/', n = 0, rdn = 0, r = SC_ERR_INVALID;
	char sep = slash ? '/' : ',';
	struct ava *v = NULL, *nv;
	size_t len = strlen(s);
	char *buf = malloc(len + 1), *type = NULL;
	size_t bl = 0;
	X509_NAME *nm = NULL;
	const char *p = slash ? s + 1 : s;

	*out = NULL;
	if (buf == NULL)
		return SC_ERR_NOMEM;
	for (;; p++) {
		int end = *p == '\0' || *p == sep || (!slash && *p == '+');
		if (!end && *p == '\\') {
			int h1 = hexval((unsigned char)p[1]), h2 = h1 >= 0 ? hexval((unsigned char)p[2]) : -1;
			if (h1 >= 0 && h2 >= 0) {
				buf[bl++] = (char)(h1 * 16 + h2);
				p += 2;
			} else if (p[1] != '\0') {
				buf[bl++] = *++p;
			} else {
				snprintf(why, whylen, "the subject ends in a lone backslash");
				goto out;
			}
			continue;
		}
		if (!end && *p == '=' && type == NULL) {
			buf[bl] = '\0';
			while (bl > 0 && buf[bl - 1] == ' ')
				buf[--bl] = '\0';
			type = strdup(buf + strspn(buf, " "));
			bl = 0;
			continue;
		}
		if (!end) {
			if (bl == 0 && *p == ' ' && type != NULL)
				continue;	/* blanks after '=' */
			buf[bl++] = *p;
			continue;
		}
		buf[bl] = '\0';
		if (type == NULL || *type == '\0' || bl == 0) {
			if (type == NULL && bl == 0 && *p == '\0' && n > 0)
				break;	/* a trailing separator */
			snprintf(why, whylen, "the subject \"%s\" is not a DN: write it as type=value pairs, "
			    "e.g. \"CN=Alice,O=Contoso\" or \"/O=Contoso/CN=Alice\"", s);
			goto out;
		}
		if (buf[0] == '#' && !slash) {
			snprintf(why, whylen, "hex-encoded values (\"#...\") in the subject are not supported");
			goto out;
		}
		if ((nv = realloc(v, (size_t)(n + 1) * sizeof(*v))) == NULL) {
			r = SC_ERR_NOMEM;
			goto out;
		}
		v = nv;
		v[n].type = type;
		v[n].value = strdup(buf);
		v[n].rdn = rdn;
		type = NULL;
		n++;
		bl = 0;
		if (*p != '+')
			rdn++;
		if (*p == '\0')
			break;
	}
	if (n == 0) {
		snprintf(why, whylen, "the subject is empty");
		goto out;
	}
	if ((nm = X509_NAME_new()) == NULL) {
		r = SC_ERR_NOMEM;
		goto out;
	}
	/* RFC 4514 lists the most significant RDN last: add in reverse. */
	for (int k = 0; k < rdn; k++) {
		int want = slash ? k : rdn - 1 - k, first = 1;
		for (int i = 0; i < n; i++) {
			if (v[i].rdn != want)
				continue;
			if (!X509_NAME_add_entry_by_txt(nm, v[i].type, MBSTRING_UTF8,
			    (const unsigned char *)v[i].value, -1, -1, first ? 0 : -1)) {
				snprintf(why, whylen, "subject attribute \"%s=%s\": unknown attribute type or "
				    "invalid value (use CN, O, OU, C, L, ST, DC, emailAddress, UID or an OID)",
				    v[i].type, v[i].value);
				ERR_clear_error();
				goto out;
			}
			first = 0;
		}
	}
	*out = nm;
	nm = NULL;
	r = SC_OK;
out:
	X509_NAME_free(nm);
	avas_free(v, n);
	free(type);
	free(buf);
	return r;
}

static int
add_ext(STACK_OF(X509_EXTENSION) **exts, int nid, void *value, int crit)
{
	return X509V3_add1_i2d(exts, nid, value, crit, X509V3_ADD_APPEND) == 1 ? SC_OK : SC_ERR_NOMEM;
}

/* SAN with otherName UPNs (UTF8String, built with the API) and e-mail addresses. */
static int
san_ext(STACK_OF(X509_EXTENSION) **exts, char **upns, int nupn, char **emails, int nemail,
    char *why, size_t whylen)
{
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	int r = SC_ERR_NOMEM;

	if (gens == NULL)
		return r;
	for (int i = 0; i < nupn; i++) {
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_TYPE *val = ASN1_TYPE_new();
		ASN1_STRING *u = NULL;
		ASN1_OBJECT *oid = OBJ_txt2obj(OID_UPN, 1);
		if (g == NULL || val == NULL || oid == NULL ||
		    ASN1_mbstring_copy(&u, (const unsigned char *)upns[i], -1, MBSTRING_UTF8,
		    B_ASN1_UTF8STRING) <= 0) {
			GENERAL_NAME_free(g);
			ASN1_TYPE_free(val);
			ASN1_OBJECT_free(oid);
			ERR_clear_error();
			if (g != NULL && val != NULL && oid != NULL) {
				snprintf(why, whylen, "--upn '%s' is not valid UTF-8", upns[i]);
				r = SC_ERR_INVALID;
			}
			goto out;
		}
		ASN1_TYPE_set(val, V_ASN1_UTF8STRING, u);
		if (!GENERAL_NAME_set0_othername(g, oid, val)) {
			GENERAL_NAME_free(g);
			ASN1_TYPE_free(val);
			ASN1_OBJECT_free(oid);
			goto out;
		}
		sk_GENERAL_NAME_push(gens, g);
	}
	for (int i = 0; i < nemail; i++) {
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
		for (const char *q = emails[i]; *q; q++)
			if ((unsigned char)*q >= 0x80) {
				snprintf(why, whylen, "--email '%s': an e-mail SAN is ASCII (IA5String); put "
				    "international addresses in --upn", emails[i]);
				GENERAL_NAME_free(g);
				ASN1_IA5STRING_free(ia5);
				r = SC_ERR_INVALID;
				goto out;
			}
		if (g == NULL || ia5 == NULL || !ASN1_STRING_set(ia5, emails[i], -1)) {
			GENERAL_NAME_free(g);
			ASN1_IA5STRING_free(ia5);
			goto out;
		}
		GENERAL_NAME_set0_value(g, GEN_EMAIL, ia5);
		sk_GENERAL_NAME_push(gens, g);
	}
	r = sk_GENERAL_NAME_num(gens) > 0 ? add_ext(exts, NID_subject_alt_name, gens, 0) : SC_OK;
out:
	GENERAL_NAMES_free(gens);
	return r;
}

/* The AD CS certificate template name extension (a BMPString), as Windows clients send it. */
static int
template_ext(STACK_OF(X509_EXTENSION) **exts, const char *name)
{
	ASN1_STRING *bmp = NULL;
	ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
	ASN1_OBJECT *oid = OBJ_txt2obj(OID_TEMPLATE_NAME, 1);
	X509_EXTENSION *ext = NULL;
	unsigned char *der = NULL;
	int n, r = SC_ERR_NOMEM;

	if (os == NULL || oid == NULL ||
	    ASN1_mbstring_copy(&bmp, (const unsigned char *)name, -1, MBSTRING_ASC, B_ASN1_BMPSTRING) <= 0 ||
	    (n = i2d_ASN1_BMPSTRING(bmp, &der)) <= 0 || !ASN1_OCTET_STRING_set(os, der, n) ||
	    (ext = X509_EXTENSION_create_by_OBJ(NULL, oid, 0, os)) == NULL)
		goto out;
	if (X509v3_add_ext(exts, ext, -1) != NULL)
		r = SC_OK;
out:
	X509_EXTENSION_free(ext);
	OPENSSL_free(der);
	ASN1_STRING_free(bmp);
	ASN1_OCTET_STRING_free(os);
	ASN1_OBJECT_free(oid);
	return r;
}

static int
csr_extensions(X509_REQ *req, int rsa, int smartcard, char **upns, int nupn, char **emails,
    int nemail, char *why, size_t whylen)
{
	STACK_OF(X509_EXTENSION) *exts = NULL;
	EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
	ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
	int r = SC_ERR_NOMEM;

	if (eku == NULL || ku == NULL)
		goto out;
	/* keyUsage: digitalSignature (bit 0), and keyEncipherment (bit 2) for RSA. */
	if (!ASN1_BIT_STRING_set_bit(ku, 0, 1) || (rsa && !ASN1_BIT_STRING_set_bit(ku, 2, 1)))
		goto out;
	sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth));
	sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(smartcard ? NID_ms_smartcard_login : NID_email_protect));
	if ((r = add_ext(&exts, NID_key_usage, ku, 1)) != SC_OK ||
	    (r = add_ext(&exts, NID_ext_key_usage, eku, 0)) != SC_OK ||
	    (r = san_ext(&exts, upns, nupn, emails, nemail, why, whylen)) != SC_OK ||
	    (r = template_ext(&exts, smartcard ? "SmartcardLogon" : "User")) != SC_OK)
		goto out;
	r = X509_REQ_add_extensions(req, exts) == 1 ? SC_OK : SC_ERR_NOMEM;
out:
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	sk_ASN1_OBJECT_free(eku);	/* the objects are static: OBJ_nid2obj */
	ASN1_BIT_STRING_free(ku);
	return r;
}

/* Sign the request's to-be-signed part on the token through the agent, then check it. */
static int
csr_sign(struct cli *c, X509_REQ *req, EVP_PKEY *pk, const char *ref, int rsa)
{
	unsigned char *tbs = NULL, md[32], *sig = NULL;
	unsigned int mdlen = sizeof(md);
	size_t siglen = 0;
	int tbslen, r = SC_ERR_NOMEM;
	X509_ALGOR *alg = X509_ALGOR_new();
	ASN1_BIT_STRING *bits = NULL;
	json_object *args, *res = NULL, *v;
	char *b64 = NULL;

	if (alg == NULL || (tbslen = i2d_re_X509_REQ_tbs(req, &tbs)) <= 0 ||
	    !EVP_Digest(tbs, (size_t)tbslen, md, &mdlen, EVP_sha256(), NULL) ||
	    (b64 = sc_b64(md, mdlen)) == NULL)
		goto out;
	args = json_object_new_object();
	json_object_object_add(args, "ref", json_object_new_string(ref));
	json_object_object_add(args, "alg", json_object_new_string(sc_alg_name(rsa ? SC_ALG_RSA_PKCS1_SHA256 :
	    SC_ALG_ECDSA_SHA256)));
	json_object_object_add(args, "digest", json_object_new_string(b64));
	if ((r = enrol_call(c, "sign-key", args, &res)) != SC_OK)
		goto out;
	if (!json_object_object_get_ex(res, "signature", &v) ||
	    sc_unb64(json_object_get_string(v), &sig, &siglen) != SC_OK) {
		cli_err("the agent sent no signature");
		r = SC_ERR_PROTOCOL;
		goto out;
	}
	/* sha256WithRSAEncryption has NULL parameters; ecdsa-with-SHA256 none. */
	r = SC_ERR_NOMEM;
	if (!X509_ALGOR_set0(alg, OBJ_nid2obj(rsa ? NID_sha256WithRSAEncryption : NID_ecdsa_with_SHA256),
	    rsa ? V_ASN1_NULL : V_ASN1_UNDEF, NULL) || (bits = ASN1_BIT_STRING_new()) == NULL ||
	    !ASN1_BIT_STRING_set(bits, sig, (int)siglen))
		goto out;
	bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
	bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;	/* no unused bits */
	if (!X509_REQ_set1_signature_algo(req, alg))
		goto out;
	X509_REQ_set0_signature(req, bits);
	bits = NULL;
	if (X509_REQ_verify(req, pk) != 1) {
		cli_err("the signature the token made over the request does not verify with the key's "
		    "public key: nothing was written");
		ERR_clear_error();
		r = SC_ERR_BAD_SIGNATURE;
		goto out;
	}
	r = SC_OK;
out:
	OPENSSL_free(tbs);
	free(b64);
	free(sig);
	json_object_put(res);
	X509_ALGOR_free(alg);
	ASN1_BIT_STRING_free(bits);
	return r;
}

int
cmd_csr(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "subject", required_argument, NULL, 's' },
		{ "upn", required_argument, NULL, 'u' },
		{ "email", required_argument, NULL, 'e' },
		{ "template", required_argument, NULL, 'T' },
		{ "out", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	static const char use[] = "usage: scagent csr --key REF --subject DN [--upn UPN]... "
	    "[--email E]... [--template user|smartcard-logon] [--out FILE]";
	const char *ref = NULL, *subject = NULL, *tmpl = "user", *outfile = NULL;
	char **upns = calloc((size_t)argc, sizeof(char *)), **emails = calloc((size_t)argc, sizeof(char *));
	int nupn = 0, nemail = 0, ch, rc = EX_SC_USAGE, r, rsa, smartcard;
	json_object *args, *key = NULL;
	unsigned char *spki = NULL;
	const unsigned char *p;
	size_t spkilen = 0;
	EVP_PKEY *pk = NULL;
	X509_NAME *nm = NULL;
	X509_REQ *req = NULL;
	BIO *mem = NULL;
	char why[512], *pem;
	long pemlen;

	if (upns == NULL || emails == NULL) {
		rc = EX_SC_FAIL;
		goto out;
	}
	optind = 1;
	while ((ch = getopt_long(argc, argv, "k:s:u:e:T:o:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'k': ref = optarg; break;
		case 's': subject = optarg; break;
		case 'u': upns[nupn++] = optarg; break;
		case 'e': emails[nemail++] = optarg; break;
		case 'T': tmpl = optarg; break;
		case 'o': outfile = optarg; break;
		case 'h': printf("%s\n", use); rc = EX_SC_OK; goto out;
		default: goto out;
		}
	}
	if (ref == NULL || subject == NULL || optind != argc) {
		cli_err("%s", use);
		goto out;
	}
	if (strcmp(tmpl, "user") != 0 && strcmp(tmpl, "smartcard-logon") != 0) {
		cli_err("--template '%s': use user or smartcard-logon", tmpl);
		goto out;
	}
	smartcard = strcmp(tmpl, "smartcard-logon") == 0;
	why[0] = '\0';
	if ((r = parse_dn(subject, &nm, why, sizeof(why))) != SC_OK) {
		cli_err("--subject: %s", *why ? why : sc_strerror(r));
		goto out;
	}
	if (smartcard && nupn == 0)
		cli_err("warning: a smart card logon certificate normally carries the user's UPN: "
		    "add --upn unless the CA fills it in");
	if (c->direct) {
		cli_err("csr signs through the agent; it does not go with --direct");
		goto out;
	}
	if ((rc = cli_open_agent(c)) != EX_SC_OK)
		goto out;
	rc = EX_SC_FAIL;
	args = json_object_new_object();
	json_object_object_add(args, "ref", json_object_new_string(ref));
	if ((r = enrol_call(c, "get-public-key", args, &key)) != SC_OK) {
		rc = cli_exit_for(r);
		goto out;
	}
	p = NULL;
	if (sc_unb64(jstr(key, "public_key"), &spki, &spkilen) != SC_OK || spkilen == 0 ||
	    (p = spki, (pk = d2i_PUBKEY(NULL, &p, (long)spkilen)) == NULL)) {
		cli_err("the token does not show the public key of \"%s\", so no request can be made for it", ref);
		goto out;
	}
	rsa = EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA;
	if (!rsa && EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC) {
		cli_err("key \"%s\" is neither RSA nor EC", ref);
		goto out;
	}
	why[0] = '\0';
	if ((req = X509_REQ_new()) == NULL || !X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
	    !X509_REQ_set_subject_name(req, nm) || !X509_REQ_set_pubkey(req, pk) ||
	    (r = csr_extensions(req, rsa, smartcard, upns, nupn, emails, nemail, why, sizeof(why))) != SC_OK) {
		cli_err("cannot build the request%s%s", *why ? ": " : "", why);
		if (*why)
			rc = EX_SC_USAGE;
		goto out;
	}
	if ((r = csr_sign(c, req, pk, ref, rsa)) != SC_OK) {
		rc = cli_exit_for(r);
		goto out;
	}
	if ((mem = BIO_new(BIO_s_mem())) == NULL || !PEM_write_bio_X509_REQ(mem, req) ||
	    (pemlen = BIO_get_mem_data(mem, &pem)) <= 0)
		goto out;
	if (cli_write_file(outfile, (unsigned char *)pem, (size_t)pemlen) != SC_OK)
		goto out;
	if (outfile != NULL)
		cli_err("request for key \"%s\" (%s on token \"%s\") written to %s",
		    jstr(key, "label"), jstr(key, "id"), jstr(key, "token"), outfile);
	rc = EX_SC_OK;
out:
	BIO_free(mem);
	X509_REQ_free(req);
	X509_NAME_free(nm);
	EVP_PKEY_free(pk);
	free(spki);
	json_object_put(key);
	free(upns);
	free(emails);
	return rc;
}

/* ------------------------------------------------------------------ */
/* import */

/* All certificates of a PEM or DER file, appended to sk. */
static int
read_certs(const char *path, STACK_OF(X509) *sk)
{
	unsigned char *buf = NULL;
	const unsigned char *p;
	size_t len = 0;
	BIO *bio = NULL;
	X509 *x;
	int n = 0;

	if (cli_read_file(path, CERT_FILE_MAX, &buf, &len) != SC_OK)
		return -1;
	if ((bio = BIO_new_mem_buf(buf, (int)len)) != NULL) {
		while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
			sk_X509_push(sk, x);
			n++;
		}
		BIO_free(bio);
	}
	ERR_clear_error();
	if (n == 0) {
		p = buf;
		if ((x = d2i_X509(NULL, &p, (long)len)) != NULL && p == buf + len) {
			sk_X509_push(sk, x);
			n = 1;
		} else {
			X509_free(x);
			cli_err("%s holds no certificate (PEM or DER X.509 expected)", path);
			n = -1;
		}
		ERR_clear_error();
	}
	free(buf);
	return n;
}

int
cmd_import(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "token", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	static const char use[] = "usage: scagent import --token LABEL CERT [CHAIN...]";
	STACK_OF(X509) *certs = sk_X509_new_null();
	const char *token = NULL;
	unsigned char *der = NULL, *chain = NULL, *q;
	size_t chainlen = 0;
	json_object *args, *res = NULL, *jc, *jchain;
	char *b64;
	int json = 0, ch, rc = EX_SC_USAGE, r, n;

	if (certs == NULL)
		return EX_SC_FAIL;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "t:jh", opts, NULL)) != -1) {
		switch (ch) {
		case 't': token = optarg; break;
		case 'j': json = 1; break;
		case 'h': printf("%s\n", use); rc = EX_SC_OK; goto out;
		default: goto out;
		}
	}
	if (token == NULL || optind >= argc) {
		cli_err("%s", use);
		goto out;
	}
	if (c->direct) {
		cli_err("import goes through the agent; it does not go with --direct");
		goto out;
	}
	rc = EX_SC_FAIL;
	/* The first certificate of CERT is the issued one; the rest is its chain. */
	for (int i = optind; i < argc; i++)
		if (read_certs(argv[i], certs) < 0)
			goto out;
	for (int i = 1; i < sk_X509_num(certs); i++) {
		if ((n = i2d_X509(sk_X509_value(certs, i), NULL)) <= 0 ||
		    (q = realloc(chain, chainlen + (size_t)n)) == NULL)
			goto out;
		chain = q;
		q = chain + chainlen;
		i2d_X509(sk_X509_value(certs, i), &q);
		chainlen += (size_t)n;
	}
	if ((n = i2d_X509(sk_X509_value(certs, 0), &der)) <= 0)
		goto out;
	if ((rc = cli_open_agent(c)) != EX_SC_OK)
		goto out;
	rc = EX_SC_FAIL;
	args = json_object_new_object();
	json_object_object_add(args, "token", json_object_new_string(token));
	b64 = sc_b64(der, (size_t)n);
	json_object_object_add(args, "cert", json_object_new_string(b64 ? b64 : ""));
	free(b64);
	if (chainlen > 0) {
		b64 = sc_b64(chain, chainlen);
		json_object_object_add(args, "chain", json_object_new_string(b64 ? b64 : ""));
		free(b64);
	}
	if ((r = enrol_call(c, "import", args, &res)) != SC_OK) {
		rc = cli_exit_for(r);
		goto out;
	}
	if (json) {
		printf("%s\n", json_object_to_json_string_ext(res, JSON_C_TO_STRING_PRETTY |
		    JSON_C_TO_STRING_NOSLASHESCAPE));
	} else if (cli_escape_json(res) == SC_OK) {
		json_object_object_get_ex(res, "certificate", &jc);
		printf("certificate \"%s\" (id %s) %s on token \"%s\"\n", jstr(jc, "label"),
		    jstr(jc, "id"), strcmp(jstr(jc, "status"), "imported") == 0 ? "stored" :
		    "was already", jstr(res, "token"));
		if (json_object_object_get_ex(res, "chain", &jchain))
			for (size_t i = 0; i < json_object_array_length(jchain); i++) {
				json_object *e = json_object_array_get_idx(jchain, i);
				printf("CA certificate \"%s\" %s\n", jstr(e, "label"),
				    strcmp(jstr(e, "status"), "imported") == 0 ? "stored" : "was already there");
			}
	}
	rc = EX_SC_OK;
out:
	json_object_put(res);
	OPENSSL_free(der);
	free(chain);
	sk_X509_pop_free(certs, X509_free);
	return rc;
}
