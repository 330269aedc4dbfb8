#!/bin/bash
# `scagent --direct check REF`: every kind of REF, exit 0 suitable / 1 not,
# every problem explained, --cafile chains (intermediate from the token, rogue
# CA), ambiguous / unknown / malformed REFs.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/list-common.sh"
tb_init
tb_demo_card
# A token with a good certificate but without the issuing CA on it.
tb_softhsm_token nochain
tb_enroll nochain 21 dave rsa:2048 good

P=$TB_DIR/pki C=$TB_DIR/certs W=$TB_DIR/check
mkdir -p "$W"
fp() { openssl x509 -in "$C/$1.pem" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f; }
# jget FILE EXPR: python expression on the JSON document d
jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
# chk NAME ARGS...: check --json into $W/NAME.json (+ .err, .rc)
chk() { local name=$1; shift; sca check "$@" --json >"$W/$name.json" 2>"$W/$name.err"; echo $? >"$W/$name.rc"; }
sha_is() { # DESC NAME LABEL
	local got; got=$(jget "$W/$2.json" 'd["sha256"]' 2>/dev/null)
	if [ "$got" = "$(fp "$3")" ]; then pass "$1"; else fail "$1" "sha256 $got, want $(fp "$3")" "$(cat "$W/$2.err")"; fi
}

# ---- every kind of REF selects the certificate
alice=$(fp alice)
chk label alice
is "check alice (label): exit 0 (suitable)" "$(cat "$W/label.rc")" 0
sha_is "check alice (label) selects alice" label alice
chk pfx "${alice:0:8}"
sha_is "check by an 8-digit sha256 prefix" pfx alice
chk pfxuc "$(tr a-f A-F <<<"${alice:0:12}")"
sha_is "check by an upper-case sha256 prefix" pfxuc alice
chk full "$alice"
sha_is "check by the full sha256" full alice
uri=$(jget "$W/label.json" 'd["uri"]')
chk uri "$uri"
sha_is "check by the pkcs11: URI from list" uri alice
chk uri2 "pkcs11:token=demo;object=bob;type=cert"
sha_is "check by a hand-written pkcs11: URI (token + object)" uri2 bob
chk uri3 "pkcs11:token=negatives;id=%11"
sha_is "check by a pkcs11: URI with only token and id" uri3 expired
chk uri4 "pkcs11:token=demo;id=%03;type=private"
sha_is "a pkcs11: URI of the private key selects its certificate" uri4 carol

# ---- suitable vs unsuitable, JSON
for l in alice bob carol multiupn upnsubject untrusted; do
	chk "$l" "$l"
	is "check $l: exit 0" "$(cat "$W/$l.rc")" 0
	ok "check $l --json: suitable, no problems" test "$(jget "$W/$l.json" 'd["cba"]')" = \
		"{'suitable': True, 'problems': []}"
