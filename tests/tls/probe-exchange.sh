#!/bin/bash
# scagent probe as an Exchange administrator's analyzer (issue 23): the
# server chain's failure codes (a leaf-only nginx: incomplete-chain), Accept
# vs Require (client-cert-required), IIS's 403.x pages and a 401 after the
# certificate as codes (403.7 cert-required too), a not-yet-valid server
# certificate, the reason a certificate does not fit said without
# -v, and `probe --exchange` sweeping the virtual directories of an Apache
# laid out as an Exchange server's IIS.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tls/tls-common.sh"
tb_init
tls_agent
PKI=$TB_DIR/pki
AP=$(tb_port)
NP=$(tb_port)
LP=$(tb_port)
OP=$(tb_port)
SP=$(tb_port)
tls_apache_exchange "$AP"
tls_nginx require "$NP"
NGINX_CERT=$PKI/localhost.pem tls_nginx leaf "$LP"
NGINX_VERIFY=optional tls_nginx optional "$OP"
tb_s_server "$SP" -client_sigalgs RSA+SHA256:ECDSA+SHA256
CA=(--cafile "$PKI/root.pem")
out=$TB_DIR/out err=$TB_DIR/err

# pcode EXPECTED-RC 'id=status[:code]...' what probe-args...: probe (the
# shape checked by tls-common's probe) and each check's status and code.
pcode() {
	local want_rc=$1 want=$2 what=$3 got
	shift 3
	probe "$want_rc" "" "$what: shape" "$@"
	got=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join("%s=%s%s" % (c["id"], c["status"], ":" + c["code"] if "code" in c else "")
               for c in d["checks"]))' "$out" 2>&1)
	local bad=0 w
	for w in $want; do case " $got " in *" $w "*) ;; *) bad=1 ;; esac; done
	if [ "$bad" = 0 ]; then pass "$what"; else fail "$what ($got)"; show "$out"; fi
}

# jcheck WHAT 'PYTHON-ASSERTS': the asserts on c, the checks of $out by id
jcheck() {
	if python3 -c "import json, sys
c = {x['id']: x for x in json.load(open(sys.argv[1]))['checks']}
$2" "$out"; then pass "$1"; else fail "$1"; show "$out"; fi
}

# human WHAT 'PATTERN|...' probe-args...: the human report exits 1 and has every
# PATTERN (grep regexes, separated by |)
human() {
	local what=$1 pats=$2 rc=0 bad=0 pat
	shift 2
	"$SCAGENT" probe "$@" >"$out" 2>&1 || rc=$?
	IFS='|' read -ra pats <<<"$pats"
	for pat in "${pats[@]}" '^result: fail'; do grep -q "$pat" "$out" || bad=1; done
	if [ "$rc" = 1 ] && [ "$bad" = 0 ]; then pass "$what"; else fail "$what (rc=$rc)"; show "$out"; fi
}

# ---- server chain codes
pcode 1 "server-chain=fail:incomplete-chain client-auth=skip" \
	"leaf-only nginx, root trusted: incomplete-chain" "${CA[@]}" "https://localhost:$LP/"
if grep -q 'no intermediate CA among them' "$out" && grep -q 'Intermediate Certification Authorities' "$out" &&
	! grep -qi 'install that CA.s root' "$out"; then
	pass "leaf-only: the advice is about the intermediate, not the root"
else
	fail "leaf-only advice"; show "$out"
fi
pcode 0 "server-chain=warn:incomplete-chain client-auth=pass" \
	"leaf-only nginx, intermediate in --cafile: verified, incomplete-chain warns" \
	--cafile "$PKI/ca-chain.pem" "https://localhost:$LP/"
if grep -q 'completes only from --cafile' "$out"; then pass "the detail says where the chain completed"
else fail "completion path"; show "$out"; fi
pcode 1 "server-chain=fail:untrusted-root" "root not trusted: untrusted-root" "https://localhost:$NP/"
pcode 1 "server-chain=pass server-name=fail:wrong-name" "another name: wrong-name" \
	"${CA[@]}" --resolve "mail.contoso.com:$NP:127.0.0.1" "https://mail.contoso.com:$NP/"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TB_DIR/self.key" -out "$TB_DIR/self.pem" \
	-subj /CN=localhost -days 2 -addext subjectAltName=DNS:localhost >/dev/null 2>&1
XP=$(tb_port)
openssl s_server -accept "127.0.0.1:$XP" -cert "$TB_DIR/self.pem" -key "$TB_DIR/self.key" -www \
	</dev/null >"$TB_DIR/self-server.log" 2>&1 &
