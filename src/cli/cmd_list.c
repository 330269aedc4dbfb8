/* scagent list, scagent check: what is on the cards, and will it work for CBA. */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "cert/certinfo.h"
#include "cli/cli.h"
#include "common/err.h"
#include "common/secmem.h"
#include "proto/proto.h"

static const char *
jstr(json_object *o, const char *key)
{
	json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) || v == NULL)
		return "";
	return json_object_get_string(v);
}

static int
jbool(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

static void
print_joined(FILE *fp, json_object *arr, const char *none)
{
	size_t n = arr ? json_object_array_length(arr) : 0;

	if (n == 0)
		fputs(none, fp);
	for (size_t i = 0; i < n; i++)
		fprintf(fp, "%s%s", i ? ", " : "", json_object_get_string(json_object_array_get_idx(arr, i)));
	fputc('\n', fp);
}

static void
print_key(FILE *fp, json_object *cert)
{
	json_object *key = json_object_object_get(cert, "key");

	if (key == NULL) {
		fputs("unknown\n", fp);
		return;
	}
	fprintf(fp, "%s %s", jstr(key, "type"), jstr(key, "bits"));
	if (*jstr(key, "curve"))
		fprintf(fp, " (%s)", jstr(key, "curve"));
	fprintf(fp, ", private key %s", jstr(key, "private_key"));
	if (json_object_get_boolean(json_object_object_get(key, "always_authenticate")))
		fputs(", PIN at every signature", fp);
	fputc('\n', fp);
}

static json_object *
problems_of(json_object *cert)
{
	json_object *cba = json_object_object_get(cert, "cba");

	return cba ? json_object_object_get(cba, "problems") : NULL;
}

static void
print_cert_short(FILE *fp, json_object *cert)
{
	json_object *probs = problems_of(cert);
	size_t np = probs ? json_object_array_length(probs) : 0;

	fprintf(fp, "  %s  [%s]\n", *jstr(cert, "label") ? jstr(cert, "label") : "(no label)",
	    np == 0 ? "CBA ok" : "CBA problems");
	if (*jstr(cert, "error")) {
		fprintf(fp, "      error:    %s\n", jstr(cert, "error"));
		fprintf(fp, "      sha256:   %s\n", jstr(cert, "sha256"));
		return;
	}
	fprintf(fp, "      subject:  %s\n", jstr(cert, "subject"));
	fprintf(fp, "      issuer:   %s\n", jstr(cert, "issuer"));
	fprintf(fp, "      valid:    %s to %s\n", jstr(cert, "not_before"), jstr(cert, "not_after"));
	fprintf(fp, "      upn:      ");
	print_joined(fp, json_object_object_get(cert, "upn"), "(none)");
	fprintf(fp, "      eku:      ");
	print_joined(fp, json_object_object_get(cert, "eku"), "(any purpose)");
	fprintf(fp, "      key:      ");
	print_key(fp, cert);
	fprintf(fp, "      id:       %s\n", jstr(cert, "id"));
	fprintf(fp, "      sha256:   %s\n", jstr(cert, "sha256"));
	if (np > 0) {
		fprintf(fp, "      problems: ");
		print_joined(fp, probs, "");
	}
}

/* PC/SC readers: with or without a card, and cards no module recognises. */
static void
print_readers(FILE *fp, json_object *list, json_object *readers)
{
	size_t n = readers ? json_object_array_length(readers) : 0;

	if (readers == NULL) {
		if (*jstr(list, "readers_error"))
			fprintf(fp, "\nReaders: unknown, %s\n", jstr(list, "readers_error"));
		return;
	}
	fprintf(fp, "\nReaders:%s\n", n == 0 ? " none" : "");
	for (size_t i = 0; i < n; i++) {
		json_object *r = json_object_array_get_idx(readers, i), *toks;
		size_t nt;

		fprintf(fp, "  %s: ", jstr(r, "name"));
		if (!jbool(r, "card_present")) {
			fprintf(fp, "no card\n");
			continue;
		}
		toks = json_object_object_get(r, "tokens");
		nt = toks ? json_object_array_length(toks) : 0;
		if (jbool(r, "mute"))
			fprintf(fp, "card present but mute (it does not answer: reinsert it)");
		else if (nt == 0)
			fprintf(fp, "card present, not recognized by any module");
		else {
			fprintf(fp, "card present, token%s ", nt == 1 ? "" : "s");
			for (size_t k = 0; k < nt; k++)
				fprintf(fp, "%s\"%s\"", k ? ", " : "",
				    json_object_get_string(json_object_array_get_idx(toks, k)));
		}
		if (*jstr(r, "atr"))
			fprintf(fp, " (ATR %s)", jstr(r, "atr"));
		fputc('\n', fp);
	}
}

/*
 * The modules that failed, on stderr. A module the agent found absent (its
 * device or service is not there: no TPM, no pcscd) is left out: `scagent
 * status` and the agent's log say it, once, not every list.
 */
static void
print_errors(json_object *errors)
{
	for (size_t i = 0; errors && i < json_object_array_length(errors); i++) {
		json_object *e = json_object_array_get_idx(errors, i);
		if (strcmp(jstr(e, "state"), "absent") != 0)
			cli_err("module %s: %s", jstr(e, "module"), jstr(e, "error"));
	}
}

static void
print_list(FILE *fp, json_object *list)
{
	json_object *toks = json_object_object_get(list, "tokens");
	json_object *readers = json_object_object_get(list, "readers");
	json_object *errors = json_object_object_get(list, "errors");
	size_t nt = toks ? json_object_array_length(toks) : 0;

	if (nt == 0)
		fprintf(fp, "No tokens.\n");
	for (size_t i = 0; i < nt; i++) {
		json_object *t = json_object_array_get_idx(toks, i);
		json_object *f = json_object_object_get(t, "flags");
		json_object *certs = json_object_object_get(t, "certificates");
		size_t nc = certs ? json_object_array_length(certs) : 0;

		fprintf(fp, "%sToken \"%s\"  %s %s, serial %s\n", i ? "\n" : "", jstr(t, "label"),
		    jstr(t, "manufacturer"), jstr(t, "model"), jstr(t, "serial"));
		fprintf(fp, "  slot %s (%s), module %s\n", jstr(t, "slot"), jstr(t, "reader"), jstr(t, "module"));
		fprintf(fp, "  %s%s%s%s%s\n",
		    jbool(f, "login_required") ? (jbool(f, "logged_in") ? "logged in" : "not logged in") :
		    "no login required",
		    jbool(f, "pin_count_low") ? ", PIN: failed tries counted" : "",
		    jbool(f, "pin_final_try") ? ", PIN: FINAL TRY" : "",
		    jbool(f, "pin_locked") ? ", PIN: LOCKED" : "", "");
		if (nc == 0)
			fprintf(fp, "  (no certificates)\n");
		for (size_t k = 0; k < nc; k++)
			print_cert_short(fp, json_object_array_get_idx(certs, k));
	}
	print_readers(fp, list, readers);
	print_errors(errors);
}

/*
 * --cafile: read it here and send its certificates to the agent as "cas"
 * (the agent opens no file a client names). Only a regular file: a FIFO or
 * a device would block or never end. A file that holds no certificate is one
 * clear error instead of chain-untrusted on every certificate. *pem is
 * malloc'd, NUL-terminated.
 */
static int
read_cafile(const char *cafile, char **pem)
{
	struct stat sb;
	char *buf = NULL;
	size_t len = 0;
	ssize_t n;
	X509_STORE *anchors = NULL;
	int fd = -1, r = SC_ERR_IO;

	*pem = NULL;
	if (cafile == NULL)
		return SC_OK;
	/* O_NONBLOCK: opening a FIFO does not wait for a writer. */
	if ((fd = open(cafile, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)) < 0 || fstat(fd, &sb) < 0) {
		cli_err("cannot read the CA file %s: %s", cafile, strerror(errno));
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		cli_err("the CA file %s is not a regular file: give a PEM file of CA certificates", cafile);
		r = SC_ERR_INVALID;
		goto out;
	}
	if (sb.st_size > SC_PROTO_MAX_CAS) {
		cli_err("the CA file %s is over %d KiB: keep in it only the CA certificates "
		    "your chains need", cafile, SC_PROTO_MAX_CAS / 1024);
		r = SC_ERR_TOO_LARGE;
		goto out;
	}
	if ((buf = malloc(SC_PROTO_MAX_CAS + 2)) == NULL) {
		r = SC_ERR_NOMEM;
		goto out;
	}
	/* One byte more than the cap: a file that grew since fstat() is caught too. */
	while (len <= SC_PROTO_MAX_CAS &&
	    (n = read(fd, buf + len, SC_PROTO_MAX_CAS + 1 - len)) != 0) {
		if (n < 0) {
			cli_err("cannot read the CA file %s: %s", cafile, strerror(errno));
			goto out;
		}
		len += (size_t)n;
	}
	buf[len] = '\0';
	if (len > SC_PROTO_MAX_CAS) {
		cli_err("the CA file %s is over %d KiB: keep in it only the CA certificates "
		    "your chains need", cafile, SC_PROTO_MAX_CAS / 1024);
		r = SC_ERR_TOO_LARGE;
		goto out;
	}
	if (memchr(buf, '\0', len) != NULL || sc_cert_anchors_pem(buf, len, &anchors, NULL) != SC_OK) {
		cli_err("the CA file %s holds no PEM certificate, or one that does not parse: "
		    "give CA certificates in PEM (-----BEGIN CERTIFICATE-----)", cafile);
		r = SC_ERR_CERT;
		goto out;
	}
	*pem = buf;
	buf = NULL;
	r = SC_OK;
out:
	X509_STORE_free(anchors);
	free(buf);
	if (fd >= 0)
		close(fd);
	return r;
}

static const struct option list_opts[] = {
	{ "json", no_argument, NULL, 'j' },
	{ "cafile", required_argument, NULL, 'C' },
	{ "login", required_argument, NULL, 'L' },
	{ "pin-stdin", no_argument, NULL, 'P' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 }
};

/* --direct: log in before reading, so hidden private keys count. */
static int
direct_login(struct cli *c, const char *token, int pin_stdin)
{
	char *pin;
	int r;

	if (token == NULL)
		return SC_OK;
	if (c->store == NULL) {
		cli_err("--login is for --direct; with an agent, run `scagent login --token %s`", token);
		return SC_ERR_INVALID;
	}
	if ((pin = cli_read_pin("PIN: ", pin_stdin)) == NULL)
		return SC_ERR_CANCELLED;
	r = sc_store_login(c->store, token, pin, 0, NULL);
	sc_secstr_free(pin);
	if (r != SC_OK)
		cli_err("login to token \"%s\" failed: %s", token, sc_strerror(r));
	return r;
}

int
cmd_list(struct cli *c, int argc, char **argv)
{
	json_object *list = NULL;
	const char *cafile = NULL, *login = NULL;
	char *cas = NULL;
	int json = 0, pin_stdin = 0, ch, rc, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "jh", list_opts, NULL)) != -1) {
		switch (ch) {
		case 'j': json = 1; break;
		case 'C': cafile = optarg; break;
		case 'L': login = optarg; break;
		case 'P': pin_stdin = 1; break;
		case 'h':
			printf("usage: scagent list [--json] [--cafile FILE] [--login TOKEN [--pin-stdin]]\n");
			return EX_SC_OK;
		default: return EX_SC_USAGE;
		}
	}
	if (optind != argc) {
		cli_err("list takes no arguments (got '%s')", argv[optind]);
		return EX_SC_USAGE;
	}
	if (read_cafile(cafile, &cas) != SC_OK)
		return EX_SC_USAGE;
	if ((rc = cli_open(c)) != EX_SC_OK)
		goto out;
	rc = EX_SC_FAIL;
	if (direct_login(c, login, pin_stdin) != SC_OK)
		goto out;
	if ((r = cli_list(c, cas, &list)) != SC_OK) {
		rc = cli_exit_for(r);
		goto out;
	}
	if (json) {
		puts(json_object_to_json_string_ext(list, JSON_C_TO_STRING_PRETTY |
		    JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
		print_errors(json_object_object_get(list, "errors"));
	} else if (cli_escape_json(list) == SC_OK)
		print_list(stdout, list);
	else
		goto out;
	rc = EX_SC_OK;
out:
	json_object_put(list);
	free(cas);
	return rc;
}

int
cmd_check(struct cli *c, int argc, char **argv)
{
	json_object *cert = NULL, *probs, *key;
	const char *cafile = NULL, *login = NULL;
	char *cas = NULL;
	int json = 0, pin_stdin = 0, ch, rc, r, key_unknown;
	size_t np;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "jh", list_opts, NULL)) != -1) {
		switch (ch) {
		case 'j': json = 1; break;
		case 'C': cafile = optarg; break;
		case 'L': login = optarg; break;
		case 'P': pin_stdin = 1; break;
		case 'h':
			printf("usage: scagent check REF [--cafile FILE] [--json] [--login TOKEN [--pin-stdin]]\n");
			return EX_SC_OK;
		default: return EX_SC_USAGE;
		}
	}
	if (argc - optind != 1) {
		cli_err("check wants one REF: a pkcs11: URI, a SHA-256 fingerprint (8+ hex digits) or a label");
		return EX_SC_USAGE;
	}
	if (read_cafile(cafile, &cas) != SC_OK)
		return EX_SC_USAGE;
	if ((rc = cli_open(c)) != EX_SC_OK)
		goto out;
	rc = EX_SC_FAIL;
	if (direct_login(c, login, pin_stdin) != SC_OK)
		goto out;
	if ((r = cli_find(c, argv[optind], cas, &cert)) != SC_OK) {
		rc = cli_exit_for(r);
		goto out;
	}
	probs = problems_of(cert);
	np = probs ? json_object_array_length(probs) : 0;
	key = json_object_object_get(cert, "key");
	key_unknown = strcmp(jstr(key, "private_key"), "unknown") == 0;
	if (json) {
		puts(json_object_to_json_string_ext(cert, JSON_C_TO_STRING_PRETTY |
		    JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
	} else {
		json_object *cba = json_object_object_get(cert, "cba");
		if (cli_escape_json(cert) != SC_OK) {
			rc = EX_SC_FAIL;
			goto out;
		}
		printf("Certificate \"%s\" on token \"%s\"\n", jstr(cert, "label"), jstr(cert, "token"));
		print_cert_short(stdout, cert);
		if (np == 0) {
			printf("\nSuitable for certificate-based authentication: it allows client "
			    "authentication, names the account by UPN%s%s.\n",
			    cafile == NULL ? "" : key_unknown ? " and chains to a trusted root" :
			    ", chains to a trusted root",
			    key_unknown ? "" : " and has its private key on the token");
			if (key_unknown)
				printf("The private key was not checked: the token shows private keys only "
				    "after login (log in first, or add --login TOKEN with --direct).\n");
			if (cafile == NULL)
				printf("The chain of trust was not checked: add --cafile with your root CA.\n");
		} else {
			printf("\nNot suitable for certificate-based authentication:\n");
			for (size_t i = 0; i < np; i++) {
				const char *code = json_object_get_string(json_object_array_get_idx(probs, i));
				printf("  %s: %s\n", code, sc_cba_explain(code));
				if (strncmp(code, "chain-", 6) == 0 && *jstr(cba, "chain_error"))
					printf("      (OpenSSL: %s)\n", jstr(cba, "chain_error"));
				printf("      %s\n", sc_cba_advice(code));
			}
		}
	}
	rc = np == 0 ? EX_SC_OK : EX_SC_FAIL;
out:
	json_object_put(cert);
	free(cas);
	return rc;
}
