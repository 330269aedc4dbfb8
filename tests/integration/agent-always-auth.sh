#!/bin/bash
# Keys that ask for the PIN at every signature (CKA_ALWAYS_AUTHENTICATE, a PIV
# card's signature key), on SoftHSM, which enforces the attribute: the agent
# logs in CKU_CONTEXT_SPECIFIC between C_SignInit and C_Sign with the PIN the
# request carries, or asks its pinentry once; without either it answers
# pin-required having tried nothing. A wrong PIN is tried once and nothing is
# signed; the token's login stays. The CLI takes --pin-stdin or asks on the
# terminal; scagent-pkcs11.so takes C_Login(CKU_CONTEXT_SPECIFIC).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need_py
need setsid pkcs11-tool
PINENTRY=$(command -v pinentry-tty) || skip_all "pinentry-tty not installed"

tb_agent_test
tb_pki
tb_softhsm_token demo
TB_ALWAYS_AUTH=1 tb_enroll demo 01 carol rsa:2048 good
TB_ALWAYS_AUTH=1 tb_enroll demo 02 dave EC:prime256v1 good
tb_enroll demo 03 alice rsa:2048 good
# notty CMD...: CMD without a controlling terminal (nothing can be asked on one)
notty() { setsid -w "$@"; }
head -c 3000 /dev/urandom >"$W/data"
raw() { printf '%s\n' '{"id":0,"op":"hello","version":1}' "$1" |
	"$PY" "$here/rawclient.py" "$S" --lines 2 --wait 20 | sed -n 2p; }
b64data=$(base64 -w0 <"$W/data")

start_agent "$S" --audit-log "$W/audit.log"
echo "$TB_PIN" | sc login --token demo --pin-stdin 2>/dev/null

# ---------------------------------------------------------------- listed as such
json=$(sc list --json)
has "list: carol's key asks for the PIN every time" \
	"$("$PY" -c 'import json,sys; d=json.load(sys.stdin); print([c["key"].get("always_authenticate") for t in d["tokens"] for c in t["certificates"] if c["label"] == "carol"])' <<<"$json")" "[True]"
has "list: alice's does not" \
	"$("$PY" -c 'import json,sys; d=json.load(sys.stdin); print([c["key"].get("always_authenticate") for t in d["tokens"] for c in t["certificates"] if c["label"] == "alice"])' <<<"$json")" "[None]"

has "list (human): says so" "$(sc list)" "key:      rsa 2048, private key present, PIN at every signature"
hasnt "list (human): not for alice" "$(sc list | grep -A8 '^  alice')" "PIN at every signature"

# ---------------------------------------------------------------- no PIN: nothing tried
run notty "$SCAGENT" --socket "$S" sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/0.sig"
is "no PIN, no terminal, no pinentry: exit 1" "$RC" 1
has "  the message says the key needs its PIN every time" "$ERR" \
	'the key of "carol" on token "demo" needs its PIN for every signature (CKA_ALWAYS_AUTHENTICATE)'
has "  ... and how to give it" "$ERR" "--pin-stdin"
has "  ... and that no PIN was tried" "$ERR" "no PIN was tried"
ok "  nothing signed" test ! -s "$W/0.sig"
out=$(raw "{\"id\":1,\"op\":\"sign\",\"ref\":\"carol\",\"alg\":\"rsa-pss-sha256\",\"data\":\"$b64data\"}")
has "protocol: error code pin-required" "$out" '"code":"pin-required"'
is "audit: pin-required, twice" "$(grep -c 'sign .*result=pin-required' "$W/audit.log")" 2

# ---------------------------------------------------------------- the PIN with the request
run sh -c "echo '$TB_PIN' | '$SCAGENT' --socket '$S' sign --cert carol --alg rsa-pkcs1-sha256 --in '$W/data' --out '$W/1.sig' --pin-stdin"
is "--pin-stdin: exit 0" "$RC" 0
ok "  rsa-pkcs1-sha256 verifies" openssl dgst -sha256 -verify "$(pubkey carol)" -signature "$W/1.sig" "$W/data"
run sh -c "echo '$TB_PIN' | '$SCAGENT' --socket '$S' sign --cert carol --alg rsa-pss-sha384 --in '$W/data' --out '$W/2.sig' --pin-stdin"
is "--pin-stdin, rsa-pss-sha384: exit 0" "$RC" 0
ok "  verifies" openssl dgst -sha384 -verify "$(pubkey carol)" -sigopt rsa_padding_mode:pss \
	-sigopt rsa_pss_saltlen:digest -signature "$W/2.sig" "$W/data"
