#!/bin/bash
# The tunnel's browser gate: the owner's browser passes the uid check, so a
# web page could make it send requests to the tunnel (cross-site) or, by DNS
# rebinding, read the answers. Each request of a connection is refused
# with 403 when its Host is a name a page could own (not loopback, not the
# upstream's, not --allow-host), its Origin is another site's or another
# local port's, or the browser says Sec-Fetch-Site: cross-site/same-site;
# nothing of it reaches the server and, when it came at once, the card signs
# nothing. Programs that are not browsers, and the owner's own page typed in,
# pass; bytes that are not HTTP are relayed as before.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tls/tls-common.sh"
_tb_need curl socat
tb_init
AUDIT=$TB_DIR/audit.log
tls_card
start_agent --module "$TB_SOFTHSM" --audit-log "$AUDIT"
echo "$TB_PIN" | "$SCAGENT" login --token demo --pin-stdin 2>/dev/null || bail_out "login failed"
PKI=$TB_DIR/pki
NP=$(tb_port)
tls_nginx main "$NP"
ALOG=$TB_DIR/nginx-main/logs/access.log

# signatures so far (the agent's audit log); requests nginx answered
signs() { grep -c ' sign pid=.* result=ok' "$AUDIT" || true; }
served() { grep -c . "$ALOG" 2>/dev/null || true; }
wait_line() {
	for _ in $(seq 100); do grep -q -- "$1" "$2" 2>/dev/null && return 0; sleep 0.1; done
	return 1
}

LP=$(tb_port)
log=$TB_DIR/tunnel.log
# no kept sessions: each connection that goes upstream shows in the audit log
"$SCAGENT" tunnel --listen "127.0.0.1:$LP" --connect "localhost:$NP" --cafile "$PKI/root.pem" \
	--cert alice --session-lifetime 0 --allow-host mail.contoso.test >"$log" 2>&1 &
tb_track_pid $!
wait_line 'listening on' "$log" || { cat "$log"; bail_out "the tunnel did not start"; }
U="http://127.0.0.1:$LP/"

# get NAME ARGS...: curl through the tunnel; RC, BODY; SIGNED and SERVED: what it cost
get() {
	local name=$1 b0 s0
	shift
	b0=$(signs) s0=$(served)
	BODY=$(curl -sS --max-time 20 "$@" 2>&1)
	RC=$?
	sleep 0.2
	SIGNED=$(( $(signs) - b0 ))
	SERVED=$(( $(served) - s0 ))
}
# refused NAME REASON ARGS...: 403 naming REASON, no signature, nothing served
refused() {
	local name=$1 reason=$2
	shift 2
	get "$name" -i "$@"
	if printf '%s' "$BODY" | head -n 1 | grep -q '^HTTP/1.1 403' &&
		printf '%s' "$BODY" | grep -qF -- "$reason" && [ "$SIGNED" = 0 ] && [ "$SERVED" = 0 ]; then
		pass "$name: 403, no signature, nothing reached the server"
	else
		fail "$name: rc=$RC signed=$SIGNED served=$SERVED" "$BODY"
	fi
}
# passes NAME ARGS...: the page comes back with the card's certificate
passes() {
	local name=$1
	shift
	get "$name" "$@"
	if [ "$RC" = 0 ] && printf '%s' "$BODY" | grep -q 'hello from nginx main' && [ "$SERVED" = 1 ]; then
		pass "$name: served"
	else
		fail "$name: rc=$RC served=$SERVED" "$BODY"
	fi
}

passes "curl to 127.0.0.1:PORT" "$U"
passes "Host: localhost:PORT" -H "Host: localhost:$LP" "$U"
passes "Host: the upstream's name" -H "Host: localhost" "$U"
passes "Host: an --allow-host name" -H "Host: MAIL.contoso.test:$LP" "$U"
passes "Host: [::1]:PORT" -H "Host: [::1]:$LP" "$U"
passes "a page typed in (Sec-Fetch-Site: none)" -H "Sec-Fetch-Site: none" -H "Sec-Fetch-Mode: navigate" "$U"
passes "the tunnel's own page (Origin http://127.0.0.1:PORT, same-origin)" \
	-H "Origin: http://127.0.0.1:$LP" -H "Sec-Fetch-Site: same-origin" "$U"

