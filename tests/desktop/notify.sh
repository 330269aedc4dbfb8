#!/bin/bash
# Desktop notifications (issue 24) through org.freedesktop.Notifications on
# the session bus: which program (name, pid) signed with which certificate,
# once per program per login by default, every time with notify = always,
# never with notify = no; no session bus: nothing, and no error. The bus is a
# private dbus-daemon with no notification server, so every Notify gets
# ServiceUnknown: the agent must stay silent about it. dbus-monitor records
# the calls.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
. "$here/dbus-lib.sh"
tb_agent_test alice
tb_bus session
SESSION=$BUS_ADDR
mkdir -p "$TB_DIR/run"
export XDG_RUNTIME_DIR=$TB_DIR/run	# no $XDG_RUNTIME_DIR/bus to fall back on

# sign_as PIDFILE CERT: a signature by a fresh scagent process, its pid in PIDFILE
sign_as() {
	bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$1" "$SCAGENT" --socket "$S" sign --cert "$2" \
		--alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/sig" 2>>"$W/sign.err"
}
login() { echo "$TB_PIN" | sc login --token demo --pin-stdin 2>/dev/null; }
# agent CONF-LINES...: an agent with a configuration of these lines, on the session bus
agent() {
	printf '%s\n' "$@" >"$W/scagent.conf"
	DBUS_SESSION_BUS_ADDRESS=$SESSION DBUS_SYSTEM_BUS_ADDRESS=unix:path=$TB_DIR/none \
		start_agent "$S" --config "$W/scagent.conf" --log-level info
}

# ---- notify = once (the default)
tb_monitor "$SESSION" "$W/once.mon" "interface='org.freedesktop.Notifications'"
agent "# defaults"
login
ok "first signature by a program" sign_as "$W/p1" alice
wait_for 5 grep -q "member=Notify" "$W/once.mon"
is "... one Notify" "$(notify_calls "$W/once.mon")" 1
file_has "... from scagent" "$W/once.mon" 'string "scagent"'
file_has "... naming the program and its pid" "$W/once.mon" "scagent (pid $(cat "$W/p1")"
file_has "... and the certificate" "$W/once.mon" 'with the certificate "alice"'
ok "second signature by the same program" sign_as "$W/p2" alice
ok "a third" sign_as "$W/p3" alice
sleep 1
is "... no more Notify in the same login" "$(notify_calls "$W/once.mon")" 1
sc logout --token demo
login
ok "a signature after logging in again" sign_as "$W/p4" alice
wait_for 5 test "$(notify_calls "$W/once.mon")" = 2
is "... notified again: once per program per login" "$(notify_calls "$W/once.mon")" 2
file_hasnt "ServiceUnknown is not logged (nobody shows notifications here)" "$AGENT_LOG" "ServiceUnknown"
file_hasnt "... nor any warning about it" "$AGENT_LOG" "notification"
stop_agent

# ---- notify = always
tb_monitor "$SESSION" "$W/always.mon" "interface='org.freedesktop.Notifications'"
agent "notify = always"
login
for i in 1 2 3; do sign_as "$W/a$i" alice; done
wait_for 5 test "$(notify_calls "$W/always.mon")" = 3
is "notify = always: one Notify per signature" "$(notify_calls "$W/always.mon")" 3
file_has "... the last names its pid" "$W/always.mon" "(pid $(cat "$W/a3")"
stop_agent

# ---- notify = no
tb_monitor "$SESSION" "$W/no.mon" "interface='org.freedesktop.Notifications'"
agent "notify = no"
login
for i in 1 2; do ok "notify = no: signature $i made" sign_as "$W/n$i" alice; done
sc logout --token demo
sleep 1
is "notify = no: no Notify" "$(notify_calls "$W/no.mon")" 0
stop_agent

# ---- a PIN at its last try: the desktop is told once the login is refused for it
tb_fault_module
tb_monitor "$SESSION" "$W/final.mon" "interface='org.freedesktop.Notifications'"
printf '# defaults\n' >"$W/scagent.conf"
SCAGENT_FAULT_TARGET=$TB_SOFTHSM SCAGENT_FAULT=pin-final-try DBUS_SESSION_BUS_ADDRESS=$SESSION \
	DBUS_SYSTEM_BUS_ADDRESS=unix:path=$TB_DIR/none \
	start_agent "$S" --config "$W/scagent.conf" --module "$FAULT" --log-level info
run sc login --token demo --pin-stdin <<<"$TB_PIN"
is "a login at the PIN's final try, unconfirmed: refused (exit 1)" "$RC" 1
ok "... and the desktop gets a notice \"Smart card PIN: last try\"" \
	wait_for 5 grep -q 'string "Smart card PIN: last try"' "$W/final.mon"
file_has "... naming the token" "$W/final.mon" 'The PIN of token "demo" has one try left'
stop_agent

# ---- no session bus
printf '# defaults\n' >"$W/scagent.conf"
DBUS_SESSION_BUS_ADDRESS= DBUS_SYSTEM_BUS_ADDRESS=unix:path=$TB_DIR/none \
	start_agent "$S" --config "$W/scagent.conf" --log-level info
login
run sign_as "$W/x1" alice
is "no session bus: the signature works" "$RC" 0
is "... and the client hears nothing of it" "$(cat "$W/sign.err")" ""
file_hasnt "... nor does the log" "$AGENT_LOG" "bus"
stop_agent
done_testing
