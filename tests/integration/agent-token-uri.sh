#!/bin/bash
# Two tokens with one label (two cards of one person, two YubiKeys "PIV_II"):
# a label names neither (ambiguous, with a hint), a token URI with the serial
# names each (login, logout, mechanisms), events still carry the label, and
# scagent-pkcs11.so, which names its slots' tokens by URI, logs in and signs
# on either. Two SoftHSM instances (tb_softhsm_b) hold the two "twin" tokens.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need_py
need pkcs11-tool perl

set -e
tb_init
tb_pki
tb_softhsm_token twin
tb_enroll twin 01 alice rsa:2048 good
tb_softhsm_b_token twin
SOFTHSM2_CONF=$SOFTHSM2_CONG tb_enroll twin 02 bob EC:prime256v1 good
set +e
S=$TB_DIR/agent.sock
W=$TB_DIR/w
mkdir -p "$W"
sc() { "$SCAGENT" --socket "$S" "$@"; }
head -c 1000 /dev/urandom >"$W/data"

start_agent "$S" --module "$TB_SOFTHSM" --module "$TB_SOFTHSM_B"
json=$(sc list --json)
serials=$("$PY" -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(t["serial"] for t in d["tokens"] if t["label"] == "twin"))' <<<"$json")
read -r s1 s2 <<<"$serials"
ok "two tokens labelled twin, two serials" test -n "$s2" -a "$s1" != "$s2"
sc watch >"$W/events" 2>&1 &
watcher=$!
sleep 0.5

run sh -c "echo '$TB_PIN' | '$SCAGENT' --socket '$S' login --token twin --pin-stdin"
is "login --token twin: exit 1" "$RC" 1
has "  ambiguous, and says to name one by URI with its serial" "$ERR" \
	'more than one token is labelled "twin": name one with a token URI (pkcs11:token=LABEL;serial=SERIAL'

for s in "$s1" "$s2"; do
	run sh -c "echo '$TB_PIN' | '$SCAGENT' --socket '$S' login --token 'pkcs11:token=twin;serial=$s' --pin-stdin"
	is "login --token pkcs11:token=twin;serial=$s: exit 0" "$RC" 0
done
is "both are logged in" "$(sc status --json | grep -o '"label":"twin","logged_in":true' | wc -l)" 2
run sc sign --cert alice --alg rsa-pss-sha256 --in "$W/data" --out "$W/a.sig"
is "alice (first twin) signs" "$RC" 0
ok "  verifies" openssl dgst -sha256 -verify "$(pubkey alice)" -sigopt rsa_padding_mode:pss \
	-sigopt rsa_pss_saltlen:digest -signature "$W/a.sig" "$W/data"
run sc sign --cert bob --alg ecdsa-sha256 --in "$W/data" --out "$W/b.sig"
is "bob (second twin) signs" "$RC" 0
ok "  verifies" openssl dgst -sha256 -verify "$(pubkey bob)" -signature "$W/b.sig" "$W/data"

run sc logout --token "pkcs11:token=twin;serial=$s2"
is "logout by URI: exit 0" "$RC" 0
is "  only that one is logged out" "$(sc status --json | grep -o '"label":"twin","logged_in":true' | wc -l)" 1
sleep 0.5
has "events name the token by label, not by the URI" "$(cat "$W/events")" 'logout           token=twin'
hasnt "  no URI in the events" "$(cat "$W/events")" "pkcs11:"

run sc login --token "pkcs11:token=twin;serial=nosuchserial" --pin-stdin <<<"$TB_PIN"
is "a URI that matches no token: exit 1" "$RC" 1
has "  says no token matches it" "$ERR" 'no token matches "pkcs11:token=twin;serial=nosuchserial"'
run sc login --token "pkcs11:token=%zz" --pin-stdin <<<"$TB_PIN"
is "an invalid URI: exit 1" "$RC" 1
has "  says it is not a valid token URI" "$ERR" 'is not a valid token URI'

# ---------------------------------------------------------------- scagent-pkcs11.so
MODULE=$TOP_BUILDDIR/.libs/scagent-pkcs11.so
module_env "$MODULE"
p11() { env "${P11ENV[@]}" SCAGENT_SOCKET="$S" pkcs11-tool --module "$MODULE" "$@"; }
slots=$(p11 -L 2>/dev/null)
slot_of() { # SERIAL: the module's slot id of the twin with that serial
	awk -v s="$1" '/^Slot [0-9]+ \(0x[0-9a-f]+\)/ { id = $3; gsub(/[()]/, "", id) }
		/serial num *:/ && $NF == s { print id; exit }' <<<"$slots"
}
slot2=$(slot_of "$s2")
ok "the module shows the second twin in a slot of its own" test -n "$slot2"
run p11 --slot "$slot2" --login --pin "$TB_PIN" --sign --id 02 -m ECDSA-SHA256 -i "$W/data" -o "$W/m.sig" \
	--signature-format openssl
is "pkcs11-tool logs in to the second twin through the module (its URI) and signs" "$RC" 0
ok "  verifies" openssl dgst -sha256 -verify "$(pubkey bob)" -signature "$W/m.sig" "$W/data"
is "  the agent logged in to that twin only" \
	"$(sc status --json | grep -o '"label":"twin","logged_in":true' | wc -l)" 2
run p11 --slot "$slot2" -M
has "mechanisms of the second twin through the module" "$OUT" "ECDSA"

kill "$watcher" 2>/dev/null
stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"
done_testing
