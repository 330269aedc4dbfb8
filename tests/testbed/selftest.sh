#!/bin/bash
# Self-test of the shared test bed and its TAP assertions.  Builds the demo
# card and asserts, with pkcs11-tool and openssl, that every profile has what
# it should; then the agent fixture, the EXIT trap and what a test's exit
# status and assertions become in TAP.
# shellcheck disable=SC2317  # functions are called through ok/nok

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

. "$here/testbed.sh"
# Skipped only when a tool of the test bed is missing.
need openssl pkcs11-tool softhsm2-util python3 ss
[ -r /usr/lib/softhsm/libsofthsm2.so ] || skip_all "libsofthsm2.so missing"
engines=$(openssl version -e | sed -n 's/^ENGINESDIR: "\(.*\)"$/\1/p')
[ -f "$engines/pkcs11.so" ] || skip_all "libengine-pkcs11-openssl missing"

tb_init
tb_demo_card

# ---------------------------------------------------------------- accessors
P=$TB_DIR/pki C=$TB_DIR/certs W=$TB_DIR/selftest
mkdir -p "$W"
p11() { pkcs11-tool --module "$TB_SOFTHSM" --token-label "$@" 2>/dev/null; }
p11l() { local t=$1; shift; p11 "$t" --login --pin "$TB_PIN" "$@"; }
txt() { openssl x509 -in "$C/$1.pem" -noout -text -nameopt RFC2253; }
subj() { openssl x509 -in "$C/$1.pem" -noout -subject -nameopt RFC2253; }
ext() { openssl x509 -in "$C/$1.pem" -noout -ext "$2" 2>/dev/null | tail -n +2 | sed 's/^ *//'; }
epoch() { date -u -d "$1" +%s; }
not_before() { epoch "$(openssl x509 -in "$C/$1.pem" -noout -startdate | cut -d= -f2)"; }
not_after() { epoch "$(openssl x509 -in "$C/$1.pem" -noout -enddate | cut -d= -f2)"; }
now=$(date -u +%s) day=86400
chain_ok() { openssl verify -CAfile "$P/root.pem" -untrusted "$P/issuing.pem" "$C/$1.pem"; }
cert_and_key() { cert_on_token "$@" && key_matches "$@"; }
all_chain_ok() { local u; for u in "$@"; do chain_ok "$u" || return 1; done; }
upn_count() { txt "$1" | grep -o 'othername: UPN::' | wc -l; }

# token cert object ID equals file cert (DER identical)
cert_on_token() { # TOKEN ID LABEL
	p11 "$1" --read-object --type cert --id "$2" -o "$W/$3.der" &&
		cmp -s "$W/$3.der" <(openssl x509 -in "$C/$3.pem" -outform DER)
}
# public key object ID equals the certificate's key, private key ID exists
key_matches() { # TOKEN ID LABEL
	p11 "$1" --read-object --type pubkey --id "$2" -o "$W/$3.pub.der" &&
		cmp -s <(openssl pkey -pubin -inform DER -in "$W/$3.pub.der") \
			<(openssl x509 -in "$C/$3.pem" -noout -pubkey) &&
		has_obj "$1" privkey "$2"
}
# objs TOKEN: "type id label" per object, after login (pkcs11-tool's
# --list-objects ignores --id, so filter here)
objs() {
	p11l "$1" --list-objects | awk '
		/^[A-Za-z]+ Key Object|^Certificate Object|^Data object/ {
			t = $1 == "Private" ? "privkey" : $1 == "Public" ? "pubkey" : $1 == "Certificate" ? "cert" : "data" }
		$1 == "label:" { sub(/^ *label: */, ""); l = $0 }
		$1 == "ID:" { print t, $2, l }'
}
has_obj() { objs "$1" | awk -v t="$2" -v id="$3" '$1 == t && $2 == id { f = 1 } END { exit !f }'; }
# sign on the token, verify with the certificate's public key
# (SoftHSM has no CKM_ECDSA_SHA256: EC signs a SHA-256 digest with CKM_ECDSA)
token_signs() { # TOKEN ID LABEL MECH
	local in=$W/$3.msg fmt=()
	echo "hello $3" >"$W/$3.msg"
	if [ "$4" = ECDSA ]; then
		openssl dgst -sha256 -binary "$W/$3.msg" >"$W/$3.hash"
		in=$W/$3.hash fmt=(--signature-format openssl)
	fi
	p11l "$1" --sign --mechanism "$4" --id "$2" "${fmt[@]}" -i "$in" -o "$W/$3.sig" &&
		openssl x509 -in "$C/$3.pem" -noout -pubkey >"$W/$3.pub.pem" &&
		openssl dgst -sha256 -verify "$W/$3.pub.pem" -signature "$W/$3.sig" "$W/$3.msg"
}

