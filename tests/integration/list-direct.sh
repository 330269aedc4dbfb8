#!/bin/bash
# `scagent --direct --module SoftHSM list` on the demo card: every field of
# INTERFACE.md's list JSON, for every positive and negative certificate,
# before login, after login, with --cafile; and the human table.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/list-common.sh"
tb_init
tb_demo_card

P=$TB_DIR/pki W=$TB_DIR/list-direct
mkdir -p "$W/certs"
cp "$TB_DIR"/certs/*.pem "$P/issuing.pem" "$W/certs/"
slots() { pkcs11-tool --module "$TB_SOFTHSM" -L >"$W/slots.txt" 2>/dev/null; }
# jcheck DESC LIST.json ARGS...: the field-by-field check (its lines are shown)
jcheck() {
	local d=$1 f=$2 out rc=0; shift 2
	out=$(python3 "$here/list-json-check.py" "$f" --certs "$W/certs" --slots "$W/slots.txt" \
		--module "$TB_SOFTHSM" "$@" 2>&1) || rc=$?
	printf '%s\n' "$out" | sed 's/^/# /'
	if [ "$rc" = 0 ] && grep -q '^ok - ' <<<"$out"; then
		pass "$d ($(grep -c '^ok - ' <<<"$out") fields)"
	else
		fail "$d" "$(grep -c '^not ok' <<<"$out") fields wrong"
	fi
}

# ---- before login: SoftHSM hides private keys, so "unknown"
slots
sca list --json >"$W/l1.json" 2>"$W/l1.err"
is "list --json exits 0" $? 0
ok "list --json: nothing on stderr" test ! -s "$W/l1.err"
jcheck "list --json before login: every field; every URI selects its certificate" "$W/l1.json" \
	--check-cmd "$SCAGENT" --direct --module "$TB_SOFTHSM" check

# ---- logged in to negatives: present / absent (nokey, CA) and no-private-key
echo "$TB_PIN" | sca list --login negatives --pin-stdin --json >"$W/l2.json" 2>"$W/l2.err"
is "list --login negatives --pin-stdin --json exits 0" $? 0
slots
jcheck "list --json logged in to negatives" "$W/l2.json" --logged-in negatives

# ---- logged in to demo, with --cafile: only the rogue-issued one is untrusted
echo "$TB_PIN" | sca list --login demo --pin-stdin --cafile "$P/root.pem" --json \
	>"$W/l3.json" 2>"$W/l3.err"
is "list --login demo --cafile root --json exits 0" $? 0
jcheck "list --json logged in to demo, --cafile root (intermediate from the token)" \
	"$W/l3.json" --logged-in demo --cafile "$P/root.pem" --intermediate "$P/issuing.pem"

# ---- the human table
echo "$TB_PIN" | sca list --login negatives --pin-stdin >"$W/h.txt" 2>"$W/h.err"
is "list (human) exits 0" $? 0
file_has "human: token demo" "$W/h.txt" 'Token "demo"'
file_has "human: token negatives" "$W/h.txt" 'Token "negatives"'
file_has "human: login state" "$W/h.txt" "logged in"
file_has "human: not logged in state" "$W/h.txt" "not logged in"
for l in alice bob carol expired notyet serverauth noupn nodigsig weak untrusted \
	multiupn upnsubject nokey corrupt "Contoso Issuing CA"; do
	file_has "human: certificate $l shown" "$W/h.txt" "  $l  ["
done
# "problems:" line under each negative certificate, in its own block
block() { awk -v l="  $1  [" 'index($0, l) == 1 { p = 1; print; next }
	/^  [^ ]/ { p = 0 } /^Token/ { p = 0 } p' "$W/h.txt"; }
for pair in expired:expired notyet:not-yet-valid serverauth:no-client-auth-eku \
	noupn:no-upn nodigsig:no-digital-signature weak:weak-key nokey:no-private-key; do
	l=${pair%%:*} code=${pair#*:}
	if block "$l" | grep -q "problems: $code\$"; then pass "human: $l shows problem $code"
	else fail "human: $l shows problem $code" "$(block "$l")"; fi
done
if block alice | grep -q "CBA ok" && ! block alice | grep -q problems; then
	pass "human: alice CBA ok, no problems line"
else fail "human: alice CBA ok, no problems line" "$(block alice)"; fi
if block corrupt | grep -q "error: "; then pass "human: corrupt shows its error"
else fail "human: corrupt shows its error" "$(block corrupt)"; fi
file_has "human: UTF-8 UPN shown" "$W/h.txt" "multiupn@contoso.com, jürgen@contoso.com"
file_has "human: EC key with curve" "$W/h.txt" "ec 256 (prime256v1), private key present"
file_has "human: fingerprint shown" "$W/h.txt" \
	"$(openssl x509 -in "$TB_DIR/certs/alice.pem" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f)"

# ---- PIN flags: a wrong PIN makes SoftHSM set "user PIN count low"
printf '999999\n' | sca list --login demo --pin-stdin --json >"$W/bad.json" 2>"$W/bad.err"
is "list --login with a wrong PIN exits 1" $? 1
file_has "wrong PIN: says what failed" "$W/bad.err" 'login to token "demo" failed'
file_has "wrong PIN: names the reason" "$W/bad.err" "PIN"
sca list --json >"$W/l4.json" 2>/dev/null
slots
ok "pkcs11-tool shows PIN count low on demo" grep -q "user PIN count low" "$W/slots.txt"
jcheck "list --json after a wrong PIN (pin_count_low as pkcs11-tool shows it)" "$W/l4.json"

done_testing
