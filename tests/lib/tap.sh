# shellcheck shell=bash
# The assertions of every shell test, in TAP (the Test Anything Protocol):
# make check runs the tests through automake's tap-driver.sh, which shows
# each assertion as its own PASS/FAIL line.  Sourced by tests/testbed/testbed.sh;
# a test sources only that file.
#
#   pass DESC                 an assertion that holds
#   fail DESC [DETAIL...]     one that does not; DETAIL lines become comments
#   ok DESC CMD...            CMD succeeds (its output goes to $TB_DIR/last.out
#                             and is shown when it fails)
#   nok DESC CMD...           CMD fails
#   is DESC GOT WANT          GOT = WANT (strings)
#   has DESC TEXT NEEDLE      TEXT contains NEEDLE (a fixed string)
#   hasnt DESC TEXT NEEDLE    ... does not
#   like DESC TEXT REGEX      TEXT matches REGEX (grep -E)
#   file_has DESC FILE NEEDLE / file_hasnt DESC FILE NEEDLE
#   skip DESC REASON          an assertion not made here (TAP "# SKIP")
#   skip_all REASON           the whole test does not apply here: plan 1..0, exit 0
#   bail_out REASON           the test cannot go on (a hard error, exit 99)
#   diag TEXT... / show FILE  comments in the test's log
#   done_testing              the plan 1..N; exits 1 when an assertion failed
#
# A test that exits 77 before any assertion is reported as skipped (the
# automake convention of the other drivers); one that dies mid-way prints no
# plan, and tap-driver.sh reports that as an ERROR.

TAP_N=0 TAP_FAILED=0

pass() { TAP_N=$((TAP_N + 1)); echo "ok $TAP_N - $1"; }
fail() {
	TAP_N=$((TAP_N + 1)) TAP_FAILED=$((TAP_FAILED + 1))
	echo "not ok $TAP_N - $1"
	[ $# -lt 2 ] || printf '%s\n' "${@:2}" | sed 's/^/#   /'
	return 0
}

_tap_out() { if [ -n "${TB_DIR:-}" ] && [ -d "$TB_DIR" ]; then echo "$TB_DIR/last.out"; else echo /dev/null; fi; }

ok() {
	local d=$1 o; shift
	o=$(_tap_out)
	if "$@" >"$o" 2>&1; then pass "$d"
	else fail "$d" "command failed: $*" "$(tail -n 20 "$o" 2>/dev/null)"; fi
}
nok() {
	local d=$1 o; shift
	o=$(_tap_out)
	if "$@" >"$o" 2>&1; then fail "$d" "command succeeded: $*" "$(tail -n 20 "$o" 2>/dev/null)"
	else pass "$d"; fi
}
not_ok() { nok "$@"; }
is() {
	if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2'" "want '$3'"; fi
}
has() {
	if grep -qF -- "$3" <<<"$2"; then pass "$1"; else fail "$1" "'$3' not in:" "$(head -c 2000 <<<"$2")"; fi
}
hasnt() {
	if grep -qF -- "$3" <<<"$2"; then fail "$1" "'$3' found in:" "$(head -c 2000 <<<"$2")"; else pass "$1"; fi
}
like() {
	if grep -qE -- "$3" <<<"$2"; then pass "$1"; else fail "$1" "/$3/ does not match:" "$(head -c 2000 <<<"$2")"; fi
}
file_has() {
	if grep -qF -- "$3" "$2" 2>/dev/null; then pass "$1"
	else fail "$1" "'$3' not in $2:" "$(head -c 2000 "$2" 2>&1)"; fi
}
file_hasnt() {
	if [ -f "$2" ] && ! grep -qF -- "$3" "$2"; then pass "$1"
	else fail "$1" "'$3' unexpectedly in $2 (or no such file):" "$(head -c 2000 "$2" 2>&1)"; fi
}
skip() { TAP_N=$((TAP_N + 1)); echo "ok $TAP_N - $1 # SKIP ${2:-}"; }
skip_all() {
	echo "1..0 # SKIP $*"
	TAP_SKIPPED_ALL=1
	exit 0
}
bail_out() { echo "Bail out! $*"; exit 99; }
diag() { printf '%s\n' "$@" | sed 's/^/# /'; }
show() { sed 's/^/# /' "$1"; }

# Hooks run by done_testing before the plan (e.g. the testbed's check of the
# agents' logs for sanitizer reports): names of functions.
TAP_BEFORE_DONE=()
done_testing() {
	local h
	for h in "${TAP_BEFORE_DONE[@]}"; do "$h"; done
	echo "1..$TAP_N"
	TAP_PLANNED=1
	if [ "$TAP_FAILED" -gt 0 ]; then
		echo "# $TAP_FAILED of $TAP_N failed"
		exit 1
	fi
	exit 0
}

# _tap_exit RC: what an exit status means in TAP (called by the EXIT trap).
_tap_exit() {
	if [ "$1" = 77 ] && [ "$TAP_N" = 0 ] && [ -z "${TAP_PLANNED:-}${TAP_SKIPPED_ALL:-}" ]; then
		echo "1..0 # SKIP (exit 77)"
		return 0
	fi
	return "$1"
}
