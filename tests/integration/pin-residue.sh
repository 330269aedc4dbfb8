#!/bin/bash
# No PIN left in memory: scagent reads the PIN (--pin-stdin or the terminal),
# hands it to the agent and wipes every copy it made, stdio and json-c
# buffers included; the agent, which parsed it out of a request and gave it
# to the token, has none left either when it stops (a copy freed unwiped while
# it ran stays in its heap). For a right PIN and a wrong one, for a login and
# for a key that asks for its PIN at every signature. tests/mock/pin-scan.so,
# preloaded, checks every block the process frees and, as it ends, all of its
# writable memory but the stack, for any 8 bytes of the PIN. Also for the
# PINs of `pin change` (old and new) and `pin unblock` (SO PIN and new).
# The module's worker process, where the PINs reach the token, is scanned too.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need_py
SCAN=$TOP_BUILDDIR/tests/mock/.libs/pin-scan.so
[ -r "$SCAN" ] || skip_all "$SCAN not built (make check builds it)"
# A sanitizer's runtime must come first among the libraries: nothing to preload
# before it. (Not `ldd | grep -q`: with pipefail, ldd killed by SIGPIPE fails.)
deps=$(ldd "$SCAGENT" 2>/dev/null)
if grep -q 'libasan' <<<"$deps"; then
	skip_all "sanitizer build"
fi
need setsid

set -e
tb_init
tb_pki
# A PIN that no other bytes of the process could match by chance; the SO
# PIN and the new PINs of `pin change` and `pin unblock` hold it too, so
# that one scan looks for all of them.
TB_PIN='Rz7-residue-PIN-q4Wm'
TB_SO_PIN="so-$TB_PIN"
tb_softhsm_token demo
tb_enroll demo 01 alice rsa:2048 good
TB_ALWAYS_AUTH=1 tb_enroll demo 02 carol rsa:2048 good
set +e
S=$TB_DIR/agent.sock W=$TB_DIR/w
mkdir -p "$W" && head -c 1000 /dev/urandom >"$W/data"
hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
# scanned REPORT PIN CMD...: CMD with pin-scan looking for PIN when it exits
scanned() {
	local rep=$1 pin=$2
	shift 2
	env LD_PRELOAD="$SCAN" SCAN_PIN_HEX="$(hex "$pin")" SCAN_OUT="$rep" "$@"
}
hits() { sed -n 's/^hits //p' "$1" 2>/dev/null; }

# The agent, scanned for both PINs (the wrong one holds the right one) when it stops.
LD_PRELOAD=$SCAN SCAN_PIN_HEX=$(hex "$TB_PIN") SCAN_OUT=$W/agent.%p start_agent "$S"

# ---------------------------------------------------------------- the instrument
scanned "$W/control" "$TB_PIN" bash -c 'read -r p; [ -n "$p" ]' <<<"$TB_PIN"
ok "the instrument reports" test -s "$W/control"
ok "the instrument sees a PIN a program kept (bash's variable)" test "$(hits "$W/control")" -gt 0
scanned "$W/control2" "never-seen-PIN-x1" bash -c 'read -r p; [ -n "$p" ]' <<<"$TB_PIN"
is "... and nothing where there is none" "$(hits "$W/control2")" 0

# ---------------------------------------------------------------- login
printf '%s\n' "$TB_PIN" | scanned "$W/login" "$TB_PIN" "$SCAGENT" --socket "$S" login --token demo --pin-stdin
is "login --pin-stdin: logged in" "$?" 0
is "login --pin-stdin: no copy of the PIN left" "$(hits "$W/login")" 0 
"$SCAGENT" --socket "$S" logout --token demo >/dev/null
wrong='Wq2-wrong-residue-PIN'
printf '%s\n' "$wrong" | scanned "$W/wrong" "$wrong" "$SCAGENT" --socket "$S" login --token demo --pin-stdin 2>/dev/null
is "login, wrong PIN: refused" "$?" 1
is "login, wrong PIN: no copy of it left" "$(hits "$W/wrong")" 0
out=$("$PY" "$here/pty-driver.py" run "$TB_PIN" env LD_PRELOAD="$SCAN" SCAN_PIN_HEX="$(hex "$TB_PIN")" \
	SCAN_OUT="$W/tty" "$SCAGENT" --socket "$S" login --token demo)
