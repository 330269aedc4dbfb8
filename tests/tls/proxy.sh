#!/bin/bash
# connect, probe and tunnel through an HTTP CONNECT proxy (issue 22): --proxy
# with credentials (percent-encoded in the URL, sent as Basic, never shown in
# the output or the tunnel's log), https_proxy and no_proxy as curl reads
# them, probe's `proxy` check after `tcp` (only when a proxy is used), and a
# proxy that wants credentials that were not given, and proxies whose answer
# never ends or carries raw control bytes. The proxy is a small
# Python CONNECT relay that logs what it was asked (tls_proxy_py).
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tls/tls-common.sh"
_tb_need curl python3
tb_init
tls_agent
PKI=$TB_DIR/pki
NP=$(tb_port)
tls_nginx main "$NP"

tls_proxy_py
PP=$(tb_port)
PLOG=$TB_DIR/proxy.log
: >"$PLOG"
python3 "$TB_DIR/proxy.py" "$PP" "$PLOG" 'u:p@ss' &
tb_track_pid $!
wait_port "$PP" || bail_out "proxy did not start"
URL=https://localhost:$NP/

rc=0
body=$("$SCAGENT" -v connect --cafile "$PKI/root.pem" --proxy "http://u:p%40ss@127.0.0.1:$PP" "$URL" 2>"$TB_DIR/c1.err") || rc=$?
if [ "$rc" = 0 ] && [ "$body" = "hello from nginx main" ] &&
	grep -q "^CONNECT localhost:$NP HTTP/1.1 auth=u:p@ss\$" "$PLOG" &&
	grep -q "through the proxy http://127.0.0.1:$PP" "$TB_DIR/c1.err" &&
	! grep -qE 'p%40ss|p@ss|dTpwQHNz' "$TB_DIR/c1.err"; then
	pass "connect --proxy with credentials: CONNECT with Basic auth, the page, no credentials in the output"
else
	fail "connect --proxy (rc=$rc): $body"; show "$TB_DIR/c1.err"; show "$PLOG"
fi

rc=0
"$SCAGENT" connect --cafile "$PKI/root.pem" --proxy "http://127.0.0.1:$PP" "$URL" >/dev/null 2>"$TB_DIR/c2.err" || rc=$?
if [ "$rc" = 1 ] && grep -q "wants credentials (HTTP/1.1 407" "$TB_DIR/c2.err" &&
	grep -q 'advice: give the proxy' "$TB_DIR/c2.err"; then
	pass "a proxy that wants credentials: exit 1, one line saying so, advice"
else
	fail "407 (rc=$rc)"; show "$TB_DIR/c2.err"
fi

n0=$(wc -l <"$PLOG")
rc=0
body=$(https_proxy="http://u:p%40ss@127.0.0.1:$PP" "$SCAGENT" connect --cafile "$PKI/root.pem" "$URL" 2>/dev/null) || rc=$?
n1=$(wc -l <"$PLOG")
body2=$(https_proxy="http://u:p%40ss@127.0.0.1:$PP" no_proxy="example.org,.localhost,localhost" \
	"$SCAGENT" connect --cafile "$PKI/root.pem" "$URL" 2>/dev/null) || rc=$?
n2=$(wc -l <"$PLOG")
if [ "$rc" = 0 ] && [ "$body" = "hello from nginx main" ] && [ "$body2" = "$body" ] &&
	[ "$n1" = $((n0 + 1)) ] && [ "$n2" = "$n1" ]; then
	pass "https_proxy is used, and no_proxy naming the host goes direct (as curl)"
else
	fail "https_proxy/no_proxy (rc=$rc, proxy lines $n0 $n1 $n2): $body / $body2"
fi

# via NO_PROXY URL: connect with https_proxy and this no_proxy: "EXIT CONNECTS",
# CONNECTS being how many CONNECT requests the proxy logged (0: direct)
via() {
	local n0 rc=0
	n0=$(wc -l <"$PLOG")
	https_proxy="http://u:p%40ss@127.0.0.1:$PP" no_proxy="$1" \
		"$SCAGENT" connect --cafile "$PKI/root.pem" "$2" >/dev/null 2>&1 || rc=$?
	echo "$rc $(( $(wc -l <"$PLOG") - n0 ))"
}