# ---------------------------------------------------------------- PKI
ok "root CA is self-signed Contoso Root CA" \
	test "$(openssl x509 -in "$P/root.pem" -noout -subject -issuer -nameopt RFC2253 | tr '\n' ' ')" \
	= "subject=CN=Contoso Root CA,O=Contoso issuer=CN=Contoso Root CA,O=Contoso "
ok "issuing CA is CA with pathlen 0, chains to root" \
	bash -c "openssl x509 -in '$P/issuing.pem' -noout -ext basicConstraints | grep -q 'CA:TRUE, pathlen:0' &&
		openssl verify -CAfile '$P/root.pem' '$P/issuing.pem'"
ok "ca-chain.pem holds issuing + root" \
	test "$(grep -c 'BEGIN CERTIFICATE' "$P/ca-chain.pem")" = 2
has "rogue CA is Fabrikam Rogue CA" \
	"$(openssl x509 -in "$P/rogue.pem" -noout -subject -nameopt RFC2253)" "CN=Fabrikam Rogue CA"

# ---------------------------------------------------------------- demo token
ok "private keys hidden before login" \
	test "$(p11 demo --list-objects | grep -c 'Private Key Object')" = 0
ok "demo token after login: 3 private keys, 3 public keys, 4 certificates" \
	test "$(objs demo | cut -d' ' -f1 | sort | uniq -c | tr -s ' ' | tr '\n' ';')" \
	= " 4 cert; 3 privkey; 3 pubkey;"
for spec in "01 alice rsa 2048 RSA-SHA256" "02 bob ec 256 ECDSA" "03 carol rsa 3072 RSA-SHA256"; do
	read -r id u kt bits mech <<<"$spec"
	t=$(txt "$u")
	ok "$u: subject CN=$u,O=Contoso" test "$(subj "$u")" = "subject=CN=$u,O=Contoso"
	ok "$u: issued by Contoso Issuing CA, chain verifies" chain_ok "$u"
	has "$u: $kt $bits-bit key" "$t" "Public-Key: ($bits bit)"
	has "$u: SAN has UPN and email" "$(ext "$u" subjectAltName)" \
		"othername: UPN::$u@contoso.com, email:$u@contoso.com"
	ok "$u: EKU clientAuth + msSmartcardLogin" test "$(ext "$u" extendedKeyUsage)" \
		= "TLS Web Client Authentication, Microsoft Smartcard Login"
	ku="Digital Signature"; [ "$kt" = rsa ] && ku="Digital Signature, Key Encipherment"
	ok "$u: keyUsage critical $ku" test "$(ext "$u" keyUsage)" = "$ku"
	has "$u: keyUsage is critical" "$t" "X509v3 Key Usage: critical"
	ok "$u: valid from ~yesterday for 1 year" test \
		$(( now - $(not_before "$u") > day - 3600 && $(not_after "$u") - $(not_before "$u") == 365 * day )) = 1
	ok "$u: certificate on token with ID $id" cert_on_token demo "$id" "$u"
	ok "$u: key pair on token with ID $id matches certificate" key_matches demo "$id" "$u"
	ok "$u: token key signs, certificate verifies ($mech)" token_signs demo "$id" "$u" "$mech"
done
ok "issuing CA certificate on demo token" \
	bash -c "pkcs11-tool --module '$TB_SOFTHSM' --token-label demo --read-object --type cert --label 'Contoso Issuing CA' -o '$W/ca.der' 2>/dev/null &&
		cmp -s '$W/ca.der' <(openssl x509 -in '$P/issuing.pem' -outform DER)"

# ---------------------------------------------------------------- negatives token
i=11
for u in expired notyet serverauth noupn nodigsig weak untrusted multiupn upnsubject; do
	ok "$u: certificate and matching key pair on token with ID $i" cert_and_key negatives $i "$u"
	i=$((i + 1))
done
ok "expired: notAfter in the past" test $(( $(not_after expired) < now )) = 1
nok "expired: openssl x509 -checkend 0 says expired" openssl x509 -in "$C/expired.pem" -noout -checkend 0
ok "expired: chain verifies without time check" \
	openssl verify -no_check_time -CAfile "$P/root.pem" -untrusted "$P/issuing.pem" "$C/expired.pem"
