#!/bin/bash
# No card signature for a server that failed its checks. Servers that ask for
# a client certificate in the handshake, with a self-signed certificate, a
# certificate for another name, an expired certificate, or a good one and a
# --principal that does not match: probe fails that check, skips the later
# ones and result is fail; connect fails with one clear line; the agent's
# audit log shows no signature (not even a refused one). A good server still
# gets exactly one signature per connection. And --cert REF naming nothing,
# or more than one certificate, is an error listing the candidates before
# any connection: connect and probe reach no server, tunnel never listens.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tls/tls-common.sh"
tb_init
tls_card
AUDIT=$TB_DIR/audit.log
start_agent --module "$TB_SOFTHSM" --audit-log "$AUDIT"
echo "$TB_PIN" | "$SCAGENT" login --token demo --pin-stdin 2>/dev/null ||
	bail_out "login failed"
PKI=$TB_DIR/pki
CA=(--cafile "$PKI/root.pem")
out=$TB_DIR/out err=$TB_DIR/err

# signs: how many signatures (made or refused) the agent's audit log holds
signs() { grep -c ' sign ' "$AUDIT"; }

# server PORT CERT KEY [CHAIN]: s_server requiring a Contoso client
# certificate in the handshake, with this server certificate
server() {
	local port=$1 cert=$2 key=$3 chain=${4:-}
	openssl s_server -accept "127.0.0.1:$port" -cert "$cert" -key "$key" \
		${chain:+-cert_chain "$chain"} -CAfile "$PKI/ca-chain.pem" -Verify 2 -www \
		</dev/null >"$TB_DIR/s_server-$port.log" 2>&1 &
	tb_track_pid $!
	wait_port "$port" || { cat "$TB_DIR/s_server-$port.log" >&2; bail_out "s_server on $port"; }
}

GOOD=$(tb_port) SELF=$(tb_port) WRONG=$(tb_port) EXPIRED=$(tb_port)
tb_s_server "$GOOD"
_tb_run openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/self.key" -out "$PKI/self.pem" \
	-days 30 -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"
server "$SELF" "$PKI/self.pem" "$PKI/self.key"
tb_server_cert fabrikam DNS:mail.fabrikam.com
server "$WRONG" "$PKI/fabrikam.pem" "$PKI/fabrikam.key" "$PKI/issuing.pem"
TB_CERT_START="-400 days" TB_CERT_END="-1 day" tb_server_cert expiredsrv DNS:localhost IP:127.0.0.1
server "$EXPIRED" "$PKI/expiredsrv.pem" "$PKI/expiredsrv.key" "$PKI/issuing.pem"

# Each bad server: what, port, failing check, what connect's error says, extra options
cases=(
	"self-signed|$SELF|server-chain|not trusted: self-signed certificate|"
	"wrong name|$WRONG|server-name|not for localhost (it names fabrikam, mail.fabrikam.com)|"
	"expired|$EXPIRED|server-chain|not trusted: certificate has expired|"
	"principal mismatch|$GOOD|principal|msstd:WRONG does not match the server certificate|--principal msstd:WRONG"
)
for v in 1.2 1.3; do
	for c in "${cases[@]}"; do
		IFS='|' read -r what port id msg extra <<<"$c"
		# shellcheck disable=SC2086 # $extra: zero or two words
		set -- "${CA[@]}" --tls-max "$v" $extra "https://localhost:$port/"
		before=$(signs)
		probe 1 "$id=fail client-cert-request=skip client-cert-match=skip client-auth=skip http=skip fail" \
			"probe TLS $v, $what: $id fails, the later checks are skipped" "$@"
		if grep -q 'no certificate was offered to it and nothing was signed' "$out" &&
			[ "$(signs)" = "$before" ]; then
			pass "probe TLS $v, $what: no signature in the audit log, client-auth says why"
		else
			fail "probe TLS $v, $what: signatures $before -> $(signs)"; show "$out"; show "$AUDIT"
		fi
		rc=0
		"$SCAGENT" -v connect "$@" >"$out" 2>"$err" || rc=$?
		if [ "$rc" = 1 ] && grep -q "^scagent: .*$msg" "$err" && grep -q '^scagent: advice:' "$err" &&
			! grep -q 'sending certificate' "$err" && [ "$(signs)" = "$before" ]; then
			pass "connect TLS $v, $what: exit 1, clear error, no certificate sent, no signature"
		else
			fail "connect TLS $v, $what (rc=$rc, signatures $before -> $(signs))"; show "$err"
		fi
	done
