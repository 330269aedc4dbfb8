#!/bin/bash
# scagent connect against openssl s_server -Verify 2 (certificate required in
# the handshake): RSA and EC keys on SoftHSM over TLS 1.2 and 1.3, chosen
# automatically or with --cert; the server's trace shows RSA-PSS for RSA over
# TLS 1.3; and the failures: untrusted server, wrong host name, wrong
# principal, expired client certificate, no certificate for the server's CA
# list, server closing after the certificate.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tls/tls-common.sh"
tb_init
tls_agent
PKI=$TB_DIR/pki
P=$(tb_port)
tb_s_server "$P" -trace -verify_return_error
URL=https://localhost:$P/
CA=(--cafile "$PKI/root.pem")
out=$TB_DIR/out err=$TB_DIR/err

# connect [args...]: run scagent connect, body in $out, stderr in $err; sets rc
connect() { rc=0; "$SCAGENT" "$@" >"$out" 2>"$err" || rc=$?; }

for v in 1.2 1.3; do
	for who in alice bob; do
		connect -v connect "${CA[@]}" --tls-max "$v" --cert "$who" "$URL"
		if [ "$rc" = 0 ] && grep -q "Protocol  : TLSv$v" "$out" &&
			grep -q "client certificate $who" "$err"; then
			pass "TLS $v with --cert $who: page fetched"
		else
			fail "TLS $v with --cert $who (rc=$rc)"; show "$err"; head -c 400 "$out" >&2
		fi
	done
done
# The s_server trace shows the CertificateVerify scheme: PSS for RSA in TLS 1.3.
: >"$TB_DIR/s_server-$P.log.mark"
connect connect "${CA[@]}" --tls-max 1.3 --cert alice "$URL"
# s_server writes its trace when it gets round to it: on a busy machine, later.
cv_pss() { grep -A8 'CertificateVerify' "$TB_DIR/s_server-$P.log" | grep -q 'rsa_pss_rsae_sha256'; }
if [ "$rc" = 0 ] && wait_for 10 cv_pss; then
	pass "TLS 1.3 RSA client signature is rsa_pss_rsae_sha256 (server trace)"
else
	fail "no rsa_pss_rsae_sha256 CertificateVerify in the s_server trace"
	grep -A8 'CertificateVerify' "$TB_DIR/s_server-$P.log" | head -20 >&2
fi
ok "the agent was asked for rsa-pss-sha256" grep -q 'alg=rsa-pss-sha256' "$AGENT_LOG"
connect connect "${CA[@]}" --tls-max 1.2 --cert alice "$URL"
cv_seen() { grep -A8 'CertificateVerify' "$TB_DIR/s_server-$P.log" | grep -q 'Signature Algorithm'; }
if [ "$rc" = 0 ] && wait_for 10 cv_seen; then
	pass "TLS 1.2 RSA CertificateVerify seen by the server"
else
	fail "TLS 1.2 RSA"; show "$err"
fi

# Automatic choice: expired skipped, alice or bob chosen.
connect -v connect "${CA[@]}" "$URL"
if [ "$rc" = 0 ] && grep -q 'skipped "expired".*expired' "$err" && grep -Eq 'chose "(alice|bob)"' "$err"; then
	pass "automatic choice skips the expired certificate and explains it"
else
	fail "automatic choice (rc=$rc)"; show "$err"
fi

# Untrusted server: no --cafile (the Contoso root is not in the system store).
connect connect "$URL"
if [ "$rc" = 1 ] && grep -q 'not trusted' "$err" && grep -q -- '--cafile' "$err"; then
	pass "untrusted server certificate: exit 1 with advice to install the root or use --cafile"
else
	fail "untrusted server (rc=$rc)"; show "$err"
fi
# Wrong host name (the certificate is for localhost and 127.0.0.1).
connect connect "${CA[@]}" --resolve "mail.contoso.com:$P:127.0.0.1" "https://mail.contoso.com:$P/"
if [ "$rc" = 1 ] && grep -q 'not for mail.contoso.com' "$err" && grep -q 'localhost' "$err"; then
	pass "wrong host name: exit 1, names what the certificate is for"
else
	fail "wrong host name (rc=$rc)"; show "$err"
fi
# --resolve with the right name works
connect connect "${CA[@]}" --resolve "localhost:$P:127.0.0.1" "$URL"
ok "--resolve HOST:PORT:ADDR" [ "$rc" = 0 ]
# Principal: right, wrong, usage
connect connect "${CA[@]}" --principal msstd:localhost "$URL"
ok "--principal msstd:localhost matches" [ "$rc" = 0 ]
connect connect "${CA[@]}" --principal msstd:mail.contoso.com "$URL"
if [ "$rc" = 1 ] && grep -q 'msstd:mail.contoso.com does not match' "$err"; then
	pass "wrong --principal: exit 1"
