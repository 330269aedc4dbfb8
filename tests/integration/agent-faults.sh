#!/bin/bash
# Faults a real token produces only when it breaks, injected by
# tests/mock/fault-pkcs11 (a PKCS#11 module forwarding to SoftHSM):
# C_Initialize failing in one module while another works; CKR_DEVICE_REMOVED
# during C_Sign; a signature that does not verify; a slow token that must
# delay only its own requests; a module that gives its objects other handles
# after a logout, or between two signatures. The agent must answer each with a typed error and keep
# serving.
#
# Two modules in one agent need two independent SoftHSM instances: the faulty
# module wraps the test bed's second one (tb_softhsm_b).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need_py
tb_fault_module

set -e
tb_init
tb_pki
# "fast": plain SoftHSM
tb_softhsm_token fast
tb_enroll fast 01 alice rsa:2048 good
tb_enroll fast 02 bob EC:prime256v1 good
# "slow": the second SoftHSM instance, behind the fault module
tb_softhsm_b_token slow
SOFTHSM2_CONF=$SOFTHSM2_CONG tb_enroll slow 03 carol rsa:2048 good
SOFTHSM2_CONF=$SOFTHSM2_CONG tb_enroll slow 04 dave EC:prime256v1 good
SOFTHSM2_CONF=$SOFTHSM2_CONG tb_enroll slow 05 erin rsa:2048 good
set +e
export SCAGENT_FAULT_TARGET=$TB_SOFTHSM_B
S=$TB_DIR/agent.sock
W=$TB_DIR/w
mkdir -p "$W"
sc() { "$SCAGENT" --socket "$S" "$@"; }
head -c 2000 /dev/urandom >"$W/data"
labels() { "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(sorted(t["label"] for t in d["tokens"])))'; }

# ---------------------------------------------------------------- C_Initialize fails in one module
SCAGENT_FAULT=init start_agent "$S" --module "$FAULT" --module "$TB_SOFTHSM"
run sc list --json
is "C_Initialize fails in one module: list still works" "$RC" 0
is "... and shows the other module's token" "$(labels <<<"$OUT")" fast
has "... and says which module failed and why" "$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["errors"])' <<<"$OUT")" "fault-pkcs11.so"
has "... naming C_Initialize" "$OUT" "C_Initialize"
sc login --token fast --pin-stdin <<<"$TB_PIN" 2>/dev/null
run sc sign --cert alice --alg rsa-pss-sha256 --in "$W/data" --out "$W/init.sig"
is "... and signing on the working module works" "$RC" 0
ok "... signature verifies" openssl dgst -sha256 -verify "$(pubkey alice)" -sigopt rsa_padding_mode:pss \
	-sigopt rsa_pss_saltlen:digest -signature "$W/init.sig" "$W/data"
stop_agent "agent with a failed module exits cleanly"

# ---------------------------------------------------------------- SIGTERM while a module starts
# The socket exists before the modules are loaded: a SIGTERM then (systemd
# stopping an agent that is still starting) stops it cleanly too.
S2=$TB_DIR/starting.sock
SCAGENT_FAULT=init-delay=3000 "$SCAGENTD" --foreground --log-level info --module "$FAULT" --socket "$S2" \
	>"$W/starting.log" 2>&1 &
spid=$!
tb_track_pid $spid
for _ in $(seq 100); do [ -S "$S2" ] && break; sleep 0.02; done
ok "a starting agent has its socket before its modules are loaded" test -S "$S2"
kill -TERM $spid
wait $spid
is "SIGTERM while a module starts: exit 0" "$?" 0
ok "... socket removed" test ! -e "$S2"
has "... logged" "$(cat "$W/starting.log")" "shutting down"

# ---------------------------------------------------------------- one agent, faults switched at run time
: >"$W/faults"
SCAGENT_FAULT_FILE=$W/faults SCAGENT_FAULT_TRACE=$W/trace start_agent "$S" --module "$FAULT" --module "$TB_SOFTHSM"
is "both modules' tokens listed" "$(sc list --json | labels)" "fast slow"
sc login --token fast --pin-stdin <<<"$TB_PIN" 2>/dev/null
sc login --token slow --pin-stdin <<<"$TB_PIN" 2>/dev/null
run sc sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/carol0.sig"
is "no fault: the faulty module's token signs" "$RC" 0
ok "no fault: verifies" openssl dgst -sha256 -verify "$(pubkey carol)" -signature "$W/carol0.sig" "$W/data"

# CKR_DEVICE_REMOVED during C_Sign
echo sign-removed >"$W/faults"
out=$(printf '%s\n' '{"id":0,"op":"hello","version":1}' \
	"{\"id\":1,\"op\":\"sign\",\"ref\":\"carol\",\"alg\":\"rsa-pkcs1-sha256\",\"data\":\"$(base64 -w0 "$W/data")\"}" \
	'{"id":2,"op":"status"}' | "$PY" "$here/rawclient.py" "$S" --lines 3 --wait 10)
l=$(sed -n 2p <<<"$out")
has "CKR_DEVICE_REMOVED: typed error token-removed" "$l" '"code":"token-removed"'
has "CKR_DEVICE_REMOVED: the message names the token" "$l" 'the token \"slow\" was removed'
has "CKR_DEVICE_REMOVED: same connection keeps working" "$(sed -n 3p <<<"$out")" '"ok":true'
run sc sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data"
is "CKR_DEVICE_REMOVED via the CLI: exit 1" "$RC" 1
has "CKR_DEVICE_REMOVED via the CLI: says removed" "$ERR" "removed"
ok "the agent is still running" kill -0 "$AGENT_PID"
: >"$W/faults"
run sc sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/carol1.sig"
is "token back: the next sign on it works" "$RC" 0
ok "token back: verifies" openssl dgst -sha256 -verify "$(pubkey carol)" -signature "$W/carol1.sig" "$W/data"
run sc sign --cert alice --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/alice1.sig"
is "the other module was never affected" "$RC" 0

# A faulty signature (one byte flipped) is never returned
echo sign-bad >"$W/faults"
for alg in rsa-pkcs1-sha256 rsa-pss-sha256; do
	rm -f "$W/bad.sig"
	run sc sign --cert carol --alg "$alg" --in "$W/data" --out "$W/bad.sig"
	is "sign-bad $alg: exit 1" "$RC" 1
	has "sign-bad $alg: says the signature did not verify" "$ERR" "does not verify"
	ok "sign-bad $alg: no signature written" test ! -s "$W/bad.sig"
done
out=$(printf '%s\n' '{"id":0,"op":"hello","version":1}' \
	"{\"id\":1,\"op\":\"sign\",\"ref\":\"carol\",\"alg\":\"rsa-pss-sha512\",\"digest\":\"$(openssl dgst -sha512 -binary "$W/data" | base64 -w0)\"}" |
	"$PY" "$here/rawclient.py" "$S" --lines 2 --wait 10)
l=$(sed -n 2p <<<"$out")
has "sign-bad over a digest: error bad-signature" "$l" '"code":"bad-signature"'
hasnt "sign-bad: no signature in the reply" "$l" '"signature"'
grep -q 'returned a signature that does not verify' "$AGENT_LOG"
is "sign-bad: the agent logs the faulty token" "$?" 0
: >"$W/faults"
run sc sign --cert carol --alg rsa-pss-sha256 --in "$W/data" --out "$W/carol2.sig"
is "after sign-bad: a good signature again" "$RC" 0

# A slow token delays only its own requests
echo sign-delay=3000 >"$W/faults"
t0=$(date +%s.%N)
sc sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/slow.sig" 2>"$W/slow.err" &
slow=$!
sleep 0.3
t1=$(date +%s.%N)
sc list --json >"$W/during.json"
list_rc=$?
t2=$(date +%s.%N)
sc sign --cert alice --alg rsa-pss-sha256 --in "$W/data" --out "$W/fast.sig"
fast_rc=$?
sc sign --cert bob --alg ecdsa-sha256 --in "$W/data" --out "$W/fast-ec.sig"
fast_ec_rc=$((fast_rc + $?))
t3=$(date +%s.%N)
ok "while the slow token signs, it is still signing (not done yet)" kill -0 "$slow"
wait "$slow"
slow_rc=$?
t4=$(date +%s.%N)
elapsed() { "$PY" -c "print('%.2f' % ($2 - $1))"; }
is "slow token: list during its signature succeeds" "$list_rc" 0
is "... and shows both tokens" "$(labels <"$W/during.json")" "fast slow"
ok "... within 1 s ($(elapsed "$t1" "$t2") s)" "$PY" -c "import sys; sys.exit(not ($t2 - $t1 < 1.0))"
is "slow token: signatures on the other token meanwhile succeed" "$fast_ec_rc" 0
ok "... within 1.5 s for two ($(elapsed "$t2" "$t3") s)" "$PY" -c "import sys; sys.exit(not ($t3 - $t2 < 1.5))"
ok "... and verify" openssl dgst -sha256 -verify "$(pubkey alice)" -sigopt rsa_padding_mode:pss \
	-sigopt rsa_pss_saltlen:digest -signature "$W/fast.sig" "$W/data"
is "the slow signature itself completes" "$slow_rc" 0
ok "... taking the 3 s delay ($(elapsed "$t0" "$t4") s)" "$PY" -c "import sys; sys.exit(not ($t4 - $t0 >= 2.9))"
ok "... and verifies" openssl dgst -sha256 -verify "$(pubkey carol)" -signature "$W/slow.sig" "$W/data"
: >"$W/faults"

verify_sig() {	# verify_sig CERT ALG SIG
	case $2 in
	rsa-pss-*) openssl dgst -"${2##*-}" -verify "$(pubkey "$1")" -sigopt rsa_padding_mode:pss \
		-sigopt rsa_pss_saltlen:digest -signature "$3" "$W/data" ;;
	*) openssl dgst -"${2##*-}" -verify "$(pubkey "$1")" -signature "$3" "$W/data" ;;
	esac
}
# A logout leaves no signing operation started, and a signature after it needs a login.
: >"$W/trace"
run sc logout --token slow
is "logout: exit 0" "$RC" 0
has "... no signing operation was left started at C_Logout" "$(grep '^Logout' "$W/trace")" "Logout ops=0"
run sc sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/after-logout.sig"
is "... and a signature after it needs a login" "$RC" 1
has "... says so" "$ERR" "needs a login"
sc login --token slow --pin-stdin <<<"$TB_PIN" 2>/dev/null

