#!/bin/bash
# Card insertion and removal, and a pcscd restart, with real pcscd + vpcd +
# vicc and OpenSC's module in the agent: `watch --json` and `list --json`
# must show them, the agent must survive pcscd going away, and an idle agent
# must use no CPU (it blocks in SCardGetStatusChange, it does not poll).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$here/pcsc-lib.sh"
pcsc_tools
tb_init
pcsc_lock
no_foreign_pcscd

R0="Virtual PCD 00 00"
R1="Virtual PCD 00 01"

# reader NAME FIELD: a field of one reader in `list --json` (agent), or "none".
reader() {
	sa list --json 2>/dev/null | jq_py - \
		"next((str(r.get('$2')) for r in j.get('readers', []) if r['name'] == '$1'), 'none')"
}
list_has_no_readers() {
	sa list --json 2>/dev/null | jq_py - '"readers" not in j and "readers_error" in j' | grep -qx true
}
card_in() { [ "$(reader "$1" card_present)" = True ]; }
card_out() { [ "$(reader "$1" card_present)" = False ]; }

# ---------------------------------------------------------------- pcscd up, no card

start_pcscd
direct=$("$SCAGENT" --direct --module "$OPENSC" list --json 2>/dev/null)
check "--direct list shows both vpcd readers without a card" \
	test "$(jq_py - "sorted((r['name'], r['card_present']) for r in j['readers'])" <<<"$direct")" \
	= '[["Virtual PCD 00 00", false], ["Virtual PCD 00 01", false]]'

start_agent "$OPENSC"
start_watch
check "agent list shows reader 0 with no card" wait_until 5 card_out "$R0"
check "agent list shows reader 1 with no card" card_out "$R1"

# Idle: the agent sleeps in SCardGetStatusChange and on condition variables.
t0=$(cpu_ticks "$AGENT_PID"); sleep 3; t1=$(cpu_ticks "$AGENT_PID")
echo "# idle agent used $((t1 - t0)) clock ticks in 3 s"
check "idle agent uses (almost) no CPU: $((t1 - t0)) ticks in 3 s" test $((t1 - t0)) -le 3

# ---------------------------------------------------------------- card in, card out

m=$(mark)
start_vicc 35963
if wait_event "$m" 5 card-inserted reader "$R0"; then
	echo "# card-inserted reached watch after $LATENCY ms"
	ok "watch: card-inserted in reader 0"
else
	notok "watch: card-inserted in reader 0"
fi
check "list: reader 0 has a card" wait_until 5 card_in "$R0"
check "list: reader 1 still has none" card_out "$R1"
check "list: the card's ATR is shown" test "$(reader "$R0" atr)" != None
check "list: the iso7816 card is not recognized by any module" \
	test "$(reader "$R0" recognized)/$(reader "$R0" token)" = "False/None"
check "human list says the card is not recognized" \
	bash -c '"$0" --socket "$1" list | grep -q "^  Virtual PCD 00 00: card present, not recognized by any module (ATR [0-9a-f]*)$"' \
	"$SCAGENT" "$SOCK"
check "--direct list sees the card too" \
	test "$("$SCAGENT" --direct --module "$OPENSC" list --json 2>/dev/null | jq_py - "[r['card_present'] for r in j['readers'] if r['name'] == '$R0'][0]")" = true
check "human watch: one timestamped line for the insertion" \
	grep -Eq "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}  card-inserted +reader \"$R0\", ATR [0-9a-f]+$" \
	"$TB_DIR/events.txt"

m=$(mark)
stop_vicc
if wait_event "$m" 5 card-removed reader "$R0"; then
	echo "# card-removed reached watch after $LATENCY ms"
	ok "watch: card-removed from reader 0"
else
	notok "watch: card-removed from reader 0"
fi
check "list: reader 0 has no card any more" wait_until 5 card_out "$R0"

# ---------------------------------------------------------------- removal mid-operation

start_vicc 35963
wait_until 5 card_in "$R0" >/dev/null
( for _ in $(seq 30); do sa list --json >/dev/null 2>&1; sa status >/dev/null 2>&1; done ) &
busy=$!
sleep 0.3
stop_vicc
wait "$busy"
check "a card removed while clients list: the agent keeps running" kill -0 "$AGENT_PID"
check "and answers with the card gone" wait_until 5 card_out "$R0"

# ---------------------------------------------------------------- pcscd stops

m=$(mark)
stop_pcscd
check "watch: pcsc-unavailable when pcscd stops" wait_event "$m" 10 pcsc-unavailable
check "watch: its readers are reported removed" event_after "$m" reader-removed reader "$R1"
check "list: no readers while pcscd is down, and why" wait_until 5 list_has_no_readers
check "the agent is still running" kill -0 "$AGENT_PID"
check "and still answers status" bash -c '"$0" --socket "$1" status --json | grep -q "\"available\": *false"' \
	"$SCAGENT" "$SOCK"
check "human list says readers are unknown" \
	bash -c '"$0" --socket "$1" list | grep -q "^Readers: unknown, the PC/SC service (pcscd)"' \
	"$SCAGENT" "$SOCK"

# ---------------------------------------------------------------- pcscd is back

m=$(mark)
start_pcscd
if wait_event "$m" 5 pcsc-available; then
	echo "# pcsc-available reached watch $LATENCY ms after pcscd answered"
	ok "watch: pcsc-available when pcscd is back"
else
	notok "watch: pcsc-available when pcscd is back"
fi
check "watch: readers added again" wait_event "$m" 5 reader-added reader "$R0"
check "list: readers are back" wait_until 5 card_out "$R0"
m=$(mark)
start_vicc 35964
check "a card in reader 1 after the restart is seen" wait_event "$m" 5 card-inserted reader "$R1"
check "list: reader 1 has the card" wait_until 5 card_in "$R1"
stop_vicc

# ---------------------------------------------------------------- clean stop

t0=$(now_ms)
stop_agent "the agent stops cleanly while watching PC/SC, no sanitizer report"
t1=$(now_ms)
echo "# agent stopped in $((t1 - t0)) ms"
check "the agent stops within 10 s while watching PC/SC" test $((t1 - t0)) -lt 10000
if [ "$failed" != 0 ]; then
	echo "# --- agent log"; tail -n 40 "$TB_DIR/agent.log"
	echo "# --- events"; cat "$TB_DIR/events.txt"
fi
finish
