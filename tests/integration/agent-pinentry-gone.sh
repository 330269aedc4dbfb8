#!/bin/bash
# A prompt nobody waits for is closed: the client that asked for a signature
# (PIN through pinentry, or a confirmation) is killed while the prompt is
# open. The agent sees its socket close, the module's worker sees the
# agent's connection close, and the pinentry is told BYE at once instead of
# waiting on the user's screen for a program that is gone. No PIN is tried,
# and the agent serves on.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"

tb_agent_test alice
# A scripted pinentry (Assuan): says what it was asked in $W/pe.log, then,
# at GETPIN or CONFIRM, waits like a user who has not answered yet.
cat >"$W/pinentry" <<SH
#!/bin/bash
echo "start \$\$" >>"$W/pe.log"
echo "OK pleased to meet you"
while IFS= read -r line; do
	case \$line in
	GETPIN|CONFIRM*) echo "asked \$line" >>"$W/pe.log" ;;
	BYE) echo "bye" >>"$W/pe.log"; echo OK; exit 0 ;;
	*) echo OK ;;
	esac
done
echo "eof" >>"$W/pe.log"
SH
chmod +x "$W/pinentry"
printf 'pinentry = %s\naudit-log = %s\n' "$W/pinentry" "$W/audit.log" >"$W/scagent.conf"
start_agent "$S" --config "$W/scagent.conf"

# ask_and_leave WHAT: a signature whose prompt is open when its client is killed
ask_and_leave() {
	: >"$W/pe.log"
	"$SCAGENT" --socket "$S" sign --cert alice --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/sig" \
		>/dev/null 2>&1 &
	local sp=$!
	wait_for 20 grep -q "^asked $1" "$W/pe.log" || { cat "$W/pe.log"; bail_out "no $1 prompt"; }
	PEPID=$(sed -n 's/^start //p' "$W/pe.log" | head -n 1)
	T0=$(date +%s%N)
	kill -KILL "$sp"
	wait "$sp" 2>/dev/null
}
pe_gone() { ! kill -0 "$PEPID" 2>/dev/null; }
gone_in() {
	local _
	for _ in $(seq 100); do
		kill -0 "$PEPID" 2>/dev/null || break
		sleep 0.05
	done
	echo $(( ($(date +%s%N) - T0) / 1000000 ))
}

ask_and_leave GETPIN
ms=$(gone_in)
ok "the PIN prompt of a client that was killed is closed (${ms} ms)" pe_gone
is "... told BYE, as a user's cancel would" "$(tail -n 1 "$W/pe.log")" "bye"
has "... and the agent's log says why" "$(cat "$AGENT_LOG")" "the request that asked for the PIN is gone"
is "no PIN was tried on the card (the login audited as cancelled)" "$(grep " login " "$W/audit.log" | sed "s/.* result=//")" cancelled
run sc status --json
is "the agent serves on" "$RC" 0
has "... the token still logged out" "$OUT" '"logged_in":false'

# The same for a confirmation before a signature.
stop_agent
printf 'confirm-sign = yes\n' >>"$W/scagent.conf"
start_agent "$S" --config "$W/scagent.conf"
sc login --token demo --pin-stdin <<<"$TB_PIN" >/dev/null 2>&1 || bail_out "login failed"
ask_and_leave CONFIRM
ms=$(gone_in)
ok "the confirmation prompt of a client that was killed is closed (${ms} ms)" pe_gone
is "... told BYE" "$(tail -n 1 "$W/pe.log")" "bye"
is "nothing was signed" "$(grep -c ' sign .*result=ok' "$W/audit.log" 2>/dev/null || true)" 0
run sc status --json
has "the agent serves on, still logged in" "$OUT" '"logged_in":true'
stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"
done_testing
