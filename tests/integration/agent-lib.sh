# shellcheck shell=bash
# Helpers shared by the agent's integration tests (tests/integration/agent-*.sh):
# TAP-like assertions and starting scagentd on this test's private socket.
# Source after tests/testbed/testbed.sh.

: "${SCAGENT:?run from make check (SCAGENT unset)}"
: "${SCAGENTD:?run from make check (SCAGENTD unset)}"
: "${TOP_SRCDIR:?run from make check (TOP_SRCDIR unset)}"

# Debian's python3 (another one may be first on PATH); the tests use only its
# standard library.
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=$(command -v python3 || true); fi

n=0 failed=0
pass() { n=$((n + 1)); echo "ok $n - $1"; }
fail() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; [ $# -lt 2 ] || printf '#   %s\n' "$2"; }
# ok DESC CMD...: pass when CMD succeeds (its output goes to $TB_DIR/last.out)
ok() {
	local d=$1; shift
	if "$@" >"$TB_DIR/last.out" 2>&1; then pass "$d"
	else fail "$d" "$(tail -n 3 "$TB_DIR/last.out" | tr '\n' ' ')"; fi
}
# nok DESC CMD...: pass when CMD fails
nok() {
	local d=$1; shift
	if "$@" >"$TB_DIR/last.out" 2>&1; then fail "$d" "succeeded: $(tail -n 3 "$TB_DIR/last.out" | tr '\n' ' ')"
	else pass "$d"; fi
}
# is DESC GOT WANT
is() {
	if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2', want '$3'"; fi
}
# has DESC TEXT NEEDLE: TEXT contains NEEDLE
has() {
	if grep -qF -- "$3" <<<"$2"; then pass "$1"; else fail "$1" "'$3' not in: $(head -c 400 <<<"$2")"; fi
}
# hasnt DESC TEXT NEEDLE
hasnt() {
	if grep -qF -- "$3" <<<"$2"; then fail "$1" "'$3' found in: $(head -c 400 <<<"$2")"; else pass "$1"; fi
}

# run CMD...: RC, OUT (stdout) and ERR (stderr) of CMD
run() {
	RC=0
	"$@" >"$TB_DIR/run.out" 2>"$TB_DIR/run.err" || RC=$?
	OUT=$(cat "$TB_DIR/run.out")
	ERR=$(cat "$TB_DIR/run.err")
}

# wait_for SECONDS CMD...: poll CMD every 0.1 s
wait_for() {
	local t=$1 i; shift
	for ((i = 0; i < t * 10; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# start_agent SOCKET [scagentd args...]: tb_agent_start --log-level debug on
# SOCKET with SoftHSM (unless the args name a --module), log in
# $TB_DIR/agent-N.log; sets AGENT_PID and AGENT_LOG.  Fails the test (exit
# 99) if the agent does not answer.  stop_agent DESC [PID] stops it with
# tb_agent_stop and checks exit status 0 and no sanitizer report.
agent_count=0
start_agent() {
	local sock=$1 mod=(--module "$TB_SOFTHSM"); shift
	case " $* " in *" --module "*) mod=() ;; esac
	agent_count=$((agent_count + 1))
	AGENT_LOG=$TB_DIR/agent-$agent_count.log
	TB_AGENT_LOG=$AGENT_LOG tb_agent_start --log-level debug "${mod[@]}" --socket "$sock" "$@"
	AGENT_PID=$TB_AGENT_PID
}
stop_agent() {
	local rc=0
	tb_agent_stop "${2:-$AGENT_PID}" 2>"$TB_DIR/stop.err" || rc=$?
	if [ "$rc" = 0 ]; then pass "$1"
	else fail "$1" "exit status $rc: $(head -c 600 "$TB_DIR/stop.err" | tr '\n' ' ')"; fi
	return "$rc"
}
agent_up() { [ -S "$1" ] && "$SCAGENT" --socket "$1" status; }

# module_env MODULE: P11ENV=(VAR=VALUE...) to run an uninstrumented program
# (pkcs11-tool) with MODULE: when MODULE is the ASan build, its runtime must
# come first, and the program's own leaks are not ours.
module_env() {
	local deps
	P11ENV=()
	deps=$(ldd "$1" 2>/dev/null)	# not `ldd | grep -q`: SIGPIPE + pipefail
	if grep -q libasan <<<"$deps"; then
		P11ENV=(LD_PRELOAD="$(sed -n 's/.*libasan[^ ]* => \([^ ]*\).*/\1/p' <<<"$deps" | head -n 1)"
			ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0")
	fi
}

# pubkey LABEL: the public key of $TB_DIR/certs/LABEL.pem as PEM file path
pubkey() {
	[ -f "$TB_DIR/$1.pub" ] || openssl x509 -in "$TB_DIR/certs/$1.pem" -noout -pubkey >"$TB_DIR/$1.pub"
	echo "$TB_DIR/$1.pub"
}

done_testing() {
	# Under ASan/UBSan (CI), an agent that stopped during the test reported
	# its memory errors and leaks to its log: they fail the test.
	local f
	for f in "$TB_DIR"/agent-*.log "$TB_DIR"/w/*.log; do
		[ -f "$f" ] || continue
		if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$f"; then
			fail "no sanitizer report in $(basename "$f")" "$(grep -m1 -E 'Sanitizer|runtime error:' "$f")"
			sed 's/^/#   /' "$f" | head -n 40
		fi
	done
	echo "1..$n"
	if [ "$failed" -gt 0 ]; then
		echo "# $failed of $n failed"
		[ -n "${AGENT_LOG:-}" ] && { echo "# last agent log:"; tail -n 30 "$AGENT_LOG" | sed 's/^/#   /'; }
		exit 1
	fi
	exit 0
}

# need TOOL...: skip (77) when a tool is missing
need() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || { echo "SKIP: $t not installed"; exit 77; }
	done
}
