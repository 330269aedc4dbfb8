#!/bin/bash
# scagent tunnel and servers that ask for the certificate after the request
# (issue 22): Apache requiring it only under /Microsoft-Server-ActiveSync, as
# IIS does, asks by post-handshake authentication over TLS 1.3 and by
# renegotiation over TLS 1.2. Signatures counted in the agent's audit log.
#
# The tunnel keeps the session made after the certificate went and offers it
# on the next connection; Apache (mod_ssl 2.4) still asks again on every new
# connection, its debug log shows why: over TLS 1.3 it starts post-handshake
# authentication whenever the connection's verify mode is the virtual host's
# (even on a resumed session that holds the certificate), over TLS 1.2 it
# gives the renegotiated session a session id context of its own request,
# so no other connection can resume it. So against it, 3 new connections
# cost 3 signatures, never more; what gets one signature: requests on one
# kept-alive connection, or a server asking in the handshake (Apache
# SSLVerifyClient on the virtual host, IIS with clientcertnegotiation).
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tls/tls-common.sh"
_tb_need curl
tb_init
tls_card
PKI=$TB_DIR/pki
AUDIT=$TB_DIR/audit.log
start_agent --module "$TB_SOFTHSM" --audit-log "$AUDIT"
echo "$TB_PIN" | "$SCAGENT" login --token demo --pin-stdin 2>/dev/null ||
	bail_out "login failed"
AP=$(tb_port)
APACHE_LOGLEVEL="info ssl:debug" tls_apache "$AP"
ERRLOG=$TB_DIR/apache/logs/error.log
HP=$(tb_port)
mkdir -p "$TB_DIR/apache-hs/htdocs/Microsoft-Server-ActiveSync"
echo "activesync ok" >"$TB_DIR/apache-hs/htdocs/Microsoft-Server-ActiveSync/index.html"
_tls_apache_run "$TB_DIR/apache-hs" "$HP" "" <<<"SSLVerifyClient require"

signs() { tail -n +"$(($1 + 1))" "$AUDIT" | grep -c ' sign pid=' || true; }
since() { tail -n +"$(($2 + 1))" "$1" | grep -c "$3" || true; }

# tunnel NAME PORT tunnel-args...: a tunnel to 127.0.0.1 PORT; its port in
# $LP, its log in $LOG, the audit log's and Apache's error log's length in
# $A0 and $E0
tunnel() {
	local name=$1 port=$2
	shift 2
	LP=$(tb_port)
	LOG=$TB_DIR/tunnel-$name.log
	"$SCAGENT" -v tunnel --listen "127.0.0.1:$LP" --cafile "$PKI/root.pem" --connect "localhost:$port" \
		"$@" >"$LOG" 2>&1 &
	TP=$!
	tb_track_pid $TP
	wait_port "$LP" || { show "$LOG"; bail_out "tunnel did not listen"; }
	A0=$(wc -l <"$AUDIT")
	E0=$(wc -l <"$ERRLOG")
}

untunnel() { kill $TP; wait $TP 2>/dev/null; }

URL=/Microsoft-Server-ActiveSync/
N=3
for v in 1.3 1.2; do
	# N requests, each on a new connection (curl once per request, no keep-alive)
	tunnel "new-$v" "$AP" --tls-max "$v"
	for i in $(seq $N); do curl -sS --max-time 30 --no-keepalive "http://127.0.0.1:$LP$URL"; done \
		>"$TB_DIR/body-new-$v" 2>&1
	n=$(signs "$A0")
	if [ "$(grep -c 'activesync ok' "$TB_DIR/body-new-$v")" = "$N" ]; then
		pass "Apache per path, TLS $v, $N new connections: answered"
	else
		fail "Apache per path, TLS $v: answers"; show "$TB_DIR/body-new-$v"
	fi
	offered=$(since "$LOG" 0 'offering the kept session of certificate "alice"')
	good=0
	if [ "$v" = 1.3 ]; then
		resumed=$(since "$LOG" 0 'session resumed: nothing signed')
		asked=$(since "$ERRLOG" "$E0" 'AH10129: verify client post handshake')
		what="the kept session offered and resumed $resumed times, Apache's post-handshake authentication $asked times"
		[ "$offered" = $((N - 1)) ] && [ "$resumed" = $((N - 1)) ] && [ "$asked" = "$N" ] && good=1
	else
		refused=$(since "$LOG" 0 'the server did not resume the session of "alice"')
		asked=$(since "$ERRLOG" "$E0" 'AH02260: Performing full renegotiation')
		what="the kept session offered $offered times and not resumed $refused times, Apache's full renegotiation $asked times"
		[ "$offered" = $((N - 1)) ] && [ "$refused" = $((N - 1)) ] && [ "$asked" = "$N" ] && good=1
	fi
	if [ "$good" = 1 ] && [ "$n" = "$N" ]; then
		pass "Apache per path, TLS $v: $n signatures for $N new connections, one per connection: $what"
	else
		fail "Apache per path, TLS $v: $n signatures for $N connections; $what"
		show "$LOG"; tail -n +"$((E0 + 1))" "$ERRLOG" | grep -v ssl_engine_io | show /dev/stdin
	fi
	untunnel

	# N requests on one connection: curl keeps it alive, the tunnel its upstream
	tunnel "alive-$v" "$AP" --tls-max "$v"
	args=()
	for i in $(seq $N); do args+=("http://127.0.0.1:$LP$URL"); done
	curl -sS --max-time 30 "${args[@]}" >"$TB_DIR/body-alive-$v" 2>&1
	n=$(signs "$A0")
	conns=$(since "$LOG" 0 'upstream localhost:[0-9]* up')
	if [ "$(grep -c 'activesync ok' "$TB_DIR/body-alive-$v")" = "$N" ] && [ "$n" = 1 ] && [ "$conns" = 1 ]; then
		pass "Apache per path, TLS $v: $N requests on one kept-alive connection, 1 signature"
	else
		fail "Apache per path, TLS $v, keep-alive: $n signatures, $conns upstream connections"
		show "$TB_DIR/body-alive-$v"; show "$LOG"
	fi
	untunnel

	# a server asking in the handshake resumes with the certificate
	tunnel "handshake-$v" "$HP" --tls-max "$v"
	for i in $(seq $N); do curl -sS --max-time 30 --no-keepalive "http://127.0.0.1:$LP$URL"; done \
		>"$TB_DIR/body-hs-$v" 2>&1
	n=$(signs "$A0")
	resumed=$(since "$LOG" 0 'session resumed: nothing signed')
	if [ "$(grep -c 'activesync ok' "$TB_DIR/body-hs-$v")" = "$N" ] && [ "$n" = 1 ] &&
		[ "$resumed" = $((N - 1)) ]; then
		pass "Apache asking in the handshake, TLS $v: 1 signature for $N new connections ($resumed resumed)"
	else
		fail "Apache in the handshake, TLS $v: $n signatures, $resumed resumed"
		show "$TB_DIR/body-hs-$v"; show "$LOG"
	fi
	untunnel
done
# Apache saw the card's certificate on every request
ok "Apache logged alice, verified, for every request to ActiveSync" \
	test "$(grep -c "200 $URL.*CN=alice,O=Contoso.* SUCCESS" "$TB_DIR/apache/logs/ssl.log")" = $((4 * N))
stop_agent
done_testing