has "login on the terminal: logged in" "$out" "EXIT 0"
is "login on the terminal: no copy of the PIN left" "$(hits "$W/tty")" 0

# ---------------------------------------------------------------- a PIN for each signature
printf '%s\n' "$TB_PIN" | scanned "$W/sign" "$TB_PIN" "$SCAGENT" --socket "$S" sign --cert carol \
	--alg rsa-pkcs1-sha256 --pin-stdin --in "$W/data" --out "$W/carol.sig"
is "sign --pin-stdin (PIN at every signature): signed" "$?" 0
ok "  the signature verifies" openssl dgst -sha256 -verify <(openssl x509 -in "$TB_DIR/certs/carol.pem" -pubkey -noout) \
	-signature "$W/carol.sig" "$W/data"
is "  no copy of the PIN left" "$(hits "$W/sign")" 0

printf '%s\n' "x$TB_PIN" | "$SCAGENT" --socket "$S" sign --cert carol --alg rsa-pkcs1-sha256 --pin-stdin \
	--in "$W/data" --out "$W/bad.sig" 2>/dev/null
is "sign, wrong PIN (it holds the right one): refused" "$?" 1

# ---------------------------------------------------------------- pin change, pin unblock
printf '%s\n%s\n' "$TB_PIN" "n$TB_PIN" | scanned "$W/change" "$TB_PIN" "$SCAGENT" --socket "$S" pin change \
	--token demo --pin-stdin
is "pin change --pin-stdin: changed" "$?" 0
is "pin change --pin-stdin: no copy of the old or the new PIN left" "$(hits "$W/change")" 0
out=$("$PY" "$here/pty-driver.py" run-pins "n$TB_PIN/t$TB_PIN/t$TB_PIN" env LD_PRELOAD="$SCAN" \
	SCAN_PIN_HEX="$(hex "$TB_PIN")" SCAN_OUT="$W/change-tty" "$SCAGENT" --socket "$S" pin change --token demo)
has "pin change on the terminal: changed" "$out" "EXIT 0"
is "pin change on the terminal: no copy of a PIN left" "$(hits "$W/change-tty")" 0
printf '%s\n%s\n' "$TB_SO_PIN" "u$TB_PIN" | scanned "$W/unblock" "$TB_PIN" "$SCAGENT" --socket "$S" pin unblock \
	--token demo --pin-stdin
is "pin unblock --pin-stdin: unblocked" "$?" 0
is "pin unblock --pin-stdin: no copy of the SO PIN or the new PIN left" "$(hits "$W/unblock")" 0
printf '%s\n' "u$TB_PIN" | "$SCAGENT" --socket "$S" login --token demo --pin-stdin 2>/dev/null
is "  the new PIN logs in" "$?" 0

# ---------------------------------------------------------------- the agent
wpid=$("$SCAGENT" --socket "$S" status --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["processes"][0]["pid"])')
stop_agent "the agent stops cleanly"
ok "the agent reports" test -s "$W/agent.$AGENT_PID"
is "the agent: no copy of a PIN left (login, signatures, a wrong PIN, pin change and unblock)" \
	"$(hits "$W/agent.$AGENT_PID")" 0
# The PINs passed through the module's worker process too (it inherits the
# preload; %p names its report): none left there, nor in any other process
# the agent started.
ok "the module's worker reports" test -s "$W/agent.$wpid"
is "the module's worker: no copy of a PIN left (login, signatures, a wrong PIN, pin change and unblock)" \
	"$(hits "$W/agent.$wpid")" 0
for f in "$W"/agent.*; do
	[ "$f" = "$W/agent.$AGENT_PID" ] || [ "$f" = "$W/agent.$wpid" ] && continue
	is "process ${f##*.} of the agent: no copy of a PIN left" "$(hits "$f")" 0
done

for f in "$W"/login "$W"/wrong "$W"/tty "$W"/sign "$W"/change "$W"/change-tty "$W"/unblock \
	"$W"/agent.*; do
	[ "$(hits "$f")" = 0 ] || sed 's/^/#   /' "$f"
done
done_testing