ok "notyet: notBefore in the future" test $(( $(not_before notyet) > now )) = 1
nok "notyet: chain verification fails now" chain_ok notyet
ok "serverauth: EKU serverAuth only" test "$(ext serverauth extendedKeyUsage)" = "TLS Web Server Authentication"
ok "noupn: no UPN anywhere" test "$(txt noupn | grep -c -e UPN -e 311.20.2.3)" = 0
has "noupn: still has email" "$(ext noupn subjectAltName)" "email:noupn@contoso.com"
ok "nodigsig: keyUsage keyEncipherment only" test "$(ext nodigsig keyUsage)" = "Key Encipherment"
has "weak: RSA 1024-bit key" "$(txt weak)" "Public-Key: (1024 bit)"
has "untrusted: issued by Fabrikam Rogue CA" "$(txt untrusted)" "Issuer: CN=Fabrikam Rogue CA"
nok "untrusted: does not verify against ca-chain.pem" \
	openssl verify -CAfile "$P/ca-chain.pem" "$C/untrusted.pem"
ok "multiupn: two UPN otherNames" test "$(upn_count multiupn)" = 2
ok "multiupn: UTF-8 UPN jürgen@contoso.com in the DER" \
	bash -c "openssl x509 -in '$C/multiupn.pem' -outform DER | LC_ALL=C grep -qaF 'jürgen@contoso.com'"
ok "upnsubject: UPN in subject (msUPN)" test "$(subj upnsubject)" \
	= "subject=msUPN=upnsubject@contoso.com,CN=upnsubject,O=Contoso"
ok "upnsubject: no UPN in SAN" test "$(upn_count upnsubject)" = 0
ok "other negatives chain to Contoso" all_chain_ok serverauth noupn nodigsig weak multiupn upnsubject
ok "nokey: good certificate on token with ID 1a" cert_on_token negatives 1a nokey
ok "nokey: no private or public key with ID 1a after login" \
	test "$(objs negatives | awk '$2 == "1a"' | tr '\n' ';')" = "cert 1a nokey;"
ok "negatives token: 9 private keys" test "$(objs negatives | grep -c '^privkey ')" = 9
has "corrupt: certificate object with ID 1b exists" \
	"$(p11 negatives --list-objects --type cert --id 1b)" "label:      corrupt"
nok "corrupt: its CKA_VALUE is not a parseable certificate" \
	bash -c "pkcs11-tool --module '$TB_SOFTHSM' --token-label negatives --read-object --type cert --id 1b 2>/dev/null |
		openssl x509 -inform DER -noout"
ok "negatives token holds 12 certificates (11 profiles + issuing CA)" \
	test "$(p11 negatives --list-objects --type cert | grep -c 'Certificate Object')" = 12
ok "issuing CA certificate on negatives token too (ID ca01)" \
	bash -c "pkcs11-tool --module '$TB_SOFTHSM' --token-label negatives --read-object --type cert --id ca01 -o '$W/ca-neg.der' 2>/dev/null &&
		cmp -s '$W/ca-neg.der' <(openssl x509 -in '$P/issuing.pem' -outform DER)"

# ---------------------------------------------------------------- ports and TLS
ports=$(for _ in $(seq 20); do tb_port; done)
ok "tb_port: 20 distinct ports in 20000-60000" test \
	"$(sort -u <<<"$ports" | awk '$1 >= 20000 && $1 <= 60000' | wc -l)" = 20
port=$(tb_port)
tb_s_server "$port"
ok "s_server listening on 127.0.0.1:$port" _tb_listening "$port"
http() { printf 'GET / HTTP/1.0\r\n\r\n' | timeout 20 openssl s_client -connect "127.0.0.1:$port" \
	-CAfile "$P/ca-chain.pem" -verify_return_error -verify_hostname localhost -quiet "$@" 2>&1; }
http_ok() { http "$@" | grep -q 'HTTP/1.0 200 ok'; }
nok "s_server refuses a client without certificate" http_ok
ok "s_server accepts alice with her key on the token (libp11 engine)" \
	env OPENSSL_CONF="$TB_DIR/openssl-pkcs11.cnf" bash -c "$(declare -f http http_ok); P=$P port=$port http_ok \
		-engine pkcs11 -keyform engine -cert $C/alice.pem -key 'pkcs11:token=demo;id=%01;type=private?pin-value=$TB_PIN'"

