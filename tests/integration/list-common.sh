# shellcheck shell=bash
# Shared by the list/check integration tests: tool checks, the test bed, TAP
# helpers and a --direct scagent on SoftHSM.  Source it from a test script.
set -uo pipefail

for t in openssl pkcs11-tool softhsm2-util python3; do
	command -v "$t" >/dev/null 2>&1 || { echo "SKIP: $t not installed"; exit 77; }
done
[ -r /usr/lib/softhsm/libsofthsm2.so ] || { echo "SKIP: libsofthsm2.so missing"; exit 77; }
: "${SCAGENT:?run through make check (SCAGENT unset)}"
: "${TOP_SRCDIR:?run through make check (TOP_SRCDIR unset)}"

. "$TOP_SRCDIR/tests/testbed/testbed.sh"

n=0 failed=0
# pass DESC / fail DESC [DETAIL]
pass() { n=$((n + 1)); echo "ok $n - $1"; }
fail() {
	n=$((n + 1)) failed=$((failed + 1))
	echo "not ok $n - $1"
	[ $# -gt 1 ] && printf '%s\n' "${@:2}" | sed 's/^/#   /'

	return 0
}
# ok DESC CMD...: pass when CMD succeeds (its output goes to the log)
ok() {
	local d=$1; shift
	if "$@"; then pass "$d"; else fail "$d" "command failed: $*"; fi
}
# has DESC FILE NEEDLE: FILE contains NEEDLE (fixed string)
has() {
	if grep -qF -- "$3" "$2"; then pass "$1"
	else fail "$1" "'$3' not in $2:" "$(head -c 2000 "$2")"; fi
}
hasnt() {
	if grep -qF -- "$3" "$2"; then fail "$1" "'$3' unexpectedly in $2:" "$(head -c 2000 "$2")"
	else pass "$1"; fi
}
# rc_is DESC WANT GOT
rc_is() {
	if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "exit status $3, expected $2"; fi
}
finish() {
	echo "1..$n"
	[ "$failed" = 0 ] || { echo "# $failed of $n failed"; exit 1; }
	exit 0
}

# sca ARGS...: scagent --direct on SoftHSM
sca() { "$SCAGENT" --direct --module "$TB_SOFTHSM" "$@"; }

# The fault-injecting module (built by make check).
FAULT_MODULE=${TOP_BUILDDIR:-.}/tests/mock/.libs/fault-pkcs11.so
