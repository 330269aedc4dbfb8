#!/bin/bash
# scagent tunnel serves its own user only (issue 19): whoever reaches the
# listener signs in as the card's owner. On loopback a connection from
# another uid is closed before anything goes upstream, so the agent's audit
# log shows no signature for it; --listen unix:PATH makes a 0600 socket that
# another uid cannot open; --max-connections bounds the threads and the
# signatures a flood of idle connections costs. The tunnel runs as root here,
# the other user is uid 65534 (setpriv).
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tls/tls-common.sh"
_tb_need curl setpriv stat
# Debian's python3 (another one first on PATH may be unreadable for uid 65534)
PY=/usr/bin/python3
[ -x "$PY" ] || skip_all "no $PY"
[ "$(id -u)" = 0 ] || skip_all "needs root to act as a second uid"
tb_init
PKI=$TB_DIR/pki
# what uid 65534 runs and reaches lives in a directory it can enter
OPEN=$(tb_open_dir) || skip_all "no directory uid 65534 can enter"
AUDIT=$TB_DIR/audit.log
OTHER=(setpriv --reuid=65534 --regid=65534 --clear-groups)
tls_card
start_agent --module "$TB_SOFTHSM" --audit-log "$AUDIT"
echo "$TB_PIN" | "$SCAGENT" login --token demo --pin-stdin 2>/dev/null ||
	bail_out "login failed"

# signatures the agent made so far (its audit log)
signs() { grep -c ' sign pid=.* result=ok' "$AUDIT" || true; }
# count PATTERN FILE: lines matching
count() { grep -c -- "$1" "$2" || true; }
# threads of process PID
threads() { ls "/proc/$1/task" | wc -l; }
# hold.py PORT N SECONDS: N idle connections to 127.0.0.1:PORT, held SECONDS
# (prints "open" once all are connected; a refused one may be closed by then)
cat >"$OPEN/hold.py" <<'PY'
import socket, sys, time
port, n, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
print("open", flush=True)
time.sleep(secs)
PY
chmod a+r "$OPEN/hold.py"
# wait_line PATTERN FILE [N]: until FILE has N (default 1) lines matching (10 s)
wait_line() {
	for _ in $(seq 100); do
		[ "$(count "$1" "$2")" -ge "${3:-1}" ] && return 0
		sleep 0.1
	done
	return 1
}

# The peer lookup itself, both ways (sock_diag and /proc/net), both families.
if "$TOP_BUILDDIR/tests/tls/test-peeruid" 65534 >"$TB_DIR/peeruid.tap" 2>&1; then
	pass "the uid of a loopback peer is found by sock_diag and by /proc/net (test-peeruid)"
else
	fail "test-peeruid"; show "$TB_DIR/peeruid.tap"
fi

SP=$(tb_port)
tb_s_server "$SP"
LP=$(tb_port)
log=$TB_DIR/tunnel.log
"$SCAGENT" tunnel --listen "127.0.0.1:$LP" --connect "localhost:$SP" --cafile "$PKI/root.pem" \
	--cert alice >"$log" 2>&1 &
TPID=$!
tb_track_pid $TPID
wait_port "$LP" || { cat "$log"; bail_out "tunnel did not listen"; }

# The owner: served, with the card's certificate.
before=$(signs)
body=$(curl -sS --max-time 20 "http://127.0.0.1:$LP/" 2>&1)
after=$(signs)
if printf '%s' "$body" | grep -q 'Subject: O=Contoso, CN=alice' && [ "$after" -gt "$before" ] &&
	grep -q 'connection #1 from 127.0.0.1:[0-9]*, uid 0 (1 active)' "$log"; then
	pass "the owner's curl gets s_server's page with the card's client certificate (CN=alice)"
else
	fail "owner's curl (signatures $before -> $after): $(printf '%s' "$body" | grep -m1 -E 'Subject:|curl')"
	show "$log"
fi

# Another uid: closed before any upstream connection; no signature.
before=$(signs)
ups=$(count 'upstream .* up' "$log")
rc=0
out=$("${OTHER[@]}" curl -sS --max-time 20 "http://127.0.0.1:$LP/" 2>&1) || rc=$?
sleep 0.5
after=$(signs)
if [ "$rc" != 0 ] && ! printf '%s' "$out" | grep -q 'alice' &&
	grep -q 'refused a connection from uid 65534 (127.0.0.1:[0-9]*, uid 65534): only uid 0 may use this tunnel' "$log" &&
	[ "$after" = "$before" ] && [ "$(count 'upstream .* up' "$log")" = "$ups" ]; then
	pass "uid 65534's curl is refused and logged with its uid; no upstream connection, no signature in the audit log"
else
	fail "uid 65534's curl (rc=$rc, signatures $before -> $after): $out"; show "$log"
fi

# A client that writes its request and closes before the tunnel looks at it:
# its socket then belongs to no process (and reads as uid 0): refused too.
before=$(signs)
"${OTHER[@]}" "$PY" -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
s.close()' "$LP"
wait_line 'cannot tell which user opened it' "$log"
after=$(signs)
if grep -q 'refused a connection from 127.0.0.1:[0-9]*: cannot tell which user opened it' "$log" &&
	[ "$after" = "$before" ]; then
	pass "a request sent and closed at once is refused (no owner known), no signature"
