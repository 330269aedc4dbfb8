#!/bin/bash
# Slot re-reads without polling, with SoftHSM: a token that vanishes is
# reported (token-removed, with its label) and dropped with its login; idle
# logins end on time although the monitor no longer wakes every second; an
# idle agent uses no CPU whether or not pcscd runs.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
need softhsm2-util pkcs11-tool openssl /usr/bin/python3
. "$here/pcsc-lib.sh"
tb_init
tb_softhsm_token card1
tb_softhsm_token card2

token_dir() { # the SoftHSM directory of the token labelled $1
	local d
	for d in "$TB_DIR"/tokens/*/; do
		grep -aq "$1" "$d/token.object" 2>/dev/null && { echo "${d%/}"; return 0; }
	done
	return 1
}
labels() { sa list --json 2>/dev/null | jq_py - "sorted(t['label'] for t in j['tokens'])"; }
logged_in() {
	sa list --json 2>/dev/null | jq_py - \
		"[t['flags']['logged_in'] for t in j['tokens'] if t['label'] == '$1'][0]" | grep -qx true
}
not_logged_in() { ! logged_in "$1"; }
only_card1() { [ "$(labels)" = '["card1"]' ]; }

start_agent "$TB_DIR/agent.sock" --log-level info --module "$TB_SOFTHSM" --idle-timeout 2
start_watch
ok "both tokens listed" test "$(labels)" = '["card1", "card2"]'
ok "status reports the PC/SC state" \
	bash -c '"$0" --socket "$1" status --json | grep -q "\"pcsc\": *{ *\"available\""' "$SCAGENT" "$AGENT_SOCK"

t0=$(cpu_ticks "$AGENT_PID"); sleep 3; t1=$(cpu_ticks "$AGENT_PID")
echo "# idle agent used $((t1 - t0)) clock ticks in 3 s"
ok "idle agent uses (almost) no CPU: $((t1 - t0)) ticks in 3 s" test $((t1 - t0)) -le 3

# ---------------------------------------------------------------- idle logout on time

m=$(mark)
echo "$TB_PIN" | sa login --token card1 --pin-stdin 2>/dev/null
ok "logged in to card1" logged_in card1
start=$(now_ms)
if wait_event "$m" 6 logout; then
	echo "# idle logout after $(( $(now_ms) - start )) ms (idle timeout 2 s)"
	pass "idle login ends: logout event"
else
	fail "idle login ends: logout event"
fi
elapsed=$(( $(now_ms) - start ))
ok "not before the idle timeout ($elapsed ms)" test "$elapsed" -ge 1800
ok "card1 is no longer logged in" not_logged_in card1

# ---------------------------------------------------------------- a token vanishes

echo "$TB_PIN" | sa login --token card2 --pin-stdin 2>/dev/null
ok "logged in to card2" logged_in card2
d=$(token_dir card2)
m=$(mark)
mv "$d" "$TB_DIR/card2-away"
# The next inventory request re-reads the slots (no polling in between).
ok "list no longer shows card2" wait_until 5 only_card1
ok "watch: token-removed with the label and module" \
	wait_event "$m" 5 token-removed token card2 module "$TB_SOFTHSM"
ok "watch: changed follows" event_after "$m" changed
ok "human watch line for the removal" \
	grep -Eq '^[0-9-]{10} [0-9:.]{12}  token-removed +token "card2" from "SoftHSM slot ID 0x[0-9a-f]+" module=' \
	"$TB_DIR/events.txt"
out=$(sa logout --token card2 2>&1)
ok "its login went with it: logout says no such token" grep -q 'no token labelled "card2"' <<<"$out"
ok "the agent is still running" kill -0 "$AGENT_PID"
ok "card1 is untouched" only_card1
stop_agent "the agent stops on SIGTERM, no sanitizer report"

if [ "$TAP_FAILED" != 0 ]; then
	echo "# --- agent log"; tail -n 40 "$AGENT_LOG"
	echo "# --- events"; cat "$TB_DIR/events.txt"
fi
done_testing
