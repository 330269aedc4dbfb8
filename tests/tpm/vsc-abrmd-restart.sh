#!/bin/bash
# The TPM's resource manager restarted under a running agent (issue 21):
# tpm2-pkcs11 keeps its dead connection to tpm2-abrmd, and its calls fail
# (CKR_GENERAL_ERROR, "token or reader error") until it is finalised and
# initialised again. The agent's TPM worker then starts afresh: the failed
# request says to log in again, the card shows logged out (not a false
# "logged in"), and a new login and signature work without restarting the
# agent. No PIN is tried on the user's behalf.
set -uo pipefail
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tpm/tpm-testbed.sh"
tb_tpm_need
tb_init
tb_pki
tb_tpm_start
start_agent --log-level info --module "$TB_TPM2_PKCS11"
A=$SCAGENT
W=$TB_DIR/w
mkdir -p "$W"
head -c 1000 /dev/urandom >"$W/data"
agent=$AGENT_PID
logged_in() {
	"$A" status --json | python3 -c 'import json,sys
print(" ".join(t["label"] for t in json.load(sys.stdin)["tokens"] if t.get("logged_in")))'
}
signs() {
	rm -f "$W/sig"
	"$A" sign --cert alice --alg ecdsa-sha256 --in "$W/data" --out "$W/sig" &&
		openssl dgst -sha256 -verify "$W/alice.pub" -signature "$W/sig" "$W/data" >/dev/null
}

ok "vsc create vsc1" bash -c "printf '123456\n12345678\n' | $A vsc create --label vsc1 --pin-stdin"
ok "login vsc1" bash -c "echo 123456 | $A login --token vsc1 --pin-stdin"
ok "keygen EC P-256 alice" "$A" keygen --token vsc1 --type ec:p256 --label alice --id 01
ok "csr for alice" "$A" csr --key alice --subject "/O=Contoso/CN=Alice" --out "$W/alice.csr"
tb_issue_csr "$W/alice.csr" "$W/alice.pem"
openssl x509 -in "$W/alice.pem" -pubkey -noout >"$W/alice.pub"
ok "import alice" "$A" import --token vsc1 "$W/alice.pem"
ok "signs before the restart" signs

# Restart tpm2-abrmd as an administrator would: same TCTI, new process.
old=$(pgrep -f "tpm2-abrmd .*port=$TB_TPM_PORT" | head -n 1)
ok "tpm2-abrmd found" test -n "$old"
kill "$old"
for _ in $(seq 50); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
tpm2-abrmd --allow-root --session --tcti="swtpm:host=127.0.0.1,port=$TB_TPM_PORT" --flush-all \
	</dev/null >>"$TB_DIR/tpm/abrmd2.out" 2>&1 &
tb_track_pid $!
for _ in $(seq 100); do tpm2_getcap properties-variable >/dev/null 2>&1 && break; sleep 0.1; done
ok "tpm2-abrmd restarted" tpm2_getcap properties-variable

out=$("$A" sign --cert alice --alg ecdsa-sha256 --in "$W/data" 2>&1 >/dev/null); rc=$?
is "the first signature after the restart fails" "$rc" 1
has "  ... and says the TPM service restarted: log in again" "$out" "log in again"
has "  ... naming the TPM service" "$out" "TPM service restarted"
for _ in $(seq 100); do "$A" list --json 2>/dev/null | grep -q '"vsc1"' && break; sleep 0.1; done
is "status: vsc1 no longer says logged in" "$(logged_in)" ""
ok "login vsc1 again (no 'already logged in')" bash -c "echo 123456 | $A login --token vsc1 --pin-stdin"
ok "signs again without restarting the agent" signs
is "the same agent process" "$(json_eval "$("$A" status --json)" 'j["pid"]')" "$agent"
st=$("$A" status --json)
is "status: the TPM module's worker was started again" \
	"$(json_eval "$st" 'j["processes"][0]["restarts"]')" 1
has "  ... after a device error" "$(json_eval "$st" 'j["processes"][0]["last_error"]')" "device error"
logins=$(grep -c 'login pid=' "$AGENT_LOG")
is "no login the user did not ask for (2 in the audit log)" "$logins" 2
stop_agent "agent stopped cleanly"
done_testing