tb_track_pid $!
wait_port "$XP" || bail_out "s_server"
pcode 1 "server-chain=fail:self-signed" "self-signed server: self-signed" "${CA[@]}" "https://localhost:$XP/"
TB_CERT_START="-400 days" TB_CERT_END="-1 day" tb_server_cert old DNS:localhost
# serve NAME: an s_server with $PKI/NAME.pem and the issuing CA; its port in $SRV
serve() {
	SRV=$(tb_port)
	openssl s_server -accept "127.0.0.1:$SRV" -cert "$PKI/$1.pem" -key "$PKI/$1.key" \
		-cert_chain "$PKI/issuing.pem" -www </dev/null >"$TB_DIR/$1-server.log" 2>&1 &
	tb_track_pid $!
	wait_port "$SRV" || bail_out "s_server"
}
serve old
EP=$SRV
pcode 1 "server-chain=fail:expired" "expired server certificate: expired" "${CA[@]}" "https://localhost:$EP/"
TB_CERT_START="+2 days" TB_CERT_END="+400 days" tb_server_cert future DNS:localhost
serve future
FP=$SRV
pcode 1 "server-chain=fail:not-yet-valid client-cert-request=skip client-auth=skip http=skip" \
	"server certificate valid from the day after tomorrow: not-yet-valid" "${CA[@]}" "https://localhost:$FP/"
jcheck "not-yet-valid --json: the advice is about the clocks and the start date" \
	'assert "not valid yet" in c["server-chain"]["advice"] and "clocks" in c["server-chain"]["advice"]'
human "not-yet-valid, human report: FAIL server-chain with the code and its advice" \
	'^  FAIL  server-chain|not-yet-valid|check the clocks' "${CA[@]}" "https://localhost:$FP/"

# ---- the reason no certificate fits, without -v
pcode 1 "client-cert-match=fail" "TLS 1.3 server without RSA-PSS, --cert alice (RSA)" \
	"${CA[@]}" --cert alice "https://localhost:$SP/"
if grep -q 'rsa_pkcs1_sha256, ecdsa_secp256r1_sha256' "$out" && grep -q 'CAs CN=Contoso Issuing CA' "$out" &&
	grep -q 'RSA-PSS' "$out"; then
	pass "no -v: the detail names the schemes and CAs asked for, the advice RSA-PSS"
else
	fail "reason without -v"; show "$out"
fi

# ---- Accept vs Require
for v in 1.2 1.3; do
	pcode 0 "client-cert-request=pass client-cert-required=warn:cert-optional client-auth=pass" \
		"nginx ssl_verify_client optional, TLS $v: cert-optional" "${CA[@]}" --tls-max "$v" "https://localhost:$OP/"
	pcode 0 "client-cert-required=pass client-auth=pass http=pass" \
		"nginx ssl_verify_client on, TLS $v: required" "${CA[@]}" --tls-max "$v" "https://localhost:$NP/"
	pcode 0 "client-cert-required=warn:cert-optional client-auth=pass" \
		"Apache SSLVerifyClient optional (/ecp/), TLS $v: cert-optional" "${CA[@]}" --tls-max "$v" \
		"https://localhost:$AP/ecp/"
	pcode 0 "client-cert-required=pass client-auth=pass http=pass" \
		"Apache require (/Microsoft-Server-ActiveSync/), TLS $v: required" "${CA[@]}" --tls-max "$v" \
		"https://localhost:$AP/Microsoft-Server-ActiveSync/"
done
"$SCAGENT" probe "${CA[@]}" "https://localhost:$OP/" >"$out" 2>&1
ok "the human report of an optional certificate advises 'Accept' -> 'Require'" \
	grep -q "'Accept' -> 'Require'" "$out"

# ---- HTTP outcomes after the certificate
code=$(curl -sS --cacert "$PKI/root.pem" -o "$TB_DIR/body" -w '%{http_code}' "https://localhost:$AP/iis/403.7/")
if [ "$code" = 403 ] && grep -q '403.7 - Forbidden' "$TB_DIR/body"; then
	pass "the fixture's /iis/403.7/ answers IIS's 403.7 page to a client without a certificate"
else
	fail "fixture 403.7 ($code)"; show "$TB_DIR/body"
fi
for v in 1.2 1.3; do
	pcode 1 "client-auth=fail:cert-untrusted http=fail:cert-untrusted" "IIS 403.16 page, TLS $v" \
		"${CA[@]}" --tls-max "$v" "https://localhost:$AP/EWS/Exchange.asmx"
	pcode 1 "client-cert-required=pass client-auth=fail:cert-required http=fail:cert-required" \
		"IIS 403.7 page, TLS $v: cert-required" "${CA[@]}" --tls-max "$v" "https://localhost:$AP/iis/403.7/"
	jcheck "403.7, TLS $v --json: the detail names 403.7, the advice is cert-required's" '
for i in ("client-auth", "http"):
    assert "403.7, client certificate required" in c[i]["detail"], c[i]
    assert "IIS wants a client certificate" in c[i]["advice"], c[i]'
done
human "403.7, human report: FAIL client-auth with the code cert-required and its advice" \
	'^  FAIL  client-auth.*403.7, client certificate required|cert-required|IIS wants a client certificate' \
	"${CA[@]}" "https://localhost:$AP/iis/403.7/"
pcode 1 "client-auth=fail:cert-revoked" "IIS 403.13 page" "${CA[@]}" "https://localhost:$AP/iis/403.13/"
pcode 1 "client-auth=fail:cert-expired" "IIS 403.17 page" "${CA[@]}" "https://localhost:$AP/iis/403.17/"
pcode 1 "client-auth=fail:not-mapped http=fail:not-mapped" "401 after the certificate: not-mapped" \
	"${CA[@]}" "https://localhost:$AP/mapi/"
