#!/bin/bash
# The whole life of a TPM virtual smart card, with scagent commands only, on
# a real software TPM (swtpm + tpm2-abrmd + tpm2-pkcs11): create, list,
# login, keygen (RSA-2048, EC P-256), csr (UPN otherName incl. non-ASCII,
# EKUs of the AD CS templates), issue with the test CA, import with the
# chain, list (suitable), sign verified against the certificate, delete.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tpm/tpm-testbed.sh"
tb_tpm_need
tb_init
tb_tpm_start
tb_pki
start_agent --log-level info --module "$TB_TPM2_PKCS11"
W=$TB_DIR/w
mkdir -p "$W"
A=$SCAGENT

out=$($A vsc list 2>&1)
has "vsc list before create: no cards" "$out" "no TPM virtual smart cards"
has "vsc list names the TPM module" "$out" "libtpm2_pkcs11.so"

ok "vsc create vsc1 (PINs from stdin)" bash -c "printf '%s\n%s\n' 123456 12345678 | $A vsc create --label vsc1 --pin-stdin"
out=$(printf '%s\n%s\n' 123456 12345678 | $A vsc create --label vsc1 --pin-stdin 2>&1); rc=$?
is "vsc create of an existing label: refused" "$rc" 1
has "  ... saying it exists" "$out" "exists already"
out=$(printf '12\n12345678\n' | $A vsc create --label short --pin-stdin 2>&1); rc=$?
has "vsc create with a 2-digit PIN: refused with the reason" "$out" "at least 4 characters"

j=$($A vsc list --json)
is "vsc list --json: vsc1 with 0 keys, logged out" \
	"$(json_eval "$j" '[(t["label"], t["keys"], t["certificates"], t["flags"]["logged_in"]) for t in j["tokens"]]')" \
	"[('vsc1', 0, 0, False)]"
is "vsc list --json: lockout counter 0 of 3" "$(json_eval "$j" '(j["lockout"]["counter"], j["lockout"]["max_tries"])')" "(0, 3)"
out=$($A vsc list)
ok "vsc list (text): label, serial, keys, certs, PIN state" \
	grep -Eq '^vsc1 +0+ +0 +0 +logged-out$' <<<"$out"

out=$($A keygen --token vsc1 --type rsa:2048 --label alice 2>&1); rc=$?
is "keygen before login: refused" "$rc" 1
has "  ... telling to log in" "$out" "scagent login --token vsc1"

ok "login vsc1" bash -c "echo 123456 | $A login --token vsc1 --pin-stdin"
ok "keygen RSA-2048 alice id 01" $A keygen --token vsc1 --type rsa:2048 --label alice --id 01
ok "keygen EC P-256 bob (id chosen: 02)" bash -c "$A keygen --token vsc1 --type ec:p256 --label bob | grep -q 'id 02'"
out=$($A keygen --token vsc1 --type ec:p256 --label alice 2>&1)
has "keygen with a label in use: refused" "$out" "a key labelled \"alice\" exists"
out=$($A keygen --token vsc1 --type ec:p256 --id 01 2>&1)
has "keygen with an ID in use: refused" "$out" "ID 01 is already used"
j=$($A vsc list --json)
is "vsc list: 2 keys" "$(json_eval "$j" 'j["tokens"][0]["keys"]')" 2

# Certificate requests signed on the TPM.
ok "csr for alice (smartcard-logon, non-ASCII UPN)" $A csr --key alice \
	--subject "CN=Jürgen Alice,O=Contoso" --upn "jürgen@contoso.com" \
	--email alice@contoso.com --template smartcard-logon --out "$W/alice.csr"
ok "alice.csr: signature verifies" openssl req -in "$W/alice.csr" -verify -noout
txt=$(openssl req -in "$W/alice.csr" -noout -text -nameopt RFC2253,-esc_msb 2>&1)
has "alice.csr: subject with UTF-8" "$txt" "Subject: CN=Jürgen Alice,O=Contoso"
has "alice.csr: UPN otherName (UTF-8 kept)" "$txt" "othername: UPN::jürgen@contoso.com"
has "alice.csr: e-mail SAN" "$txt" "email:alice@contoso.com"
has "alice.csr: EKU clientAuth + msSmartcardLogin" "$txt" "TLS Web Client Authentication, Microsoft Smartcard Login"
ok "alice.csr: keyUsage critical digitalSignature, keyEncipherment" \
	grep -A1 -F "Key Usage: critical" <<<"$txt"
has "alice.csr: RSA key usage has Key Encipherment" "$txt" "Digital Signature, Key Encipherment"
# The UPN is a UTF8String holding the UTF-8 bytes (not Latin-1 re-encoded).
openssl req -in "$W/alice.csr" -outform DER -out "$W/alice.csr.der"
ok "alice.csr: UPN encoded as a UTF8String of its UTF-8 bytes" python3 -c '
import sys
upn = "jürgen@contoso.com".encode()
sys.exit(0 if bytes([0x0c, len(upn)]) + upn in open(sys.argv[1], "rb").read() else 1)' "$W/alice.csr.der"
ok "csr for bob by hex ID (user template, EC)" $A csr --key 02 --subject "/O=Contoso/CN=Bob" \
	--upn bob@contoso.com --out "$W/bob.csr"
