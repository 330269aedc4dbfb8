#!/bin/bash
# GnuTLS's p11tool through scagent-pkcs11.so: tokens, certificates, and a
# certificate exported through the module equal to the one enrolled.
. "$TOP_SRCDIR/tests/pkcs11/common.sh"
need p11tool
p11_setup
if [ ${#_P11_ENV[@]} -gt 0 ]; then
	# Seen on Debian 12: p11tool with the ASan runtime preloaded hangs in
	# newlocale() before any module call, with SoftHSM's module alone too.
	skip_all "p11tool cannot run with the ASan runtime preloaded (sanitizer build)"
fi

W=$TB_DIR/w
mkdir -p "$W"
pt() { ext p11tool --provider "$MODULE" "$@"; }

pt --list-tokens >"$W/tokens" 2>&1
ok "--list-tokens shows token demo" grep -q 'Label: demo$' "$W/tokens"
ok "--list-tokens shows token negatives" grep -q 'Label: negatives$' "$W/tokens"

pt --list-all-certs 'pkcs11:token=demo' >"$W/certs" 2>&1
for u in alice bob carol; do
	ok "--list-all-certs lists $u" grep -q "Label: $u\$" "$W/certs"
done
ok "bob's certificate is an EC one" grep -q 'Type: X.509 Certificate (EC/ECDSA-SECP256R1)' "$W/certs"
ok "alice's certificate is RSA-2048" grep -q 'Type: X.509 Certificate (RSA-2048)' "$W/certs"
ok "--list-all-certs lists the CA certificate" grep -q 'Label: Contoso Issuing CA$' "$W/certs"

for u in alice bob carol; do
	pt --export "pkcs11:token=demo;object=$u;type=cert" --outfile "$W/$u.pem" >/dev/null 2>&1
	ok "certificate $u exported through the module is the enrolled one" \
		cmp <(openssl x509 -in "$W/$u.pem" -outform DER) <(openssl x509 -in "$TB_DIR/certs/$u.pem" -outform DER)
done

# After login p11tool sees the private keys (GnuTLS logs in with the PIN).
GNUTLS_PIN=$TB_PIN pt --login --list-privkeys 'pkcs11:token=demo' >"$W/keys" 2>&1
for u in alice bob carol; do
	ok "--login --list-privkeys lists $u's key" grep -q "Label: $u\$" "$W/keys"
done
ok "the private keys are sensitive" grep -q 'Flags: CKA_PRIVATE; CKA_NEVER_EXTRACTABLE; CKA_SENSITIVE' "$W/keys"
done_testing
