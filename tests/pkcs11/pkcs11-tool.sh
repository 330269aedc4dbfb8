#!/bin/bash
# pkcs11-tool through scagent-pkcs11.so against an agent serving the SoftHSM
# demo card: slots, objects, mechanisms, login, signatures of every family
# verified by openssl against the certificates, and pkcs11-tool --test.
. "$TOP_SRCDIR/tests/pkcs11/common.sh"
p11_setup

p11() { ext pkcs11-tool --module "$MODULE" "$@"; }
W=$TB_DIR/w
mkdir -p "$W"
printf 'data signed through the agent\n' >"$W/data"
openssl dgst -sha256 -binary "$W/data" >"$W/h256"
openssl dgst -sha384 -binary "$W/data" >"$W/h384"

# -L: one slot per agent token, with its label, serial and flags.
p11 -L >"$W/L" 2>&1
ok "-L lists token demo" grep -q 'token label *: demo$' "$W/L"
ok "-L lists token negatives" grep -q 'token label *: negatives$' "$W/L"
serial=$("$SCAGENT" list --json | python3 -c 'import json,sys; print([t["serial"] for t in json.load(sys.stdin)["tokens"] if t["label"]=="demo"][0])')
ok "-L shows the token's serial" grep -q "serial num *: $serial\$" "$W/L"
ok "-L shows login required" grep -q 'token flags *:.*login required' "$W/L"

# -O before login: certificates and public keys, no private key.
p11 --token-label demo -O >"$W/O" 2>&1
for u in alice bob carol; do
	ok "-O lists certificate $u" grep -q "label: *$u\$" "$W/O"
done
ok "-O shows an RSA 2048 public key" grep -q 'Public Key Object; RSA 2048 bits' "$W/O"
ok "-O shows an EC public key" grep -q 'Public Key Object; EC' "$W/O"
nok "-O shows no private key before login" grep -q 'Private Key Object' "$W/O"

# -M: the mechanisms the token can do through the agent.
p11 --token-label demo -M >"$W/M" 2>&1
for m in RSA-PKCS SHA256-RSA-PKCS RSA-PKCS-PSS SHA512-RSA-PKCS-PSS ECDSA ECDSA-SHA384; do
	ok "-M lists $m" grep -q "^  $m, .*sign" "$W/M"
done
nok "-M offers no decryption" grep -q 'decrypt' "$W/M"

# A wrong PIN is the token's answer, forwarded (the agent is logged out now).
p11 --token-label demo --login --pin 654321 -O >"$W/badpin" 2>&1
ok "wrong PIN: CKR_PIN_INCORRECT" grep -q 'CKR_PIN_INCORRECT' "$W/badpin"

# Login through the module logs the agent in; private keys appear.
p11 --token-label demo --login --pin "$TB_PIN" -O >"$W/O2" 2>&1
ok "login through the module: private keys listed" grep -q 'Private Key Object; RSA' "$W/O2"
ok "private keys are sensitive and never extractable" \
	grep -q 'Access: *sensitive, always sensitive, never extractable' "$W/O2"
ok "the agent is logged in to demo afterwards" agent_logged_in demo

# Signatures, verified by openssl with the certificate's public key.
sig() { # USER MECH IN OUT [extra pkcs11-tool args]; pkcs11-tool picks the key by ID
	local u=$1 m=$2 in=$3 out=$4 id; shift 4
	case $u in alice) id=01 ;; bob) id=02 ;; carol) id=03 ;; esac
	p11 --token-label demo --login --pin "$TB_PIN" --sign --id "$id" -m "$m" \
		-i "$in" -o "$out" "$@"
}
alice=$(p11_pubkey alice) bob=$(p11_pubkey bob) carol=$(p11_pubkey carol)
{ printf '\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20'; cat "$W/h256"; } >"$W/di256"

ok "sign RSA-PKCS over a SHA-256 DigestInfo (alice)" sig alice RSA-PKCS "$W/di256" "$W/s1"
ok "  verifies" openssl dgst -sha256 -verify "$alice" -signature "$W/s1" "$W/data"
ok "sign SHA256-RSA-PKCS (alice)" sig alice SHA256-RSA-PKCS "$W/data" "$W/s2"
ok "  verifies" openssl dgst -sha256 -verify "$alice" -signature "$W/s2" "$W/data"
ok "sign SHA512-RSA-PKCS (carol, RSA-3072)" sig carol SHA512-RSA-PKCS "$W/data" "$W/s3"
ok "  verifies" openssl dgst -sha512 -verify "$carol" -signature "$W/s3" "$W/data"
ok "sign RSA-PKCS-PSS over a SHA-256 hash (alice)" sig alice RSA-PKCS-PSS "$W/h256" "$W/s4" \
	--hash-algorithm SHA256 --mgf MGF1-SHA256 --salt-len -1
ok "  verifies" openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest \
	-verify "$alice" -signature "$W/s4" "$W/data"
ok "sign SHA384-RSA-PKCS-PSS (carol)" sig carol SHA384-RSA-PKCS-PSS "$W/data" "$W/s5"
ok "  verifies" openssl dgst -sha384 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest \
	-verify "$carol" -signature "$W/s5" "$W/data"
