#!/bin/bash
# C_Login through scagent-pkcs11.so while the agent is logged in to the token
# already: the PIN is checked by the agent against the salted hash it kept of
# the PIN it logged in with, and the card is not asked. A wrong PIN is
# CKR_PIN_INCORRECT, the right one CKR_OK; `scagent login` does the same
# check. The agent's module is tests/mock/fault-pkcs11 in front of SoftHSM,
# whose call trace shows every C_Login that reached the token: none for a
# PIN checked against the hash, so the card's retry counter cannot move.
. "$TOP_SRCDIR/tests/pkcs11/common.sh"
tb_fault_module
tb_init
W=$TB_DIR/w
mkdir -p "$W"
export SCAGENT_FAULT_TARGET=$TB_SOFTHSM SCAGENT_FAULT_TRACE=$W/trace
p11_setup "$FAULT"

p11() { ext pkcs11-tool --module "$MODULE" "$@"; }
logins() { grep -c '^Login ' "$W/trace"; }
sc() { "$SCAGENT" "$@"; }

# Logged out: a wrong PIN goes to the card, which refuses it.
: >"$W/trace"
p11 --token-label demo --login --pin 654321 -O >"$W/bad0" 2>&1
ok "logged out, wrong PIN: CKR_PIN_INCORRECT" grep -q CKR_PIN_INCORRECT "$W/bad0"
ok "logged out, wrong PIN: tried on the card (one C_Login)" test "$(logins)" = 1

# The agent logs in.
sc login --token demo --pin-stdin <<<"$TB_PIN" 2>"$W/login.err"
ok "scagent login: exit 0" test $? = 0
ok "scagent login: one more C_Login on the card" test "$(logins)" = 2
ok "the agent is logged in to demo" agent_logged_in demo

# Logged in: a wrong PIN through the module is refused without the card.
p11 --token-label demo --login --pin 654321 -O >"$W/bad1" 2>&1
ok "logged in, wrong PIN through the module: CKR_PIN_INCORRECT" grep -q CKR_PIN_INCORRECT "$W/bad1"
nok "... no private key listed" grep -q 'Private Key Object' "$W/bad1"
ok "... no C_Login reached the token" test "$(logins)" = 2
ok "... the agent stays logged in" agent_logged_in demo
p11 --token-label demo --login --pin "${TB_PIN}0" -O >"$W/bad2" 2>&1
ok "logged in, the right PIN and one more digit: CKR_PIN_INCORRECT" grep -q CKR_PIN_INCORRECT "$W/bad2"

# The right PIN: ok, private keys, still no C_Login on the card.
p11 --token-label demo --login --pin "$TB_PIN" -O >"$W/good" 2>&1
ok "logged in, right PIN through the module: private keys listed" grep -q 'Private Key Object; RSA' "$W/good"
nok "... no error" grep -q CKR_ "$W/good"
ok "... no C_Login reached the token" test "$(logins)" = 2

# scagent login while logged in: the same check.
sc login --token demo --pin-stdin <<<"000000" 2>"$W/cli-bad.err"
ok "scagent login, wrong PIN while logged in: exit 1" test $? = 1
ok "... says the PIN is not the agent's, the card untouched" \
	grep -q 'wrong PIN: it is not the PIN the agent is logged in to this token with (checked by the agent; the card was not asked' "$W/cli-bad.err"
sc login --token demo --pin-stdin <<<"$TB_PIN" 2>"$W/cli-good.err"
ok "scagent login, right PIN while logged in: exit 1, already logged in" test $? = 1
ok "... says so" grep -q 'already logged in to token "demo" (with this PIN)' "$W/cli-good.err"
ok "... no C_Login reached the token" test "$(logins)" = 2
ok "the agent's log never shows the PIN" bash -c '! grep -q -e "$1" -e 654321 "$2"' _ "$TB_PIN" "$AGENT_LOG"

# After a logout the hash is gone: the next login is the card's again.
sc logout --token demo 2>/dev/null
sc login --token demo --pin-stdin <<<"000000" 2>"$W/after.err"
ok "after logout, wrong PIN: exit 1" test $? = 1
ok "... the card's answer" grep -q 'wrong PIN for token "demo"' "$W/after.err"
ok "... tried on the card" test "$(logins)" = 3
done_testing