else
	# the tunnel may look before the client's close: then it is uid 65534's
	if [ "$after" = "$before" ] && [ "$(count 'refused a connection from uid 65534' "$log")" -gt 0 ]; then
		pass "a request sent and closed at once is refused (seen before its close), no signature"
	else
		fail "send and close (signatures $before -> $after)"; show "$log"
	fi
fi

# A flood of idle connections from another uid: refused one by one, no thread
# each, and not a log line each: at most 20 refusals within 10 s are logged
# one by one, the others counted and said in one line (here when the tunnel
# stops).
before=$(signs)
refused=$(count 'refused a connection from uid 65534' "$log")
"${OTHER[@]}" "$PY" "$OPEN/hold.py" "$LP" 60 3 >"$TB_DIR/hold1.out" 2>&1 &
HP=$!
wait_line open "$TB_DIR/hold1.out"
# the tunnel has looked at them: this window's refusals are logged (18 of them
# at least: the curl's and the send-and-close's may share the window)
wait_line 'refused a connection from uid 65534' "$log" $((refused + 18))
nthreads=$(threads $TPID)
wait $HP
after=$(signs)
if [ "$nthreads" = 2 ] && [ "$after" = "$before" ]; then
	pass "60 idle connections of uid 65534: no thread started ($nthreads in all: main and the agent's events), no signature"
else
	fail "uid 65534's flood: threads $nthreads, signatures $before -> $after"; show "$log"
fi
kill -TERM $TPID
wait $TPID
is "the tunnel stops on SIGTERM (exit 0)" "$?" 0
said=$(count 'refused a connection from uid 65534' "$log")
unsaid=$(sed -n 's/.*: \([0-9]*\) more connections* or requests* refused within 10 s, not logged one by one.*/\1/p' "$log" |
	awk '{ n += $1 } END { print n + 0 }')
# 1 curl, 1 send-and-close (when the tunnel saw its uid) and 60 held connections
if [ $((said + unsaid)) -ge 61 ] && [ "$unsaid" -gt 0 ] && [ "$said" -le 40 ]; then
	pass "every refusal is accounted for: $said logged one by one, $unsaid in a count said once"
else
	fail "refusals logged: $said one by one, $unsaid counted" "$(tail -n 5 "$log")"
fi

# --listen unix:PATH: mode 0600, served to its owner, not to uid 65534.
pub=$OPEN		# the directory lets everyone through: only the socket's mode keeps them out
usock=$pub/tunnel.sock
ulog=$TB_DIR/tunnel-unix.log
"$SCAGENT" tunnel --listen "unix:$usock" --connect "localhost:$SP" --cafile "$PKI/root.pem" \
	--cert alice >"$ulog" 2>&1 &
UPID=$!
tb_track_pid $UPID
wait_line 'listening on unix:' "$ulog" || { cat "$ulog"; bail_out "unix tunnel"; }
mode=$(stat -c '%a %U %F' "$usock")
ok "the socket is mode 0600, owned by the tunnel's user ($mode)" [ "$mode" = "600 root socket" ]
before=$(signs)
body=$(curl -sS --max-time 20 --unix-socket "$usock" "http://localhost/" 2>&1)
after=$(signs)
if printf '%s' "$body" | grep -q 'Subject: O=Contoso, CN=alice' && [ "$after" -gt "$before" ] &&
	grep -q 'connection #1 from pid [0-9]*, uid 0 (1 active)' "$ulog"; then
	pass "curl --unix-socket gets the page with the card's certificate"
else
	fail "curl --unix-socket: $(printf '%s' "$body" | grep -m1 -E 'Subject:|curl')"; show "$ulog"