ok "sign ECDSA over a SHA-384 hash (bob)" sig bob ECDSA "$W/h384" "$W/s6" --signature-format openssl
ok "  verifies" openssl dgst -sha384 -verify "$bob" -signature "$W/s6" "$W/data"
ok "sign ECDSA-SHA256 (bob), raw r||s of 64 bytes" sig bob ECDSA-SHA256 "$W/data" "$W/s7"
ok "  is 64 bytes" test "$(stat -c %s "$W/s7")" = 64
ok "sign ECDSA-SHA256 (bob) in OpenSSL's format" sig bob ECDSA-SHA256 "$W/data" "$W/s8" \
	--signature-format openssl
ok "  verifies" openssl dgst -sha256 -verify "$bob" -signature "$W/s8" "$W/data"
ok "a signature by the wrong key does not verify (the check can fail)" \
	sh -c "! openssl dgst -sha256 -verify '$carol' -signature '$W/s2' '$W/data'"
# A large input goes through C_SignUpdate/C_SignFinal in pkcs11-tool.
head -c 100000 /dev/urandom >"$W/big"
ok "multi-part SHA256-RSA-PKCS over 100 kB (alice)" sig alice SHA256-RSA-PKCS "$W/big" "$W/s9"
ok "  verifies" openssl dgst -sha256 -verify "$alice" -signature "$W/s9" "$W/big"

# C_Verify through the module: in-process with the certificate's public key.
vfy() { # USER MECH IN SIG [extra pkcs11-tool args]
	local u=$1 m=$2 in=$3 sg=$4 id; shift 4
	case $u in alice) id=01 ;; bob) id=02 ;; carol) id=03 ;; esac
	p11 --token-label demo --verify --id "$id" -m "$m" -i "$in" --signature-file "$sg" "$@"
}
bad() { # a copy of SIG with one bit flipped in its middle
	perl -0777 -pe 'BEGIN { binmode STDIN; binmode STDOUT } substr($_, length($_) / 2, 1) ^= "\x01"' <"$1" >"$2"
}
vfy alice RSA-PKCS "$W/di256" "$W/s1" >"$W/v1" 2>&1
ok "C_Verify RSA-PKCS (alice): valid" grep -q '^Signature is valid' "$W/v1"
vfy alice SHA256-RSA-PKCS "$W/data" "$W/s2" >"$W/v2" 2>&1
ok "C_Verify SHA256-RSA-PKCS (alice): valid" grep -q '^Signature is valid' "$W/v2"
bad "$W/s2" "$W/s2.bad"
vfy alice SHA256-RSA-PKCS "$W/data" "$W/s2.bad" >"$W/v2b" 2>&1
ok "  one bit flipped: invalid (CKR_SIGNATURE_INVALID)" grep -q 'Invalid signature\|CKR_SIGNATURE_INVALID' "$W/v2b"
vfy carol SHA256-RSA-PKCS "$W/data" "$W/s2" >"$W/v2c" 2>&1
ok "  with the wrong key (RSA-3072): CKR_SIGNATURE_LEN_RANGE" grep -q 'CKR_SIGNATURE_LEN_RANGE' "$W/v2c"
vfy carol SHA384-RSA-PKCS-PSS "$W/data" "$W/s5" >"$W/v5" 2>&1
ok "C_Verify SHA384-RSA-PKCS-PSS (carol): valid" grep -q '^Signature is valid' "$W/v5"
vfy bob ECDSA-SHA256 "$W/data" "$W/s7" >"$W/v7" 2>&1
ok "C_Verify ECDSA-SHA256, r||s (bob): valid" grep -q '^Signature is valid' "$W/v7"
bad "$W/s7" "$W/s7.bad"
vfy bob ECDSA-SHA256 "$W/data" "$W/s7.bad" >"$W/v7b" 2>&1
ok "  one bit flipped: invalid" grep -q 'Invalid signature\|CKR_SIGNATURE_INVALID' "$W/v7b"
vfy alice SHA256-RSA-PKCS "$W/big" "$W/s9" >"$W/v9" 2>&1
ok "C_VerifyUpdate/C_VerifyFinal over 100 kB (alice): valid" grep -q '^Signature is valid' "$W/v9"

printf 'not a DigestInfo' >"$W/raw"
p11 --token-label demo --login --pin "$TB_PIN" --sign --id 01 -m RSA-PKCS -i "$W/raw" \
	-o "$W/s10" >"$W/rawerr" 2>&1
ok "RSA-PKCS over data that is no DigestInfo: CKR_DATA_INVALID" grep -q CKR_DATA_INVALID "$W/rawerr"

# pkcs11-tool's own test suite, logged in.
p11 --token-label demo --test --login --pin "$TB_PIN" >"$W/test" 2>&1
rc=$?
ok "pkcs11-tool --test --login passes (exit 0)" test "$rc" = 0
ok "pkcs11-tool --test reports no errors" grep -q '^No errors' "$W/test"

# An unreachable agent is a module without slots, not a failure.
SCAGENT_SOCKET=$TB_DIR/nowhere.sock p11 -I >"$W/info" 2>&1
ok "unreachable agent: the module initialises (-I)" grep -q 'Manufacturer *scagent' "$W/info"
SCAGENT_SOCKET=$TB_DIR/nowhere.sock p11 -L >"$W/none" 2>&1
rc=$?
ok "unreachable agent: -L ends normally (pkcs11-tool exits 1 without slots)" test "$rc" -le 1
ok "unreachable agent: no slots" grep -q 'No slots' "$W/none"
done_testing
