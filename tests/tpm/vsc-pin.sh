#!/bin/bash
# `scagent pin change` and `scagent pin unblock` on a TPM virtual smart card
# (tpm2-pkcs11): each PIN is tried once, as the TPM's dictionary-attack
# counter shows (TPM2_PT_LOCKOUT_COUNTER moves by one per wrong PIN, the SO
# PIN's included); in lockout nothing is tried; once the TPM owner cleared
# it, the SO PIN sets a new user PIN.
set -uo pipefail
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tpm/tpm-testbed.sh"
tb_tpm_need
tb_init
tb_tpm_start
start_agent --log-level info --module "$TB_TPM2_PKCS11"
A=$SCAGENT
cnt() { tb_tpm_lockout_counter; }
login() { echo "$1" | $A login --token vsc1 --pin-stdin "${@:2}" 2>&1; }
change() { printf '%s\n%s\n' "$1" "$2" | $A pin change --token vsc1 --pin-stdin "${@:3}" 2>&1; }
unblock() { printf '%s\n%s\n' "$1" "$2" | $A pin unblock --token vsc1 --pin-stdin "${@:3}" 2>&1; }

ok "vsc create vsc1" bash -c "printf '123456\n12345678\n' | $A vsc create --label vsc1 --pin-stdin"
is "lockout counter starts at 0" "$(cnt)" 0

out=$(change 123456 654321); rc=$?
is "pin change (not logged in): exit 0" "$rc" 0
has "  says so" "$out" 'changed the PIN of token "vsc1"'
is "  counts nothing" "$(cnt)" 0
out=$(login 654321); rc=$?
is "  login with the new PIN works" "$rc" 0
out=$(change 654321 135790); rc=$?
is "pin change while logged in: exit 0" "$rc" 0
out=$(login 135790); rc=$?
has "  the agent's check follows the new PIN (already logged in with this PIN)" "$out" "already logged in to token \"vsc1\" (with this PIN)"
ok "logout" $A logout --token vsc1
out=$(login 654321); rc=$?
is "login with the PIN before: refused" "$rc" 1
is "  counted once" "$(cnt)" 1

out=$(change 999999 111111); rc=$?
is "pin change, wrong PIN: exit 1" "$rc" 1
is "  the TPM counted exactly one more failure" "$(cnt)" 2
has "  the message has the TPM's count" "$out" "the TPM has counted 2 of 3 failed tries"
has "  and says the PIN was not changed" "$out" "the PIN was not changed"
out=$(change 135790 111111); rc=$?
is "pin change at the TPM's final try, unconfirmed: refused" "$rc" 1
has "  asks for --confirm-final-try" "$out" "--confirm-final-try"
is "  nothing tried" "$(cnt)" 2
out=$(unblock 12345678 111111); rc=$?
is "pin unblock at the final try (the TPM counts SO PINs too), unconfirmed: refused" "$rc" 1
is "  nothing tried" "$(cnt)" 2

out=$(login 999997 --confirm-final-try); rc=$?
is "third wrong PIN (confirmed): the TPM locks" "$(cnt)" 3
out=$(login 135790 --confirm-final-try); rc=$?
is "login on the locked TPM: refused" "$rc" 1
is "  the counter stays" "$(cnt)" 3
out=$(unblock 12345678 111111 --confirm-final-try); rc=$?
is "pin unblock in lockout: refused" "$rc" 1
has "  says the TPM is in dictionary-attack lockout" "$out" "is in dictionary-attack lockout"
has "  and that the PIN was not unblocked" "$out" "the PIN was not unblocked"
is "  nothing tried (counter 3)" "$(cnt)" 3
out=$(change 135790 111111 --confirm-final-try); rc=$?
is "pin change in lockout: refused, nothing tried" "$rc:$(cnt)" "1:3"

ok "the TPM owner clears the lockout" tpm2_dictionarylockout --clear-lockout
out=$(unblock 12345670 111111); rc=$?
is "pin unblock, wrong SO PIN: exit 1" "$rc" 1
is "  counted once by the TPM" "$(cnt)" 1
out=$(unblock 12345678 111111); rc=$?
is "pin unblock with the SO PIN: exit 0" "$rc" 0
has "  says so" "$out" 'unblocked the PIN of token "vsc1"'
is "  the SO PIN was right: nothing more counted" "$(cnt)" 1
out=$(login 111111); rc=$?
is "login with the PIN the SO set: exit 0" "$rc" 0
ok "  the card works for the new login: keygen" $A keygen --token vsc1 --type ec:p256 --label k1
stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"
done_testing