run sh -c "echo '$TB_PIN' | '$SCAGENT' --socket '$S' sign --cert dave --alg ecdsa-sha256 --in '$W/data' --out '$W/3.sig' --pin-stdin"
is "--pin-stdin, EC key, ecdsa-sha256: exit 0" "$RC" 0
ok "  verifies" openssl dgst -sha256 -verify "$(pubkey dave)" -signature "$W/3.sig" "$W/data"
out=$(raw "{\"id\":1,\"op\":\"sign\",\"ref\":\"carol\",\"alg\":\"rsa-pkcs1-sha256\",\"data\":\"$b64data\",\"pin\":\"$TB_PIN\"}")
has "protocol: sign with \"pin\" answers a signature" "$out" '"signature":'
run sh -c "echo '$TB_PIN' | '$SCAGENT' --socket '$S' sign --cert carol --alg rsa-pkcs1-sha256 --pin-stdin"
is "--pin-stdin with the data on standard input too: usage error (exit 2)" "$RC" 2
has "  says to give the data with --in" "$ERR" "--in FILE"

# ---------------------------------------------------------------- wrong PIN: tried once
before=$(grep -c 'result=pin-incorrect' "$W/audit.log")
run sh -c "echo 999999 | '$SCAGENT' --socket '$S' sign --cert carol --alg rsa-pkcs1-sha256 --in '$W/data' --out '$W/4.sig' --pin-stdin"
is "wrong PIN: exit 1" "$RC" 1
has "  clear error: wrong PIN, tried once, nothing signed" "$ERR" \
	'wrong PIN for the key of "carol" on token "demo" (tried once): nothing was signed'
ok "  nothing signed" test ! -s "$W/4.sig"
is "  one attempt audited" "$(($(grep -c 'result=pin-incorrect' "$W/audit.log") - before))" 1
has "  the token's login stays" "$(sc status --json)" '{"label":"demo","logged_in":true}'
run sh -c "echo '$TB_PIN' | '$SCAGENT' --socket '$S' sign --cert carol --alg rsa-pkcs1-sha256 --in '$W/data' --out '$W/5.sig' --pin-stdin"
is "  the right PIN next time signs" "$RC" 0
ok "  ... and verifies" openssl dgst -sha256 -verify "$(pubkey carol)" -signature "$W/5.sig" "$W/data"
run sh -c "echo 999999 | '$SCAGENT' --socket '$S' sign --cert alice --alg rsa-pkcs1-sha256 --in '$W/data' --out '$W/6.sig' --pin-stdin"
is "a key without the attribute ignores the PIN (never sent): exit 0" "$RC" 0
ok "  verifies" openssl dgst -sha256 -verify "$(pubkey alice)" -signature "$W/6.sig" "$W/data"

# ---------------------------------------------------------------- key REFs (sign-key)
out=$(raw "{\"id\":1,\"op\":\"sign-key\",\"ref\":\"carol\",\"alg\":\"rsa-pkcs1-sha256\",\"data\":\"$b64data\"}")
has "sign-key without pin: pin-required" "$out" '"code":"pin-required"'
has "  names the key" "$out" 'key \"carol\" on token \"demo\" needs its PIN'
out=$(raw "{\"id\":1,\"op\":\"sign-key\",\"ref\":\"carol\",\"alg\":\"rsa-pkcs1-sha256\",\"data\":\"$b64data\",\"pin\":\"$TB_PIN\"}")
has "sign-key with pin: a signature" "$out" '"signature":'
sed -n 's/.*"signature":"\([^"]*\)".*/\1/p' <<<"$out" | base64 -d >"$W/7.sig"
ok "  verifies" openssl dgst -sha256 -verify "$(pubkey carol)" -signature "$W/7.sig" "$W/data"

# ---------------------------------------------------------------- asked on the terminal
out=$("$PY" "$here/pty-driver.py" run "$TB_PIN" "$SCAGENT" --socket "$S" sign --cert carol \
	--alg rsa-pkcs1-sha512 --in "$W/data" --out "$W/8.sig")
