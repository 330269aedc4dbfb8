/*
 * The words for the user: for each CBA problem code, one sentence on what
 * it means and one on why the server needs it and what to do
 * (sc_cba_explain, sc_cba_advice), as `scagent check` prints them.
 */
#include "config.h"

#include <string.h>

#include "cert/certinfo.h"

static const struct {
	const char *code;
	const char *explain;
	const char *advice;
} cba_text[] = {
	{ "no-client-auth-eku",
	  "The certificate's extended key usage does not include client "
	  "authentication, so it is not meant for signing in to a server.",
	  "Exchange and other CBA servers only accept certificates whose "
	  "extended key usage includes Client Authentication "
	  "(1.3.6.1.5.5.7.3.2): ask for a certificate from a template that has "
	  "it (AD CS 'User' or 'Smartcard Logon')." },
	{ "no-upn",
	  "The certificate carries no user principal name (UPN), so Exchange "
	  "cannot map it to a mailbox account.",
	  "Ask for a certificate from a template that puts the UPN in the "
	  "subject alternative name (AD CS 'User' or 'Smartcard Logon')." },
	{ "expired",
	  "The certificate has expired: its validity period ended before now.",
	  "Servers refuse expired certificates, so renew the certificate and "
	  "import the new one next to its key (or fix this computer's clock if "
	  "the date is wrong)." },
	{ "not-yet-valid",
	  "The certificate is not valid yet: its validity period starts in the "
	  "future.",
	  "Servers refuse a certificate before its start date, so wait until "
	  "it becomes valid, or fix this computer's clock if the date is "
	  "wrong." },
	{ "no-digital-signature",
	  "The certificate's key usage does not allow digital signatures, which "
	  "TLS client authentication needs.",
	  "In the TLS handshake the client proves it holds the key by signing, "
	  "so ask for a certificate whose key usage includes digitalSignature." },
	{ "no-private-key",
	  "The token holds no private key with this certificate's ID, so the "
	  "certificate cannot be used to sign in.",
	  "Signing in needs the private key that matches the certificate: "
	  "import the certificate onto the token that holds its key with the "
	  "same ID (CKA_ID), or enrol again." },
	{ "weak-key",
	  "The certificate's key is too short (RSA under 2048 bits or EC under "
	  "256 bits) for current servers.",
	  "Exchange and current Windows servers refuse short keys, so request a "
	  "new certificate for an RSA key of 2048 bits or more or an EC P-256 "
	  "key." },
	{ "chain-untrusted",
	  "The certificate does not chain to a trust anchor in the given CA "
	  "file, even with the intermediate certificates found on the token.",
	  "The server must trust the issuing CA for CBA to work, so check that "
	  "the CA file holds the right root and put the missing intermediate CA "
	  "certificates on the token or in the CA file." },
	{ "chain-purpose",
	  "An issuing CA's extended key usage does not allow client "
	  "authentication, so servers refuse the certificates it issued for "
	  "signing in.",
	  "A CA certificate that lists extended key usages limits what the "
	  "certificates under it may do, and servers check the whole chain "
	  "(as `openssl verify -purpose sslclient` does): ask the CA "
	  "administrator for a CA certificate whose extended key usage includes "
	  "Client Authentication (1.3.6.1.5.5.7.3.2), or enrol under a CA that "
	  "allows it." },
	{ "chain-invalid-ca",
	  "A certificate that issued another one in the chain is not marked as "
	  "a CA (basicConstraints CA:TRUE and keyUsage keyCertSign), so servers "
	  "do not accept what it signed.",
	  "Only a CA certificate may issue certificates: check that the issuing "
	  "CA certificate on the token or in the CA file is the right one, and "
	  "ask the CA administrator to reissue it with basicConstraints CA:TRUE "
	  "and keyUsage keyCertSign." },
};

static const char generic_explain[] =
    "The certificate has a problem that makes it unsuitable for "
    "certificate-based authentication.";
static const char generic_advice[] =
    "Ask your certificate administrator to check this certificate against "
    "the server's certificate-based authentication requirements.";

const char *
sc_cba_explain(const char *code)
{
	for (size_t i = 0; code != NULL && i < sizeof(cba_text) / sizeof(cba_text[0]); i++)
		if (strcmp(code, cba_text[i].code) == 0)
			return cba_text[i].explain;
	return generic_explain;
}

const char *
sc_cba_advice(const char *code)
{
	for (size_t i = 0; code != NULL && i < sizeof(cba_text) / sizeof(cba_text[0]); i++)
		if (strcmp(code, cba_text[i].code) == 0)
			return cba_text[i].advice;
	return generic_advice;
}
