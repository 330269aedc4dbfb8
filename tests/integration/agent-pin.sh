#!/bin/bash
# At home on the desktop: `scagent pin change` and `scagent pin unblock`
# (C_SetPIN; C_Login as SO, C_InitPIN), each PIN tried once and never again,
# under the rules of a login (a locked PIN is not tried, the final try only
# with --confirm-final-try); the agent's PIN check follows a changed PIN;
# `scagent login --lifetime` (ssh-add -t); `scagent stop`. SoftHSM behind
# tests/mock/fault-pkcs11, whose trace counts every C_SetPIN, C_InitPIN and
# C_Login the card saw, and which adds the PIN flags SoftHSM never sets.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need_py
need setsid
tb_fault_module

tb_agent_test alice
export SCAGENT_FAULT_TARGET=$TB_SOFTHSM
: >"$W/faults"
: >"$W/trace"
# calls WHAT: how many lines of the card's trace start with WHAT
calls() { grep -c "^$1" "$W/trace"; }
logged_in() { sc status --json | grep -qF '{"label":"demo","logged_in":true}'; }
SCAGENT_FAULT_FILE=$W/faults SCAGENT_FAULT_TRACE=$W/trace start_agent "$S" --module "$FAULT"
sc watch --json >"$W/events" 2>&1 &
WATCH=$!
tb_track_pid "$WATCH"
wait_for 5 grep -q . "$W/events" || sleep 0.5

# ---------------------------------------------------------------- pin change
P1=$TB_PIN P2=246810 P3=97531864
run sc pin change --token demo --pin-stdin <<<"$P1"$'\n'"$P2"
is "pin change --pin-stdin (old, new): exit 0" "$RC" 0
has "  says so" "$OUT" 'changed the PIN of token "demo"'
is "  the card's C_SetPIN was called once, and took it" "$(grep '^SetPIN' "$W/trace")" "SetPIN rv=0"
is "  no login was tried for it" "$(calls Login)" 0
run sc login --token demo --pin-stdin <<<"$P1"
is "login with the old PIN: refused" "$RC" 1
has "  as a wrong PIN" "$ERR" 'wrong PIN for token "demo"'
run sc login --token demo --pin-stdin <<<"$P2"
is "login with the new PIN: exit 0" "$RC" 0

# Logged in: the agent's check of later logins follows the new PIN.
run sc pin change --token demo --pin-stdin <<<"$P2"$'\n'"$P3"
is "pin change while logged in: exit 0" "$RC" 0
ok "  still logged in" logged_in
run sc login --token demo --pin-stdin <<<"$P3"
has "  login with the new PIN: the agent knows it (already logged in with this PIN)" "$ERR" "already logged in to token \"demo\" (with this PIN)"
n_login=$(calls Login)
run sc login --token demo --pin-stdin <<<"$P2"
has "  login with the PIN before: wrong, checked by the agent" "$ERR" "not the PIN the agent is logged in to this token with"
is "  ... without asking the card" "$(calls Login)" "$n_login"
sc logout --token demo

# A wrong old PIN: exactly one try, by the card's C_SetPIN, nothing after it.
n_set=$(calls SetPIN) n_login=$(calls Login)
run sc pin change --token demo --pin-stdin <<<"999999"$'\n'"$P1"
is "pin change, wrong PIN: exit 1" "$RC" 1
has "  says the PIN was wrong and not changed" "$ERR" 'wrong PIN for token "demo" (tried once): the PIN was not changed'
is "  C_SetPIN called exactly once" "$(calls SetPIN)" "$((n_set + 1))"
is "  ... and it failed with CKR_PIN_INCORRECT" "$(tail -n 1 "$W/trace")" "SetPIN rv=160"
is "  no C_Login tried" "$(calls Login)" "$n_login"
run sc login --token demo --pin-stdin <<<"$P3"
is "  the PIN is unchanged: login with it works" "$RC" 0
sc logout --token demo

# On a terminal: the new PIN twice; two that differ send nothing.
n_set=$(calls SetPIN)
out=$("$PY" "$here/pty-driver.py" run-pins "$P3/$P1/$P2" "$SCAGENT" --socket "$S" pin change --token demo)
has "terminal, new PINs differ: refused" "$out" "the two new PINs differ: the PIN was not changed"
has "  exit 1" "$out" "EXIT 1"
is "  nothing was sent to the card" "$(calls SetPIN)" "$n_set"
out=$("$PY" "$here/pty-driver.py" run-pins "$P3/$P1/$P1" "$SCAGENT" --socket "$S" pin change --token demo)
has "terminal: asks for the PIN" "$out" 'PIN for token "demo": '
has "  then the new PIN" "$out" 'New PIN for token "demo": '
has "  and again" "$out" 'Repeat the new PIN: '
hasnt "  nothing echoed" "$out" "$P1"
has "  changed: exit 0" "$out" "EXIT 0"
run sc login --token demo --pin-stdin <<<"$P1"
is "  login with that PIN works" "$RC" 0
sc logout --token demo