refused "DNS rebinding (Host: rebind.attacker.example:PORT)" 'host "rebind.attacker.example:' \
	-H "Host: rebind.attacker.example:$LP" "$U"
refused "a cross-site POST (Origin: https://evil.example)" 'origin "https://evil.example"' \
	-H "Origin: https://evil.example" -X POST -d x=1 "$U"
refused "a page on another local port (Origin: http://localhost:3000)" 'origin "http://localhost:3000"' \
	-H "Origin: http://localhost:3000" "$U"
refused "Origin: null (a sandboxed page)" 'origin "null"' -H "Origin: null" "$U"
refused "an image on another site's page (Sec-Fetch-Site: cross-site)" 'Sec-Fetch-Site: cross-site' \
	-H "Sec-Fetch-Site: cross-site" -H "Sec-Fetch-Mode: no-cors" "$U"
s0=$(served)
resp=$(printf 'GET / HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n' |
	timeout 20 socat -t 5 - "TCP:127.0.0.1:$LP" 2>&1)
sleep 0.2
if printf '%s' "$resp" | head -n 1 | grep -q '^HTTP/1.1 403' && grep -q 'two Host headers' "$log" &&
	[ "$(served)" = "$s0" ]; then
	pass "two Host headers: 403, nothing reached the server"
else
	fail "two Host headers" "$resp"
fi
# a hostile Host is said escaped in the log
refused "an escape sequence in the Host" 'host "' -H "Host: $(printf 'x\033[2Jy')" "$U"
if grep -q "$(printf '\033')" "$log"; then
	fail "the tunnel's log holds a raw escape byte"
else
	pass "the tunnel's log quotes the refused Host escaped"
fi
ok "each refusal is logged with why" grep -q 'refused a request for the host "rebind.attacker.example:' "$log"

# Every request of a kept-alive connection is judged, not only its first: a
# page's request could travel on a connection the owner's page opened (a
# browser that does not partition its connections by site). A body is no
# request, whatever it holds; the request after it is judged in turn.
keepalive() {
	"$PY" - "$LP" "$@" <<'PYEOF'
import http.client, sys
port, reqs = int(sys.argv[1]), sys.argv[2:]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
for r in reqs:
    method, hdr, body = r.split("|")
    headers = dict(h.split(": ", 1) for h in hdr.split(";") if h)
    try:
        c.request(method, "/", body=body or None, headers=headers)
        resp = c.getresponse()
        text = resp.read().decode("utf-8", "replace")
        print(resp.status, text.strip().replace("\n", " ")[:300])
    except Exception as e:
        print("error", type(e).__name__)
        break
PYEOF
}
s0=$(served) b0=$(signs)
out=$(keepalive "GET||" "GET|Origin: https://evil.example;Sec-Fetch-Site: cross-site|")
sleep 0.2
has "a kept-alive connection: its first request is served" "$(printf '%s' "$out" | sed -n 1p)" "200 hello from nginx main"
has "... its second, cross-site, gets 403 naming the origin" "$(printf '%s' "$out" | sed -n 2p)" \
	'403 scagent tunnel: refused a request from the web page origin "https://evil.example"'
is "... and only the first reached the server" "$(( $(served) - s0 ))" 1
ok "... the log says which request of the connection it was" grep -q 'evil.example".*(request 2 of the connection); nothing of it was sent upstream' "$log"
s0=$(served)
fake='GET /in-a-body HTTP/1.1\r\nHost: rebind.attacker.example\r\n\r\n'
out=$(keepalive "POST||$(printf "$fake")" "GET||" "GET|Host: rebind.attacker.example:$LP|")
sleep 0.2
# (nginx answers a POST to a static page 405: it reached the server)
is "a POST whose body looks like a request, then a GET: both answered, the third (rebinding) refused" \
	"$(printf '%s' "$out" | cut -c1-3 | tr '\n' ' ')" "405 200 403 "
is "... two requests reached the server, none from the body" "$(( $(served) - s0 ))" 2
out=$(keepalive "GET||" "GET|Sec-Fetch-Site: same-origin;Origin: http://127.0.0.1:$LP|" "GET||")
is "three requests of the owner's own on one connection are all served" \
	"$(printf '%s' "$out" | cut -c1-3 | tr '\n' ' ')" "200 200 200 "