done
for pair in expired:expired notyet:not-yet-valid serverauth:no-client-auth-eku \
	noupn:no-upn nodigsig:no-digital-signature weak:weak-key; do
	l=${pair%%:*} code=${pair#*:}
	chk "$l" "$l" --cafile "$P/root.pem"
	is "check $l --cafile root: exit 1" "$(cat "$W/$l.rc")" 1
	ok "check $l --cafile root: exactly [$code] (no chain-untrusted)" \
		test "$(jget "$W/$l.json" 'd["cba"]["problems"]')" = "['$code']"
done
echo "$TB_PIN" | sca check nokey --login negatives --pin-stdin --json >"$W/nokey.json" 2>"$W/nokey.err"
is "check nokey after login: exit 1" $? 1
ok "check nokey after login: exactly [no-private-key]" \
	test "$(jget "$W/nokey.json" 'd["cba"]["problems"]')" = "['no-private-key']"
chk nokey0 nokey
is "check nokey before login: exit 0 (the key cannot be seen yet)" "$(cat "$W/nokey0.rc")" 0
ok "check nokey before login: private_key unknown" \
	test "$(jget "$W/nokey0.json" 'd["key"]["private_key"]')" = unknown

# ---- human output: every problem named with its explanation and advice
# explain: a word the one-sentence explanation must contain
explain() {
	case $1 in
	expired) echo "expired" ;; not-yet-valid) echo "not valid yet" ;;
	no-client-auth-eku) echo "client authentication" ;; no-upn) echo "user principal name" ;;
	no-digital-signature) echo "digital signature" ;; weak-key) echo "too short" ;;
	no-private-key) echo "no private key" ;; chain-untrusted) echo "trust anchor" ;;
	chain-purpose) echo "does not allow client authentication" ;;
	chain-invalid-ca) echo "not marked as a CA" ;;
	esac
}
human() { # DESC CODE ARGS...
	local d=$1 code=$2 out rc=0; shift 2
	out=$(sca check "$@" 2>&1) || rc=$?
	# "  CODE: sentence." then an indented advice sentence
	if [ "$rc" = 1 ] && grep -q "^Not suitable for certificate-based authentication" <<<"$out" &&
		grep -qi "^  $code: .*$(explain "$code").*\.\$" <<<"$out" &&
		grep -A2 "^  $code: " <<<"$out" | tail -n +2 | grep -q '^      [A-Z].*\.$'; then
		pass "$d"
	else
		fail "$d" "exit $rc" "$out"
	fi
}
for pair in expired:expired notyet:not-yet-valid serverauth:no-client-auth-eku \
	noupn:no-upn nodigsig:no-digital-signature weak:weak-key; do
	human "check ${pair%%:*} (human): $(explain "${pair#*:}") explained, with advice" \
		"${pair#*:}" "${pair%%:*}"
done
# (not a pipe into human: its assertions would count in a subshell)
human "check nokey --login (human): no-private-key explained" no-private-key \
	nokey --login negatives --pin-stdin <<<"$TB_PIN"
human "check untrusted --cafile (human): chain-untrusted explained" chain-untrusted \
	untrusted --cafile "$P/root.pem"
sca check noupn >"$W/noupn.txt" 2>&1
file_has "no-upn: says why Exchange needs the UPN" "$W/noupn.txt" "Exchange"
sca check alice >"$W/alice.txt" 2>&1
file_has "check alice (human): suitable" "$W/alice.txt" "Suitable for certificate-based authentication"
file_has "check alice (human): says the chain was not checked" "$W/alice.txt" "chain of trust was not checked"
file_has "check alice before login: says the private key was not checked" "$W/alice.txt" \
	"private key was not checked"
file_hasnt "check alice before login: does not claim the key is there" "$W/alice.txt" \
	"has its private key on the token"
echo "$TB_PIN" | sca check alice --login demo --pin-stdin --cafile "$P/root.pem" >"$W/alice2.txt" 2>&1
is "check alice --login --cafile: exit 0" $? 0
file_has "check alice after login with --cafile: key and chain confirmed" "$W/alice2.txt" \
	"chains to a trusted root and has its private key on the token"

# ---- --cafile: intermediates from the token; rogue CA; OpenSSL's reason
reason() { # openssl verify's reason for CERT with ARGS
	local c=$1; shift
	openssl verify "$@" "$C/$c.pem" 2>&1 | sed -n 's/^error [0-9]* at [0-9]* depth lookup: //p' | head -1
}
chk alice_ca alice --cafile "$P/root.pem"
is "check alice --cafile root (issuing CA on the token): exit 0" "$(cat "$W/alice_ca.rc")" 0
ok "check alice --cafile root: suitable" test "$(jget "$W/alice_ca.json" 'd["cba"]["suitable"]')" = True
chk dave dave --cafile "$P/root.pem"
is "check dave --cafile root (no issuing CA on its token): exit 1" "$(cat "$W/dave.rc")" 1
want=$(reason dave -CAfile "$P/root.pem")
ok "openssl verify rejects dave without the intermediate too ($want)" test -n "$want"
ok "check dave: chain-untrusted with OpenSSL's reason" test \
	"$(jget "$W/dave.json" '(d["cba"]["problems"], d["cba"]["chain_error"])')" = \
	"(['chain-untrusted'], '$want')"
chk dave_chain dave --cafile "$P/ca-chain.pem"
is "check dave --cafile root+issuing: exit 0" "$(cat "$W/dave_chain.rc")" 0
chk rogue untrusted --cafile "$P/root.pem"
is "check untrusted --cafile root: exit 1" "$(cat "$W/rogue.rc")" 1
want=$(reason untrusted -CAfile "$P/root.pem" -untrusted "$P/issuing.pem")
ok "check untrusted: chain-untrusted with OpenSSL's reason ($want)" test \
	"$(jget "$W/rogue.json" '(d["cba"]["problems"], d["cba"]["chain_error"])')" = \
	"(['chain-untrusted'], '$want')"
sca check untrusted --cafile "$P/root.pem" >"$W/rogue.txt" 2>&1
file_has "check untrusted (human): OpenSSL's reason shown" "$W/rogue.txt" "(OpenSSL: $want)"
chk rogue_rogue untrusted --cafile "$P/rogue.pem"
is "check untrusted --cafile rogue root: exit 0" "$(cat "$W/rogue_rogue.rc")" 0
(cd "$P" && sca check alice --cafile root.pem --json >"$W/rel.json" 2>"$W/rel.err")
is "--cafile as a relative path: exit 0" $? 0
sca check alice --cafile "$W/missing.pem" >"$W/nocafile.out" 2>"$W/nocafile.err"
is "--cafile that does not exist: exit 2" $? 2
file_has "--cafile that does not exist: names the file and the reason" "$W/nocafile.err" \
	"$W/missing.pem: No such file or directory"

# ---- --cafile: the chain is checked for client authentication, as a TLS
# server checks it (`openssl verify -purpose sslclient`); issue 19
tb_softhsm_token chains
mkdir -p "$W/pki"
cat >"$W/pki/ext.cnf" <<-EOF
	[srvonly]
	basicConstraints = critical, CA:TRUE
	keyUsage = critical, keyCertSign, cRLSign
	extendedKeyUsage = serverAuth
	subjectKeyIdentifier = hash
	authorityKeyIdentifier = keyid
	[both]
	basicConstraints = critical, CA:TRUE
	keyUsage = critical, keyCertSign, cRLSign
	extendedKeyUsage = serverAuth, clientAuth
	subjectKeyIdentifier = hash
	authorityKeyIdentifier = keyid
	[noca]
	basicConstraints = critical, CA:FALSE
	keyUsage = critical, keyCertSign, cRLSign
	subjectKeyIdentifier = hash
	authorityKeyIdentifier = keyid
	[nocertsign]
	basicConstraints = critical, CA:TRUE
	keyUsage = critical, digitalSignature, cRLSign
	subjectKeyIdentifier = hash
	authorityKeyIdentifier = keyid
EOF
# chain KIND N: intermediate "Contoso KIND CA" (signed by the root, on the
# token as id cN) and leaf "leaf-KIND" under it (id aN, good profile, key in a file).
chain() {
	local k=$1 id=$2 d=$W/pki c
	openssl req -new -newkey rsa:2048 -nodes -keyout "$d/$k.key" -subj "/O=Contoso/CN=Contoso $k CA" \
		-out "$d/$k.csr" 2>/dev/null &&
	openssl x509 -req -in "$d/$k.csr" -CA "$P/root.pem" -CAkey "$P/root.key" -CAcreateserial \
		-days 60 -extfile "$d/ext.cnf" -extensions "$k" -out "$d/$k.pem" 2>/dev/null &&
	openssl req -new -newkey rsa:2048 -nodes -keyout "$d/leaf-$k.key" -subj "/O=Contoso/CN=leaf-$k" \
		-out "$d/leaf-$k.csr" 2>/dev/null &&
	_tb_profile_ext good "leaf-$k" "leaf-$k@contoso.com" 1 "$d/leaf-$k.ext" &&
	openssl x509 -req -in "$d/leaf-$k.csr" -CA "$d/$k.pem" -CAkey "$d/$k.key" -CAcreateserial \
		-days 30 -extfile "$d/leaf-$k.ext" -extensions ee -out "$d/leaf-$k.pem" 2>/dev/null || return 1
	for c in "$k:c$id" "leaf-$k:a$id"; do
		openssl x509 -in "$d/${c%%:*}.pem" -outform DER -out "$d/${c%%:*}.der" &&
		pkcs11-tool --module "$TB_SOFTHSM" --token-label chains --login --pin "$TB_PIN" \
			--write-object "$d/${c%%:*}.der" --type cert --id "${c#*:}" --label "${c%%:*}" \
			>/dev/null 2>&1 || return 1
	done
}
# vreason KIND: what `openssl verify -purpose sslclient` says of leaf-KIND
vreason() {
	openssl verify -purpose sslclient -CAfile "$P/root.pem" -untrusted "$W/pki/$1.pem" \
		"$W/pki/leaf-$1.pem" 2>&1 | sed -n 's/^error [0-9]* at [0-9]* depth lookup: //p' | head -1
}
for k in srvonly:1 both:2 noca:3 nocertsign:4; do
	chain "${k%%:*}" "${k#*:}" || fail "make the ${k%%:*} chain"
done
ok "openssl verify -purpose sslclient accepts the chain whose CA has serverAuth and clientAuth" \
	openssl verify -purpose sslclient -CAfile "$P/root.pem" -untrusted "$W/pki/both.pem" "$W/pki/leaf-both.pem"
chk both leaf-both --cafile "$P/root.pem"
is "check leaf-both --cafile root (CA EKU serverAuth + clientAuth): exit 0" "$(cat "$W/both.rc")" 0
want=$(vreason srvonly)
ok "openssl verify -purpose sslclient refuses a CA whose EKU is serverAuth only ($want)" \
	test "$want" = "unsuitable certificate purpose"
chk srvonly leaf-srvonly --cafile "$P/root.pem"
is "check leaf-srvonly --cafile root: exit 1 (was suitable before issue 19)" "$(cat "$W/srvonly.rc")" 1
ok "check leaf-srvonly: exactly [chain-purpose], the CA named in chain_error" test \
	"$(jget "$W/srvonly.json" '(d["cba"]["problems"], d["cba"]["chain_error"])')" = \
	"(['chain-purpose'], 'CN=Contoso srvonly CA,O=Contoso: $want')"
for k in noca nocertsign; do
	want=$(vreason $k)
	ok "openssl verify refuses the $k CA too ($want)" test -n "$want"
	chk "$k" "leaf-$k" --cafile "$P/root.pem"
	is "check leaf-$k --cafile root: exit 1" "$(cat "$W/$k.rc")" 1
	ok "check leaf-$k: [chain-invalid-ca] with OpenSSL's reason at the CA, not 'unable to get local issuer'" \
		test "$(jget "$W/$k.json" '(d["cba"]["problems"], d["cba"]["chain_error"])')" = \
		"(['chain-invalid-ca'], 'CN=Contoso $k CA,O=Contoso: invalid CA certificate')"
done
human "check leaf-srvonly (human): chain-purpose explained" chain-purpose leaf-srvonly --cafile "$P/root.pem"
human "check leaf-noca (human): chain-invalid-ca explained" chain-invalid-ca leaf-noca --cafile "$P/root.pem"
sca check leaf-srvonly --cafile "$P/root.pem" >"$W/srvonly.txt" 2>&1
file_has "check leaf-srvonly (human): the CA and OpenSSL's reason shown" "$W/srvonly.txt" \
	"(OpenSSL: CN=Contoso srvonly CA,O=Contoso: unsuitable certificate purpose)"
file_hasnt "check leaf-srvonly (human): no chain-untrusted" "$W/srvonly.txt" "chain-untrusted"

# ---- ambiguous, unknown, malformed
ca=$(openssl x509 -in "$P/issuing.pem" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f)
sca check "Contoso Issuing CA" >"$W/amb.out" 2>"$W/amb.err"
is "ambiguous label (CA on two tokens): exit 1" $? 1
file_has "ambiguous: says so" "$W/amb.err" "matches more than one certificate"
file_has "ambiguous: candidates named with their fingerprint" "$W/amb.err" "Contoso Issuing CA (${ca:0:16})"
file_has "ambiguous: candidate on token demo" "$W/amb.err" 'on token "demo"'
file_has "ambiguous: candidate on token negatives" "$W/amb.err" 'on token "negatives"'
ok "ambiguous: nothing on stdout" test ! -s "$W/amb.out"
sca check "$ca" >/dev/null 2>"$W/amb2.err"
is "the same certificate on two tokens by sha256: ambiguous, exit 1" $? 1
ok "ambiguous sha256: both tokens listed" test "$(grep -c "Contoso Issuing CA (${ca:0:16}) on token" "$W/amb2.err")" = 2
sca check "pkcs11:token=negatives;object=Contoso%20Issuing%20CA" --json >"$W/amb3.json" 2>"$W/amb3.err"
is "a URI with the token resolves the ambiguity: exit 1 (a CA is no CBA certificate)" $? 1
ok "... and selects the CA on negatives" test "$(jget "$W/amb3.json" '(d["token"], d["sha256"])')" = \
	"('negatives', '$ca')"
sca check nosuch >"$W/unk.out" 2>"$W/unk.err"
is "unknown REF: exit 1" $? 1
file_has "unknown REF: says nothing matches" "$W/unk.err" 'no certificate matches "nosuch"'
for l in alice bob carol expired nokey corrupt dave; do
	file_has "unknown REF: lists $l" "$W/unk.err" "  $l ("
done
sca check "${alice:0:7}" >/dev/null 2>"$W/short.err"
is "7 hex digits are a label, not a fingerprint: exit 1" $? 1
file_has "7 hex digits: unknown" "$W/short.err" "no certificate matches"
sca check "pkcs11:token=nosuch;object=alice" >/dev/null 2>"$W/unk2.err"
is "URI that matches nothing: exit 1" $? 1
file_has "URI that matches nothing: lists what exists" "$W/unk2.err" "  alice ("
sca check 'pkcs11:token=demo;object=al%ZZice' >"$W/bad.out" 2>"$W/bad.err"
is "malformed pkcs11: URI: exit 1" $? 1
file_has "malformed URI: named, and what is wrong" "$W/bad.err" \
	'"pkcs11:token=demo;object=al%ZZice" is not a valid pkcs11: URI (URI encoding invalid or corrupted)'
ok "malformed URI: one line" test "$(wc -l <"$W/bad.err")" = 1
sca check >/dev/null 2>"$W/noref.err"
is "check without REF: usage error, exit 2" $? 2
file_has "check without REF: says what a REF is" "$W/noref.err" "pkcs11: URI"

done_testing
