#!/bin/bash
# The agent out of file descriptors (its RLIMIT_NOFILE reached: clients hold
# one each, and one more for each module worker they use): a newcomer is
# answered `busy` at once, never left hanging; the agent does not spin on its
# listening socket; a worker that ends meanwhile is started again once
# descriptors are free, never reported broken; and once the clients go,
# tokens, logins and signatures work as before.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need_py
need prlimit

tb_agent_test alice
start_agent "$S"
proc() {
	sc status --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["processes"][0][sys.argv[1]])' "$1"
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$AGENT_PID/stat"; }
wpid=$(proc pid)
ok "prlimit lowers the agent's open files to 40" prlimit --pid "$AGENT_PID" --nofile=40:40

"$PY" "$here/holdconns.py" "$S" 60 "$W/release" >"$W/hold.out" 2>"$W/hold.err" &
holder=$!
tb_track_pid $holder
wait_for 60 test -s "$W/hold.out"
read -r kept busy hung other <"$W/hold.out"
diag "connections: $kept kept, $busy busy, $hung hung, $other other"
ok "some connections are served" test "${kept:-0}" -gt 10
ok "past the limit, newcomers are answered busy" test "${busy:-0}" -gt 0
is "... none is left hanging" "$hung" 0
is "... nothing else" "$other" 0
has "the busy answer says why and what to do" "$(head -1 "$W/hold.err")" "no file descriptor left"

# A newcomer waits in the listening socket's queue while the agent has no fd:
# it must not make the agent spin.
"$PY" -c 'import socket,sys,time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(sys.argv[1]); time.sleep(3)' "$S" &
tb_track_pid $!
sleep 0.3
t0=$(cpu_ticks)
sleep 1
t1=$(cpu_ticks)
ticks=$((t1 - t0))
[ "$ticks" -lt 20 ] && pass "the agent does not spin with no fd left (${ticks}/100 s of CPU in 1 s)" ||
	fail "the agent spins with no fd left: ${ticks}/100 s of CPU in 1 s"

# The module's worker ends while no fd is left: it is started again later.
kill -9 "$wpid"
sleep 1.5
st=$(proc state)
isnt_broken() { [ -n "$st" ] && [ "$st" != broken ]; }
ok "the worker that could not be started again is not reported broken ($st)" isnt_broken
has "status says why it is not back yet" "$(proc last_error)" "Too many open files"

touch "$W/release"
wait $holder
ok "once the clients went, the module serves again" \
	wait_for 40 sh -c "'$SCAGENT' --socket '$S' list --json | grep -q '\"demo\"'"
is "status: the worker runs" "$(proc state)" running
run sc login --token demo --pin-stdin <<<"$TB_PIN"
is "login works" "$RC" 0
run sc sign --cert alice --alg rsa-pss-sha256 --in "$W/data" --out "$W/alice.sig"
is "sign works" "$RC" 0
ok "... and the signature verifies" openssl dgst -sha256 -verify "$(pubkey alice)" \
	-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -signature "$W/alice.sig" "$W/data"
stop_agent
done_testing
