#!/bin/bash
# A stopped (SIGSTOP) or hung agent costs a client a bounded wait, then a
# typed error, never a hang (issue 21, the client side): the CLI through
# libscagent exits 3 with a message naming the socket and what to do;
# pkcs11-tool through scagent-pkcs11.so gets CKR_DEVICE_ERROR; once the agent
# runs again, the next call works. The hung module is tests/mock/fault-pkcs11
# (sign-delay) in front of SoftHSM.
#
# Times are wall-clock milliseconds; the upper bounds are generous (a loaded
# machine), the lower bounds never tighter than the timeout itself.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need_py
need pkcs11-tool openssl
MODULE=$TOP_BUILDDIR/.libs/scagent-pkcs11.so
FAULT=$TOP_BUILDDIR/tests/mock/.libs/fault-pkcs11.so
[ -f "$MODULE" ] || bail_out "module $MODULE not built: run make"
[ -f "$FAULT" ] || bail_out "fault module $FAULT not built: run make check once"
module_env "$MODULE"

tb_agent_test alice
export SCAGENT_SOCKET=$S
export SCAGENT_FAULT_TARGET=$TB_SOFTHSM SCAGENT_FAULT_FILE=$W/faults SCAGENT_FAULT_TRACE=$W/trace
: >"$W/faults"
printf 'data to sign\n' >"$W/data"
p11() { env "${P11ENV[@]}" pkcs11-tool --module "$MODULE" "$@"; }
# timed CMD...: run CMD (RC, OUT, ERR) and T, its wall time in ms
timed() {
	local t0
	t0=$(date +%s%3N)
	run "$@"
	T=$(($(date +%s%3N) - t0))
}
# within DESC MIN MAX: T in [MIN, MAX] ms
within() {
	if [ "$T" -ge "$2" ] && [ "$T" -le "$3" ]; then pass "$1 (${T} ms)"
	else fail "$1" "took $T ms, want $2..$3"; fi
}

start_agent "$S" --module "$FAULT"
tb_on_exit "kill -CONT $AGENT_PID"
run sc list --json
is "a running agent answers" "$RC" 0
sc login --token demo --pin-stdin <<<"$TB_PIN" >/dev/null 2>&1

# ---------------------------------------------------------------- the CLI, agent stopped
kill -STOP "$AGENT_PID"
timed env SCAGENT_TIMEOUT=2 "$SCAGENT" list
is "stopped agent, SCAGENT_TIMEOUT=2: scagent list exits 3" "$RC" 3
within "... after the 2 s bound, not for ever" 1500 8000
has "... naming the agent's socket" "$ERR" "$S"
has "... saying it is stopped and how to resume it" "$ERR" "is stopped and did not answer \`hello\` within 2 s: resume it with \`kill -CONT $AGENT_PID\`"
is "... in one line" "$(wc -l <<<"$ERR")" 1

timed sc status
is "stopped agent, default bound: scagent status exits 3" "$RC" 3
within "... after the connection's 10 s bound" 9000 25000
has "... and says so" "$ERR" "within 10 s"

run env SCAGENT_TIMEOUT=soon "$SCAGENT" list
is "SCAGENT_TIMEOUT that is not a number: usage error" "$RC" 2
has "... saying what is wrong" "$ERR" "SCAGENT_TIMEOUT=soon is not a number of seconds"

# A stopped agent's queue of new connections fills up (64 here): connect()
# itself then blocks, and is bounded too.
"$PY" -c '
import socket, sys, time
held = []
for i in range(1000):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(0.3)
    try:
        s.connect(sys.argv[1])
    except (socket.timeout, BlockingIOError):
        break
    held.append(s)
open(sys.argv[2], "w").close()
time.sleep(120)
' "$S" "$W/queue-full" &
holder=$!
tb_track_pid $holder
wait_for 60 test -e "$W/queue-full"
timed env SCAGENT_TIMEOUT=2 "$SCAGENT" list
is "stopped agent, full queue: scagent list exits 3" "$RC" 3
within "... after the 2 s bound" 1500 8000
has "... saying no connection was accepted" "$ERR" "$S accepted no connection within 2 s"
kill "$holder"
wait "$holder" 2>/dev/null