# ---------------------------------------------------------------- objects numbered anew after a logout
# PKCS#11 lets a module give its objects other handles after a logout:
# SoftHSM does when a slot's last session closes. The fault module does it at
# every logout, and the handles before are then invalid.
# The reload after the logout reads the certificates again when their handles
# changed: a refresh then finds nothing changed, no "changed" event goes out
# (the watcher would see one before the next login's), and both keys sign
# after the next login.
raw() { "$PY" "$here/rawclient.py" "$S" "$@"; }
changed() { "$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["result"]["changed"])'; }
certs() { sc list --json | "$PY" -c 'import json,sys
print(" ".join(sorted(c["label"] for t in json.load(sys.stdin)["tokens"] if t["label"] == "slow" for c in t["certificates"])))'; }
echo renumber >"$W/faults"
before=$(certs)
is "renumber: the token's certificates listed before" "$before" "carol dave erin"
for k in "carol rsa-pkcs1-sha256" "dave ecdsa-sha256"; do
	read -r ref alg <<<"$k"
	run sc sign --cert "$ref" --alg "$alg" --in "$W/data" --out "$W/renum.sig"
	is "renumber: $ref signs before the logout" "$RC" 0
done
: >"$W/trace"
raw --hello --lines 3 --wait 4 <<<'{"id":1,"op":"watch"}' >"$W/renum-watch.out" &
watcher=$!
sleep 0.5
run sc logout --token slow
is "renumber: logout: exit 0" "$RC" 0
has "... the module numbered its objects anew" "$(cat "$W/trace")" "Renumbered 1"
out=$(raw --hello --lines 1 <<<'{"id":1,"op":"refresh"}')
is "... a refresh after it finds nothing changed" "$(changed <<<"$out")" False
is "... the list shows the same certificates" "$(certs)" "$before"
sc login --token slow --pin-stdin <<<"$TB_PIN" 2>/dev/null
wait "$watcher"
has "... watch: the logout event" "$(cat "$W/renum-watch.out")" '{"token":"slow","event":"logout"}'
hasnt "... watch: no changed event" "$(cat "$W/renum-watch.out")" '"event":"changed"'
for k in "carol rsa-pkcs1-sha256" "dave ecdsa-sha256"; do
	read -r ref alg <<<"$k"
	run sc sign --cert "$ref" --alg "$alg" --in "$W/data" --out "$W/renum.sig"
	is "... after the next login $ref signs" "$RC" 0
	ok "... and the signature verifies" verify_sig "$ref" "$alg" "$W/renum.sig"
done
out=$(raw --hello --lines 1 <<<'{"id":1,"op":"refresh"}')
is "... a refresh after the login finds nothing changed" "$(changed <<<"$out")" False
: >"$W/faults"

# ---------------------------------------------------------------- a key handle gone stale
# A signature reads nothing from the token: it uses the handles the agent read
# at the last login, logout, import, list or refresh. When the token has
# numbered its objects anew since (renumber-now: at the next C_SignInit), it
# refuses the handle; the agent then reads the token again and signs once
# more, with no PIN: no C_Login. A token that keeps refusing gets one more
# try, not a loop.
n() { grep -c "^$1" "$W/trace"; }
stale_logs() { grep -c 'went stale: token read again' "$AGENT_LOG"; }
run sc sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/stale0.sig"
is "stale handle: a first signature works" "$RC" 0
raw --hello --lines 1 <<<'{"id":1,"op":"refresh"}' >/dev/null	# the periodic one is 30 s away now
: >"$W/trace"
for alg in rsa-pkcs1-sha256 rsa-pss-sha256 rsa-pkcs1-sha384; do
	sc sign --cert carol --alg "$alg" --in "$W/data" --out "$W/stale0.sig"
done
is "... three signatures: three C_Sign" "$(n 'Sign ')" 3
is "... and no token read: no C_FindObjectsInit" "$(n FindObjectsInit)" 0
is "... no C_GetSlotList" "$(n GetSlotList)" 0
echo renumber-now >"$W/faults"
logs0=$(stale_logs)
: >"$W/trace"
run sc sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/stale1.sig"
is "renumber-now: the signature works" "$RC" 0
ok "... and verifies" verify_sig carol rsa-pkcs1-sha256 "$W/stale1.sig"
has "... the module numbered its objects anew at C_SignInit" "$(cat "$W/trace")" "Renumbered "
is "... C_SignInit twice" "$(n SignInit)" 2
is "... the first refused the stale handle (CKR_KEY_HANDLE_INVALID)" "$(grep '^SignInit refused' "$W/trace")" \
	"SignInit refused rv=96"
is "... one C_Sign" "$(n 'Sign ')" 1
is "... no C_Login (no PIN involved)" "$(n Login)" 0
is "... logged once" "$(($(stale_logs) - logs0))" 1
file_has "... as stale" "$AGENT_LOG" 'key handle of "carol" on "slow" went stale: token read again'
: >"$W/trace"
run sc sign --cert dave --alg ecdsa-sha256 --in "$W/data" --out "$W/stale2.sig"
is "... the token's other keys sign after it (their handles read again too)" "$RC" 0
ok "... and verify" verify_sig dave ecdsa-sha256 "$W/stale2.sig"
is "... with one C_SignInit" "$(n SignInit)" 1
: >"$W/faults"

echo stale-key >"$W/faults"
logs0=$(stale_logs)
: >"$W/trace"
rm -f "$W/stale3.sig"
run sc sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/stale3.sig"
is "stale-key (every handle refused): the signature fails" "$RC" 1
has "... with a clear error naming the token" "$ERR" 'the token "slow" failed while signing with "carol"'
ok "... no signature written" test ! -s "$W/stale3.sig"
is "... after one re-read" "$(($(stale_logs) - logs0))" 1
is "... of the private keys (the certificates' handles unchanged)" "$(n FindObjectsInit)" 2
is "... and one more C_SignInit, no loop" "$(n 'SignInit refused')" 2
is "... no C_Sign" "$(n 'Sign ')" 0
file_has "... the agent logs why" "$AGENT_LOG" 'refused the key handle of "carol" again'
: >"$W/faults"
run sc sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/stale4.sig"
is "... the fault gone, the next signature works" "$RC" 0

# ---------------------------------------------------------------- login faults
sc logout --token slow 2>/dev/null
echo login-fail=CKR_DEVICE_REMOVED >"$W/faults"
run sc login --token slow --pin-stdin <<<"$TB_PIN"
is "login, CKR_DEVICE_REMOVED: exit 1" "$RC" 1
has "login, CKR_DEVICE_REMOVED: says removed" "$ERR" "token removed"
echo login-fail=CKR_PIN_LOCKED >"$W/faults"
run sc login --token slow --pin-stdin <<<"$TB_PIN"
is "login, CKR_PIN_LOCKED: exit 1" "$RC" 1
has "login, CKR_PIN_LOCKED: says locked and what to do" "$ERR" "is locked; unblock it"
: >"$W/faults"
run sc login --token slow --pin-stdin <<<"$TB_PIN"
is "after the login faults, a login works" "$RC" 0
ok "the agent survived every fault" kill -0 "$AGENT_PID"
stop_agent "and exits cleanly on SIGTERM"

done_testing