# ---------------------------------------------------------------- the agent
start_agent
apid=$AGENT_PID
ok "start_agent: SCAGENT_SOCKET is \$TB_DIR/agent.sock" test "$SCAGENT_SOCKET" = "$TB_DIR/agent.sock"
ok "start_agent: the agent answers there" "$SCAGENT" status
ok "start_agent: SoftHSM's tokens by default" bash -c '"$0" list | grep -q demo' "$SCAGENT"
ok "start_agent: --log-level debug by default" grep -qzx debug "/proc/$apid/cmdline"
is "start_agent: the log in \$AGENT_LOG" "$AGENT_LOG" "$TB_DIR/agent-1.log"
ok "tb_agent_stop: a clean stop returns 0" tb_agent_stop
nok "tb_agent_stop: the agent is gone" kill -0 "$apid"
TB_AGENT_LOG=$TB_DIR/shared.log start_agent
echo "==1==ERROR: LeakSanitizer: detected memory leaks" >>"$TB_DIR/shared.log"
nok "tb_agent_stop: a sanitizer report in the agent's log fails" tb_agent_stop
TB_AGENT_LOG=$TB_DIR/shared.log start_agent
ok "tb_agent_stop: the report of an earlier agent in the same log does not count" tb_agent_stop
# (the planted report would fail this test in done_testing)
sed -i '/LeakSanitizer/d' "$TB_DIR/shared.log"
start_agent
kill -KILL "$AGENT_PID"
nok "tb_agent_stop: an agent that died of a signal fails" tb_agent_stop
TB_AGENT_LOG=$TB_DIR/other.log start_agent "$TB_DIR/other.sock"
ok "start_agent S, TB_AGENT_LOG: answers on S, logs there" \
	bash -c '"$0" --socket "$1" status && grep -q "listening on $1" "$2"' \
	"$SCAGENT" "$TB_DIR/other.sock" "$TB_DIR/other.log"
is "start_agent S: SCAGENT_SOCKET left alone" "$SCAGENT_SOCKET" "$TB_DIR/agent.sock"
is "start_agent S: AGENT_SOCK is S" "$AGENT_SOCK" "$TB_DIR/other.sock"
stop_agent "stop_agent: the other agent stops cleanly"

# ---------------------------------------------------------------- cleanup trap
# A child test bed: its EXIT trap must kill its server and remove its dir.
out=$(TB_KEEP=0 bash -c '. "$1"; tb_init; tb_s_server "$(tb_port)"; echo "$TB_DIR $(head -1 "$TB_DIR/pids")"' _ "$here/testbed.sh")
read -r child_dir child_pid <<<"$out"
sleep 0.2
ok "EXIT trap removed the child's TB_DIR" test -n "$child_dir" -a ! -e "$child_dir"
nok "EXIT trap stopped the child's s_server" kill -0 "${child_pid:-999999}"

# ---------------------------------------------------------------- TAP
# child BODY: a test of its own, sourcing the test bed; its output in $OUT,
# its exit status in $RC.
child() { run env -u TB_DIR bash -c '. "$1"; eval "$2"' _ "$here/testbed.sh" "$1"; }
child 'pass a; fail b "why"; ok c true; nok d true; is e 1 2; done_testing'
is "TAP: a test with failed assertions exits 1" "$RC" 1
is "TAP: every assertion a line, numbered, with its plan" \
	"$(grep -E '^(not )?ok|^1\.\.' <<<"$OUT" | tr '\n' ';')" \
	"ok 1 - a;not ok 2 - b;ok 3 - c;not ok 4 - d;not ok 5 - e;1..5;"
has "TAP: a failure's detail is a comment" "$OUT" "#   why"
child 'has a xyz y; hasnt b xyz q; like c abc "^a.c$"; skip d "no TPM"; done_testing'
is "TAP: has, hasnt, like, skip pass" "$RC:$(grep -c '^ok' <<<"$OUT")" "0:4"
has "TAP: skip is a TAP SKIP directive" "$OUT" "ok 4 - d # SKIP no TPM"
child 'need no-such-tool-here; pass never'
is "TAP: need skips the whole test: plan 1..0, exit 0" "$RC:$OUT" "0:1..0 # SKIP no-such-tool-here not installed"
child 'exit 77'
is "TAP: exit 77 before any assertion is a skip" "$RC:$OUT" "0:1..0 # SKIP (exit 77)"
child 'pass a; exit 99'
is "TAP: a hard error stays one (no plan, exit 99)" "$RC:$OUT" "99:ok 1 - a"
child 'tb_init; echo "x runtime error: y" >"$TB_DIR/agent-9.log"; echo "1 0 $TB_DIR/agent-9.log" >"$TB_DIR/agents"; pass a; done_testing'
is "TAP: done_testing fails a test for a sanitizer report in an agent's log" "$RC" 1
has "  ... with an assertion that names the log" "$OUT" "not ok 2 - no sanitizer report in agent-9.log"

done_testing