ok "bob.csr: signature verifies" openssl req -in "$W/bob.csr" -verify -noout
txt=$(openssl req -in "$W/bob.csr" -noout -text 2>&1)
has "bob.csr: EKU clientAuth + emailProtection" "$txt" "TLS Web Client Authentication, E-mail Protection"
ok "bob.csr: EC key usage is digitalSignature only" grep -qx ' *Digital Signature' <<<"$txt"
has "bob.csr: ecdsa-with-SHA256" "$txt" "Signature Algorithm: ecdsa-with-SHA256"
out=$($A csr --key nosuchkey --subject CN=x 2>&1); rc=$?
ok "csr with an unknown key: refused, listing the keys" bash -c '[ "$1" = 1 ] && grep -q "alice (id 01)" <<<"$2"' _ "$rc" "$out"

# Issue with the test CA and import with the chain.
tb_issue_csr "$W/alice.csr" "$W/alice.pem"
tb_issue_csr "$W/bob.csr" "$W/bob.pem"
ok "import alice with the issuing CA" $A import --token vsc1 "$W/alice.pem" "$TB_DIR/pki/issuing.pem"
ok "import bob (DER) with the CA chain file" bash -c "openssl x509 -in $W/bob.pem -outform DER -out $W/bob.der && $A import --token vsc1 $W/bob.der $TB_DIR/pki/ca-chain.pem"
openssl req -new -newkey rsa:2048 -nodes -keyout "$W/stray.key" -subj "/CN=stray" -out "$W/stray.csr" 2>/dev/null
tb_issue_csr "$W/stray.csr" "$W/stray.pem"
out=$($A import --token vsc1 "$W/stray.pem" 2>&1); rc=$?
is "import of a certificate for no key on the token: refused" "$rc" 1
has "  ... with the reason" "$out" "matches no key on token \"vsc1\""

j=$($A list --json)
is "list: alice's certificate with its key, CBA suitable" \
	"$(json_eval "$j" '[(c["id"], c["key"]["private_key"], c["cba"]["suitable"], c["upn"]) for t in j["tokens"] for c in t["certificates"] if c["label"] == "alice"]')" \
	"[('01', 'present', True, ['jürgen@contoso.com'])]"
is "list: bob's certificate suitable" \
	"$(json_eval "$j" '[c["cba"]["suitable"] for t in j["tokens"] for c in t["certificates"] if c["label"] == "bob"]')" "[True]"
is "list: CA certificates stored once each (issuing + root)" \
	"$(json_eval "$j" 'sorted(c["label"] for t in j["tokens"] for c in t["certificates"])')" \
	"['Contoso Issuing CA', 'Contoso Root CA', 'alice', 'bob']"
j=$($A vsc list --json)
is "vsc list: 2 keys, 4 certificates" "$(json_eval "$j" '(j["tokens"][0]["keys"], j["tokens"][0]["certificates"])')" "(2, 4)"

# Signatures through the agent, verified with openssl against the certificates.
head -c 1000 /dev/urandom >"$W/data"
ok "sign with alice (rsa-pkcs1-sha256)" $A sign --cert alice --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/alice.sig"
ok "  ... verifies against alice's certificate" bash -c "openssl x509 -in $W/alice.pem -pubkey -noout >$W/alice.pub && openssl dgst -sha256 -verify $W/alice.pub -signature $W/alice.sig $W/data"
ok "sign with alice (rsa-pss-sha256: tpm2-pkcs11 does not list PSS but makes it)" \
	$A sign --cert alice --alg rsa-pss-sha256 --in "$W/data" --out "$W/alice-pss.sig"
ok "  ... verifies as RSA-PSS (salt = digest length) against alice's certificate" \
	openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest \
	-verify "$W/alice.pub" -signature "$W/alice-pss.sig" "$W/data"
ok "sign with bob (ecdsa-sha256)" $A sign --cert bob --alg ecdsa-sha256 --in "$W/data" --out "$W/bob.sig"
ok "  ... verifies against bob's certificate" bash -c "openssl x509 -in $W/bob.pem -pubkey -noout >$W/bob.pub && openssl dgst -sha256 -verify $W/bob.pub -signature $W/bob.sig $W/data"
ok "the chain of alice's certificate is on the token" bash -c "$A list --json | grep -q 'Contoso Issuing CA'"

# Deletion.
out=$(setsid $A vsc delete --label vsc1 </dev/null 2>&1); rc=$?
is "vsc delete without a terminal and without --yes: refused (usage)" "$rc" 2
ok "vsc delete --yes" $A vsc delete --label vsc1 --yes
out=$($A vsc list 2>&1)
has "vsc list after delete: no cards" "$out" "no TPM virtual smart cards"
j=$($A list --json)
is "list after delete: no token vsc1" "$(json_eval "$j" '[t["label"] for t in j["tokens"]]')" "[]"
ok "a new card can be created after delete" bash -c "printf '%s\n%s\n' 654321 87654321 | $A vsc create --label vsc2 --pin-stdin && $A vsc list | grep -q '^vsc2 '"
out=$($A vsc delete --label nosuch --yes 2>&1)
has "vsc delete of an unknown label: refused" "$out" "no token labelled \"nosuch\""
stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"
done_testing