# ---------------------------------------------------------------- scagent-pkcs11.so, agent stopped
timed env "${P11ENV[@]}" SCAGENT_TIMEOUT=2 pkcs11-tool --module "$MODULE" --list-slots
within "stopped agent: pkcs11-tool --list-slots through the module returns" 1500 8000
has "... with no slot" "$OUT$ERR" "No slots"

kill -CONT "$AGENT_PID"
run sc list --json
is "agent resumed: scagent list works again" "$RC" 0
has "... and shows the token" "$OUT" '"label": "demo"'

# ---------------------------------------------------------------- C_Sign while the agent stops
# The agent stops in the middle of C_Sign (the fault module makes it take
# 3 s): the module answers CKR_DEVICE_ERROR after SCAGENT_TIMEOUT=4 instead
# of waiting for an agent that may never run again. The agent is its own
# process and its module's worker, which makes the C_Sign call: both stop,
# as they would with the session that runs them.
read -ra wpids <<<"$(sc status --json | "$PY" -c 'import json,sys; print(" ".join(str(p["pid"]) for p in json.load(sys.stdin)["processes"]))')"
is "the agent runs its module in one worker process" "${#wpids[@]}" 1
tb_on_exit "kill -CONT ${wpids[*]}"
echo "sign-delay=3000" >"$W/faults"
: >"$W/trace"
t0=$(date +%s%3N)
SCAGENT_TIMEOUT=4 env "${P11ENV[@]}" pkcs11-tool --module "$MODULE" --token-label demo --login \
	--pin "$TB_PIN" --sign --id 01 -m SHA256-RSA-PKCS -i "$W/data" -o "$W/stopped.sig" \
	>"$W/p11-stopped.out" 2>&1 &
p11pid=$!
tb_track_pid $p11pid
wait_for 20 grep -q '^SignInit' "$W/trace" && kill -STOP "$AGENT_PID"
kill -STOP "${wpids[@]}"
ok "the agent was stopped inside C_Sign" grep -q '^SignInit' "$W/trace"
wait $p11pid
rc=$?
T=$(($(date +%s%3N) - t0))
nok "C_Sign with the agent stopped fails" test "$rc" = 0
has "... with CKR_DEVICE_ERROR" "$(cat "$W/p11-stopped.out")" "CKR_DEVICE_ERROR"
within "... within the bound (one for the signature, one for the reconnection pkcs11-tool's next call costs)" 3500 16000
show "$W/p11-stopped.out"
hasnt "... and no signature came out of the stopped agent" "$(cat "$W/trace")" "Sign "
kill -CONT "$AGENT_PID"
kill -CONT "${wpids[@]}"
: >"$W/faults"
wait_for 10 grep -q '^Sign ' "$W/trace"	# the agent finishes the abandoned signature
run p11 --token-label demo --login --pin "$TB_PIN" --sign --id 01 -m SHA256-RSA-PKCS \
	-i "$W/data" -o "$W/again.sig"
is "agent resumed: C_Sign through the module works again" "$RC" 0
ok "... and the signature verifies" openssl dgst -sha256 -verify "$(pubkey alice)" \
	-signature "$W/again.sig" "$W/data"

# ---------------------------------------------------------------- a hung module, agent running
# Not stopped, just not answering: the message says it did not answer, not
# that it is stopped; the agent itself goes on.
echo "sign-delay=6000" >"$W/faults"
timed env SCAGENT_TIMEOUT=2 "$SCAGENT" sign --cert alice --alg rsa-pkcs1-sha256 --in "$W/data" \
	--out "$W/hung.sig"
is "a hung module: scagent sign exits 3" "$RC" 3
within "... after the 2 s bound" 1500 8000
has "... saying the agent did not answer the signature" "$ERR" "did not answer \`sign\` within 2 s"
hasnt "... without calling it stopped" "$ERR" "is stopped"
: >"$W/faults"
timed sc sign --cert alice --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/after.sig"
is "the agent still serves: the next signature works" "$RC" 0
ok "... and verifies" openssl dgst -sha256 -verify "$(pubkey alice)" -signature "$W/after.sig" "$W/data"

stop_agent "the agent stops cleanly"
done_testing