# no_proxy with addresses as curl reads it: an address block covers the
# address, a name's suffix does not; a long list is read to its end.
IPURL=https://127.0.0.1:$NP/
long=$(printf 'host%d.example.org,' $(seq 120))localhost
is "no_proxy 127.0.0.0/8 covers 127.0.0.1: direct" "$(via "10.0.0.0/8,127.0.0.0/8" "$IPURL")" "0 0"
is "no_proxy 0.0.1,.0.1 does not cover 127.0.0.1: through the proxy" "$(via "0.0.1,.0.1" "$IPURL")" "0 1"
is "no_proxy of ${#long} bytes is read to its end (localhost last): direct" "$(via "$long" "$URL")" "0 0"
# "*" alone disables the proxy; within a list it is no wildcard (curl).
is "no_proxy \"*\" alone: direct" "$(via "*" "$URL")" "0 0"
is "no_proxy \"example.org,*\": through the proxy (as curl)" "$(via "example.org,*" "$URL")" "0 1"
# A user without a password is sent as "user:" (RFC 7617); %00 is refused before any connection.
n0=$(wc -l <"$PLOG")
"$SCAGENT" connect --cafile "$PKI/root.pem" --proxy "http://solo@127.0.0.1:$PP" "$URL" >/dev/null 2>&1
if tail -n +"$((n0 + 1))" "$PLOG" | grep -q "^CONNECT localhost:$NP HTTP/1.1 auth=solo:\$"; then
	pass "--proxy http://user@host: Basic user: with an empty password"
else
	fail "a user without a password"; show "$PLOG"
fi
n0=$(wc -l <"$PLOG")
run "$SCAGENT" connect --cafile "$PKI/root.pem" --proxy "http://u:p%00x@127.0.0.1:$PP" "$URL"
if [ "$RC" = 2 ] && printf '%s' "$ERR" | grep -q 'hold %00' && ! printf '%s' "$ERR" | grep -q 'p%00x' &&
	[ "$(wc -l <"$PLOG")" = "$n0" ]; then
	pass "--proxy credentials with %00: a usage error naming it, no connection, the credentials unsaid"
else
	fail "%00 in credentials (rc=$RC): $ERR"
fi

# probe with a proxy URL it cannot use: a usage error before any connection, as connect.
run "$SCAGENT" probe --cafile "$PKI/root.pem" --proxy "socks5://127.0.0.1:$PP" "$URL"
is "probe --proxy socks5://...: exit 2 (as connect)" "$RC" 2
has "  ... saying why" "$ERR" "is not http://"
run "$SCAGENT" probe --exchange "localhost:$NP" --cafile "$PKI/root.pem" --proxy "socks5://127.0.0.1:$PP"
is "probe --exchange with it: exit 2 once, not a failure per endpoint" "$RC" 2

# probe: a proxy check after tcp, only with a proxy.
out=$TB_DIR/probe.json
rc=0
"$SCAGENT" probe --json --cafile "$PKI/root.pem" --proxy "http://u:p%40ss@127.0.0.1:$PP" "$URL" >"$out" 2>&1 || rc=$?
if [ "$rc" = 0 ] && python3 - "$out" <<-'PY'
	import json, sys
	d = json.load(open(sys.argv[1]))
	ids = [c["id"] for c in d["checks"]]
	assert ids[:4] == ["resolve", "tcp", "proxy", "tls-handshake"], ids
	p = d["checks"][2]
	assert p["status"] == "pass" and "200" in p["detail"] and "p@ss" not in json.dumps(d), p
	assert d["result"] == "pass"
PY
then pass "probe --proxy: a passing proxy check between tcp and tls-handshake, no credentials"
else fail "probe --proxy (rc=$rc)"; show "$out"; fi
rc=0
"$SCAGENT" probe --json --cafile "$PKI/root.pem" --proxy "http://127.0.0.1:$PP" "$URL" >"$out" 2>&1 || rc=$?
if [ "$rc" = 1 ] && python3 - "$out" <<-'PY'
	import json, sys
	d = json.load(open(sys.argv[1]))
	p = [c for c in d["checks"] if c["id"] == "proxy"][0]
	assert p["status"] == "fail" and "407" in p["detail"] and p["advice"], p
	assert all(c["status"] == "skip" for c in d["checks"][3:]), d
PY
then pass "probe through a proxy that wants credentials: proxy fails, the rest skip"
else fail "probe 407 (rc=$rc)"; show "$out"; fi
err=$TB_DIR/probe.err
probe 0 "" "probe without a proxy has no proxy check" "$URL" --cafile "$PKI/root.pem"

# A proxy that misbehaves (proxy.py with a mode file, read per connection):
# its answer to CONNECT never ends, or carries bytes a terminal or JSON must
# not get raw.
BP=$(tb_port)
echo endless >"$TB_DIR/badproxy.mode"
python3 "$TB_DIR/proxy.py" "$BP" "$TB_DIR/badproxy.log" "" "" "$TB_DIR/badproxy.mode" &
tb_track_pid $!
wait_port "$BP" || bail_out "the misbehaving proxy did not start"
rc=0
timeout 20 "$SCAGENT" connect --cafile "$PKI/root.pem" --proxy "http://u:p%40ss@127.0.0.1:$BP" "$URL" \
	>/dev/null 2>"$TB_DIR/c3.err" || rc=$?