has "terminal: the CLI asks for the key's PIN" "$out" 'PIN for the key of "carol" (it asks for it at every signature): '
has "  exit 0" "$out" "EXIT 0"
hasnt "  the PIN is not echoed" "$out" "$TB_PIN"
is "  asked once" "$(grep -o 'it asks for it at every signature' <<<"$out" | wc -l)" 1
ok "  the signature verifies" openssl dgst -sha512 -verify "$(pubkey carol)" -signature "$W/8.sig" "$W/data"
out=$("$PY" "$here/pty-driver.py" run 999999 "$SCAGENT" --socket "$S" sign --cert carol \
	--alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/9.sig")
has "terminal, wrong PIN: exit 1" "$out" "EXIT 1"
is "  asked once, not again" "$(grep -o 'it asks for it at every signature' <<<"$out" | wc -l)" 1
has "  wrong PIN, nothing signed" "$out" "(tried once): nothing was signed"
out=$("$PY" "$here/pty-driver.py" run 999999 "$SCAGENT" --socket "$S" sign --cert alice \
	--alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/10.sig")
hasnt "terminal: a key without the attribute asks nothing" "$out" "it asks for it at every signature"
has "  and signs" "$out" "EXIT 0"

# ---------------------------------------------------------------- mutual TLS
P=$(tb_port)
tb_s_server "$P"
URL=https://localhost:$P/
run notty "$SCAGENT" --socket "$S" connect --cafile "$TB_DIR/pki/root.pem" --cert carol "$URL"
is "connect with carol's key, no PIN and no pinentry: exit 1" "$RC" 1
has "  the error says the key needs its PIN every time" "$ERR" "needs its PIN for every signature"
run notty "$SCAGENT" --socket "$S" probe --cafile "$TB_DIR/pki/root.pem" --cert carol "$URL"
has "probe without a PIN or pinentry: client-auth fails with advice" "$OUT$ERR" \
	"start scagentd with --pinentry PROGRAM"
out=$("$PY" "$here/pty-driver.py" run "$TB_PIN" "$SCAGENT" --socket "$S" connect \
	--cafile "$TB_DIR/pki/root.pem" --cert carol "$URL")
has "terminal: connect asks for the key's PIN" "$out" 'PIN for the key of "carol" (it asks for it at every signature): '
has "  exit 0" "$out" "EXIT 0"
has "  the server's page came back" "$out" "Ciphers supported in s_server binary"
hasnt "  the PIN is not echoed" "$out" "$TB_PIN"
out=$("$PY" "$here/pty-driver.py" run 999999 "$SCAGENT" --socket "$S" probe \
	--cafile "$TB_DIR/pki/root.pem" --cert carol "$URL")
has "terminal: probe asks too; a wrong PIN fails the handshake" "$out" 'wrong PIN for the key of "carol"'
is "  asked once" "$(grep -o 'it asks for it at every signature' <<<"$out" | wc -l)" 1
has "  its advice: the PIN was wrong" "$out" "advice: the key's PIN was wrong (tried once)"
has "  the agent's login stays" "$(sc status --json)" '{"label":"demo","logged_in":true}'

# ---------------------------------------------------------------- scagent-pkcs11.so
MODULE=$TOP_BUILDDIR/.libs/scagent-pkcs11.so
module_env "$MODULE"
p11sign() { # PIN OUT: pkcs11-tool signs with carol's key (it logs in CKU_CONTEXT_SPECIFIC itself)
	env "${P11ENV[@]}" SCAGENT_SOCKET="$S" pkcs11-tool --module "$MODULE" --token-label demo \
		--login --pin "$1" --sign --id 01 -m SHA256-RSA-PKCS -i "$W/data" -o "$2"
}
ok "pkcs11-tool signs through scagent-pkcs11.so (C_Login CKU_CONTEXT_SPECIFIC)" p11sign "$TB_PIN" "$W/11.sig"
ok "  verifies" openssl dgst -sha256 -verify "$(pubkey carol)" -signature "$W/11.sig" "$W/data"
run p11sign 999999 "$W/12.sig"
ok "pkcs11-tool with a wrong PIN fails" test "$RC" != 0
has "  CKR_PIN_INCORRECT" "$OUT$ERR" "CKR_PIN_INCORRECT"
has "  the agent's login stays" "$(sc status --json)" '{"label":"demo","logged_in":true}'
stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"

# ---------------------------------------------------------------- pinentry, once per signature
"$PY" "$here/pty-driver.py" answer "$W/tty" "$W/prompts" "$TB_PIN" "$TB_PIN" 999999 "$TB_PIN" "$TB_PIN" &
tb_track_pid $!
wait_for 10 test -s "$W/tty" || { echo "pty-driver did not start"; exit 99; }
prompts() { if [ -f "$W/prompts" ]; then grep -c '^prompt' "$W/prompts"; else echo 0; fi; }
GPG_TTY=$(cat "$W/tty") start_agent "$S" --pinentry "$PINENTRY" --audit-log "$W/audit2.log"
echo "$TB_PIN" | sc login --token demo --pin-stdin 2>/dev/null
run notty "$SCAGENT" --socket "$S" sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/20.sig"
is "pinentry: sign without a PIN: exit 0" "$RC" 0
is "  one prompt" "$(prompts)" 1
has "  it names the key and the token" "$(cat "$W/prompts")" 'the key of "carol" on smart card "demo"'
ok "  verifies" openssl dgst -sha256 -verify "$(pubkey carol)" -signature "$W/20.sig" "$W/data"
run notty "$SCAGENT" --socket "$S" sign --cert dave --alg ecdsa-sha384 --in "$W/data" --out "$W/21.sig"
is "pinentry: the next signature asks again" "$(prompts)" 2
ok "  and verifies" openssl dgst -sha384 -verify "$(pubkey dave)" -signature "$W/21.sig" "$W/data"
run notty "$SCAGENT" --socket "$S" sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/22.sig"
is "pinentry, wrong PIN typed: exit 1" "$RC" 1
has "  the message says it came from pinentry and was tried once" "$ERR" \
	"asked through pinentry (tried once): nothing was signed"
sleep 1
is "  asked once, not again" "$(prompts)" 3
run notty "$SCAGENT" --socket "$S" connect --cafile "$TB_DIR/pki/root.pem" --cert carol --tls-max 1.3 "$URL"
is "pinentry: connect (TLS 1.3) with carol's key: exit 0" "$RC" 0
has "  the server's page came back" "$OUT" "Protocol  : TLSv1.3"
is "  one prompt for the handshake's signature" "$(prompts)" 4
run notty "$SCAGENT" --socket "$S" sign --cert alice --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/23.sig"
is "pinentry: a key without the attribute is not asked for" "$(prompts)" 4
is "  and signs" "$RC" 0
stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"

# ---------------------------------------------------------------- PIN flags (fault module)
# SoftHSM counts no failed tries: the fault module adds the PIN flags a card
# reports to C_GetTokenInfo, switched at run time through $W/faults.
tb_fault_module
: >"$W/faults"
SCAGENT_FAULT_FILE=$W/faults SCAGENT_FAULT_TRACE=$W/trace start_agent "$S" --module "$FAULT" \
	--audit-log "$W/audit3.log"
echo "$TB_PIN" | sc login --token demo --pin-stdin 2>/dev/null
psign() { # PIN OUT [ARGS]: carol signs with PIN from standard input
	local pin=$1 out=$2
	shift 2
	run sh -c "echo '$pin' | '$SCAGENT' --socket '$S' sign --cert carol --alg rsa-pkcs1-sha256 --in '$W/data' --out '$out' --pin-stdin $*"
}
echo pin-final-try >"$W/faults"
psign 999999 "$W/30.sig"
is "final try, not confirmed: exit 1" "$RC" 1
has "  says one try is left and nothing was tried" "$ERR" 'token "demo" has one PIN try left: nothing was tried'
has "  says how to confirm" "$ERR" "--confirm-final-try"
is "  audited as pin-final-try" "$(grep -c 'result=pin-final-try' "$W/audit3.log")" 1
psign 999999 "$W/31.sig" --confirm-final-try
has "final try, confirmed: the (wrong) PIN is tried" "$ERR" 'wrong PIN for the key of "carol"'
psign "$TB_PIN" "$W/32.sig" --confirm-final-try
is "final try, confirmed, right PIN: exit 0" "$RC" 0
ok "  verifies" openssl dgst -sha256 -verify "$(pubkey carol)" -signature "$W/32.sig" "$W/data"
echo pin-locked >"$W/faults"
psign "$TB_PIN" "$W/33.sig" --confirm-final-try
is "locked PIN: exit 1" "$RC" 1
has "  says so, nothing tried" "$ERR" 'the PIN of token "demo" is locked: nothing was tried'
ok "  nothing signed" test ! -s "$W/33.sig"
: >"$W/faults"
psign "$TB_PIN" "$W/34.sig"
is "flags clear again: signs" "$RC" 0
# A stale key handle (renumber-now: the objects numbered anew before
# C_SignInit): C_SignInit refuses it before the context login, so no PIN went
# to the card; the agent reads the token again and signs once more, and the
# PIN goes to the card once. A refused handle after the context login (C_Sign
# answering CKR_KEY_HANDLE_INVALID) is not tried again: the PIN would be.
n() { grep -c "^$1" "$W/trace"; }
echo renumber-now >"$W/faults"
: >"$W/trace"
psign "$TB_PIN" "$W/35.sig"
is "stale key handle: signs" "$RC" 0
ok "  verifies" openssl dgst -sha256 -verify "$(pubkey carol)" -signature "$W/35.sig" "$W/data"
is "  C_SignInit twice, the first refused" "$(n SignInit) $(n 'SignInit refused')" "2 1"
is "  the PIN sent once, as the context login" "$(grep '^Login' "$W/trace")" "Login user=$((0x2))"
echo sign-fail=0x60 >"$W/faults"
: >"$W/trace"
psign "$TB_PIN" "$W/36.sig"
is "handle refused after the context login: fails" "$RC" 1
is "  one C_SignInit, one C_Sign: not tried again" "$(n SignInit) $(n 'Sign ')" "1 1"
is "  the PIN sent once" "$(grep '^Login' "$W/trace")" "Login user=$((0x2))"
: >"$W/faults"
hasnt "no PIN in the agent's logs" "$(cat "$TB_DIR"/agent-*.log "$W"/audit*.log)" "$TB_PIN"
stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"
done_testing
