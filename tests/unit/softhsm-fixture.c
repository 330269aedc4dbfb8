/* The SoftHSM fixture of the in-process C tests: see softhsm-fixture.h. */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include "token/token.h"
#include "softhsm-fixture.h"

void
fixture_path(const struct fixture *fx, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", fx->dir, name);
}

int
fixture_up(const char *prog, struct fixture *fx)
{
	const char *top = getenv("TOP_SRCDIR"), *build = getenv("TOP_BUILDDIR");
	const char *hsm = getenv("TB_SOFTHSM"), *tmp = getenv("TMPDIR");
	char cmd[1024], conf[300];

	fx->dir[0] = '\0';
	snprintf(fx->softhsm, sizeof(fx->softhsm), "%s", hsm ? hsm : "/usr/lib/softhsm/libsofthsm2.so");
	snprintf(fx->fault, sizeof(fx->fault), "%s/tests/mock/.libs/fault-pkcs11.so", build ? build : ".");
	if (access(fx->softhsm, R_OK) != 0 || system("command -v softhsm2-util >/dev/null") != 0) {
		printf("1..0 # SKIP SoftHSM not installed\n");
		return 77;
	}
	if (access(fx->fault, R_OK) != 0) {
		fprintf(stderr, "%s: %s not built: run the test through make check\n", prog, fx->fault);
		return 99;
	}
	snprintf(fx->dir, sizeof(fx->dir), "%s/scagent-%s.XXXXXX", tmp ? tmp : "/tmp", prog);
	if (mkdtemp(fx->dir) == NULL) {
		perror("mkdtemp");
		fx->dir[0] = '\0';
		return 99;
	}
	snprintf(cmd, sizeof(cmd), "bash '%s/tests/unit/softhsm-fixture.sh' '%s'", top ? top : ".", fx->dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "%s: the SoftHSM fixture failed (its log: %s/testbed.log)\n", prog, fx->dir);
		return 99;
	}
	fixture_path(fx, "softhsm2.conf", conf, sizeof(conf));
	setenv("SOFTHSM2_CONF", conf, 1);
	setenv("SCAGENT_FAULT_TARGET", fx->softhsm, 1);
	return 0;
}

void
fixture_down(const char *prog, const struct fixture *fx)
{
	char cmd[400];

	if (fx->dir[0] == '\0')
		return;
	if (getenv("TB_KEEP") != NULL) {
		fprintf(stderr, "%s: kept %s\n", prog, fx->dir);
		return;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "%s: could not remove %s\n", prog, fx->dir);
}

int
fixture_verify(const unsigned char *der, size_t derlen, int alg, const unsigned char *data,
    size_t len, const unsigned char *sig, size_t siglen)
{
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)derlen);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	int r = -1;

	if (x == NULL || md == NULL || alg < 0 ||
	    EVP_DigestVerifyInit(md, &pctx, sc_alg_md(alg), NULL, X509_get0_pubkey(x)) != 1)
		goto out;
	if (sc_alg_family(alg) == 2 && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1))
		goto out;
	if (EVP_DigestVerify(md, sig, siglen, data, len) == 1)
		r = 0;
out:
	EVP_MD_CTX_free(md);
	X509_free(x);
	return r;
}