else
	fail "wrong principal (rc=$rc)"; show "$err"
fi
connect connect "${CA[@]}" --principal mail.contoso.com "$URL"
ok "--principal without msstd: is a usage error" [ "$rc" = 2 ]
# Expired client certificate, forced with --cert: the server refuses it.
connect connect "${CA[@]}" --tls-max 1.2 --cert expired "$URL"
if [ "$rc" = 1 ] && grep -q 'rejected the client certificate "expired"' "$err" &&
	grep -q -i 'expired' "$err"; then
	pass "expired client certificate: the server's alert is reported"
else
	fail "expired client certificate (rc=$rc)"; show "$err"
fi
connect connect "${CA[@]}" --tls-max 1.3 --cert expired "$URL"
if [ "$rc" = 1 ] && grep -q 'rejected the client certificate "expired"' "$err"; then
	pass "expired client certificate over TLS 1.3 (alert after the handshake)"
else
	fail "expired client certificate TLS 1.3 (rc=$rc)"; show "$err"
fi

# A server whose CA list names only the rogue CA: nothing fits.
P2=$(tb_port)
openssl s_server -accept "127.0.0.1:$P2" -cert "$PKI/localhost.pem" -key "$PKI/localhost.key" \
	-cert_chain "$PKI/issuing.pem" -CAfile "$PKI/rogue.pem" -Verify 2 -www </dev/null \
	>"$TB_DIR/rogue-server.log" 2>&1 &
tb_track_pid $!
wait_port "$P2" || bail_out "s_server"
for v in 1.2 1.3; do
	connect connect "${CA[@]}" --tls-max "$v" "https://localhost:$P2/"
	if [ "$rc" = 1 ] && grep -q 'none of the 3 certificates' "$err" && grep -q 'expired (not suitable' "$err" &&
		grep -q 'Fabrikam Rogue CA' "$err"; then
		pass "TLS $v: no certificate for the server's CA list: says which CAs it accepts"
	else
		fail "no matching certificate TLS $v (rc=$rc)"; show "$err"
	fi
done

# A server that closes the connection after it got the certificate.
P3=$(tb_port)
python3 - "$P3" "$PKI" >"$TB_DIR/closer.log" 2>&1 <<'PY' &
import socket, ssl, sys
port, pki = int(sys.argv[1]), sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(pki + "/localhost-chain.pem", pki + "/localhost.key")
ctx.load_verify_locations(pki + "/ca-chain.pem")
ctx.verify_mode = ssl.CERT_REQUIRED
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(5)
while True:
    s, _ = srv.accept()
    try:
        t = ctx.wrap_socket(s, server_side=True)
        print("got", t.getpeercert()["subject"], flush=True)
        t.recv(100)
        # drop the TCP connection: no alert, no close_notify, no answer
        socket.socket(fileno=t.detach()).close()
    except Exception as e:
        print("error", e, flush=True)
        s.close()
PY
tb_track_pid $!
wait_port "$P3" || { cat "$TB_DIR/closer.log"; bail_out "python server"; }
for v in 1.2 1.3; do
	connect connect "${CA[@]}" --tls-max "$v" "https://localhost:$P3/"
	if [ "$rc" = 1 ] && grep -Eq 'closed the connection.*client certificate "(alice|bob)"' "$err" &&
		grep -q 'advice:' "$err"; then
		pass "TLS $v: server closing after the certificate is diagnosed"
	else
		fail "server closing after the certificate TLS $v (rc=$rc)"; show "$err"
	fi
done

# The token logged out: the command says to log in; no agent: exit 3.
"$SCAGENT" logout --token demo 2>/dev/null
connect connect "${CA[@]}" "$URL"
if [ "$rc" = 1 ] && grep -q 'scagent login --token demo' "$err"; then
	pass "token not logged in: says to run scagent login"
else
	fail "not logged in (rc=$rc)"; show "$err"
fi
connect --socket "$TB_DIR/no-agent.sock" connect "${CA[@]}" "$URL"
if [ "$rc" = 3 ] && grep -q 'agent is unreachable' "$err"; then
	pass "no agent: exit 3"
else
	fail "no agent (rc=$rc)"; show "$err"
fi
stop_agent
done_testing