done
ok "no signature attempt at all so far" [ "$(signs)" = 0 ]

# The good server: exactly one signature per connection.
for v in 1.2 1.3; do
	before=$(signs)
	probe 0 "server-chain=pass server-name=pass principal=pass client-auth=pass http=pass pass" \
		"probe TLS $v, good server, matching principal: all pass" \
		"${CA[@]}" --tls-max "$v" --principal msstd:localhost "https://localhost:$GOOD/"
	ok "probe TLS $v, good server: exactly one signature, made" \
		test "$(signs)" = $((before + 1)) -a "$(tail -n 1 "$AUDIT" | grep -c ' sign .*result=ok')" = 1
	before=$(signs)
	rc=0
	"$SCAGENT" connect "${CA[@]}" --tls-max "$v" --principal msstd:localhost \
		"https://localhost:$GOOD/" >"$out" 2>"$err" || rc=$?
	ok "connect TLS $v, good server: the page, exactly one signature" \
		test "$rc" = 0 -a "$(signs)" = $((before + 1)) -a "$(grep -c "Protocol  : TLSv$v" "$out")" = 1
done

# --cert REF that names nothing or more than one certificate: an error with
# the candidates, before any connection. A listener records every connection.
LP=$(tb_port)
python3 - "$LP" "$TB_DIR/accepted" <<'PY' &
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(5)
while True:
    s, peer = srv.accept()
    open(sys.argv[2], "a").write("connection from %s:%d\n" % peer)
    s.close()
PY
tb_track_pid $!
wait_port "$LP" || bail_out "listener"
: >"$TB_DIR/accepted"
for ref in nosuch 'pkcs11:token=demo;type=cert'; do
	for cmd in connect probe; do
		rc=0
		"$SCAGENT" "$cmd" "${CA[@]}" --cert "$ref" "https://localhost:$LP/" >"$out" 2>"$err" || rc=$?
		if [ "$rc" = 1 ] && [ "$(wc -l <"$err")" = 1 ] && grep -q '^scagent: --cert: ' "$err" &&
			grep -q 'alice (' "$err" && grep -q 'bob (' "$err" && [ ! -s "$TB_DIR/accepted" ]; then
			pass "$cmd --cert $ref: exit 1, one line listing the candidates, no connection"
		else
			fail "$cmd --cert $ref (rc=$rc)"; show "$err"; show "$TB_DIR/accepted"
		fi
	done
	TP=$(tb_port)
	rc=0
	timeout 20 "$SCAGENT" tunnel --listen "127.0.0.1:$TP" --connect "localhost:$LP" "${CA[@]}" \
		--cert "$ref" >"$out" 2>"$err" || rc=$?
	if [ "$rc" = 1 ] && grep -q '^scagent: --cert: ' "$err" && grep -q 'alice (' "$err" &&
		! grep -q 'listening on' "$err" && [ ! -s "$TB_DIR/accepted" ]; then
		pass "tunnel --cert $ref: exit 1 with the candidates, never listens"
	else
		fail "tunnel --cert $ref (rc=$rc)"; show "$err"
	fi
done
grep -q 'matches more than one certificate' "$err" &&
	pass "an ambiguous REF says so" || { fail "an ambiguous REF says so"; show "$err"; }
# A REF that names one certificate, by fingerprint prefix, is used.
fp=$("$SCAGENT" list --json | python3 -c 'import json,sys
print([c["sha256"] for t in json.load(sys.stdin)["tokens"] for c in t["certificates"] if c["label"] == "bob"][0])')
rc=0
"$SCAGENT" -v connect "${CA[@]}" --cert "${fp:0:12}" "https://localhost:$GOOD/" >"$out" 2>"$err" || rc=$?
ok "--cert FINGERPRINT-PREFIX: bob is sent" test "$rc" = 0 -a "$(grep -c 'sending certificate "bob"' "$err")" -ge 1
# No agent: exit 3 before any connection.
rc=0
"$SCAGENT" --socket "$TB_DIR/no-agent.sock" connect "${CA[@]}" --cert alice "https://localhost:$LP/" \
	>"$out" 2>"$err" || rc=$?
ok "--cert with no agent: exit 3, no connection" test "$rc" = 3 -a ! -s "$TB_DIR/accepted"
stop_agent
done_testing
