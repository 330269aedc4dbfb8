#!/bin/bash
# A client that goes away while its request waits on the card costs nothing
# more: the agent sees its socket close (POLLHUP) while it waits on the
# module's worker, lets go of the worker connection and frees the client's
# slot at once, instead of holding it until the card answers. The fault
# module gives SoftHSM a slow card (delay-sign=4s); the agent serves one
# client at a time (--max-clients 1), so the next client is served only
# once the departed one's slot is free.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
tb_fault_module
tb_init
tb_pki
tb_softhsm_token card
tb_enroll card 01 alice rsa:2048 good
export SCAGENT_FAULT_TARGET=$TB_SOFTHSM SCAGENT_FAULT="delay-sign=4000ms" SCAGENT_FAULT_TRACE=$TB_DIR/trace
# signing: until the card has begun the signature of the client just started
signing() {
	local n=$1
	wait_for 20 sh -c '[ "$(grep -c "^SignInit" "$0" 2>/dev/null)" -gt "$1" ]' "$TB_DIR/trace" "$n" ||
		bail_out "the signature did not reach the card"
}
start_agent --module "$FAULT" --max-clients 1
echo "$TB_PIN" | "$SCAGENT" login --token card --pin-stdin >/dev/null 2>&1 || bail_out "login failed"
head -c 32 /dev/urandom >"$TB_DIR/digest"

# A signature asked for, and its client killed while the card works.
n=$(grep -c "^SignInit" "$TB_DIR/trace" 2>/dev/null)
"$SCAGENT" sign --cert alice --alg rsa-pkcs1-sha256 --digest --in "$TB_DIR/digest" >/dev/null 2>&1 &
sp=$!
signing "${n:-0}"
kill -KILL "$sp"
wait "$sp" 2>/dev/null
t0=$(date +%s%N)
run "$SCAGENT" status --json
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "the next client is served while the card still signs for the departed one (${ms} ms)" "$RC" 0
ok "... not after the card's 4 s ($ms ms)" test "$ms" -lt 2500
for _ in $(seq 30); do grep -q 'client closed its connection while' "$AGENT_LOG" && break; sleep 0.1; done
has "the agent's log says the client went" "$(cat "$AGENT_LOG")" "the client closed its connection while"
# The worker finishes the signature and drops its answer; it serves on.
sleep 4
run "$SCAGENT" sign --cert alice --alg rsa-pkcs1-sha256 --digest --in "$TB_DIR/digest" --out "$TB_DIR/sig"
is "the worker signs the next request as before" "$RC" 0
is "... with no restart of the module's worker" "$("$SCAGENT" status --json | "$PY" -c 'import json,sys; print(sum(p["restarts"] for p in json.load(sys.stdin)["processes"]))')" 0
# SIGTERM while a client waits on the card: it is told the agent is stopping.
n=$(grep -c "^SignInit" "$TB_DIR/trace")
"$SCAGENT" sign --cert alice --alg rsa-pkcs1-sha256 --digest --in "$TB_DIR/digest" \
	>/dev/null 2>"$TB_DIR/sign.err" &
sp=$!
signing "$n"
stop_agent
wait "$sp"
rc=$?
is "a client waiting when the agent stops: a failure exit" "$rc" 1
has "... that says the agent is stopping" "$(cat "$TB_DIR/sign.err")" "the agent is stopping"
done_testing
