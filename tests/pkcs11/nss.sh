#!/bin/bash
# NSS: scagent-pkcs11.so added with modutil to a fresh database; certutil
# lists the agent's certificates and reads them through the module.
. "$TOP_SRCDIR/tests/pkcs11/common.sh"
need certutil modutil
p11_setup

D=$TB_DIR/nssdb W=$TB_DIR/w
mkdir -p "$D" "$W"
ok "certutil -N: a fresh database" certutil -N -d "sql:$D" --empty-password
ok "modutil -add scagent" ext modutil -dbdir "sql:$D" -add scagent -libfile "$MODULE" -force <<<""
ext modutil -dbdir "sql:$D" -list scagent >"$W/mod" 2>&1 </dev/null
ok "modutil -list shows the module's slot for demo" grep -q 'Token Name: demo' "$W/mod"

ext certutil -d "sql:$D" -L -h all >"$W/L" 2>&1 </dev/null
for u in alice bob carol; do
	ok "certutil -L -h all lists demo:$u" grep -q "^demo:$u " "$W/L"
done
ok "certutil -L -h all lists the token's CA certificate" grep -q '^demo:Contoso Issuing CA ' "$W/L"
ok "certutil -L -h all lists the negatives token too" grep -q '^negatives:expired ' "$W/L"
# certutil -K logs in to the token with the PIN (through the module, to the
# agent) and lists the private keys it then sees.
printf '%s\n' "$TB_PIN" >"$W/pin"
ext certutil -d "sql:$D" -K -h demo -f "$W/pin" >"$W/K" 2>&1 </dev/null
ok "certutil -K lists alice's private key" grep -Eq '^<.*> rsa +01 +alice$' "$W/K"
ok "certutil -K lists bob's private key" grep -Eq '^<.*> ec +02 +bob$' "$W/K"
ok "certutil -K lists carol's private key" grep -Eq '^<.*> rsa +03 +carol$' "$W/K"
ok "NSS logged the agent in with the PIN" agent_logged_in demo
for u in alice bob; do
	ext certutil -d "sql:$D" -L -n "demo:$u" -r >"$W/$u.der" 2>"$W/$u.err" </dev/null
	ok "demo:$u read through NSS is the enrolled certificate" \
		cmp "$W/$u.der" <(openssl x509 -in "$TB_DIR/certs/$u.pem" -outform DER)
done
done_testing
