#!/bin/bash
# Enrolment on SoftHSM through the agent: keygen (RSA-2048, RSA-3072, EC
# P-256; non-extractable keys), csr by label, hex ID and pkcs11: URI, issue
# with the test CA, import with the chain (and the refusals), list, sign.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
need openssl pkcs11-tool softhsm2-util python3 ss
tb_init
tb_softhsm_token card1
tb_pki
start_agent --log-level info --module "$TB_SOFTHSM"
W=$TB_DIR/w
mkdir -p "$W"
A=$SCAGENT

out=$($A keygen --token card1 --type rsa:2048 2>&1); rc=$?
ok "keygen before login: refused with advice" bash -c '[ "$1" = 1 ] && grep -q "scagent login --token card1" <<<"$2"' _ "$rc" "$out"
out=$($A keygen --token card1 --type rsa:1024 2>&1); rc=$?
is "keygen --type rsa:1024: usage error" "$rc" 2
out=$($A keygen --token nosuch --type rsa:2048 2>&1)
has "keygen on an unknown token: refused" "$out" "no token labelled \"nosuch\""
ok "login card1" bash -c "echo $TB_PIN | $A login --token card1 --pin-stdin"
ok "keygen RSA-2048 alice --id 0a" $A keygen --token card1 --type rsa:2048 --label alice --id 0a
ok "keygen RSA-3072 carol" $A keygen --token card1 --type rsa:3072 --label carol
ok "keygen EC P-256 bob" $A keygen --token card1 --type ec:p256 --label bob
j=$($A keygen --token card1 --type ec:p256 --json)
is "keygen without --label/--id: lowest free ID and key-ID label" \
	"$(json_eval "$j" '(j["id"], j["label"], j["curve"])')" "('03', 'key-03', 'prime256v1')"
p11=$(pkcs11-tool --module "$TB_SOFTHSM" --token-label card1 --login --pin "$TB_PIN" --list-objects --type privkey 2>/dev/null)
is "private keys: sensitive, never extractable (4 of them)" "$(grep -c 'never extractable' <<<"$p11")" 4
ok "carol is RSA 3072 on the token" bash -c "pkcs11-tool --module $TB_SOFTHSM --token-label card1 --list-objects --type pubkey 2>/dev/null | grep -B2 'label: *carol' | grep -q 3072"

ok "csr alice by label (user)" $A csr --key alice --subject "CN=Alice,O=Contoso" --upn alice@contoso.com --email alice@contoso.com --out "$W/alice.csr"
ok "csr bob by hex ID (smartcard-logon)" bash -c "$A csr --key \$(pkcs11-tool --module $TB_SOFTHSM --token-label card1 --list-objects --type pubkey 2>/dev/null | grep -A3 'label: *bob' | sed -n 's/^ *ID: *//p') --subject 'CN=Bob,O=Contoso' --upn bob@contoso.com --template smartcard-logon --out $W/bob.csr"
uri=$($A keygen --token card1 --type rsa:2048 --label dave | tail -n1)
has "keygen prints the key's pkcs11: URI" "$uri" "pkcs11:"
ok "csr carol by pkcs11: URI" $A csr --key "pkcs11:token=card1;object=carol;type=private" --subject "/O=Contoso/CN=Carol" --upn carol@contoso.com --out "$W/carol.csr"
for u in alice bob carol; do
	ok "$u.csr verifies" openssl req -in "$W/$u.csr" -verify -noout
done
txt=$(openssl req -in "$W/carol.csr" -noout -text)
has "carol.csr: RSA 3072" "$txt" "Public-Key: (3072 bit)"
txt=$(openssl req -in "$W/bob.csr" -noout -text)
ok "bob.csr: clientAuth + msSmartcardLogin, UPN" bash -c 'grep -q "TLS Web Client Authentication, Microsoft Smartcard Login" <<<"$1" && grep -q "othername: UPN::bob@contoso.com" <<<"$1"' _ "$txt"
out=$($A csr --key alice --subject "nonsense" 2>&1); rc=$?
ok "csr with a subject that is no DN: usage error with the reason" bash -c '[ "$1" = 2 ] && grep -q "is not a DN" <<<"$2"' _ "$rc" "$out"
out=$($A csr --key alice --subject "CN=x" --template admin 2>&1); rc=$?
is "csr --template admin: usage error" "$rc" 2
out=$($A csr --key alice --subject "CN=x" --email "jürgen@contoso.com" 2>&1); rc=$?
has "csr with a non-ASCII e-mail SAN: refused with the reason" "$out" "IA5String"
out=$($A csr --key key-0b --subject "CN=x" 2>&1); rc=$?
is "csr with an unknown key REF: refused" "$rc" 1

