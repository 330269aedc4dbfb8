#!/bin/bash
# Private D-Bus buses for the desktop tests (sourced after testbed.sh): a bus
# of our own config (no service activation, so no real notification daemon or
# logind answers), and dbus-monitor recording what goes over it.
command -v dbus-daemon >/dev/null && command -v dbus-monitor >/dev/null &&
	command -v dbus-send >/dev/null || skip_all "dbus-daemon, dbus-monitor and dbus-send are needed"

# tb_bus NAME: starts a private bus; its address in BUS_ADDR
tb_bus() {
	local name=$1 conf=$TB_DIR/$1-bus.conf out
	mkdir -p "$TB_DIR/$name-bus"
	cat >"$conf" <<-EOF
		<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
		 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
		<busconfig>
		  <type>session</type>
		  <listen>unix:dir=$TB_DIR/$name-bus</listen>
		  <auth>EXTERNAL</auth>
		  <policy context="default">
		    <allow send_destination="*" eavesdrop="true"/>
		    <allow eavesdrop="true"/>
		    <allow own="*"/>
		  </policy>
		</busconfig>
	EOF
	out=$(dbus-daemon --config-file="$conf" --fork --print-address=1 --print-pid=1) ||
		_tb_die "dbus-daemon did not start"
	BUS_ADDR=$(sed -n 1p <<<"$out")
	tb_track_pid "$(sed -n 2p <<<"$out")"
}

# tb_monitor ADDR FILE MATCH: dbus-monitor on ADDR into FILE until the test
# ends; bails out when it never attaches (a count of 0 calls would then prove
# nothing)
tb_monitor() {
	local _
	dbus-monitor --address "$1" "$3" >"$2" 2>&1 &
	tb_track_pid $!
	for _ in $(seq 100); do grep -q "NameAcquired\|member=" "$2" 2>/dev/null && break; sleep 0.05; done
	grep -q "NameAcquired\|member=" "$2" 2>/dev/null ||
		bail_out "dbus-monitor did not attach to the bus $1 within 5 s: $(head -c 300 "$2")"
	sleep 0.2
}

# notify_calls FILE: how many Notify method calls FILE recorded
notify_calls() { grep -c "member=Notify" "$1"; }
