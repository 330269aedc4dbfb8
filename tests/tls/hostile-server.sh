#!/bin/bash
# What a server or a proxy says reaches the user only made safe (issue 19):
# `probe --json` and `probe --exchange --json` stay valid UTF-8 JSON when an
# HTTP reason phrase or a certificate's DNS name holds bytes that are not
# UTF-8; `-v` escapes a proxy's answer as every other line does; a server
# that sends headers or "100 Continue" without end is cut off (before: 2 GB
# of memory in 15 s, or a wait for ever). The server is a small Python TLS
# server answering what it is told to; no card is needed.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tls/tls-common.sh"
_tb_need python3
tb_init
PKI=$TB_DIR/pki
tb_server_cert localhost DNS:localhost IP:127.0.0.1
tb_server_cert evil $'DNS:evil\e[2J\xff.example'
# no agent: nothing here asks for a client certificate
SC=("$SCAGENT" --socket "$TB_DIR/no-agent.sock")
CA=(--cafile "$PKI/root.pem")
ESC=$'\e'

# hostile.py PORT CHAIN KEY MODE: reason (a status line with an escape
# sequence and bytes that are not UTF-8), headers (headers without end),
# continue ("100 Continue" without end)
cat >"$TB_DIR/hostile.py" <<-'PY'
	import socket, ssl, sys, threading
	port, chain, key, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
	ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
	ctx.load_cert_chain(chain, key)
	def serve(c):
	    try:
	        s = ctx.wrap_socket(c, server_side=True)
	        req = b""
	        while b"\r\n\r\n" not in req:
	            d = s.recv(4096)
	            if not d: return
	            req += d
	        if mode == "reason":
	            s.sendall(b"HTTP/1.1 200 OK\x1b[2J\x1b]0;pwned\x07\xff\xfe\r\n"
	                      b"Content-Length: 2\r\nConnection: close\r\n\r\nhi")
	        elif mode == "headers":
	            s.sendall(b"HTTP/1.1 200 OK\r\n")
	            while True: s.sendall(b"X-Filler: " + b"a" * 8000 + b"\r\n")
	        else:
	            while True: s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
	        s.close()
	    except (OSError, ssl.SSLError):
	        pass
	l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
	l.bind(("127.0.0.1", port)); l.listen(16)
	while True:
	    c, _ = l.accept()
	    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
tls_proxy_py
# server PORT NAME MODE
server() {
	python3 "$TB_DIR/hostile.py" "$1" "$PKI/$2-chain.pem" "$PKI/$2.key" "$3" &
	tb_track_pid $!
	wait_port "$1" || bail_out "hostile.py $3 did not start"
}
# json_field FILE EXPR: EXPR (Python, d the document) of the JSON in FILE, read as bytes
json_field() {
	python3 -c 'import json, sys; d = json.load(open(sys.argv[1], "rb")); print(eval(sys.argv[2]))' "$1" "$2"
}
RP=$(tb_port) EP=$(tb_port) HP=$(tb_port) CP=$(tb_port) PP=$(tb_port)
server "$RP" localhost reason
server "$EP" evil reason
server "$HP" localhost headers
server "$CP" localhost continue
python3 "$TB_DIR/proxy.py" "$PP" "$TB_DIR/proxy.log" "" 'HTTP/1.1 200 \x1b[2J\x1b]0;pwned\x07\xff ok' &
tb_track_pid $!
wait_port "$PP" || bail_out "proxy.py did not start"
out=$TB_DIR/out err=$TB_DIR/err

# probe --json: the reason phrase in http's detail, as valid UTF-8 (U+FFFD for each bad byte).
"${SC[@]}" probe --json "${CA[@]}" "https://localhost:$RP/" >"$out" 2>"$err"
got=$(json_field "$out" '[ascii(c["detail"]) for c in d["checks"] if c["id"] == "http"][0]' 2>&1)
if [ "$got" = "'HTTP 200 OK\\x1b[2J\\x1b]0;pwned\\x07\\ufffd\\ufffd, 2 bytes'" ]; then
	pass "probe --json: a reason phrase that is not UTF-8 gives valid JSON, U+FFFD for its bytes"
else
	fail "probe --json with a bad reason phrase: $got" "$(cat -v "$out")"
fi
# and as text: escaped
"${SC[@]}" probe "${CA[@]}" "https://localhost:$RP/" >"$out" 2>"$err"
if grep -qF 'HTTP 200 OK\x1b[2J\x1b]0;pwned\x07\xff\xfe, 2 bytes' "$out" && ! grep -q "$ESC" "$out" "$err"; then
	pass "probe: the reason phrase is escaped for the terminal"
else
	fail "probe text with a bad reason phrase" "$(cat -v "$out" "$err")"
fi

# A certificate's DNS name that is not UTF-8: probe's server-name and the sweep's name_detail.
"${SC[@]}" probe --json "${CA[@]}" "https://localhost:$EP/" >"$out" 2>"$err"
got=$(json_field "$out" '[ascii(c["detail"]) for c in d["checks"] if c["id"] == "server-name"][0]' 2>&1)
case $got in
*'evil\x1b[2J\ufffd.example'*) pass "probe --json: a DNS name that is not UTF-8 gives valid JSON" ;;
*) fail "probe --json with a bad DNS name: $got" "$(cat -v "$out")" ;;
esac
"${SC[@]}" probe --exchange "localhost:$EP" --json "${CA[@]}" >"$out" 2>"$err"
got=$(json_field "$out" 'ascii(d["server"]["name_detail"])' 2>&1)
case $got in
*'evil\x1b[2J\ufffd.example'*) pass "probe --exchange --json: the same name gives valid JSON" ;;
*) fail "probe --exchange --json with a bad DNS name: $got" "$(cat -v "$out")" ;;
esac

# -v through a proxy whose answer holds an escape sequence: none reaches the terminal.
"${SC[@]}" -v connect --proxy "http://127.0.0.1:$PP" "${CA[@]}" "https://localhost:$RP/" >"$out" 2>"$err"
# (net.c keeps printable ASCII of a proxy's answer: each other byte is a '?')
if grep -qF 'connected us to localhost:'"$RP"' (HTTP/1.1 200 ?[2J?]0;pwned?? ok)' "$err" &&
	! grep -q "$ESC" "$err"; then
	pass "-v: the proxy's answer reaches the terminal without its control bytes"
else
	fail "-v with a hostile proxy answer" "$(cat -v "$err")"
fi

# Headers without end, "100 Continue" without end: cut off at the limit, at once.
for m in "$HP headers" "$CP continue"; do
	set -- $m
	rc=0
	timeout 20 "${SC[@]}" connect "${CA[@]}" "https://localhost:$1/" >"$out" 2>"$err" || rc=$?
	if [ "$rc" = 1 ] && grep -q "the server's HTTP headers are over the 262144-byte limit" "$err"; then
		pass "a server that sends $2 without end: cut off at 256 KiB of headers (exit 1)"
	else
		fail "$2 without end (rc=$rc; 124 is the 20 s timeout)" "$(head -c 2000 "$err")"
	fi
done
done_testing
