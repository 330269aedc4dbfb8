#!/bin/bash
# Mutual TLS with the keys of a TPM virtual smart card (swtpm + tpm2-abrmd +
# tpm2-pkcs11): create the card, generate RSA-2048 and EC P-256 keys on the
# TPM, have the test CA issue their certificates, import them, then
# `scagent connect --cert ...` to openssl s_server (-Verify 2: a client
# certificate is required) over TLS 1.2 and TLS 1.3.  RSA over TLS 1.3 signs
# RSA-PSS on the TPM (CKM_RSA_PKCS_PSS); the server's trace must show it.
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

ok "vsc create vsc1" bash -c "printf '%s\n%s\n' 123456 12345678 | $A vsc create --label vsc1 --pin-stdin"
ok "login vsc1" bash -c "echo 123456 | $A login --token vsc1 --pin-stdin"
ok "keygen RSA-2048 alice" $A keygen --token vsc1 --type rsa:2048 --label alice --id 01
ok "keygen EC P-256 bob" $A keygen --token vsc1 --type ec:p256 --label bob --id 02
ok "csr for alice (smartcard-logon)" $A csr --key alice --subject "CN=Alice,O=Contoso" \
	--upn alice@contoso.com --template smartcard-logon --out "$W/alice.csr"
ok "csr for bob (smartcard-logon)" $A csr --key bob --subject "CN=Bob,O=Contoso" \
	--upn bob@contoso.com --template smartcard-logon --out "$W/bob.csr"
tb_issue_csr "$W/alice.csr" "$W/alice.pem"
tb_issue_csr "$W/bob.csr" "$W/bob.pem"
ok "import alice with the issuing CA" $A import --token vsc1 "$W/alice.pem" "$TB_DIR/pki/issuing.pem"
ok "import bob" $A import --token vsc1 "$W/bob.pem"

P=$(tb_port)
tb_s_server "$P" -trace -verify_return_error
SLOG=$TB_DIR/s_server-$P.log
URL=https://localhost:$P/

# tls WHO VERSION: connect with WHO's certificate, TLS at most VERSION; the
# body is s_server's -www page naming the protocol, exit status 0, and the
# server saw WHO's certificate.
tls() {
	local who=$1 v=$2 rc=0 before
	before=$(wc -l <"$SLOG")
	"$A" -v connect --cafile "$TB_DIR/pki/root.pem" --tls-max "$v" --cert "$who" "$URL" \
		>"$W/body-$who-$v" 2>"$W/err-$who-$v" || rc=$?
	sleep 0.2
	tail -n +"$((before + 1))" "$SLOG" >"$W/trace-$who-$v"
	is "TLS $v with $who's TPM key: exit status 0" "$rc" 0
	ok "  ... the body is the s_server page over TLSv$v" \
		grep -Eq "^ *Protocol *: TLSv$v\$" "$W/body-$who-$v"
	ok "  ... it lists the server's ciphers (s_server -www page)" \
		grep -q "^Ciphers supported in s_server binary" "$W/body-$who-$v"
	ok "  ... the client certificate used was $who" grep -q "client certificate $who" "$W/err-$who-$v"
	ok "  ... the server verified $who's certificate" grep -q "^depth=0 O = Contoso, CN = ${who^}\$" "$W/trace-$who-$v"
}

tls alice 1.2
tls alice 1.3
ok "  ... RSA over TLS 1.3: CertificateVerify is rsa_pss_rsae_sha256 (server trace)" \
	bash -c "grep -A8 CertificateVerify '$W/trace-alice-1.3' | grep -q rsa_pss_rsae_sha256"
ok "  ... the agent signed rsa-pss-sha256 on the TPM" grep -q 'alg=rsa-pss-sha256 result=ok' "$AGENT_LOG"
tls bob 1.2
tls bob 1.3
ok "  ... EC over TLS 1.3: CertificateVerify is ecdsa_secp256r1_sha256" \
	bash -c "grep -A8 CertificateVerify '$W/trace-bob-1.3' | grep -q ecdsa_secp256r1_sha256"

ok "vsc delete --yes" $A vsc delete --label vsc1 --yes
rc=0
"$A" connect --cafile "$TB_DIR/pki/root.pem" --cert alice "$URL" >"$W/body-gone" 2>"$W/err-gone" || rc=$?
is "after delete: connect --cert alice fails (exit 1)" "$rc" 1
ok "  ... naming the certificate it cannot find" grep -q "alice" "$W/err-gone"
stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"
done_testing
