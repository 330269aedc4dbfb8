#!/bin/bash
# scagent tunnel keeps TLS sessions (issue 22): 16 requests (10 one after
# the other, 6 at once) through one tunnel to a server that requires a client
# certificate make the card sign at most twice, counted by pkcs11-spy between
# the agent and SoftHSM and by the agent's audit log, and the token sees no
# slot or object read meanwhile; nginx over TLS 1.3 and 1.2, openssl s_server
# over both; --session-lifetime 0 signs per connection.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tls/tls-common.sh"
_tb_need curl
# OpenSC's pkcs11-spy, under the machine's multiarch library directory
SPY=
for f in /usr/lib/*/pkcs11/pkcs11-spy.so /usr/lib/pkcs11/pkcs11-spy.so; do
	[ -f "$f" ] && { SPY=$f; break; }
done
[ -n "$SPY" ] || skip_all "pkcs11-spy not installed"
tb_init
tls_card
PKI=$TB_DIR/pki
SPYLOG=$TB_DIR/spy.log
AUDIT=$TB_DIR/audit.log
# No PC/SC for this agent: another test's cards coming and going on the
# machine's pcscd would make it re-read the slots in the window counted.
# OpenSC's pkcs11-spy leaks at C_Finalize; the worker has unloaded it when
# LeakSanitizer reports, so no suppression can name it: no leak check for
# this agent (every other test checks the agent's and its workers' leaks).
ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" \
PCSCLITE_CSOCK_NAME=$TB_DIR/no-pcscd PKCS11SPY=$TB_SOFTHSM PKCS11SPY_OUTPUT=$SPYLOG start_agent --module "$SPY" --audit-log "$AUDIT"
echo "$TB_PIN" | "$SCAGENT" login --token demo --pin-stdin 2>/dev/null ||
	bail_out "login failed"

# calls NAME-REGEX FROM-LINE: PKCS#11 calls in the spy log after line FROM
calls() { tail -n +"$(($2 + 1))" "$SPYLOG" | grep -cE "^[0-9]+: ($1)\$" || true; }
lines() { wc -l <"$1"; }
signs() { tail -n +"$(($1 + 1))" "$AUDIT" | grep -c ' sign pid=' || true; }
READS='C_GetSlotList|C_GetSlotInfo|C_GetTokenInfo|C_FindObjectsInit|C_FindObjects|C_GetAttributeValue'

# sixteen PORT EXPECT: 10 requests one after the other, then 6 at once; 0 when
# all got EXPECT. S1: the spy log's length after the first one.
sixteen() {
	local port=$1 want=$2 bad=0 i pids=""
	for i in $(seq 10); do
		[ "$i" = 2 ] && S1=$(lines "$SPYLOG")
		curl -sS --max-time 30 "http://127.0.0.1:$port/" >"$TB_DIR/r$i" 2>&1 || bad=1
	done
	for i in $(seq 11 16); do
		curl -sS --max-time 30 "http://127.0.0.1:$port/" >"$TB_DIR/r$i" 2>&1 &
		pids="$pids $!"
	done
	# shellcheck disable=SC2086
	wait $pids
	for i in $(seq 16); do grep -q "$want" "$TB_DIR/r$i" || { bad=1; show "$TB_DIR/r$i"; }; done
	return $bad
}

# through NAME WANT-MAX-SIGNS EXPECT tunnel-args...: a tunnel, 16 requests, the count
through() {
	local name=$1 max=$2 want=$3 lp s0 a0 na nr log
	shift 3
	lp=$(tb_port)
	log=$TB_DIR/tunnel-$name.log
	"$SCAGENT" -v tunnel --listen "127.0.0.1:$lp" --cafile "$PKI/root.pem" "$@" >"$log" 2>&1 &
	tb_track_pid $!
	TP=$!
	wait_port "$lp" || { show "$log"; bail_out "tunnel did not listen"; }
	sleep 1.2	# the agent's last slot read is over a second old now
	s0=$(lines "$SPYLOG")
	a0=$(lines "$AUDIT")
	if sixteen "$lp" "$want"; then pass "$name: 16 requests through the tunnel answered"
	else fail "$name: 16 requests"; show "$log"; fi
	ns=$(calls C_Sign "$s0")
	na=$(signs "$a0")
	# The first connection's certificate choice asks the agent for the list
	# it knows ("cached": no slot read); the connections that resume ask
	# nothing. No slot or object read for any of the 16.
	nr=$(calls "$READS" "$s0")
	if [ "$ns" -ge 1 ] && [ "$ns" -le "$max" ] && [ "$na" = "$ns" ]; then
		pass "$name: the card signed $ns time(s) for 16 connections (spy C_Sign, audit log $na)"
	else
		fail "$name: C_Sign $ns, audit-log signatures $na (at most $max wanted)"
		show "$log"
	fi
	if [ "$max" -le 2 ]; then
		# The agent re-reads SoftHSM's slots every 30 s on its own: one such
		# pass (one or two C_GetSlotList) may fall in the window; nothing more,
		# and no object read without it.
		if [ "$nr" != 0 ] && [ "$(calls C_GetSlotList "$s0")" -ge 1 ] &&
			[ "$(calls C_GetSlotList "$s0")" -le 2 ] && [ "$nr" -le 16 ]; then
			diag "$name: the agent's periodic slot re-read fell in the window ($nr calls)"
			nr=0
		fi
		if [ "$nr" = 0 ]; then pass "$name: no slot or object read for the 16 connections"
		else fail "$name: $nr slot/object reads"; tail -n +"$((s0 + 1))" "$SPYLOG" | grep -E '^[0-9]+: C_' | sort | uniq -c | show /dev/stdin; fi
		ok "$name: the log says which connections resumed" \
			grep -q 'session resumed: nothing signed' "$log"
	fi
	kill $TP
	wait $TP 2>/dev/null
}

NP=$(tb_port)
tls_nginx main "$NP" "ssl_session_cache shared:SSL:1m; ssl_session_tickets on;"
through nginx-tls13 2 "hello from nginx main" --connect "localhost:$NP"
ok "nginx saw TLS 1.3 with the card's certificate on resumed connections" \
	test "$(grep -c 'TLSv1.3 200 .*CN=.*SUCCESS' "$TB_DIR/nginx-main/logs/access.log")" -ge 16
through nginx-tls12 2 "hello from nginx main" --connect "localhost:$NP" --tls-max 1.2
ok "nginx saw TLS 1.2 with the card's certificate on resumed connections" \
	test "$(grep -c 'TLSv1.2 200 .*CN=.*SUCCESS' "$TB_DIR/nginx-main/logs/access.log")" -ge 16

SP=$(tb_port)
tb_s_server "$SP"
through s_server-tls13 2 "s_server" --connect "localhost:$SP"
through s_server-tls12 2 "s_server" --connect "localhost:$SP" --tls-max 1.2

# probe says whether the server resumes with the client's identity: a third
# connection offers the kept session and answers no certificate request, so
# the run costs one signature either way.
out=$TB_DIR/probe.json
err=$TB_DIR/probe.err
a0=$(lines "$AUDIT")
probe 0 "client-auth=pass" "probe: nginx" "https://localhost:$NP/" --cafile "$PKI/root.pem"
if python3 -c 'import json,sys; c=[x for x in json.load(open(sys.argv[1]))["checks"] if x["id"]=="client-auth"][0]; assert c["resumption"] is True and "resumed" in c["detail"]' "$out" &&
	[ "$(signs "$a0")" = 1 ]; then
	pass "probe: client-auth says nginx resumes the session (resumption: true), one signature"
else
	fail "probe resumption ($(signs "$a0") signatures)"; show "$out"
fi
NS=$(tb_port)
tb_s_server "$NS" -no_ticket -no_cache
a0=$(lines "$AUDIT")
probe 0 "client-auth=pass" "probe: s_server without session cache or tickets" \
	"https://localhost:$NS/" --cafile "$PKI/root.pem"
if python3 -c 'import json,sys; c=[x for x in json.load(open(sys.argv[1]))["checks"] if x["id"]=="client-auth"][0]; assert c["resumption"] is False and "did not resume" in c["detail"]' "$out" &&
	[ "$(signs "$a0")" = 1 ]; then
	pass "probe: client-auth says s_server -no_ticket -no_cache does not resume, one signature"
else
	fail "probe without resumption ($(signs "$a0") signatures)"; show "$out"; show "$err"
fi

# Without reuse: a signature per connection, as before.
through no-reuse 16 "hello from nginx main" --connect "localhost:$NP" --session-lifetime 0
ok "--session-lifetime 0: 16 signatures" test "$ns" = 16

# The identity ends with the card: a logout (as a removal) makes the tunnel
# forget the token's sessions and close the connections made with them; the
# next request needs the card again. --keep-on-removal keeps them.
LP=$(tb_port)
log=$TB_DIR/tunnel-logout.log
"$SCAGENT" tunnel --listen "127.0.0.1:$LP" --cafile "$PKI/root.pem" --connect "localhost:$NP" >"$log" 2>&1 &
TP=$!
tb_track_pid $TP
wait_port "$LP" || { show "$log"; bail_out "tunnel did not listen"; }
sleep 0.5	# its watch connection to the agent is up
curl -sS --max-time 30 "http://127.0.0.1:$LP/" >/dev/null 2>&1
exec 3<>"/dev/tcp/127.0.0.1/$LP"
for _ in $(seq 50); do grep -q 'connection #2: upstream .* up' "$log" && break; sleep 0.1; done
s0=$(lines "$SPYLOG")
"$SCAGENT" logout --token demo >/dev/null 2>&1
for _ in $(seq 50); do grep -q 'forgot' "$log" && break; sleep 0.1; done
held=$(timeout 5 cat <&3; echo "rc=$?")
exec 3<&-
if grep -q 'logout of token demo: forgot [1-9][0-9]* kept sessions\? and closed 1 connection' "$log" &&
	[ "$held" = "rc=0" ]; then
	pass "logout: the tunnel forgets the token's session and closes the connection made with it"
else
	fail "logout: sessions not forgotten ($held)"; show "$log"
fi
echo "$TB_PIN" | "$SCAGENT" login --token demo --pin-stdin 2>/dev/null
body=$(curl -sS --max-time 30 "http://127.0.0.1:$LP/" 2>&1)
if [ "$body" = "hello from nginx main" ] && [ "$(calls C_Sign "$s0")" = 1 ] &&
	grep -q 'connection #3: upstream .*client certificate [a-z]*)$' "$log"; then
	pass "after the logout, the next request needs the card again (one C_Sign)"
else
	fail "after the logout: $body, C_Sign $(calls C_Sign "$s0")"; show "$log"
fi
kill $TP
wait $TP 2>/dev/null

log=$TB_DIR/tunnel-keep.log
"$SCAGENT" tunnel --listen "127.0.0.1:$LP" --cafile "$PKI/root.pem" --connect "localhost:$NP" \
	--keep-on-removal >"$log" 2>&1 &
TP=$!
tb_track_pid $TP
wait_port "$LP" || { show "$log"; bail_out "tunnel did not listen"; }
curl -sS --max-time 30 "http://127.0.0.1:$LP/" >/dev/null 2>&1
"$SCAGENT" logout --token demo >/dev/null 2>&1
echo "$TB_PIN" | "$SCAGENT" login --token demo --pin-stdin 2>/dev/null
s0=$(lines "$SPYLOG")
body=$(curl -sS --max-time 30 "http://127.0.0.1:$LP/" 2>&1)
if [ "$body" = "hello from nginx main" ] && [ "$(calls C_Sign "$s0")" = 0 ] && ! grep -q forgot "$log"; then
	pass "--keep-on-removal: the session outlives the logout (no C_Sign)"
else
	fail "--keep-on-removal: $body, C_Sign $(calls C_Sign "$s0")"; show "$log"
fi
kill $TP
wait $TP 2>/dev/null

stop_agent
done_testing
