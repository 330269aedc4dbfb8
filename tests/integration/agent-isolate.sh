#!/bin/bash
# Each module in a process of its own (issue 21): a module that crashes in
# C_Sign, hangs in C_Sign, C_FindObjects or C_GetSlotList, or crashes at its
# Nth signature costs its own token, never the agent. The faulty module
# (tests/mock/fault-pkcs11 over the test bed's second SoftHSM) runs beside
# plain SoftHSM in one agent; after every fault the SoftHSM token's login and
# signatures go on unharmed, the faulty module's worker is restarted, its
# token comes back logged out with events, and SIGTERM with a hung module
# ends the agent within 2 s.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need_py
tb_fault_module

set -e
tb_init
tb_pki
tb_softhsm_token fast
tb_enroll fast 01 alice rsa:2048 good
tb_softhsm_b_token slow
SOFTHSM2_CONF=$SOFTHSM2_CONG tb_enroll slow 03 carol rsa:2048 good
set +e
export SCAGENT_FAULT_TARGET=$TB_SOFTHSM_B
S=$TB_DIR/agent.sock
W=$TB_DIR/w
mkdir -p "$W"
head -c 2000 /dev/urandom >"$W/data"
labels() { "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(sorted(t["label"] for t in d["tokens"])))'; }
# proc FIELD: the faulty module's worker entry of status --json
proc() {
	sc status --json | "$PY" -c 'import json,sys
for p in json.load(sys.stdin)["processes"]:
    if "fault" in p["module"]: print(p[sys.argv[1]])' "$1"
}
logged_in() {
	sc status --json | "$PY" -c 'import json,sys
print(" ".join(sorted(t["label"] for t in json.load(sys.stdin)["tokens"] if t.get("logged_in"))))'
}
alice_signs() {
	rm -f "$W/alice.sig"
	sc sign --cert alice --alg rsa-pss-sha256 --in "$W/data" --out "$W/alice.sig" &&
		openssl dgst -sha256 -verify "$(pubkey alice)" -sigopt rsa_padding_mode:pss \
			-sigopt rsa_pss_saltlen:digest -signature "$W/alice.sig" "$W/data" >/dev/null
}
# fresh: a new agent with the faulty module beside SoftHSM, SoftHSM logged in
# (each fault its own, so the restarts of one never add up to "broken")
fresh() {
	[ -n "${AGENT_PID:-}" ] && stop_agent "agent exits cleanly"
	: >"$W/faults"
	SCAGENT_FAULT_FILE=$W/faults start_agent "$S" --module "$FAULT" --module "$TB_SOFTHSM" \
		--module-timeout 2 --audit-log "$W/audit"
	sc login --token fast --pin-stdin <<<"$TB_PIN" 2>/dev/null
}
# refresh: the protocol's refresh (every worker re-reads its slots now)
refresh() {
	printf '%s\n' '{"id":0,"op":"hello","version":1}' '{"id":1,"op":"refresh"}' |
		"$PY" "$here/rawclient.py" "$S" --lines 2 --wait 20 | sed -n 2p
}
# sign_raw: carol's signature asked on the socket: the answer line as a client reads it
sign_raw() {
	printf '%s\n' '{"id":0,"op":"hello","version":1}' \
		'{"id":1,"op":"sign","ref":"carol","alg":"rsa-pkcs1-sha256","data":"aGVsbG8="}' |
		"$PY" "$here/rawclient.py" "$S" --lines 2 --wait 20 | sed -n 2p
}
# back: the faulty module serves again (its token listed)
back() { wait_for 20 sh -c "'$SCAGENT' --socket '$S' list --json | grep -q '\"slow\"'"; }
# elapsed CMD...: run CMD, ELAPSED its wall time in ms
elapsed() {
	local t0
	t0=$(date +%s%N)
	run "$@"
	ELAPSED=$((($(date +%s%N) - t0) / 1000000))
}

AGENT_PID=
fresh
is "both modules' tokens listed" "$(sc list --json | labels)" "fast slow"
pids=$(sc status --json | "$PY" -c 'import json,sys; print(" ".join(str(p["pid"]) for p in json.load(sys.stdin)["processes"]))')
is "status: two worker processes" "$(wc -w <<<"$pids" | tr -d ' ')" 2
for p in $pids; do
	is "worker $p is a child of the agent" "$(awk '{print $4}' "/proc/$p/stat")" "$AGENT_PID"
done
ok "SoftHSM token signs" alice_signs
sc watch --json >"$W/events" 2>&1 &
watcher=$!
tb_track_pid $watcher
sleep 0.5

# ---------------------------------------------------------------- crash-sign
sc login --token slow --pin-stdin <<<"$TB_PIN" 2>/dev/null
is "both logged in" "$(logged_in)" "fast slow"
echo crash-sign >"$W/faults"
elapsed sc sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data"
is "crash-sign: the signature fails (exit 1)" "$RC" 1
has "crash-sign: typed error, says the module stopped on SIGSEGV" "$ERR" "stopped (signal 11"
has "crash-sign: ... and to log in again" "$ERR" "log in again"
[ "$ELAPSED" -lt 5000 ] && pass "crash-sign: answered at once (${ELAPSED} ms)" || fail "crash-sign: took ${ELAPSED} ms"
ok "crash-sign: the agent is alive" kill -0 "$AGENT_PID"
: >"$W/faults"
ok "crash-sign: the faulty module is back" back
is "crash-sign: SoftHSM's login untouched, the faulty token logged out" "$(logged_in)" "fast"
ok "crash-sign: SoftHSM still signs" alice_signs
is "crash-sign: status counts the restart" "$(proc restarts)" 1
has "crash-sign: status names the last error" "$(proc last_error)" "signal 11"
sc login --token slow --pin-stdin <<<"$TB_PIN" 2>/dev/null
ok "crash-sign: after a new login the faulty token signs" sc sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data"
sleep 0.3
ev=$(cat "$W/events")
has "events: token-removed for the faulty token" "$ev" '"event":"token-removed"'
has "events: module-restarted" "$ev" '"event":"module-restarted"'
has "events: token-added again" "$ev" '"event":"token-added"'
order=$(grep -o '"event":"[a-z-]*"' "$W/events" | grep -E 'token-removed|module-restarted|token-added' | head -3 | tr '\n' ' ')
is "events: removed, restarted, added, in that order" "$order" '"event":"token-removed" "event":"module-restarted" "event":"token-added" '
hasnt "events: SoftHSM's token never removed" "$(grep token-removed "$W/events")" '"token":"fast"'

# ---------------------------------------------------------------- crash at the Nth signature
fresh
sc login --token slow --pin-stdin <<<"$TB_PIN" 2>/dev/null
echo crash-sign-at=3 >"$W/faults"
n_ok=0
for i in 1 2; do
	sc sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data" >/dev/null 2>"$W/nth.err" && n_ok=$((n_ok + 1))
done
is "crash-sign-at=3: two signatures" "$n_ok" 2
out=$(sign_raw)
has "crash-sign-at=3: the third, the crash, answers the code device on the wire" "$out" '"code":"device"'
has "crash-sign-at=3: ... saying the module stopped" "$out" "signal 11"
: >"$W/faults"
ok "crash-sign-at=3: back" back
ok "crash-sign-at=3: SoftHSM still signs, still logged in" alice_signs
is "crash-sign-at=3: restart counted" "$(proc restarts)" 1

# ---------------------------------------------------------------- hang-sign
fresh
sc login --token slow --pin-stdin <<<"$TB_PIN" 2>/dev/null
echo hang-sign >"$W/faults"
sc sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data" >/dev/null 2>"$W/hang.err" &
hung=$!
sleep 0.5
elapsed alice_signs
is "hang-sign: SoftHSM signs while the other module hangs" "$RC" 0
[ "$ELAPSED" -lt 1500 ] && pass "hang-sign: ... without waiting (${ELAPSED} ms)" || fail "hang-sign: SoftHSM waited ${ELAPSED} ms"
wait $hung
is "hang-sign: the hung signature fails" "$?" 1
has "hang-sign: with a timeout after the module timeout" "$(cat "$W/hang.err")" "did not answer within 2 s (sign)"
: >"$W/faults"
ok "hang-sign: back" back
is "hang-sign: the worker was restarted" "$(proc restarts)" 1
is "hang-sign: SoftHSM's login untouched" "$(logged_in)" "fast"
sc login --token slow --pin-stdin <<<"$TB_PIN" 2>/dev/null
echo hang-sign >"$W/faults"
out=$(sign_raw)
has "hang-sign: on the wire, the code timeout" "$out" '"code":"timeout"'
: >"$W/faults"
ok "hang-sign: back again" back

# ---------------------------------------------------------------- hang-find, hang-slots
for f in hang-find hang-slots; do
	fresh
	echo "$f" >"$W/faults"
	# The faulty module's slot re-read hangs; its worker is killed after 2 s.
	t0=$(date +%s%N)
	l=$(refresh)
	ELAPSED=$((($(date +%s%N) - t0) / 1000000))
	has "$f: refresh answers" "$l" '"ok":true'
	has "$f: ... with a warning naming the module's timeout" "$l" 'did not answer within 2 s'
	[ "$ELAPSED" -lt 6000 ] && pass "$f: ... in time (${ELAPSED} ms)" || fail "$f: refresh took ${ELAPSED} ms"
	elapsed sc list --json
	is "$f: list works" "$RC" 0
	is "$f: ... with SoftHSM's token" "$(labels <<<"$OUT")" fast
	ok "$f: SoftHSM still signs, still logged in" alice_signs
	for _ in $(seq 50); do [ "$(proc restarts)" -gt 0 ] && break; sleep 0.1; done
	ok "$f: the hung worker was restarted" test "$(proc restarts)" -gt 0
	: >"$W/faults"
	ok "$f: back" back
done
ok "audit: the workers write the signatures" grep -q ' sign pid=' "$W/audit"
is "audit lines name the real client, not the agent" "$(grep -c "pid=$AGENT_PID " "$W/audit")" 0

# ---------------------------------------------------------------- device errors
# CKR_DEVICE_ERROR, and CKR_TOKEN_NOT_RECOGNIZED for a token the module had
# recognised, from a signature: the worker answers "log in again" and is
# started again, which initialises the module again; nothing is retried, the
# token comes back logged out, SoftHSM's login is untouched.
for ckr in CKR_DEVICE_ERROR 0xE1; do	# 0xE1: CKR_TOKEN_NOT_RECOGNIZED
	fresh
	sc login --token slow --pin-stdin <<<"$TB_PIN" 2>/dev/null
	echo "sign-fail=$ckr" >"$W/faults"
	run sc sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data"
	is "$ckr: the signature fails" "$RC" 1
	has "$ckr: the error says to log in again" "$ERR" "log in again"
	: >"$W/faults"
	wait_for 20 sh -c "[ \"\$('$SCAGENT' --socket '$S' status --json | '$PY' -c 'import json,sys
for p in json.load(sys.stdin)[\"processes\"]:
    if \"fault\" in p[\"module\"]: print(p[\"restarts\"])')\" -ge 1 ]"
	is "$ckr: the module's worker was started again" "$(proc restarts)" 1
	ok "$ckr: back" back
	is "$ckr: its token is logged out, SoftHSM's login untouched" "$(logged_in)" "fast"
	run sc login --token slow --pin-stdin <<<"$TB_PIN"
	is "$ckr: a new login works" "$RC" 0
	ok "$ckr: and the key signs" sc sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/carol.sig"
done

# ---------------------------------------------------------------- broken after 5 ends in 60 s
fresh
echo hang-slots >"$W/faults"
refresh >/dev/null
wait_for 40 sh -c "'$SCAGENT' --socket '$S' status --json | grep -q '\"state\":\"broken\"'"
is "a module that keeps hanging at start is reported broken" "$(proc state)" "broken"
has "broken: status says why" "$(proc last_error)" "not started again"
ok "broken: SoftHSM still signs" alice_signs
run sc sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data"
is "broken: a request for its token fails" "$RC" 1
run sc status
has "scagent status shows each module's process" "$OUT" "broken"
has "... and that a refresh starts it again once it is fixed" "$(proc last_error)" "then run scagent refresh"
# Fixed (here: the fault removed): a refresh starts it afresh, with no restart of the agent.
: >"$W/faults"
apid=$AGENT_PID
run sc refresh
is "broken, then fixed: scagent refresh succeeds" "$RC" 0
is "... the module runs again" "$(proc state)" "running"
ok "... its token is back" back
is "... in the same agent, SoftHSM's login kept" "$AGENT_PID:$(logged_in)" "$apid:fast"
run sc login --token slow --pin-stdin <<<"$TB_PIN"
is "... a login to its token works" "$RC" 0
ok "... and its key signs" sc sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/carol.sig"

# ---------------------------------------------------------------- SIGTERM with a hung module
: >"$W/faults"
stop_agent "agent exits cleanly"
S2=$TB_DIR/hung.sock
: >"$W/faults2"
SCAGENT_FAULT_FILE=$W/faults2 start_agent "$S2" --module "$FAULT" --module "$TB_SOFTHSM" --module-timeout 30
"$SCAGENT" --socket "$S2" login --token slow --pin-stdin <<<"$TB_PIN" 2>/dev/null
echo hang-sign >"$W/faults2"
"$SCAGENT" --socket "$S2" sign --cert carol --alg rsa-pkcs1-sha256 --in "$W/data" >/dev/null 2>&1 &
sleep 1
wpids=$("$SCAGENT" --socket "$S2" status --json | "$PY" -c 'import json,sys; print(" ".join(str(p["pid"]) for p in json.load(sys.stdin)["processes"]))')
is "two worker processes before SIGTERM" "$(wc -w <<<"$wpids")" 2
t0=$(date +%s%N)
kill -TERM "$AGENT_PID"
for _ in $(seq 50); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.05; done
ms=$((($(date +%s%N) - t0) / 1000000))
if kill -0 "$AGENT_PID" 2>/dev/null; then fail "SIGTERM with a hung module: the agent still runs after ${ms} ms"
else pass "SIGTERM with a hung module: the agent ended in ${ms} ms (< 2 s)"; fi
wait "$AGENT_PID" 2>/dev/null
is "... exit status 0" "$?" 0
ok "... socket removed" test ! -e "$S2"
left=0
for p in $wpids; do kill -0 "$p" 2>/dev/null && left=$((left + 1)); done
is "... no worker left behind" "$left" 0
kill "$watcher" 2>/dev/null
done_testing
