#!/bin/bash
# No PIN left in memory: scagent reads the PIN (--pin-stdin or the terminal),
# hands it to the agent and wipes every copy it made, stdio and json-c
# buffers included; the agent, which parsed it out of a request and gave it
# to the token, has none left either when it stops (a copy freed unwiped while
# it ran stays in its heap). For a right PIN and a wrong one, for a login and
# for a key that asks for its PIN at every signature. tests/mock/pin-scan.so,
# preloaded, checks every block the process frees and, as it ends, all of its
# writable memory but the stack, for any 8 bytes of the PIN.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
. "$here/agent-lib.sh"
[ -n "$PY" ] || { echo "SKIP: python3 not installed"; exit 77; }
SCAN=$TOP_BUILDDIR/tests/mock/.libs/pin-scan.so
[ -r "$SCAN" ] || { echo "SKIP: $SCAN not built (make check builds it)"; exit 77; }
# A sanitizer's runtime must come first among the libraries: nothing to preload
# before it. (Not `ldd | grep -q`: with pipefail, ldd killed by SIGPIPE fails.)
deps=$(ldd "$SCAGENT" 2>/dev/null)
if grep -q 'libasan' <<<"$deps"; then
	echo "SKIP: sanitizer build"
	exit 77
fi
need setsid

set -e
tb_init
tb_pki
# A PIN that no other bytes of the process could match by chance.
TB_PIN='Rz7-residue-PIN-q4Wm'
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

# ---------------------------------------------------------------- the agent
wpid=$("$SCAGENT" --socket "$S" status --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["processes"][0]["pid"])')
stop_agent "the agent stops cleanly"
ok "the agent reports" test -s "$W/agent.$AGENT_PID"
is "the agent: no copy of the PIN left (login, signatures, a wrong PIN)" "$(hits "$W/agent.$AGENT_PID")" 0
# The PIN passed through the module's worker process too (it inherits the
# preload; %p names its report): none left there, nor in any other process
# the agent started.
ok "the module's worker reports" test -s "$W/agent.$wpid"
is "the module's worker: no copy of the PIN left" "$(hits "$W/agent.$wpid")" 0
for f in "$W"/agent.*; do
	[ "$f" = "$W/agent.$AGENT_PID" ] || [ "$f" = "$W/agent.$wpid" ] && continue
	is "process ${f##*.} of the agent: no copy of the PIN left" "$(hits "$f")" 0
done

for f in "$W"/login "$W"/wrong "$W"/tty "$W"/sign "$W"/agent.*; do
	[ "$(hits "$f")" = 0 ] || sed 's/^/#   /' "$f"
done
done_testing
