#!/bin/bash
# The TPM's dictionary-attack lockout is respected: one wrong `scagent login`
# moves TPM2_PT_LOCKOUT_COUNTER by exactly one (the agent never retries), the
# try that would lock the TPM needs --confirm-final-try, and a locked TPM gets
# an error that says so and how long recovery takes, without any PIN tried.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tpm/tpm-testbed.sh"
tb_tpm_need
tb_init
tb_tpm_start
start_agent --log-level info --module "$TB_TPM2_PKCS11"
A=$SCAGENT
cnt() { tb_tpm_lockout_counter; }
login() { echo "$1" | $A login --token vsc1 --pin-stdin "${@:2}" 2>&1; }

ok "vsc create vsc1" bash -c "printf '123456\n12345678\n' | $A vsc create --label vsc1 --pin-stdin"
# tpm2-pkcs11 leaves the TPM's maximum at its default: swtpm's is 3.
max=$(tpm2_getcap properties-variable | sed -n 's/^TPM2_PT_MAX_AUTH_FAIL: *//p')
is "swtpm allows 3 failures (TPM2_PT_MAX_AUTH_FAIL)" "$((max))" 3
is "lockout counter starts at 0" "$(cnt)" 0

out=$(login 999999); rc=$?
is "wrong PIN 1: login fails" "$rc" 1
is "  ... counter moved by exactly 1" "$(cnt)" 1
has "  ... the error says wrong PIN and counts 1 of 3" "$out" "wrong PIN for TPM token \"vsc1\"; the TPM has counted 1 of 3 failed tries"

out=$(login 999998); rc=$?
is "wrong PIN 2: login fails" "$rc" 1
is "  ... counter moved by exactly 1" "$(cnt)" 2

out=$(login 999997); rc=$?
is "third try without --confirm-final-try: refused" "$rc" 1
has "  ... because one more wrong PIN locks the TPM" "$out" "one more wrong PIN locks the TPM"
is "  ... and no PIN was tried (counter still 2)" "$(cnt)" 2

out=$(login 999997 --confirm-final-try); rc=$?
is "wrong PIN 3 (confirmed): login fails" "$rc" 1
is "  ... counter moved by exactly 1" "$(cnt)" 3

out=$(login 123456 --confirm-final-try); rc=$?
is "login with the right PIN on a locked TPM: fails" "$rc" 1
has "  ... as pin-locked: dictionary-attack lockout" "$out" "is in dictionary-attack lockout (3 failed tries, the limit is 3)"
has "  ... with the recovery time the TPM reports (1000 s interval)" "$out" "forgives one failed try every 16 min 40 s"
has "  ... and how to clear it" "$out" "tpm2_dictionarylockout --clear-lockout"
is "  ... counter did not move beyond the user's 3 tries" "$(cnt)" 3
j=$($A vsc list --json)
is "vsc list --json: in_lockout true, counter 3" "$(json_eval "$j" '(j["lockout"]["in_lockout"], j["lockout"]["counter"])')" "(True, 3)"
out=$($A vsc list)
has "vsc list (text) says LOCKED" "$out" "3 failed tries of 3 counted (LOCKED)"

# Without the agent's check, the module itself reports the lockout: tried
# through pkcs11-tool, the TPM refuses without counting.
if command -v pkcs11-tool >/dev/null; then
	out=$(pkcs11-tool --module "$TB_TPM2_PKCS11" --token-label vsc1 --login --pin 123456 -O 2>&1)
	has "tpm2-pkcs11 itself answers CKR_PIN_LOCKED in lockout" "$out" "CKR_PIN_LOCKED"
	is "  ... and the counter stays at 3" "$(cnt)" 3
fi

ok "the TPM owner clears the lockout" tpm2_dictionarylockout --clear-lockout
is "  ... counter back to 0" "$(cnt)" 0
ok "login with the right PIN now works" bash -c "echo 123456 | $A login --token vsc1 --pin-stdin"
is "  ... and counts nothing" "$(cnt)" 0
stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"
done_testing
