#!/bin/bash
# The identity ends with the card, even mid-handshake (issue 22): a logout
# that comes after the card signed but before the tunnel's handshake is over
# (TLS 1.2: the server's last flight is held back by a slow relay) must not
# leave a connection served with the card's certificate, nor a session kept
# that the next connection would resume without the card.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tls/tls-common.sh"
_tb_need curl python3
tb_init
tls_agent
PKI=$TB_DIR/pki
NP=$(tb_port)
tls_nginx main "$NP" "ssl_session_cache shared:SSL:1m; ssl_session_tickets on;"

# slow.py PORT TO MARKER SECONDS: a TCP relay to 127.0.0.1:TO that, on its
# first connection only, holds the server's answer to the client's second
# flight (TLS 1.2: Certificate ... Finished) for SECONDS, writing MARKER first.
cat >"$TB_DIR/slow.py" <<-'PY'
	import os, socket, sys, threading, time
	lport, dport, marker, secs = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
	def handle(c, slow):
	    u = socket.create_connection(("127.0.0.1", dport))
	    seen = [0]
	    def c2u():
	        try:
	            while True:
	                d = c.recv(65536)
	                if not d: break
	                seen[0] += 1
	                u.sendall(d)
	        except OSError: pass
	        finally:
	            try: u.shutdown(socket.SHUT_WR)
	            except OSError: pass
	    threading.Thread(target=c2u, daemon=True).start()
	    try:
	        while True:
	            d = u.recv(65536)
	            if not d: break
	            if slow and seen[0] >= 2:
	                slow = False
	                open(marker, "w").write("holding\n")
	                time.sleep(secs)
	            c.sendall(d)
	    except OSError: pass
	    finally:
	        try: c.shutdown(socket.SHUT_WR)
	        except OSError: pass
	s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
	s.bind(("127.0.0.1", lport)); s.listen(8)
	first = True
	while True:
	    c, _ = s.accept()
	    threading.Thread(target=handle, args=(c, first), daemon=True).start()
	    first = False
PY
RP=$(tb_port)
MARK=$TB_DIR/holding
python3 "$TB_DIR/slow.py" "$RP" "$NP" "$MARK" 3 &
tb_track_pid $!
wait_port "$RP" || bail_out "relay did not start"

LP=$(tb_port)
log=$TB_DIR/tunnel.log
"$SCAGENT" -v tunnel --listen "127.0.0.1:$LP" --connect "localhost:$RP" --cafile "$PKI/root.pem" \
	--cert alice --tls-max 1.2 >"$log" 2>&1 &
tb_track_pid $!
wait_port "$LP" || { show "$log"; bail_out "the tunnel did not listen"; }
# it says so once it follows the agent's events, before it serves
for _ in $(seq 50); do grep -q 'TLS sessions are kept' "$log" && break; sleep 0.1; done

curl -sS --max-time 30 "http://127.0.0.1:$LP/" >"$TB_DIR/r1" 2>&1 &
c1=$!
for _ in $(seq 100); do [ -f "$MARK" ] && break; sleep 0.1; done
ok "the card signed and the server's last flight is held back" test -f "$MARK"
"$SCAGENT" logout --token demo >/dev/null 2>&1
for _ in $(seq 50); do grep -q 'the agent says logout' "$log" && break; sleep 0.1; done
ok "the tunnel heard the logout while the handshake was still running" \
	grep -q 'the agent says logout' "$log"
wait $c1
if grep -q 'hello from nginx' "$TB_DIR/r1"; then
	fail "the connection whose handshake outlived the logout was served" "$(cat "$TB_DIR/r1")"
else
	pass "the connection whose handshake outlived the logout is closed, not served"
fi
ok "... and the log says why" grep -q 'closed: a token was removed or logged out while its handshake ran' "$log"
if grep -q 'session kept for' "$log"; then
	fail "a session made across the logout was kept" "$(grep 'session kept' "$log")"
else
	pass "no session made across the logout was kept"
fi
body=$(curl -sS --max-time 30 "http://127.0.0.1:$LP/" 2>&1)
has "the next connection needs the card again: logged out, it gets the 502 page" "$body" "not logged in"
if printf '%s' "$body" | grep -q 'hello from nginx'; then
	fail "the next connection resumed without the card"
else
	pass "... and no page of the server"
fi

# Without kept sessions (--session-lifetime 0) too, a connection made with the
# card's certificate ends with the card: a kept-alive connection is closed at
# logout.
echo "$TB_PIN" | "$SCAGENT" login --token demo --pin-stdin >/dev/null 2>&1 || bail_out "login again"
LP2=$(tb_port)
log2=$TB_DIR/tunnel2.log
"$SCAGENT" tunnel --listen "127.0.0.1:$LP2" --connect "localhost:$NP" --cafile "$PKI/root.pem" \
	--cert alice --session-lifetime 0 >"$log2" 2>&1 &
tb_track_pid $!
wait_port "$LP2" || { show "$log2"; bail_out "the second tunnel did not listen"; }
for _ in $(seq 50); do grep -q 'no TLS session is kept' "$log2" && break; sleep 0.1; done
# ka.py PORT: one kept-alive request; prints the answer, then "closed" when the
# tunnel ends the connection (within 15 s)
cat >"$TB_DIR/ka.py" <<-'PY'
	import socket, sys, time
	s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
	s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	s.settimeout(15)
	try:
	    while True:
	        d = s.recv(65536)
	        if not d:
	            print("closed", flush=True)
	            break
	        sys.stdout.write(d.decode("latin-1"))
	        sys.stdout.flush()
	except OSError as e:
	    print("error", e, flush=True)
PY
"$PY" "$TB_DIR/ka.py" "$LP2" >"$TB_DIR/ka.out" 2>&1 &
ka=$!
tb_track_pid $ka
for _ in $(seq 100); do grep -q 'hello from nginx' "$TB_DIR/ka.out" && break; sleep 0.1; done
has "a kept-alive connection through a tunnel without sessions is served" "$(cat "$TB_DIR/ka.out")" "hello from nginx"
"$SCAGENT" logout --token demo >/dev/null 2>&1
for _ in $(seq 50); do grep -q 'closed 1 connection' "$log2" && break; sleep 0.1; done
ok "... and closed at logout (the tunnel's log)" grep -q 'forgot 0 kept sessions and closed 1 connection' "$log2"
for _ in $(seq 50); do grep -q '^closed' "$TB_DIR/ka.out" && break; sleep 0.1; done
ok "... the client sees the connection end" grep -q '^closed' "$TB_DIR/ka.out"
stop_agent "the agent stops cleanly"
done_testing
