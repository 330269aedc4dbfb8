/*
 * An OpenSSL 3 provider whose keys sign through the agent.
 *
 * A key of this provider holds the public key of a certificate and the
 * certificate's reference; its private operation is a scagent_sign() of the
 * digest with the scheme the caller asked for (rsa-pkcs1-*, rsa-pss-*,
 * ecdsa-*), so that RSA-PSS reaches the token as CKM_RSA_PKCS_PSS. The
 * provider lives in its own library context; libssl finds it through the
 * key (its EVP_PKEY reports "RSA" or "EC" and refuses to export the private
 * half, so the signature operation is fetched from this provider).
 */
#ifndef SC_TLS_PROVIDER_H
#define SC_TLS_PROVIDER_H

#include <openssl/x509.h>
#include "scagent/scagent.h"

/* Where a key sends its signatures, and what happened to the last one. */
struct sc_tls_signer {
	scagent_client *client;		/* the agent (a handle may be shared by threads) */
	char ref[72];			/* the certificate's SHA-256 in hex */
	char label[128];		/* for messages */
	int last_err;			/* SC_ERR_* of the last failed signature, 0 when none */
	char last_msg[512];		/* the agent's message for it */
	char last_alg[32];		/* scheme of the last signature asked for */
	int nsigs;			/* signatures made */
	/*
	 * For a key that wants its PIN at every signature (the agent answered
	 * pin-required, having tried nothing): ask for it (a string to free
	 * with sc_secstr_free, or NULL: none) and sign once more with it. NULL:
	 * no one to ask here; the agent's pinentry, if it has one, asks.
	 */
	char *(*ask_pin)(const char *label);
};

/*
 * An EVP_PKEY (RSA or EC, as cert's key) whose private operations go to the
 * agent through signer, which must outlive the key. Returns 0 or SC_ERR_*.
 */
int sc_tls_agent_pkey(X509 *cert, struct sc_tls_signer *signer, EVP_PKEY **out);

/* Release the provider's library context (at exit; keys must be freed first). */
void sc_tls_provider_cleanup(void);

#endif
