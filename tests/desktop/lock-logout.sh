#!/bin/bash
# Log out of every token when the screen locks or the machine goes to sleep
# (issue 24): logind's Session.Lock and Manager.PrepareForSleep(true) on the
# system bus, here a private dbus-daemon without logind (so Lock on any
# session path counts) named by DBUS_SYSTEM_BUS_ADDRESS. The agent logs out
# of the tokens of every worker, `logout` events say lock or sleep, and a
# notification says so; logout-on-lock = no keeps the logins.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
. "$here/dbus-lib.sh"
need_py
tb_agent_test alice
tb_softhsm_b_token other
tb_bus system
SYSTEM=$BUS_ADDR
tb_bus session
SESSION=$BUS_ADDR
mkdir -p "$TB_DIR/run"
export XDG_RUNTIME_DIR=$TB_DIR/run

login() { echo "$TB_PIN" | sc login --token "$1" --pin-stdin 2>/dev/null; }
logged_in() {
	sc status --json | "$PY" -c 'import json,sys; print(",".join(sorted(t["label"] for t in json.load(sys.stdin)["tokens"] if t["logged_in"])))'
}
agent() {
	printf '%s\n' "$@" >"$W/scagent.conf"
	DBUS_SESSION_BUS_ADDRESS=$SESSION DBUS_SYSTEM_BUS_ADDRESS=$SYSTEM \
		start_agent "$S" --config "$W/scagent.conf" --module "$TB_SOFTHSM" --module "$TB_SOFTHSM_B"
	sleep 0.5	# the watcher's matches are on the bus
}
lock() { dbus-send --bus="$SYSTEM" --type=signal /org/freedesktop/login1/session/_31 org.freedesktop.login1.Session.Lock; }
suspend() { dbus-send --bus="$SYSTEM" --type=signal /org/freedesktop/login1 org.freedesktop.login1.Manager.PrepareForSleep "boolean:$1"; }

# ---- the screen locks
tb_monitor "$SESSION" "$W/n.mon" "interface='org.freedesktop.Notifications'"
agent "# defaults"
sc watch --json >"$W/ev1" 2>&1 &
tb_track_pid $!
login demo && login other
is "logged in to both workers' tokens" "$(logged_in)" "demo,other"
ok "Session.Lock sent" lock
wait_for 5 test "$(logged_in)" = ""
is "after Lock: logged out of every token" "$(logged_in)" ""
wait_for 5 grep -q '"reason":"lock".*"token":"other"\|"token":"other".*"reason":"lock"' "$W/ev1"
is "... a logout event with reason lock for each" \
	"$(grep '"event":"logout"' "$W/ev1" | grep -c '"reason":"lock"')" 2
wait_for 5 grep -q "screen locked" "$W/n.mon"
file_has "... and a notification says so" "$W/n.mon" "screen locked"
file_has "... in the log" "$AGENT_LOG" "the screen locked: logging out of every token"

# ---- the machine goes to sleep
login demo
ok "PrepareForSleep(false) sent (waking up)" suspend false
sleep 0.5
is "... waking up logs out of nothing" "$(logged_in)" "demo"
ok "PrepareForSleep(true) sent" suspend true
wait_for 5 test "$(logged_in)" = ""
is "after PrepareForSleep(true): logged out" "$(logged_in)" ""
wait_for 5 grep -q '"reason":"sleep"' "$W/ev1"
file_has "... the logout event says sleep" "$W/ev1" '"reason":"sleep"'
stop_agent

# ---- logout-on-lock = no
agent "logout-on-lock = no"
login demo
lock
suspend true
sleep 1
is "logout-on-lock = no: still logged in after Lock and PrepareForSleep" "$(logged_in)" "demo"
file_has "... the log says why" "$AGENT_LOG" "the logins stay (logout-on-lock = no)"
stop_agent

# ---- no system bus: nothing, and no error
printf '# defaults\n' >"$W/scagent.conf"
DBUS_SESSION_BUS_ADDRESS= DBUS_SYSTEM_BUS_ADDRESS=unix:path=$TB_DIR/none \
	start_agent "$S" --config "$W/scagent.conf" --log-level info
login demo
is "no system bus: the agent serves, logged in" "$(logged_in)" "demo"
file_hasnt "... and the log says nothing of buses" "$AGENT_LOG" "bus"
stop_agent
done_testing