for u in alice bob carol; do tb_issue_csr "$W/$u.csr" "$W/$u.pem"; done
cat "$W/alice.pem" "$TB_DIR/pki/issuing.pem" >"$W/alice-full.pem"
ok "import alice (one PEM with its chain)" $A import --token card1 "$W/alice-full.pem"
ok "import bob and carol's certificates" bash -c "$A import --token card1 $W/bob.pem && $A import --token card1 $W/carol.pem $TB_DIR/pki/issuing.pem"
out=$($A import --token card1 "$W/alice.pem" 2>&1); rc=$?
ok "importing alice again: nothing new, not an error" bash -c '[ "$1" = 0 ] && grep -q "was already" <<<"$2"' _ "$rc" "$out"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/stray.key" -subj "/CN=stray" -out "$W/stray.csr" 2>/dev/null
tb_issue_csr "$W/stray.csr" "$W/stray.pem"
out=$($A import --token card1 "$W/stray.pem" 2>&1); rc=$?
is "import of a certificate for another key: refused" "$rc" 1
ok "  ... naming the reason and the keys there are" bash -c 'grep -q "matches no key on token \"card1\"" <<<"$1" && grep -q "\"alice\" id 0a" <<<"$1"' _ "$out"
out=$($A import --token card1 "$W/alice.pem" "$W/bob.pem" 2>&1); rc=$?
has "import with a non-CA certificate as chain: refused" "$out" "is not a CA certificate"
echo "not a certificate" >"$W/junk.pem"
out=$($A import --token card1 "$W/junk.pem" 2>&1); rc=$?
has "import of a file without a certificate: refused" "$out" "holds no certificate"
ok "pkcs11-tool sees alice's certificate with the key's ID 0a" bash -c "pkcs11-tool --module $TB_SOFTHSM --token-label card1 --list-objects --type cert 2>/dev/null | grep -A3 'label: *alice' | grep -q 'ID: *0a'"

j=$($A list --json)
is "list: alice, bob, carol certificates suitable with their keys" \
	"$(json_eval "$j" 'sorted((c["label"], c["key"]["private_key"], c["cba"]["suitable"]) for t in j["tokens"] for c in t["certificates"] if c["label"] in ("alice", "bob", "carol"))')" \
	"[('alice', 'present', True), ('bob', 'present', True), ('carol', 'present', True)]"
is "list: issuing CA stored once" "$(json_eval "$j" 'sum(1 for t in j["tokens"] for c in t["certificates"] if c["label"] == "Contoso Issuing CA")')" 1

head -c 300 /dev/urandom >"$W/data"
ok "sign with carol (rsa-pss-sha256)" $A sign --cert carol --alg rsa-pss-sha256 --in "$W/data" --out "$W/carol.sig"
ok "  ... verifies against carol's certificate" bash -c "openssl x509 -in $W/carol.pem -pubkey -noout >$W/carol.pub && openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -verify $W/carol.pub -signature $W/carol.sig $W/data"
ok "sign with bob (ecdsa-sha256) verifies" bash -c "$A sign --cert bob --alg ecdsa-sha256 --in $W/data --out $W/bob.sig && openssl x509 -in $W/bob.pem -pubkey -noout >$W/bob.pub && openssl dgst -sha256 -verify $W/bob.pub -signature $W/bob.sig $W/data"
out=$($A vsc create --label x --pin-stdin </dev/null 2>&1); rc=$?
ok "vsc create without a TPM module: refused" bash -c '[ "$1" != 0 ]' _ "$rc"
stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"
done_testing
