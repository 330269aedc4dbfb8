#!/bin/bash
# confirm-sign = yes (scagent.conf, here a --config file): every signature is
# confirmed first through Debian's pinentry-tty (CONFIRM, on a
# pseudo-terminal named by GPG_TTY, answered by pty-driver.py playing the
# user). Allowed: signed. Denied: the request fails with "denied", no
# signature, and the audit log says so. Also for the signatures of `csr`
# (the sign-key operation).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need_py
PINENTRY=$(command -v pinentry-tty) || skip_all "pinentry-tty not installed"

tb_agent_test alice bob
confirms() { if [ -f "$W/prompts" ]; then grep -c '^confirm ' "$W/prompts"; else echo 0; fi; }
ok_lines() { grep -c "$1.*result=ok" "$W/audit.log"; }

cat >"$W/scagent.conf" <<EOF
confirm-sign = yes
pinentry = $PINENTRY
audit-log = $W/audit.log
EOF

# The user at the terminal: allows (key a), denies (key d), denies and
# allows the protocol requests, denies the CSR, allows the CSR.
"$PY" "$here/pty-driver.py" answer "$W/tty" "$W/prompts" a d d a d a &
tb_track_pid $!
wait_for 10 test -s "$W/tty" || { echo "pty-driver did not start"; exit 99; }
GPG_TTY=$(cat "$W/tty") start_agent "$S" --config "$W/scagent.conf"
ok "login (no confirmation for a login)" sc login --token demo --pin-stdin <<<"$TB_PIN"
is "login: no confirmation asked" "$(confirms)" 0

# ---------------------------------------------------------------- allowed
run sc sign --cert alice --alg rsa-pss-sha256 --in "$W/data" --out "$W/1.sig"
is "sign, confirmation allowed: exit 0" "$RC" 0
is "  ... after exactly one confirmation" "$(confirms)" 1
has "  ... which names the program and the certificate" "$(grep '^confirm 1' "$W/prompts")" \
	"Allow ${SCAGENT_EXE_SEEN:-$(readlink -f "$SCAGENT")} (pid "
has "  ... and the key" "$(grep '^confirm 1' "$W/prompts")" 'to sign with "alice"?'
has "  ... offering Allow and Deny" "$(grep '^confirm 1' "$W/prompts")" "[ad]?"
ok "  ... the signature verifies" openssl dgst -sha256 -verify "$(pubkey alice)" \
	-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -signature "$W/1.sig" "$W/data"
is "  ... audited as signed" "$(ok_lines ' sign .*alg=rsa-pss-sha256')" 1

# ---------------------------------------------------------------- denied
run sc sign --cert bob --alg ecdsa-sha256 --in "$W/data" --out "$W/2.sig"
is "sign, confirmation denied: exit 1" "$RC" 1
is "  ... after one more confirmation" "$(confirms)" 2
has "  ... the error says it was not confirmed" "$ERR" "not confirmed"
ok "  ... nothing signed: no signature file" test ! -s "$W/2.sig"
has "  ... audit: the signature denied" "$(grep ' sign .*alg=ecdsa-sha256' "$W/audit.log")" "result=denied"
is "  ... audit: no signature with bob" "$(ok_lines ' sign .*alg=ecdsa-sha256')" 0
req="{\"id\":1,\"op\":\"sign\",\"ref\":\"alice\",\"alg\":\"rsa-pkcs1-sha256\",\"data\":\"$(base64 -w0 <"$W/data")\"}"
raw_sign() { printf '%s\n' '{"id":0,"op":"hello","version":1}' "$req" | "$PY" "$here/rawclient.py" "$S" --lines 2 --wait 20 | sed -n 2p; }
l=$(raw_sign)
has "protocol: denied: error code \"denied\"" "$l" '"code":"denied"'
hasnt "  ... and no signature" "$l" '"signature"'
l=$(raw_sign)
has "protocol: allowed: the signature" "$l" '"signature":"'
is "  ... after two more confirmations" "$(confirms)" 4

# ---------------------------------------------------------------- the sign-key operation (csr)
run sc csr --key alice --subject "CN=Alice,O=Contoso" --out "$W/denied.csr"
is "csr, confirmation denied: exit 1" "$RC" 1
is "  ... after a confirmation" "$(confirms)" 5
ok "  ... no request written" test ! -s "$W/denied.csr"
has "  ... audit: sign-key denied" "$(grep ' sign-key ' "$W/audit.log")" "result=denied"
run sc csr --key alice --subject "CN=Alice,O=Contoso" --out "$W/allowed.csr"
is "csr, confirmation allowed: exit 0" "$RC" 0
ok "  ... the request's signature verifies" openssl req -in "$W/allowed.csr" -verify -noout
is "six confirmations in all" "$(confirms)" 6
hasnt "no PIN in the agent's log" "$(cat "$AGENT_LOG" "$W/audit.log")" "$TB_PIN"

stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"
done_testing
