/*
 * The SoftHSM tokens of tests/unit/softhsm-fixture.sh for C tests that load
 * the token store in-process (test-store, test-dispatch).
 */
#ifndef SC_TEST_SOFTHSM_FIXTURE_H
#define SC_TEST_SOFTHSM_FIXTURE_H

#include <stddef.h>

struct fixture {
	char dir[256];			/* the tokens, PKI and files of this run */
	char softhsm[512];		/* SoftHSM's module ($TB_SOFTHSM or Debian's) */
	char fault[512];		/* tests/mock/.libs/fault-pkcs11.so */
};

/*
 * Make the tokens in a new directory under $TMPDIR and point SOFTHSM2_CONF
 * (and the fault module's SCAGENT_FAULT_TARGET) at them. 0, or the exit
 * code the test returns: 77 (SoftHSM missing: skip), 99 (hard error).
 */
int fixture_up(const char *prog, struct fixture *fx);
/* Remove the directory (kept when TB_KEEP is set). */
void fixture_down(const char *prog, const struct fixture *fx);
/* fx->dir/name into out. */
void fixture_path(const struct fixture *fx, const char *name, char *out, size_t len);

/*
 * Whether sig is alg's signature (enum sc_alg) of data by the key of the
 * certificate der, checked with OpenSSL alone: 0 when it verifies, -1 not.
 */
int fixture_verify(const unsigned char *der, size_t derlen, int alg, const unsigned char *data,
    size_t len, const unsigned char *sig, size_t siglen);

#endif
