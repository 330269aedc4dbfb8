#!/bin/bash
# scagent probe: passes on s_server, nginx and Apache (TLS 1.2 and 1.3), and
# fails on broken set-ups with the right check id: untrusted chain, wrong
# name, wrong principal, no certificate for the CA list, server closing after
# the certificate, nothing listening.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tls/tls-common.sh"
tb_init
tls_agent
PKI=$TB_DIR/pki
SP=$(tb_port)
NP=$(tb_port)
AP=$(tb_port)
tb_s_server "$SP" -verify_return_error
tls_nginx main "$NP"
tls_apache "$AP"
CA=(--cafile "$PKI/root.pem")
out=$TB_DIR/out err=$TB_DIR/err

for v in 1.2 1.3; do
	probe 0 "client-cert-request=pass client-cert-match=pass client-auth=pass http=pass principal=skip pass" \
		"s_server TLS $v: all pass" "${CA[@]}" --tls-max "$v" "https://localhost:$SP/"
	probe 0 "client-cert-request=pass client-auth=pass http=pass pass" \
		"nginx TLS $v: all pass" "${CA[@]}" --tls-max "$v" "https://localhost:$NP/"
	probe 0 "client-cert-request=pass client-auth=pass http=pass pass" \
		"Apache ActiveSync TLS $v: all pass" "${CA[@]}" --tls-max "$v" \
		"https://localhost:$AP/Microsoft-Server-ActiveSync/"
done
# When the certificate is asked for
"$SCAGENT" probe --json "${CA[@]}" --tls-max 1.2 "https://localhost:$AP/Microsoft-Server-ActiveSync/" >"$out" 2>&1
ok "Apache TLS 1.2: requested after the request by renegotiation" grep -q 'requested after the request, by a TLS 1.2 renegotiation' "$out"
"$SCAGENT" probe --json "${CA[@]}" --tls-max 1.3 "https://localhost:$AP/Microsoft-Server-ActiveSync/" >"$out" 2>&1
ok "Apache TLS 1.3: requested by post-handshake authentication" grep -q 'post-handshake authentication' "$out"
"$SCAGENT" probe --json "${CA[@]}" "https://localhost:$NP/" >"$out" 2>&1
ok "nginx: requested in the handshake" grep -q 'requested in the handshake' "$out"
probe 0 "client-cert-request=warn client-cert-match=skip client-auth=skip http=pass pass" \
	"Apache /: no certificate asked is a warning" "${CA[@]}" "https://localhost:$AP/"
probe 0 "principal=pass pass" "principal msstd:localhost passes" \
	"${CA[@]}" --principal msstd:localhost "https://localhost:$SP/"

# Broken set-ups. A server that fails server-chain, server-name or principal
# gets no certificate: the later checks are skipped (connect-unverified.sh
# shows from the agent's audit log that nothing is signed).
LATER="client-cert-request=skip client-cert-match=skip client-auth=skip http=skip"
probe 1 "server-chain=fail $LATER fail" "untrusted server chain fails server-chain" "https://localhost:$SP/"
probe 1 "server-chain=pass server-name=fail $LATER fail" "wrong host name fails server-name" \
	"${CA[@]}" --resolve "mail.contoso.com:$NP:127.0.0.1" "https://mail.contoso.com:$NP/"
probe 1 "server-name=pass principal=fail $LATER fail" "wrong principal fails principal" \
	"${CA[@]}" --principal msstd:mail.contoso.com "https://localhost:$NP/"
alog=$TB_DIR/apache/logs/ssl.log
before=$(wc -l <"$alog")
probe 1 "server-chain=pass principal=fail $LATER fail" \
	"Apache ActiveSync TLS 1.3, wrong principal: no request sent, nothing offered" \
	"${CA[@]}" --tls-max 1.3 --principal msstd:mail.contoso.com \
	"https://localhost:$AP/Microsoft-Server-ActiveSync/"
if grep -q 'no HTTP request was sent to it' "$out" && [ "$(wc -l <"$alog")" = "$before" ]; then
	pass "wrong principal: http says no request was sent, and Apache logged none"
else
	fail "wrong principal: no request"; show "$out"; show "$alog"
fi
P2=$(tb_port)
openssl s_server -accept "127.0.0.1:$P2" -cert "$PKI/localhost.pem" -key "$PKI/localhost.key" \
	-cert_chain "$PKI/issuing.pem" -CAfile "$PKI/rogue.pem" -Verify 2 -www </dev/null \
	>"$TB_DIR/rogue-server.log" 2>&1 &
tb_track_pid $!
wait_port "$P2" || bail_out "s_server"
probe 1 "client-cert-request=pass client-cert-match=fail client-auth=skip fail" \
	"CA list naming only the rogue CA fails client-cert-match" "${CA[@]}" "https://localhost:$P2/"
grep -q 'Fabrikam Rogue CA' "$out" && pass "client-cert-request lists the acceptable CA" || fail "CA name in the output"
probe 1 "client-cert-match=pass client-auth=fail fail" "expired --cert fails client-auth" \
	"${CA[@]}" --cert expired --tls-max 1.2 "https://localhost:$SP/"
DEAD=$(tb_port)
probe 1 "resolve=pass tcp=fail tls-handshake=skip fail" "nothing listening fails tcp" \
	"${CA[@]}" "https://localhost:$DEAD/"
probe 1 "resolve=fail tcp=skip fail" "unresolvable name fails resolve" \
	"${CA[@]}" "https://no-such-host.invalid:$NP/"
# Text output
rc=0
"$SCAGENT" probe "${CA[@]}" "https://localhost:$NP/" >"$out" 2>&1 || rc=$?
if [ "$rc" = 0 ] && grep -q '^  PASS  client-auth' "$out" && grep -q '^result: pass' "$out"; then
	pass "text output"
else
	fail "text output (rc=$rc)"; show "$out"
fi
stop_agent
done_testing
