#!/bin/bash
# pinentry: a signature that needs a login asks through Debian's pinentry-tty
# (on a pseudo-terminal named by GPG_TTY, answered by pty-driver.py playing
# the user): exactly one prompt, then the signature; a wrong PIN typed there
# is tried once, never asked again for that request, and nothing is signed.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need_py
PINENTRY=$(command -v pinentry-tty) || skip_all "pinentry-tty not installed"

tb_agent_test alice bob
prompts() { if [ -f "$W/prompts" ]; then wc -l <"$W/prompts"; else echo 0; fi; }

# The user at the terminal: types a wrong PIN at the first prompt, then the right one.
"$PY" "$here/pty-driver.py" answer "$W/tty" "$W/prompts" 999999 "$TB_PIN" &
tb_track_pid $!
wait_for 10 test -s "$W/tty" || { echo "pty-driver did not start"; exit 99; }
tty=$(cat "$W/tty")
GPG_TTY=$tty start_agent "$S" --pinentry "$PINENTRY" --audit-log "$W/audit.log"

# ---------------------------------------------------------------- wrong PIN: tried once
run sc sign --cert alice --alg rsa-pss-sha256 --in "$W/data" --out "$W/1.sig"
is "sign, not logged in, wrong PIN typed in pinentry: exit 1" "$RC" 1
has "wrong PIN: clear error" "$ERR" 'wrong PIN for token "demo"'
has "wrong PIN: says it was tried once" "$ERR" "tried once"
ok "wrong PIN: nothing signed" test ! -s "$W/1.sig"
sleep 1
is "wrong PIN: exactly one prompt (not retried)" "$(prompts)" 1
has "the prompt names the token" "$(cat "$W/prompts")" 'smart card "demo"'
is "wrong PIN: one login attempt audited" "$(grep -c 'login .*via=pinentry result=pin-incorrect' "$W/audit.log")" 1
has "wrong PIN: still not logged in" "$(sc status --json)" '{"label":"demo","logged_in":false}'

# ---------------------------------------------------------------- right PIN: one prompt, signed
run sc sign --cert alice --alg rsa-pss-sha256 --in "$W/data" --out "$W/2.sig"
is "sign, not logged in, right PIN typed: exit 0" "$RC" 0
is "right PIN: one more prompt (two in all)" "$(prompts)" 2
ok "right PIN: the signature verifies" openssl dgst -sha256 -verify "$(pubkey alice)" \
	-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -signature "$W/2.sig" "$W/data"
has "the agent is now logged in" "$(sc status --json)" '{"label":"demo","logged_in":true}'
run sc sign --cert bob --alg ecdsa-sha256 --in "$W/data" --out "$W/3.sig"
is "next signature (other key, same token): exit 0" "$RC" 0
is "next signature: no prompt" "$(prompts)" 2
ok "next signature verifies" openssl dgst -sha256 -verify "$(pubkey bob)" -signature "$W/3.sig" "$W/data"

# ---------------------------------------------------------------- login op without a PIN
sc logout --token demo
out=$(printf '%s\n' '{"id":0,"op":"hello","version":1}' '{"id":1,"op":"login","token":"demo"}' |
	"$PY" "$here/rawclient.py" "$S" --lines 2 --wait 20)
has "login op without pin: pinentry asked, logged in" "$(sed -n 2p <<<"$out")" '"ok":true'
is "login op without pin: one prompt" "$(prompts)" 3
hasnt "no PIN in the agent's log" "$(cat "$AGENT_LOG" "$W/audit.log")" "$TB_PIN"

stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"
done_testing
