#!/bin/bash
# scagent connect against nginx (ssl_verify_client on) and Apache httpd that
# asks for the certificate only under /Microsoft-Server-ActiveSync (TLS 1.2:
# renegotiation; TLS 1.3: post-handshake authentication), with RSA and EC
# keys on SoftHSM; the servers' logs show who signed in and over what.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tls/tls-common.sh"
tb_init
tls_agent
PKI=$TB_DIR/pki
NP=$(tb_port)
AP=$(tb_port)
tls_nginx main "$NP" 'location /iis { return 403 "HTTP Error 403.7 - Forbidden: the page requires a client certificate"; }'
tls_apache "$AP"
CA=(--cafile "$PKI/root.pem")
out=$TB_DIR/out err=$TB_DIR/err
connect() { rc=0; "$SCAGENT" "$@" >"$out" 2>"$err" || rc=$?; }

for v in 1.2 1.3; do
	for who in alice bob; do
		connect connect "${CA[@]}" --tls-max "$v" --cert "$who" "https://localhost:$NP/"
		sleep 0.2
		if [ "$rc" = 0 ] && grep -q 'hello from nginx main' "$out" &&
			tail -n 1 "$TB_DIR/nginx-main/logs/access.log" | grep -q "^TLSv$v 200 \"CN=$who,O=Contoso\" SUCCESS"; then
			pass "nginx, TLS $v, $who: page fetched, nginx logged the certificate"
		else
			fail "nginx TLS $v $who (rc=$rc)"; show "$err"; tail -n 2 "$TB_DIR/nginx-main/logs/access.log" >&2
		fi
	done
done
# -i, -X, -H, -d: nginx answers a POST to a static file with 405
connect connect "${CA[@]}" -i -X POST -H 'X-Test: 1' -d 'a=b' "https://localhost:$NP/"
if [ "$rc" = 1 ] && grep -q '^HTTP/1.1 405' "$out" && grep -q 'HTTP 405' "$err"; then
	pass "POST with -i: headers on stdout, 405 is exit 1"
else
	fail "POST -i (rc=$rc)"; show "$err"
fi
connect connect "${CA[@]}" -o "$TB_DIR/page.html" "https://localhost:$NP/index.html"
ok "-o writes the body to a file" grep -q 'hello from nginx main' "$TB_DIR/page.html"

# Apache: the public page needs no certificate...
connect -v connect "${CA[@]}" "https://localhost:$AP/"
if [ "$rc" = 0 ] && grep -q 'apache public page' "$out" && grep -q 'did not ask for a client certificate' "$err"; then
	pass "Apache /: no certificate asked, page fetched"
else
	fail "Apache / (rc=$rc)"; show "$err"
fi
# ...ActiveSync does, after the request.
for v in 1.2 1.3; do
	if [ "$v" = 1.2 ]; then how="renegotiation"; else how="post-handshake authentication"; fi
	for who in alice bob; do
		connect -v connect "${CA[@]}" --tls-max "$v" --cert "$who" \
			"https://localhost:$AP/Microsoft-Server-ActiveSync/"
		sleep 0.2
		if [ "$rc" = 0 ] && grep -q 'activesync ok' "$out" && grep -q "after the request, by .*$how" "$err" &&
			tail -n 1 "$TB_DIR/apache/logs/ssl.log" | grep -q "^TLSv$v 200 /Microsoft-Server-ActiveSync/.*CN=$who,O=Contoso\" SUCCESS"; then
			pass "Apache ActiveSync, TLS $v, $who: certificate by $how, Apache logged it"
		else
			fail "Apache ActiveSync TLS $v $who (rc=$rc)"; show "$err"; tail -n 2 "$TB_DIR/apache/logs/ssl.log" >&2
		fi
	done
done
# The token signed with PSS for RSA over TLS 1.3 (post-handshake).
ok "the agent signed rsa-pss-sha256 for alice" grep -q 'alg=rsa-pss-sha256' "$AGENT_LOG"
# Automatic choice on renegotiation with a POST body.
connect connect "${CA[@]}" --tls-max 1.2 -d 'x=1' "https://localhost:$AP/Microsoft-Server-ActiveSync/"
if [ "$rc" = 0 ] && grep -q 'activesync ok' "$out"; then
	pass "POST with a body over TLS 1.2 renegotiation, certificate chosen automatically"
else
	fail "POST over renegotiation (rc=$rc)"; show "$err"
fi
# A body too large for the renegotiation buffer: 413 with the IIS advice.
head -c 5000 /dev/zero | tr '\0' 'a' >"$TB_DIR/big.txt"
connect connect "${CA[@]}" --tls-max 1.2 -d @"$TB_DIR/big.txt" "https://localhost:$AP/Microsoft-Server-ActiveSync/"
if [ "$rc" = 1 ] && grep -q 'HTTP 413' "$err" && grep -q 'uploadReadAheadSize' "$err"; then
	pass "413 after renegotiation: advice about uploadReadAheadSize"
else
	fail "413 after renegotiation (rc=$rc)"; show "$err"
fi
# A 403.7 page (as IIS sends): exit 1 with advice.
connect connect "${CA[@]}" "https://localhost:$NP/iis"
if [ "$rc" = 1 ] && grep -q 'HTTP 403' "$err" && grep -q 'advice: 403.7' "$err"; then
	pass "403.7: advice about the client certificate"
else
	fail "403.7 (rc=$rc)"; show "$err"
fi
stop_agent
done_testing
