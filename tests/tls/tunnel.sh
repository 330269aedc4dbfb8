#!/bin/bash
# scagent tunnel: curl over plain http:// through the tunnel reaches nginx,
# which requires a client certificate; two connections at once; half-close;
# an upstream that is down closes that connection only; loopback only unless
# --allow-remote; SIGTERM stops it cleanly.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tls/tls-common.sh"
_tb_need curl socat
tb_init
tls_agent
PKI=$TB_DIR/pki
NP=$(tb_port)
tls_nginx main "$NP"
LP=$(tb_port)
log=$TB_DIR/tunnel.log
"$SCAGENT" tunnel --listen "127.0.0.1:$LP" --connect "localhost:$NP" --cafile "$PKI/root.pem" \
	>"$log" 2>&1 &
TPID=$!
tb_track_pid $TPID
wait_port "$LP" || { cat "$log"; bail_out "tunnel did not listen"; }

body=$(curl -sS --max-time 20 "http://127.0.0.1:$LP/" 2>&1)
if [ "$body" = "hello from nginx main" ] && grep -q 'client certificate' "$log"; then
	pass "curl http:// through the tunnel gets nginx's page (client certificate from the card)"
else
	fail "curl through the tunnel: $body"; show "$log"
fi
sleep 0.2
ok "nginx logged the card's certificate" grep -q 'SUCCESS' "$TB_DIR/nginx-main/logs/access.log"

# Two connections at once: one held open while a second one is served.
exec 3<>"/dev/tcp/127.0.0.1/$LP"
for _ in $(seq 50); do grep -q 'connection #2: upstream .* up' "$log" && break; sleep 0.1; done
body=$(curl -sS --max-time 20 "http://127.0.0.1:$LP/" 2>&1)
printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
first=$(timeout 20 cat <&3)
exec 3<&-
if [ "$body" = "hello from nginx main" ] && printf '%s' "$first" | grep -q 'hello from nginx main' &&
	grep -q '(2 active)' "$log"; then
	pass "two concurrent connections, each with its own upstream TLS connection"
else
	fail "concurrent connections"; show "$log"
fi
# Half-close: the client shuts its write side after the request and still
# gets the whole answer.
resp=$(printf 'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n' | timeout 20 socat -t 10 - "TCP:127.0.0.1:$LP")
if printf '%s' "$resp" | grep -q 'hello from nginx main'; then
	pass "half-close: the answer arrives after the client's EOF"
else
	fail "half-close: $resp"; show "$log"
fi

# Upstream down: the connection closes, the listener lives on.
DP=$(tb_port)
LP2=$(tb_port)
"$SCAGENT" tunnel --listen "127.0.0.1:$LP2" --connect "localhost:$DP" --cafile "$PKI/root.pem" \
	>"$TB_DIR/tunnel2.log" 2>&1 &
T2=$!
tb_track_pid $T2
wait_port "$LP2" || bail_out "tunnel 2"
rc=0
curl -sS --max-time 20 "http://127.0.0.1:$LP2/" >/dev/null 2>&1 || rc=$?
sleep 0.2
if [ "$rc" != 0 ] && grep -q "connection #1: upstream localhost:$DP failed" "$TB_DIR/tunnel2.log" &&
	kill -0 $T2 2>/dev/null; then
	pass "upstream down: that connection fails and is logged, the tunnel keeps running"
else
	fail "upstream down (rc=$rc)"; show "$TB_DIR/tunnel2.log"
fi
tb_s_server "$DP"
body=$(curl -sS --max-time 20 "http://127.0.0.1:$LP2/" 2>&1)
if printf '%s' "$body" | grep -q 's_server'; then
	pass "after the upstream comes up, the same listener forwards again"
else
	fail "upstream back: $body"; show "$TB_DIR/tunnel2.log"
fi

# Loopback only unless --allow-remote.
rc=0
"$SCAGENT" tunnel --listen "0.0.0.0:$(tb_port)" --connect "localhost:$NP" >"$TB_DIR/t3.log" 2>&1 || rc=$?
if [ "$rc" = 2 ] && grep -q 'allow-remote' "$TB_DIR/t3.log"; then
	pass "non-loopback --listen refused without --allow-remote"
else
	fail "non-loopback listen (rc=$rc)"; show "$TB_DIR/t3.log"
fi

# The agent restarts while the tunnel runs: the next connection finds the new one.
rc=0
tb_agent_stop 2>/dev/null || rc=$?
start_agent --module "$TB_SOFTHSM"
echo "$TB_PIN" | "$SCAGENT" login --token demo --pin-stdin 2>/dev/null
body=$(curl -sS --max-time 20 "http://127.0.0.1:$LP/" 2>&1)
if [ "$rc" = 0 ] && [ "$body" = "hello from nginx main" ]; then
	pass "after an agent restart, the next connection signs through the new agent"
else
	fail "after an agent restart (stop rc=$rc): $body"; show "$log"
fi

# Not logged in, no pinentry: an HTTP client gets a 502 page saying how to log
# in, a client of another protocol only the close; the log says both (issue 22).
LP4=$(tb_port)
"$SCAGENT" tunnel --listen "127.0.0.1:$LP4" --connect "localhost:$NP" --cafile "$PKI/root.pem" \
	>"$TB_DIR/tunnel4.log" 2>&1 &
tb_track_pid $!
wait_port "$LP4" || bail_out "tunnel 4"
"$SCAGENT" logout --token demo 2>/dev/null
code=$(curl -sS --max-time 20 -o "$TB_DIR/502.body" -w '%{http_code}' "http://127.0.0.1:$LP4/" 2>&1)
if [ "$code" = 502 ] && grep -qx 'scagent tunnel: the card is not logged in: log in with `scagent login --token demo`' \
	"$TB_DIR/502.body" && grep -q 'answered the HTTP client 502 Bad Gateway: token "demo" is not logged in' \
	"$TB_DIR/tunnel4.log"; then
	pass "not logged in: curl gets 502 with \`scagent login --token demo\`, the tunnel logs it"
else
	fail "not logged in over HTTP: $code $(cat "$TB_DIR/502.body" 2>/dev/null)"; show "$TB_DIR/tunnel4.log"
fi
resp=$(printf '\x16\x03\x01' | timeout 20 socat -t 10 - "TCP:127.0.0.1:$LP4" | wc -c)
if [ "$resp" = 0 ] && wait_for 10 grep -q 'closed: token "demo" is not logged in; log in with' "$TB_DIR/tunnel4.log"; then
	pass "not logged in, a client that is not HTTP: closed without an answer, the log says why"
else
	fail "not logged in, not HTTP: $resp"; show "$TB_DIR/tunnel4.log"
fi
echo "$TB_PIN" | "$SCAGENT" login --token demo --pin-stdin 2>/dev/null
body=$(curl -sS --max-time 20 "http://127.0.0.1:$LP4/" 2>&1)
ok "after scagent login, the next curl through the same tunnel gets the page" [ "$body" = "hello from nginx main" ]

# SIGTERM: clean stop, exit 0, the count in the log.
kill -TERM $TPID
rc=0
for _ in $(seq 50); do kill -0 $TPID 2>/dev/null || break; sleep 0.1; done
wait $TPID || rc=$?
if [ "$rc" = 0 ] && grep -q 'stopped after 5 connections' "$log"; then
	pass "SIGTERM stops the tunnel cleanly"
else
	fail "SIGTERM (rc=$rc)"; show "$log"
fi
stop_agent
done_testing
