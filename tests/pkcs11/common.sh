# shellcheck shell=bash
# Shared by the tests of scagent-pkcs11.so: the demo card (SoftHSM) served by
# a private scagentd, and the module as the build left it.
#
#   . "$TOP_SRCDIR/tests/pkcs11/common.sh"
#   p11_need TOOL...        exit 77 when a tool is missing
#   p11_setup [AGENT_MODULE]  demo card + agent (its module: SoftHSM, or the
#                           one given); sets MODULE, SCAGENT_SOCKET
#   ext CMD...              run a third-party program that loads MODULE
#   ok DESC CMD... / nok DESC CMD... / finish

set -uo pipefail
: "${TOP_SRCDIR:?run through make check}" "${TOP_BUILDDIR:?}" "${SCAGENTD:?}" "${SCAGENT:?}"
# First: the test bed has an ok/nok of its own, which must not replace these
# (finish counts what these count).
. "$TOP_SRCDIR/tests/testbed/testbed.sh"

p11_need() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || { echo "SKIP: $t not installed"; exit 77; }
	done
}

n=0 failed=0
ok() { # ok DESC CMD...: pass when CMD succeeds
	local d=$1; shift
	n=$((n + 1))
	if "$@" >"$TB_DIR/last.out" 2>&1; then echo "ok $n - $d"
	else echo "not ok $n - $d"; sed 's/^/#   /' "$TB_DIR/last.out" | tail -n 20; failed=$((failed + 1)); fi
}
nok() { # nok DESC CMD...: pass when CMD fails
	local d=$1; shift
	n=$((n + 1))
	if "$@" >"$TB_DIR/last.out" 2>&1; then echo "not ok $n - $d"; failed=$((failed + 1))
	else echo "ok $n - $d"; fi
}
finish() {
	echo "1..$n"
	[ "$failed" = 0 ]
	exit $?
}

# A sanitizer build of the module cannot be loaded into uninstrumented
# programs unless the runtime comes first; their own leaks are not ours
# (the C test of the module checks ours).
_P11_ENV=()
_p11_sanitizer_env() {
	local asan deps
	# Not `ldd | grep -q`: with pipefail, ldd killed by SIGPIPE fails the test.
	deps=$(ldd "$MODULE" 2>/dev/null)
	if grep -q 'libasan' <<<"$deps"; then
		asan=$(sed -n 's/.*libasan[^ ]* => \([^ ]*\).*/\1/p' <<<"$deps" | head -n 1)
		_P11_ENV=(LD_PRELOAD="$asan" ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0")
	fi
}
ext() { env "${_P11_ENV[@]}" "$@"; }

p11_setup() {
	local i
	p11_need openssl pkcs11-tool softhsm2-util
	MODULE=$TOP_BUILDDIR/.libs/scagent-pkcs11.so
	[ -f "$MODULE" ] || { echo "module $MODULE not built" >&2; exit 99; }
	_p11_sanitizer_env
	tb_init
	tb_demo_card
	SCAGENT_SOCKET=$TB_DIR/agent.sock
	export SCAGENT_SOCKET MODULE
	"$SCAGENTD" --foreground --module "${1:-$TB_SOFTHSM}" --socket "$SCAGENT_SOCKET" \
		>"$TB_DIR/agent.log" 2>&1 &
	tb_track_pid $!
	for i in $(seq 100); do
		[ -S "$SCAGENT_SOCKET" ] && "$SCAGENT" status >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	cat "$TB_DIR/agent.log" >&2
	echo "scagentd did not start" >&2
	exit 99
}

# p11_verify PEM DGST-ARGS... -signature SIG DATA: verify with the certificate's key
p11_pubkey() { openssl x509 -in "$TB_DIR/certs/$1.pem" -pubkey -noout >"$TB_DIR/$1.pub"; echo "$TB_DIR/$1.pub"; }
# agent_logged_in TOKEN: true when the agent is logged in to TOKEN
agent_logged_in() { "$SCAGENT" status --json | grep -q "\"label\":\"$1\",\"logged_in\":true"; }