# A browser's preconnect: the connection opens, the request comes later than
# the tunnel waits before its handshake; it is judged in the relay all the
# same, and nothing of it reaches the server.
s0=$(served)
resp=$( { sleep 1.5; printf 'GET / HTTP/1.1\r\nHost: rebind.attacker.example:%s\r\nConnection: close\r\n\r\n' "$LP"; sleep 2; } |
	timeout 20 socat -t 5 - "TCP:127.0.0.1:$LP" 2>&1)
sleep 0.2
if printf '%s' "$resp" | head -n 1 | grep -q '^HTTP/1.1 403' && [ "$(served)" = "$s0" ]; then
	pass "a request sent 1.5 s after the connection opened is judged as well: 403, nothing served"
else
	fail "late request: served $s0 -> $(served)" "$resp"
fi
# The same late request for the tunnel's own address goes through.
resp=$( { sleep 1.5; printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$LP"; sleep 2; } |
	timeout 20 socat -t 5 - "TCP:127.0.0.1:$LP" 2>&1)
has "... and a late request for the tunnel's own address is served" "$resp" "hello from nginx main"
# A connection closed without a byte (a preconnect given up): no handshake, no signature.
b0=$(signs)
"$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1]))).close()' "$LP"
wait_line 'closed by the client before it sent anything' "$log"
sleep 0.3
is "a connection closed without a byte costs no signature" "$(( $(signs) - b0 ))" 0
ok "... and says so in the log" grep -q 'closed by the client before it sent anything; the server and the card were not asked' "$log"
# A request head cut in the middle by the client's close is dropped, not sent.
s0=$(served)
printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n' | timeout 20 socat -t 3 - "TCP:127.0.0.1:$LP" >/dev/null 2>&1
sleep 0.3
is "an HTTP head the client never finished is not sent upstream" "$(served)" "$s0"

# Bytes that are not HTTP are relayed as before: TLS in the tunnel reaches
# nginx's TLS port as bytes nginx does not understand and answers 400.
resp=$(printf 'HELLO\r\n\r\n' | timeout 20 socat -t 5 - "TCP:127.0.0.1:$LP" 2>&1)
has "a client speaking something else than HTTP is relayed (nginx answers it)" "$resp" "400"

# --allow-host is checked.
run "$SCAGENT" tunnel --listen "127.0.0.1:$(tb_port)" --connect "localhost:$NP" --allow-host "a.example:80"
is "--allow-host with a port is a usage error" "$RC" 2
has "  ... saying what it wants" "$ERR" "--allow-host wants host names"
for bad in "a.example,,b.example" "a.example." "a.example,"; do
	run "$SCAGENT" tunnel --listen "127.0.0.1:$(tb_port)" --connect "localhost:$NP" --allow-host "$bad"
	is "--allow-host \"$bad\" is a usage error (a name it could never match)" "$RC" 2
done
run "$SCAGENT" tunnel --listen "127.0.0.1:$(tb_port)" --connect "localhost:$NP" --allow-host a.example --allow-host b.example
is "--allow-host twice is a usage error" "$RC" 2
run "$SCAGENT" tunnel --listen "unix:$TB_DIR/x.sock" --connect "localhost:$NP" --allow-host a.example
is "--allow-host with a Unix socket is a usage error" "$RC" 2
has "  ... saying it is for ADDR:PORT" "$ERR" "is for an ADDR:PORT listener"
run "$SCAGENT" tunnel --listen "127.0.0.1:$(tb_port)" --connect "localhost:$NP" --session-lifetime h
is "--session-lifetime h (no number) is a usage error, not 0" "$RC" 2

# A Unix socket is not gated (a browser cannot reach one).
usock=$TB_DIR/t.sock
"$SCAGENT" tunnel --listen "unix:$usock" --connect "localhost:$NP" --cafile "$PKI/root.pem" \
	--cert alice >"$TB_DIR/unix.log" 2>&1 &
tb_track_pid $!
wait_line 'listening on unix:' "$TB_DIR/unix.log" || bail_out "unix tunnel"
out=$(curl -sS --max-time 20 --unix-socket "$usock" -H "Host: anything.example" "http://x/" 2>&1)
has "--listen unix: serves any Host (no browser reaches a Unix socket)" "$out" "hello from nginx main"
stop_agent "the agent stops cleanly"
done_testing