# ---------------------------------------------------------------- the PIN's rules
echo pin-final-try >"$W/faults"
n_set=$(calls SetPIN)
run sc pin change --token demo --pin-stdin <<<"$P1"$'\n'"$P2"
is "final try, unconfirmed: pin change refused" "$RC" 1
has "  asks for --confirm-final-try" "$ERR" "confirm with --confirm-final-try"
is "  nothing tried" "$(calls SetPIN)" "$n_set"
run sc pin change --token demo --pin-stdin --confirm-final-try <<<"$P1"$'\n'"$P2"
is "final try, confirmed: changed" "$RC" 0
echo pin-locked >"$W/faults"
n_set=$(calls SetPIN) n_login=$(calls Login)
run sc login --token demo --pin-stdin <<<"$P2"
is "locked PIN: login refused" "$RC" 1
has "  the message names the command that unblocks it" "$ERR" 'unblock it with the SO PIN or PUK: `scagent pin unblock --token demo`'
run sc pin change --token demo --pin-stdin <<<"$P2"$'\n'"$P1"
is "locked PIN: pin change refused" "$RC" 1
is "  nothing tried (no C_Login, no C_SetPIN)" "$(calls SetPIN) $(calls Login)" "$n_set $n_login"

# ---------------------------------------------------------------- pin unblock
n_init=$(calls InitPIN) n_so=$(calls "Login user=0")
run sc pin unblock --token demo --pin-stdin <<<"12345670"$'\n'"$P1"
is "pin unblock, wrong SO PIN: exit 1" "$RC" 1
has "  says so" "$ERR" 'wrong SO PIN or PUK for token "demo" (tried once): the PIN was not unblocked'
is "  one SO login tried" "$(calls "Login user=0")" "$((n_so + 1))"
is "  no C_InitPIN" "$(calls InitPIN)" "$n_init"
run sc pin unblock --token demo --pin-stdin <<<"$TB_SO_PIN"$'\n'"$P1"
is "pin unblock with the SO PIN (user PIN locked): exit 0" "$RC" 0
has "  says so" "$OUT" 'unblocked the PIN of token "demo"'
is "  one more SO login" "$(calls "Login user=0")" "$((n_so + 2))"
is "  C_InitPIN once, taken" "$(grep '^InitPIN' "$W/trace")" "InitPIN rv=0"
: >"$W/faults"
run sc login --token demo --pin-stdin <<<"$P2"
is "login with the PIN before the unblock: refused" "$RC" 1
run sc login --token demo --pin-stdin <<<"$P1"
is "login with the PIN the SO set: exit 0" "$RC" 0
# Logged in: the SO's login ends the agent's, which says so.
run sc pin unblock --token demo --pin-stdin <<<"$TB_SO_PIN"$'\n'"$P3"
is "pin unblock while logged in: exit 0" "$RC" 0
nok "  the agent's login ended" logged_in
wait_for 5 grep -q '"reason":"pin-unblock"' "$W/events"
has "  event logout, reason pin-unblock" "$(cat "$W/events")" '{"token":"demo","reason":"pin-unblock","event":"logout"}'
run sc login --token demo --pin-stdin <<<"$P3"
is "  login with the new PIN: exit 0" "$RC" 0
sc logout --token demo

# ---------------------------------------------------------------- login --lifetime
run sc login --token demo --pin-stdin --lifetime 2 <<<"$P3"
is "login --lifetime 2: exit 0" "$RC" 0
has "  says for how long" "$ERR" 'logged in to token "demo" for 2 s'
ok "  logged in" logged_in
sign() { sc sign --cert alice --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/sig"; }
head -c 100 /dev/urandom >"$W/data"
sleep 1
ok "  in use after 1 s: signs" sign
wait_for 4 grep -q '"reason":"lifetime"' "$W/events"
has "  event logout, reason lifetime, within 2 s (+ slack) in spite of the use" "$(cat "$W/events")" '{"token":"demo","reason":"lifetime","event":"logout"}'
nok "  logged out" logged_in
run sc login --token demo --pin-stdin --lifetime 0 <<<"$P3"
is "--lifetime 0: usage error" "$RC" 2
run sc login --token demo --pin-stdin --lifetime 2x <<<"$P3"
is "--lifetime 2x: usage error" "$RC" 2
has "  says what it takes" "$ERR" "--lifetime: seconds"
run sc login --token demo --pin-stdin <<<"$P3"
sleep 2.5
ok "a login without --lifetime stays" logged_in
sc logout --token demo

# ---------------------------------------------------------------- stop
kill "$WATCH" 2>/dev/null
run sc stop
is "scagent stop: exit 0" "$RC" 0
has "  names the agent's pid" "$OUT" "stopped the agent (pid $AGENT_PID)"
nok "  the socket is gone when it returns" test -e "$S"
wait "$AGENT_PID"
is "  the agent has exited with status 0" "$?" 0
hasnt "  ... without a sanitizer report" "$(cat "$AGENT_LOG")" "Sanitizer"
run sc stop
is "scagent stop without an agent: exit 3" "$RC" 3
has "  says there is no agent" "$ERR" "no agent at $S"
done_testing
