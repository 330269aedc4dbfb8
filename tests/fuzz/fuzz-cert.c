/*
 * Fuzz target for what the agent reads out of certificates (src/cert): the
 * input as a DER certificate (what a token's CKA_VALUE holds), or, when it
 * looks like PEM, as the certificates a client sends in "cas"; every one
 * that parses is described (sc_cert_describe), its UPNs read and its CBA
 * problems checked, without and with itself as a trust anchor.
 *
 * Checked: what the JSON says is valid UTF-8 whatever the certificate holds
 * (INTERFACE.md: untrusted text), the fingerprint is 64 hex digits, the CBA
 * problems are known codes and "no-upn" goes with an empty UPN list.
 */
#include "config.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include "cert/certinfo.h"
#include "common/err.h"
#include "proto/proto.h"
#include "fuzz.h"

const char sc_fuzz_name[] = "cert";

/* 2026-05-28: a fixed "now", so a run does not depend on the day. */
#define FUZZ_NOW ((time_t)1780000000)

static void
check_json(json_object *j)
{
	const char *s = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN);

	if (s == NULL || sc_utf8_check(s, strlen(s)) != strlen(s))
		abort();
}

static void
check_problems(json_object *problems, json_object *upns)
{
	static const char *const known[] = { "no-client-auth-eku", "no-upn", "expired",
		"not-yet-valid", "no-digital-signature", "no-private-key", "weak-key",
		"chain-untrusted", "chain-purpose", "chain-invalid-ca", NULL };

	if (problems == NULL)
		abort();
	for (size_t i = 0; i < json_object_array_length(problems); i++) {
		const char *p = json_object_get_string(json_object_array_get_idx(problems, i));
		int ok = 0;

		for (size_t k = 0; known[k] != NULL; k++)
			ok |= strcmp(p, known[k]) == 0;
		if (!ok || sc_cba_explain(p) == NULL || sc_cba_advice(p) == NULL)
			abort();
		if (strcmp(p, "no-upn") == 0 && json_object_array_length(upns) != 0)
			abort();
	}
	check_json(problems);
}

static void
one_cert(X509 *x)
{
	json_object *obj = json_object_new_object(), *upns, *problems;
	struct sc_cba_input in = { .private_key = 1, .now = FUZZ_NOW };
	X509_STORE *anchors = X509_STORE_new();
	char sha[65], *name, *reason = NULL;
	int malformed = 0;

	if (sc_cert_describe(x, obj) == SC_OK)
		check_json(obj);
	json_object_put(obj);
	upns = sc_cert_upns(x, &malformed);
	if (upns == NULL || malformed < 0)
		abort();
	check_json(upns);
	if (sc_cert_sha256_hex(x, sha) == SC_OK && strspn(sha, "0123456789abcdef") != 64)
		abort();
	if ((name = sc_name_oneline(X509_get_subject_name(x))) != NULL &&
	    sc_utf8_check(name, strlen(name)) != strlen(name))
		abort();
	free(name);

	problems = sc_cert_cba(x, &in, &reason);
	check_problems(problems, upns);
	json_object_put(problems);
	free(reason);
	/* itself as the trust anchor: the chain checks run too */
	if (anchors != NULL && X509_STORE_add_cert(anchors, x) == 1) {
		in.anchors = anchors;
		in.private_key = 0;
		problems = sc_cert_cba(x, &in, &reason);
		check_problems(problems, upns);
		if (reason != NULL && sc_utf8_check(reason, strlen(reason)) != strlen(reason))
			abort();
		json_object_put(problems);
		free(reason);
	}
	X509_STORE_free(anchors);
	json_object_put(upns);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *p = data;
	X509_STORE *st = NULL;
	X509 *x;
	BIO *bio;
	int count = -1;

	if (size > 64 * 1024)
		return 0;
	/* DER, as a token holds it */
	if ((x = d2i_X509(NULL, &p, (long)size)) != NULL) {
		one_cert(x);
		X509_free(x);
	}
	/* PEM, as a client's "cas" brings it: the anchors, and each certificate */
	if (sc_cert_anchors_pem((const char *)data, size, &st, &count) == SC_OK) {
		if (st == NULL || count <= 0)
			abort();
		X509_STORE_free(st);
	} else if (st != NULL)
		abort();
	if (size > 0 && memmem(data, size, "-----BEGIN", 10) != NULL &&
	    (bio = BIO_new_mem_buf(data, (int)size)) != NULL) {
		for (int i = 0; i < 8 && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL; i++) {
			one_cert(x);
			X509_free(x);
		}
		BIO_free(bio);
	}
	ERR_clear_error();
	return 0;
}