fi
before=$(signs)
rc=0
"${OTHER[@]}" curl -sS --max-time 20 --unix-socket "$usock" "http://localhost/" >/dev/null 2>&1 || rc=$?
err=$("${OTHER[@]}" "$PY" -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    print("connected")
except OSError as e:
    print(e.strerror)' "$usock")
after=$(signs)
if [ "$rc" = 7 ] && [ "$err" = "Permission denied" ] && [ "$after" = "$before" ] &&
	! grep -q 'connection #2' "$ulog"; then
	pass "uid 65534 cannot open the socket (Permission denied), no signature"
else
	fail "uid 65534 on the unix socket: curl rc=$rc, connect: $err, signatures $before -> $after"; show "$ulog"
fi
# A second tunnel on the same live socket is refused; a regular file is never removed.
rc=0
"$SCAGENT" tunnel --listen "unix:$usock" --connect "localhost:$SP" >"$TB_DIR/t-busy.log" 2>&1 || rc=$?
ok "a second tunnel on a socket in use is refused (exit 1)" \
	eval '[ "$rc" = 1 ] && grep -q "a program is listening on that socket already" "$TB_DIR/t-busy.log"'
echo keep >"$pub/file"
rc=0
"$SCAGENT" tunnel --listen "unix:$pub/file" --connect "localhost:$SP" >"$TB_DIR/t-file.log" 2>&1 || rc=$?
ok "a path that is not a socket is refused and left alone" \
	eval '[ "$rc" = 1 ] && grep -q "exists and is not a socket" "$TB_DIR/t-file.log" && [ "$(cat "$pub/file")" = keep ]'
# SIGKILL leaves a stale socket: the next tunnel takes it over. SIGTERM removes it.
kill -KILL $UPID
wait $UPID 2>/dev/null
[ -S "$usock" ] || fail "the killed tunnel's socket is gone (expected a stale one)"
"$SCAGENT" tunnel --listen "unix:$usock" --connect "localhost:$SP" --cafile "$PKI/root.pem" \
	>"$ulog" 2>&1 &
UPID=$!
tb_track_pid $UPID
wait_line 'listening on unix:' "$ulog"
body=$(curl -sS --max-time 20 --unix-socket "$usock" "http://localhost/" 2>&1)
kill -TERM $UPID
rc=0
wait $UPID || rc=$?
if printf '%s' "$body" | grep -q 'Client certificate' && [ "$rc" = 0 ] && [ ! -e "$usock" ]; then
	pass "a stale socket is replaced; SIGTERM stops the tunnel and removes its socket"
else
	fail "stale socket / SIGTERM (rc=$rc): $(printf '%s' "$body" | grep -m1 -E 'Subject:|curl')"
	show "$ulog"
fi

# --max-connections 4 against nginx: 20 idle connections of the owner get
# 4 upstream connections (1 to 4 signatures: they resume the first one's
# session when its ticket came in time) and 16 refusals, 4 threads besides
# the main one and the one that follows the agent's events; after they close
# the owner is served again.
NP=$(tb_port)
tls_nginx main "$NP"
MP=$(tb_port)
mlog=$TB_DIR/tunnel-max.log
"$SCAGENT" tunnel --listen "127.0.0.1:$MP" --connect "localhost:$NP" --cafile "$PKI/root.pem" \
	--max-connections 4 >"$mlog" 2>&1 &
MPID=$!
tb_track_pid $MPID
wait_port "$MP" || { cat "$mlog"; bail_out "tunnel --max-connections did not listen"; }
before=$(signs)
"$PY" "$OPEN/hold.py" "$MP" 20 8 >"$TB_DIR/hold2.out" 2>&1 &
HP=$!
wait_line open "$TB_DIR/hold2.out"
wait_line 'the most --max-connections allows' "$mlog" 16
wait_line 'upstream .* up' "$mlog" 4
sleep 0.5
nthreads=$(threads $MPID)
mid=$(signs)
nref=$(count 'refused a connection from 127.0.0.1:[0-9]*, uid 0: 4 connections are open, the most --max-connections allows' "$mlog")
if [ "$nref" = 16 ] && [ "$nthreads" -le 6 ] && [ $((mid - before)) -ge 1 ] && [ $((mid - before)) -le 4 ] &&
	! grep -q '(5 active)' "$mlog"; then
	pass "20 idle connections with --max-connections 4: 16 refused and logged with the count, $nthreads threads, $((mid - before)) signatures"
else
	fail "--max-connections 4: $nref refused, $nthreads threads, signatures $before -> $mid"; show "$mlog"
fi
wait $HP
wait_line '(0 active)' "$mlog"
body=$(curl -sS --max-time 20 "http://127.0.0.1:$MP/" 2>&1)
if [ "$body" = "hello from nginx main" ] && [ $(($(signs) - before)) -le 5 ]; then
	pass "after they close, the owner is served again"
else
	fail "after the idle connections: $body"; show "$mlog"
fi
rc=0
"$SCAGENT" tunnel --listen "127.0.0.1:$(tb_port)" --connect "localhost:$NP" --max-connections 0 \
	>"$TB_DIR/t-max0.log" 2>&1 || rc=$?
ok "--max-connections 0 is a usage error" \
	eval '[ "$rc" = 2 ] && grep -q "max-connections wants a number" "$TB_DIR/t-max0.log"'

# --allow-remote on a non-loopback address: a loud warning, no uid check there.
RP=$(tb_port)
rlog=$TB_DIR/tunnel-remote.log
"$SCAGENT" tunnel --listen "0.0.0.0:$RP" --allow-remote --connect "localhost:$NP" \
	--cafile "$PKI/root.pem" >"$rlog" 2>&1 &
RPID=$!
tb_track_pid $RPID
wait_port "$RP" || { cat "$rlog"; bail_out "remote tunnel"; }
kill -TERM $RPID
wait $RPID 2>/dev/null
ok "--allow-remote warns that anyone who reaches the port signs in with the card" \
	grep -q "WARNING: 0.0.0.0:$RP is not a loopback address: anyone who can reach this port signs in" "$rlog"

kill -TERM $MPID
rc=0
wait $MPID || rc=$?
ok "SIGTERM stops the tunnels (exit 0)" [ "$rc" = 0 ]
stop_agent
done_testing
