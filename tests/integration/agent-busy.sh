#!/bin/bash
# A module busy with one client's slow operation is no hung module (issue
# 21): a short request of another client that waits behind a key generation
# within keygen-timeout waits on (its limit runs again after the key
# generation's), instead of killing the worker, which would lose the key
# generation and log every token of the module out. A worker that hangs past
# every limit in flight to it is still killed and restarted.
#
# The fault module makes SoftHSM a module that serialises its calls behind a
# slow key generation (delay-keygen=T: every other call waits for it, as
# behind a TPM module's lock); the agent runs with a 1 s module-timeout and
# a 4 s keygen-timeout.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
tb_fault_module
need_py
tb_init
tb_pki
tb_softhsm_token card
tb_enroll card 01 alice ec:p256 good
FAULTS=$TB_DIR/faults TRACE=$TB_DIR/trace
echo "delay-keygen=2500ms" >"$FAULTS"
: >"$TRACE"
export SCAGENT_FAULT_TARGET=$TB_SOFTHSM SCAGENT_FAULT_FILE=$FAULTS SCAGENT_FAULT_TRACE=$TRACE
start_agent --module "$FAULT" --module-timeout 1 --keygen-timeout 4
head -c 32 /dev/urandom >"$TB_DIR/digest"

restarts() {
	"$SCAGENT" status --json | "$PY" -c \
	    'import json,sys; print(sum(p["restarts"] for p in json.load(sys.stdin)["processes"]))'
}
pids() {
	"$SCAGENT" status --json | "$PY" -c \
	    'import json,sys; print(" ".join(str(p["pid"]) for p in json.load(sys.stdin)["processes"]))'
}
running() {
	"$SCAGENT" status --json | "$PY" -c \
	    'import json,sys; sys.exit(any(p["state"] != "running" for p in json.load(sys.stdin)["processes"]))'
}
login() { echo "$TB_PIN" | "$SCAGENT" login --token card --pin-stdin >/dev/null 2>&1 || bail_out "login failed"; }
sign() { "$SCAGENT" sign --cert alice --alg ecdsa-sha256 --digest --in "$TB_DIR/digest" --out "$TB_DIR/sig"; }
# keygen LABEL ID: in the background, its pid in KG, its output in $TB_DIR/kg-LABEL.*;
# returns once the module makes the key pair
keygen() {
	local n
	n=$(grep -c '^GenerateKeyPair 0' "$TRACE")
	"$SCAGENT" keygen --token card --type ec:p256 --label "$1" --id "$2" \
	    >"$TB_DIR/kg-$1.out" 2>"$TB_DIR/kg-$1.err" &
	KG=$!
	for _ in $(seq 50); do
		[ "$(grep -c '^GenerateKeyPair 0' "$TRACE")" -gt "$n" ] && return 0
		sleep 0.1
	done
	bail_out "the key generation did not reach the module"
}
login
pid0=$(pids)

# 1. A signature waits behind a 2.5 s key generation (within its 4 s limit),
# past its own 1 s: no restart, both succeed.
keygen slow1 51
t0=$(date +%s%N)
run sign
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "a signature behind a slow key generation is made (${ms} ms)" "$RC" 0
ok "... after its own 1 s limit had passed ($ms ms)" test "$ms" -gt 1200
ok "... and not long after the key generation ($ms ms)" test "$ms" -lt 4000
wait "$KG"
is "the key generation it waited behind succeeds" "$?" 0
has "... and says the key it made" "$(cat "$TB_DIR/kg-slow1.out")" 'key "slow1"'
ok "the signature was made after the key generation ended (fault module trace)" \
    "$PY" -c 'import sys; l=[x.strip() for x in open(sys.argv[1])]; g=l.index("GenerateKeyPair done rv=0"); sys.exit(not any(x.startswith("Sign ") for x in l[g:]))' "$TRACE"
is "no restart of the module's worker" "$(restarts)" 0
is "... the same worker process serves" "$(pids)" "$pid0"
hasnt "... and the agent killed none" "$(cat "$AGENT_LOG")" "is killed"
has "the agent's log says the request waited behind a slow operation" "$(cat "$AGENT_LOG")" \
    "it waits behind that slow operation"
run sign
is "the worker serves on, logged in as before" "$RC" 0
run "$SCAGENT" csr --key "$(sed -n 2p "$TB_DIR/kg-slow1.out")" --subject CN=slow1 --out "$TB_DIR/slow1.csr"
is "the key made is there: a CSR signed with it" "$RC" 0
ok "... that verifies" openssl req -in "$TB_DIR/slow1.csr" -noout -verify

# A key generation whose client went away is still made by the worker: a
# signature behind it waits too.
keygen slow2 53
kill -KILL "$KG"
wait "$KG" 2>/dev/null
t0=$(date +%s%N)
run sign
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "a signature behind the key generation of a client that went is made (${ms} ms)" "$RC" 0
ok "... after its own 1 s limit had passed ($ms ms)" test "$ms" -gt 1200
is "... with no restart of the module's worker" "$(pids) $(restarts)" "$pid0 0"

# 2. A key generation that hangs past its own limit: when it passes, no
# request in flight excuses it (the waiting signature is past its own): the
# worker is killed, not at the signature's extended end (4 s + 1 s).
echo "delay-keygen=60s" >"$FAULTS"
keygen hang1 52
t0=$(date +%s%N)
run sign
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
ok "a signature behind a key generation that hangs fails" test "$RC" -ne 0
has "... as the worker was killed for the key generation (not at its own end)" "$ERR" \
    "did not answer within 4 s (keygen)"
has "... and restarted" "$ERR" "log in again"
ok "... once the key generation's 4 s limit passed ($ms ms)" test "$ms" -gt 3000 -a "$ms" -lt 6000
wait "$KG"
rc=$?
ok "the key generation that hangs fails" test "$rc" -ne 0
has "... with the timeout message" "$(cat "$TB_DIR/kg-hang1.err")" "did not answer within 4 s (keygen)"
echo "" >"$FAULTS"
wait_for 10 running || bail_out "the worker did not come back"
is "the hung worker was restarted once" "$(restarts)" 1

# 3. A module call that hangs with nothing else in flight: killed at its own limit.
login
echo "hang-sign" >"$FAULTS"
t0=$(date +%s%N)
run sign
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
ok "a signature that hangs fails" test "$RC" -ne 0
has "... with the timeout message" "$ERR" "did not answer within 1 s (sign)"
ok "... at its own 1 s limit ($ms ms)" test "$ms" -lt 3000
echo "" >"$FAULTS"
wait_for 10 running || bail_out "the worker did not come back"
is "the worker was restarted again" "$(restarts)" 2
login
run sign
is "the restarted worker signs" "$RC" 0
stop_agent
done_testing