if [ "$rc" = 1 ] && grep -q "more than 16384 bytes of header" "$TB_DIR/c3.err" &&
	! grep -qE 'p%40ss|p@ss' "$TB_DIR/c3.err"; then
	pass "a proxy whose answer never ends: connect fails at once with one line (no hang)"
else
	fail "endless proxy answer (rc=$rc; 124 is a hang)"; show "$TB_DIR/c3.err"
fi
echo esc502 >"$TB_DIR/badproxy.mode"
rc=0
"$SCAGENT" probe --json --cafile "$PKI/root.pem" --proxy "http://u:p%40ss@127.0.0.1:$BP" "$URL" \
	>"$out" 2>&1 || rc=$?
if [ "$rc" = 1 ] && ! grep -q $'\x1b' "$out" && python3 - "$out" <<-'PY'
	import json, sys
	d = json.load(open(sys.argv[1], encoding="utf-8"))
	p = [c for c in d["checks"] if c["id"] == "proxy"][0]
	assert p["status"] == "fail" and "502 Bad" in p["detail"] and "Gateway" in p["detail"], p
	assert "p@ss" not in json.dumps(d)
PY
then pass "probe --json through a proxy answering 502 with raw bytes: valid UTF-8 JSON, no escape byte"
else fail "probe, 502 with raw bytes (rc=$rc)"; show "$out"; fi
echo esc200 >"$TB_DIR/badproxy.mode"
"$SCAGENT" -v connect --cafile "$PKI/root.pem" --proxy "http://127.0.0.1:$BP" "$URL" \
	>/dev/null 2>"$TB_DIR/c4.err" || true
if grep -q "connected us to localhost:$NP (HTTP/1.1 200 OK" "$TB_DIR/c4.err" &&
	! grep -q $'\x1b' "$TB_DIR/c4.err" && ! grep -q $'\x07' "$TB_DIR/c4.err"; then
	pass "connect -v: the proxy's status line is shown without its control bytes"
else
	fail "the proxy's status line reaches the terminal raw"; show "$TB_DIR/c4.err"
fi

# tunnel --proxy: the log names the proxy without its credentials.
LP=$(tb_port)
log=$TB_DIR/tunnel.log
"$SCAGENT" -v tunnel --listen "127.0.0.1:$LP" --connect "localhost:$NP" --cafile "$PKI/root.pem" \
	--proxy "http://u:p%40ss@127.0.0.1:$PP" >"$log" 2>&1 &
TP=$!
tb_track_pid $TP
wait_port "$LP" || { show "$log"; bail_out "tunnel did not listen"; }
body=$(curl -sS --max-time 20 "http://127.0.0.1:$LP/" 2>&1)
if [ "$body" = "hello from nginx main" ] && grep -q "through the proxy http://127.0.0.1:$PP" "$log" &&
	! grep -qE 'p%40ss|p@ss|dTpwQHNz' "$log"; then
	pass "tunnel --proxy: the page through the proxy, no credentials in its log"
else
	fail "tunnel --proxy: $body"; show "$log"
fi
# Other users read a process's command line: the password is masked in it.
cmdline=$(tr '\0' ' ' <"/proc/$TP/cmdline")
if printf '%s' "$cmdline" | grep -qF -- "--proxy http://u:******@127.0.0.1:$PP" &&
	! printf '%s' "$cmdline" | grep -qE 'p%40ss|p@ss'; then
	pass "tunnel --proxy: its command line (ps, /proc/PID/cmdline) shows the password masked"
else
	fail "the proxy password is in the tunnel's command line" "$cmdline"
fi
# A raw '@' in the password: the credentials end at the last '@' (as the
# proxy URL is read), and all of the password is masked.
LP2=$(tb_port)
"$SCAGENT" tunnel --listen "127.0.0.1:$LP2" --connect "localhost:$NP" --cafile "$PKI/root.pem" \
	--proxy "http://u:p@ss@127.0.0.1:$PP" >"$TB_DIR/tunnel2.log" 2>&1 &
TP2=$!
tb_track_pid $TP2
wait_port "$LP2" || { show "$TB_DIR/tunnel2.log"; bail_out "tunnel did not listen"; }
has "a password holding a raw '@': masked whole in the command line" \
	"$(tr '\0' ' ' <"/proc/$TP2/cmdline")" "--proxy http://u:****@127.0.0.1:$PP"
kill $TP2
wait $TP2 2>/dev/null
kill $TP
wait $TP 2>/dev/null
rc=0
"$SCAGENT" tunnel --listen "127.0.0.1:$LP" --connect "localhost:$NP" --proxy "ftp://x:1" >"$log" 2>&1 || rc=$?
if [ "$rc" = 2 ] && grep -q 'not http://' "$log"; then pass "tunnel --proxy ftp://: usage error before listening"
else fail "bad --proxy (rc=$rc)"; show "$log"; fi

stop_agent
done_testing
