# shellcheck shell=bash
# Helpers of the PC/SC tests (the assertions and the agent are testbed.sh's):
# a `watch --json` recorder, and the real pcscd + vpcd + vicc of TESTBED.md.
#
# pcscd's socket (/run/pcscd/pcscd.comm) and vpcd's ports (35963/35964) are
# fixed, so tests that start pcscd hold the machine-wide lock
# /tmp/scagent-pcscd.lock (pcsc_lock) for their whole run.

now_ms() { date +%s%3N; }

# wait_until TIMEOUT_S CMD...: poll CMD every 50 ms; true when it succeeded in time.
wait_until() {
	local t=$1 end; shift
	end=$(( $(now_ms) + t * 1000 ))
	while [ "$(now_ms)" -lt "$end" ]; do
		"$@" 2>/dev/null && return 0
		sleep 0.05
	done
	"$@" 2>/dev/null
}

# ---------------------------------------------------------------- agent

# sa ARGS...: scagent on the agent start_agent started last
sa() { "$SCAGENT" --socket "$AGENT_SOCK" "$@"; }

# start_watch: `scagent watch --json` into $TB_DIR/events.json and the human
# form into $TB_DIR/events.txt.
start_watch() {
	sa watch --json >"$TB_DIR/events.json" 2>"$TB_DIR/watch.err" &
	tb_track_pid $!
	sa watch >"$TB_DIR/events.txt" 2>>"$TB_DIR/watch.err" &
	tb_track_pid $!
	sleep 0.3	# subscribed before anything happens
}

# mark: the number of event lines so far (events after it are "new").
mark() { wc -l <"$TB_DIR/events.json"; }

# event_after MARK EVENT [KEY VALUE]...: an event newer than MARK with these fields.
event_after() {
	local m=$1 ev=$2; shift 2
	tail -n +"$((m + 1))" "$TB_DIR/events.json" | /usr/bin/python3 -c '
import json, sys
ev, kv = sys.argv[1], sys.argv[2:]
want = dict(zip(kv[0::2], kv[1::2]))
for line in sys.stdin:
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("event") == ev and all(str(o.get(k)) == v for k, v in want.items()):
        sys.exit(0)
sys.exit(1)
' "$ev" "$@"
}

# wait_event MARK TIMEOUT_S EVENT [KEY VALUE]...: true when it came in time;
# $LATENCY gets the milliseconds waited.
wait_event() {
	local m=$1 t=$2 start; shift 2
	start=$(now_ms)
	if wait_until "$t" event_after "$m" "$@"; then
		LATENCY=$(( $(now_ms) - start ))
		return 0
	fi
	LATENCY=-1
	return 1
}

# cpu_ticks PID: user + system clock ticks the process has used.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# ---------------------------------------------------------------- pcscd, vicc

pcsc_tools() {
	local t
	for t in pcscd flock /usr/bin/python3 /usr/bin/vicc; do
		command -v "$t" >/dev/null 2>&1 || skip_all "$t not installed"
	done
	[ -r /usr/lib/pcsc/drivers/serial/libifdvpcd.so ] || skip_all "vsmartcard-vpcd not installed"
	/usr/bin/python3 -c 'import Cryptodome' 2>/dev/null || skip_all "python3-pycryptodome not installed"
	OPENSC=
	for m in /usr/lib/*/opensc-pkcs11.so /usr/lib/opensc-pkcs11.so; do
		[ -r "$m" ] && { OPENSC=$m; break; }
	done
	[ -n "$OPENSC" ] || skip_all "opensc-pkcs11 not installed"
}

# pcsc_lock: the machine-wide lock for pcscd and vpcd's fixed ports (fd 9).
pcsc_lock() {
	exec 9>/tmp/scagent-pcscd.lock
	flock -w 600 9 || bail_out "could not get /tmp/scagent-pcscd.lock in 10 minutes"
	vpcd_ports_free
}

# vpcd listens on the fixed ports 35963/35964, inside Linux's ephemeral range:
# any test's client connection may take one as its source port (seen: pcscd
# then starts with no readers, "Address already in use"). Reserve them from
# ephemeral allocation (net.ipv4.ip_local_reserved_ports, root) and wait until
# connections that hold them now are gone (TIME_WAIT lasts 60 s).
vpcd_ports_free() {
	local f=/proc/sys/net/ipv4/ip_local_reserved_ports cur
	if [ -w "$f" ]; then
		cur=$(cat "$f")
		case ",$cur," in
		*,35963-35964,*|*,35963,35964,*) ;;
		*) echo "${cur:+$cur,}35963-35964" >"$f" ;;
		esac
	fi
	wait_until 70 bash -c '[ -z "$(ss -Htan "( sport = :35963 or sport = :35964 )")" ]' ||
		{ echo "# ports 35963/35964 (vpcd) stay in use:"; ss -tanp "( sport = :35963 or sport = :35964 )"; exit 99; }
}

# pcscd_reachable: something answers on pcscd's socket.
pcscd_reachable() {
	"$SCAGENT" --direct --module "$OPENSC" list --json 2>/dev/null | jq_py - '"readers" in j' | grep -qx true
}

pcscd_gone() { ! pcscd_reachable; }

# no_foreign_pcscd: stop a system pcscd (it holds the socket), or give up.
no_foreign_pcscd() {
	if pcscd_reachable; then
		if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
			systemctl stop pcscd.socket pcscd.service >/dev/null 2>&1
		fi
		if ! wait_until 5 pcscd_gone; then
			echo "# a pcscd not started by this test is running (pid file /run/pcscd/pcscd.pid);"
			echo "# stop it (systemctl stop pcscd.socket pcscd.service) and run the test again"
			exit 99
		fi
	fi
}

start_pcscd() {
	pcscd -f -a >>"$TB_DIR/pcscd.log" 2>&1 &
	PCSCD_PID=$!
	tb_track_pid "$PCSCD_PID"
	wait_until 10 pcscd_reachable || { echo "# pcscd did not start"; tail "$TB_DIR/pcscd.log"; exit 99; }
}

stop_pcscd() {
	kill -TERM "$PCSCD_PID" 2>/dev/null
	wait_until 20 bash -c '! kill -0 "$0" 2>/dev/null' "$PCSCD_PID"
	wait "$PCSCD_PID" 2>/dev/null
	return 0
}

# start_vicc [PORT]: the iso7816 virtual card, inserted into reader 0 (35963) or 1 (35964).
start_vicc() {
	mkdir -p "$TB_DIR/shim"
	ln -sf /usr/lib/python3/dist-packages/Cryptodome "$TB_DIR/shim/Crypto"
	PYTHONPATH=$TB_DIR/shim:/usr/lib/python3/site-packages/virtualsmartcard \
		/usr/bin/python3 /usr/bin/vicc -t iso7816 -P "${1:-35963}" >>"$TB_DIR/vicc.log" 2>&1 &
	VICC_PID=$!
	tb_track_pid "$VICC_PID"
}

stop_vicc() {
	kill -TERM "$VICC_PID" 2>/dev/null
	wait "$VICC_PID" 2>/dev/null
	return 0
}