if grep -q 'UPN' "$out"; then pass "not-mapped advice names the UPN"
else fail "not-mapped advice"; show "$out"; fi

# ---- the sweep
cat >"$TB_DIR/expected-1.2" <<-'TAB'
	PATH CERT REQUESTED WITHOUT WITH RESULT
	/autodiscover/autodiscover.xml none never 200 - warn
	/owa/ none never 200 - warn
	/ecp/ accept renegotiation 200 200 warn
	/EWS/Exchange.asmx require renegotiation - 403 fail
	/Microsoft-Server-ActiveSync require renegotiation - 301 pass
	/mapi/ require renegotiation - 401 fail
	/rpc/rpcproxy.dll none never 404 - warn
	/OAB/ require renegotiation - 200 pass
	/iis/403.17/ require renegotiation - 403 fail
TAB
sed 's/renegotiation/post-handshake/' "$TB_DIR/expected-1.2" >"$TB_DIR/expected-1.3"
for v in 1.2 1.3; do
	rc=0
	"$SCAGENT" probe "${CA[@]}" --tls-max "$v" --exchange "localhost:$AP" --path /iis/403.17/ \
		>"$out" 2>"$err" || rc=$?
	sed -n '/^PATH/,/^card signatures/p' "$out" | sed '$d' | awk '{print $1, $2, $3, $4, $5, $6}' >"$TB_DIR/got"
	if [ "$rc" = 1 ] && diff -u "$TB_DIR/expected-$v" "$TB_DIR/got" >"$TB_DIR/diff" &&
		grep -q '^result: fail' "$out"; then
		pass "sweep, Apache as Exchange, TLS $v: the table is the expected one, exit 1"
	else
		fail "sweep TLS $v (rc=$rc)"; show "$TB_DIR/diff"; show "$out"; show "$err"
	fi
done
rc=0
"$SCAGENT" probe "${CA[@]}" --exchange "localhost:$AP" --json >"$out" 2>"$err" || rc=$?
if [ "$rc" = 1 ] && python3 - "$out" <<-'PY'
	import json, sys
	d = json.load(open(sys.argv[1]))
	assert d["host"].startswith("localhost:") and d["result"] == "fail"
	ep = {e["path"]: e for e in d["endpoints"]}
	assert len(ep) == 8, ep.keys()
	for e in d["endpoints"]:
	    assert set(e) >= {"path", "client_cert", "requested", "status_without_cert",
	                      "status_with_cert", "result", "advice"}, e
	a = ep["/Microsoft-Server-ActiveSync"]
	assert (a["client_cert"], a["requested"], a["status_without_cert"], a["result"]) == \
	    ("require", "post-handshake", None, "pass"), a
	e = ep["/ecp/"]
	assert (e["client_cert"], e["code"], e["status_without_cert"]) == ("accept", "cert-optional", 200), e
	assert ep["/EWS/Exchange.asmx"]["code"] == "cert-untrusted"
	assert ep["/mapi/"]["code"] == "not-mapped" and ep["/mapi/"]["status_with_cert"] == 401
	assert ep["/owa/"]["client_cert"] == "none" and ep["/owa/"]["status_with_cert"] is None
	PY
then pass "sweep --json: fields and values per endpoint"; else fail "sweep --json (rc=$rc)"; show "$out"; fi

# nginx asks in the handshake and resumes sessions: one signature for the sweep
for v in 1.2 1.3; do
	before=$(wc -l <"$TB_DIR/nginx-require/logs/access.log")
	rc=0
	"$SCAGENT" probe "${CA[@]}" --tls-max "$v" --exchange "localhost:$NP" --json >"$out" 2>"$err" || rc=$?
	sleep 0.2
	withcert=$(tail -n +"$((before + 1))" "$TB_DIR/nginx-require/logs/access.log" | grep -c 'CN=bob,O=Contoso\|CN=alice,O=Contoso')
	sigs=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["signatures"], {e["client_cert"] for e in d["endpoints"]}, d["result"])' "$out" 2>&1)
	if [ "$withcert" = 8 ] && [ "$sigs" = "1 {'require'} warn" ] && [ "$rc" = 0 ]; then
		pass "sweep of nginx, TLS $v: 8 requests with the certificate, one card signature"
	else
		fail "sweep nginx TLS $v (rc=$rc, $withcert with cert, $sigs)"; show "$out"; show "$err"
	fi
done
# a doubtful server gets nothing: no endpoint tried, no signature
rc=0
"$SCAGENT" probe --exchange "localhost:$AP" --json >"$out" 2>"$err" || rc=$?
if [ "$rc" = 1 ] && python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["endpoints"] == [] and d["server"]["code"] == "untrusted-root" and d["signatures"] == 0
' "$out"; then pass "sweep of an untrusted server: no endpoint tried, untrusted-root"
else fail "sweep untrusted (rc=$rc)"; show "$out"; fi
stop_agent
done_testing
