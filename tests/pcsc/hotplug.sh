#!/bin/bash
# Card insertion and removal, and a pcscd restart, with real pcscd + vpcd +
# vicc and OpenSC's module in the agent: `watch --json` and `list --json`
# must show them, the desktop gets a notice of each (a private session bus,
# recorded by dbus-monitor), the agent must survive pcscd going away, and an
# idle agent must use no CPU (it blocks in SCardGetStatusChange, it does not
# poll).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$here/pcsc-lib.sh"
. "$TOP_SRCDIR/tests/desktop/dbus-lib.sh"
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
ok "--direct list shows both vpcd readers without a card" \
	test "$(jq_py - "sorted((r['name'], r['card_present']) for r in j['readers'])" <<<"$direct")" \
	= '[["Virtual PCD 00 00", false], ["Virtual PCD 00 01", false]]'

tb_bus session
tb_monitor "$BUS_ADDR" "$TB_DIR/notes.mon" "interface='org.freedesktop.Notifications'"
DBUS_SESSION_BUS_ADDRESS=$BUS_ADDR DBUS_SYSTEM_BUS_ADDRESS=unix:path=$TB_DIR/none \
	start_agent "$TB_DIR/agent.sock" --log-level info --module "$OPENSC"
start_watch
ok "agent list shows reader 0 with no card" wait_until 5 card_out "$R0"
ok "agent list shows reader 1 with no card" card_out "$R1"

# Idle: the agent sleeps in SCardGetStatusChange and on condition variables.
t0=$(cpu_ticks "$AGENT_PID"); sleep 3; t1=$(cpu_ticks "$AGENT_PID")
echo "# idle agent used $((t1 - t0)) clock ticks in 3 s"
ok "idle agent uses (almost) no CPU: $((t1 - t0)) ticks in 3 s" test $((t1 - t0)) -le 3

# ---------------------------------------------------------------- card in, card out

m=$(mark)
start_vicc 35963
if wait_event "$m" 5 card-inserted reader "$R0"; then
	echo "# card-inserted reached watch after $LATENCY ms"
	pass "watch: card-inserted in reader 0"
else
	fail "watch: card-inserted in reader 0"
fi
ok "list: reader 0 has a card" wait_until 5 card_in "$R0"
ok "list: reader 1 still has none" card_out "$R1"
ok "list: the card's ATR is shown" test "$(reader "$R0" atr)" != None
ok "list: the iso7816 card is not recognized by any module" \
	test "$(reader "$R0" recognized)/$(reader "$R0" token)" = "False/None"
ok "human list says the card is not recognized" \
	bash -c '"$0" --socket "$1" list | grep -q "^  Virtual PCD 00 00: card present, not recognized by any module (ATR [0-9a-f]*)$"' \
	"$SCAGENT" "$AGENT_SOCK"
ok "--direct list sees the card too" \
	test "$("$SCAGENT" --direct --module "$OPENSC" list --json 2>/dev/null | jq_py - "[r['card_present'] for r in j['readers'] if r['name'] == '$R0'][0]")" = true
ok "human watch: one timestamped line for the insertion" \
	grep -Eq "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}  card-inserted +reader \"$R0\", ATR [0-9a-f]+$" \
	"$TB_DIR/events.txt"
ok "the desktop is told: a notice \"Smart card inserted\"" wait_for 5 grep -q 'string "Smart card inserted"' "$TB_DIR/notes.mon"
file_has "... naming the reader" "$TB_DIR/notes.mon" "$R0"

m=$(mark)
stop_vicc
if wait_event "$m" 5 card-removed reader "$R0"; then
	echo "# card-removed reached watch after $LATENCY ms"
	pass "watch: card-removed from reader 0"
else
	fail "watch: card-removed from reader 0"
fi
ok "list: reader 0 has no card any more" wait_until 5 card_out "$R0"
ok "the desktop is told: a notice \"Smart card removed\"" wait_for 5 grep -q 'string "Smart card removed"' "$TB_DIR/notes.mon"

# ---------------------------------------------------------------- removal mid-operation

start_vicc 35963
wait_until 5 card_in "$R0" >/dev/null
( for _ in $(seq 30); do sa list --json >/dev/null 2>&1; sa status >/dev/null 2>&1; done ) &
busy=$!
sleep 0.3
stop_vicc
wait "$busy"
ok "a card removed while clients list: the agent keeps running" kill -0 "$AGENT_PID"
ok "and answers with the card gone" wait_until 5 card_out "$R0"

# ---------------------------------------------------------------- pcscd stops

m=$(mark)
stop_pcscd
ok "watch: pcsc-unavailable when pcscd stops" wait_event "$m" 10 pcsc-unavailable
ok "watch: its readers are reported removed" event_after "$m" reader-removed reader "$R1"
ok "list: no readers while pcscd is down, and why" wait_until 5 list_has_no_readers
ok "the agent is still running" kill -0 "$AGENT_PID"
ok "and still answers status" bash -c '"$0" --socket "$1" status --json | grep -q "\"available\": *false"' \
	"$SCAGENT" "$AGENT_SOCK"
ok "human list says readers are unknown" \
	bash -c '"$0" --socket "$1" list | grep -q "^Readers: unknown, the PC/SC service (pcscd)"' \
	"$SCAGENT" "$AGENT_SOCK"

# ---------------------------------------------------------------- pcscd is back

m=$(mark)
start_pcscd
if wait_event "$m" 5 pcsc-available; then
	echo "# pcsc-available reached watch $LATENCY ms after pcscd answered"
	pass "watch: pcsc-available when pcscd is back"
else
	fail "watch: pcsc-available when pcscd is back"
fi
ok "watch: readers added again" wait_event "$m" 5 reader-added reader "$R0"
ok "list: readers are back" wait_until 5 card_out "$R0"
m=$(mark)
start_vicc 35964
ok "a card in reader 1 after the restart is seen" wait_event "$m" 5 card-inserted reader "$R1"
ok "list: reader 1 has the card" wait_until 5 card_in "$R1"
stop_vicc

# ---------------------------------------------------------------- clean stop

t0=$(now_ms)
stop_agent "the agent stops cleanly while watching PC/SC, no sanitizer report"
t1=$(now_ms)
echo "# agent stopped in $((t1 - t0)) ms"
ok "the agent stops within 10 s while watching PC/SC" test $((t1 - t0)) -lt 10000
if [ "$TAP_FAILED" != 0 ]; then
	echo "# --- agent log"; tail -n 40 "$AGENT_LOG"
	echo "# --- events"; cat "$TB_DIR/events.txt"
fi
done_testing
