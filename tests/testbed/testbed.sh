# shellcheck shell=bash
# scagent test bed: SoftHSM tokens, a demo PKI modelled on AD CS, and TLS
# servers that demand a client certificate.  Source it from a bash test:
#
#     . "$TOP_SRCDIR/tests/testbed/testbed.sh"
#     tb_init
#     tb_demo_card
#     start_agent
#     ok "the agent lists alice" sc check alice
#     done_testing
#
# It brings the one set of TAP assertions of tests/lib/tap.sh (ok, nok, is,
# has, like, skip, done_testing, ...), the agent fixture (start_agent,
# stop_agent), and the common start of a test (tb_agent_test).  Run one test
# by hand with tests/run FILE, or make check TESTS=FILE.
#
# Every test gets its own directory ($TB_DIR), token store and ports, so tests
# can run in parallel (make -j check).  Functions print nothing unless
# TB_VERBOSE=1; on any error they print "testbed: ..." to stderr and exit 99
# (automake's "hard error").  TB_KEEP=1 keeps $TB_DIR after the test.
#
# The SoftHSM, PKI and enrolment functions (tb_softhsm_token, tb_pki,
# tb_server_cert, tb_enroll, tb_cert_only, tb_demo_card, ...) live in
# src/testcard/pki.sh, the part of the installed test kit (`scagent testcard`)
# that this file shares; this file adds a test's lifecycle, ports, servers, the
# agent and TAP helpers.

set -uo pipefail
: "${SCAGENT:?run one test with tests/run FILE or make check TESTS=FILE (SCAGENT unset)}"
: "${SCAGENTD:?run one test with tests/run FILE or make check TESTS=FILE (SCAGENTD unset)}"
: "${TOP_SRCDIR:?run one test with tests/run FILE or make check TESTS=FILE (TOP_SRCDIR unset)}"
: "${TOP_BUILDDIR:?run one test with tests/run FILE or make check TESTS=FILE (TOP_BUILDDIR unset)}"

_tb_here=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../lib/tap.sh
. "$_tb_here/../lib/tap.sh"
_tb_src=$_tb_here/../../src/testcard/pki.sh
[ -r "$_tb_src" ] || { echo "testbed: $_tb_src not found" >&2; exit 99; }
# shellcheck source=../../src/testcard/pki.sh
. "$_tb_src"
# Debian's python3 (another one may be first on PATH); the tests use only its
# standard library.
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=$(command -v python3 || true); fi
_tb_owner=
trap '_tb_exit' EXIT
# The agent's pinentry is "auto" by default: with a display or a terminal in
# GPG_TTY it would ask the person running the tests. Tests start with neither;
# one that wants a pinentry sets what it needs (GPG_TTY=... start_agent).
unset DISPLAY WAYLAND_DISPLAY GPG_TTY

# ---------------------------------------------------------------- lifecycle

# tb_init: private $TB_DIR and an EXIT trap that stops tracked processes and
# removes the directory (unless TB_KEEP=1).  Tests must not install their own
# EXIT trap; use tb_on_exit CMD to add cleanup commands.
tb_init() {
	_tb_need mktemp openssl pkcs11-tool softhsm2-util date sed flock
	TB_DIR=$(mktemp -d "${TMPDIR:-/tmp}/scagent-tb.XXXXXX") || _tb_die "mktemp failed"
	export TB_DIR
	# scagent's per-user files (the certificate preferences of `scagent
	# prefer`) in the test's directory, never the home of whoever runs it
	XDG_CONFIG_HOME=$TB_DIR/config
	export XDG_CONFIG_HOME
	_tb_owner=1	# not exported: a child shell that sources this file leaves it alone
	: >"$TB_DIR/pids"
	: >"$TB_DIR/ports"
	: >"$TB_DIR/on-exit"
	: >"$TB_DIR/testbed.log"
	trap 'exit 130' INT
	trap 'exit 143' TERM
	_tb_log "TB_DIR=$TB_DIR"
}

tb_track_pid() { echo "$1" >>"$TB_DIR/pids"; }
tb_on_exit() { printf '%s\n' "$*" >>"$TB_DIR/on-exit"; }

# tb_open_dir [OWNER]: a new directory (mode 0755, OWNER's if given) that uid
# 65534 can enter, for tests run as a second uid: in $TB_DIR when the way to
# it is open, else in /var/tmp or /dev/shm (a CI sandbox may keep /tmp to
# root), removed at exit. Fails when there is none.
tb_open_dir() {
	local base d
	chmod 711 "$TB_DIR"
	for base in "$TB_DIR" /var/tmp /dev/shm; do
		d=$(mktemp -d "$base/open.XXXXXX" 2>/dev/null) || continue
		chmod 755 "$d"
		[ -z "${1:-}" ] || chown "$1" "$d"
		if setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$d"; then
			[ "$base" = "$TB_DIR" ] || tb_on_exit "rm -rf '$d'"
			echo "$d"
			return 0
		fi
		rm -rf "$d"
	done
	return 1
}

# The EXIT trap (set when this file is sourced): tb_init's cleanup, and exit
# status 77 before any assertion as a TAP skip.
_tb_exit() {
	local rc=$?
	set +e
	_tap_exit "$rc"
	rc=$?
	[ -n "${_tb_owner:-}" ] && [ -n "${TB_DIR:-}" ] && [ -d "$TB_DIR" ] || exit "$rc"
	_tb_cleanup "$rc"
}

_tb_cleanup() {
	local rc=$1 pid alive cmd
	while IFS= read -r cmd; do eval "$cmd" >/dev/null 2>&1; done <"$TB_DIR/on-exit"
	# TERM everything, wait up to ~3 s, then KILL the survivors.
	while read -r pid; do kill -TERM "$pid" 2>/dev/null; done <"$TB_DIR/pids"
	for _ in $(seq 30); do
		alive=0
		while read -r pid; do
			kill -0 "$pid" 2>/dev/null && alive=1
		done <"$TB_DIR/pids"
		[ "$alive" = 0 ] && break
		sleep 0.1
	done
	while read -r pid; do kill -KILL "$pid" 2>/dev/null; done <"$TB_DIR/pids"
	if [ "${TB_KEEP:-0}" = 1 ]; then
		echo "testbed: kept $TB_DIR" >&2
	else
		rm -rf "$TB_DIR"
	fi
	exit "$rc"
}

# tb_port: print a free TCP port on 127.0.0.1, never the same twice per test.
tb_port() {
	local p
	for _ in $(seq 200); do
		# Below Linux's ephemeral range (32768-60999): a client connection's
		# source port (or its TIME_WAIT) can never take a port a test listens on.
		p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))
		grep -qx "$p" "$TB_DIR/ports" && continue
		_tb_port_busy "$p" && continue
		echo "$p" >>"$TB_DIR/ports"
		echo "$p"
		return 0
	done
	_tb_die "no free TCP port found"
}

# true when something listens on (or holds) 127.0.0.1:PORT
_tb_port_busy() {
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}

# true when something accepts connections on 127.0.0.1:PORT
_tb_listening() {
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -Hltn "( sport = :$1 )" 2>/dev/null)" ]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}

# ---------------------------------------------------------------- TLS server

# tb_s_server PORT [extra s_server args]: openssl s_server on 127.0.0.1:PORT
# that requires a client certificate from the Contoso PKI; serves -www.
# Its output goes to $TB_DIR/s_server-PORT.log.
tb_s_server() {
	local port=$1 p=$TB_DIR/pki pid log
	shift
	[ -f "$p/localhost.pem" ] || tb_server_cert localhost DNS:localhost IP:127.0.0.1
	log=$TB_DIR/s_server-$port.log
	openssl s_server -accept "127.0.0.1:$port" -cert "$p/localhost.pem" \
		-key "$p/localhost.key" -cert_chain "$p/issuing.pem" \
		-CAfile "$p/ca-chain.pem" -Verify 2 -www "$@" </dev/null >"$log" 2>&1 &
	pid=$!
	tb_track_pid "$pid"
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; _tb_die "s_server on port $port exited"; }
		if _tb_listening "$port"; then
			_tb_log "s_server pid $pid on 127.0.0.1:$port"
			return 0
		fi
		sleep 0.1
	done
	cat "$log" >&2
	_tb_die "s_server did not listen on port $port within 10 s"
}

# ---------------------------------------------------------------- the agent

# start_agent [SOCKET] [scagentd ARGS...]: the one way a test starts the
# agent.  scagentd --foreground --log-level debug --module SoftHSM (unless ARGS
# give a --log-level or a --module) on SOCKET, its output in
# $TB_DIR/agent-N.log (N counts the agents of this test; or the file named
# by TB_AGENT_LOG=FILE start_agent ...), named by AGENT_LOG;
# its pid in AGENT_PID, its socket in AGENT_SOCK.  Without a SOCKET (or a
# --socket in ARGS) it listens on $TB_DIR/agent.sock, exported as
# SCAGENT_SOCKET.  Returns when the agent answers `scagent status`; exits 99
# (hard error) when it does not within 20 s.
# stop_agent [DESC [PID [LOG]]]: an assertion: SIGTERM stops the agent
# (default: the last one started; PID and LOG name one started otherwise,
# e.g. by socket activation, a child of this shell) with exit status 0 and no
# sanitizer report in its log.
# done_testing fails the test for a sanitizer report in any agent's log.
TB_AGENT_N=0
start_agent() {
	local sock="" lvl=(--log-level debug) mod=(--module "$TB_SOFTHSM") a
	case ${1:-} in -*|"") ;; *) sock=$1; shift ;; esac
	for a in "$@"; do
		case $a in
		--log-level|--log-level=*) lvl=() ;;
		--module|--module=*) mod=() ;;
		esac
	done
	[ -n "$sock" ] && set -- --socket "$sock" "$@"
	TB_AGENT_N=$((TB_AGENT_N + 1))
	AGENT_LOG=${TB_AGENT_LOG:-$TB_DIR/agent-$TB_AGENT_N.log}
	TB_AGENT_LOG=$AGENT_LOG _tb_agent_spawn "${lvl[@]}" "${mod[@]}" "$@"
	AGENT_PID=$TB_AGENT_PID
}
stop_agent() {
	local d=${1:-the agent stops on SIGTERM: exit 0, no sanitizer report} rc=0
	tb_agent_stop "${2:-${AGENT_PID:-}}" "${3:-}" 2>"$TB_DIR/stop.err" || rc=$?
	if [ "$rc" = 0 ]; then pass "$d"
	else fail "$d" "exit status $rc:" "$(head -c 1000 "$TB_DIR/stop.err")"; fi
	return "$rc"
}

# _tb_agent_spawn [scagentd ARGS...]: scagentd --foreground with ARGS, its
# output appended to $TB_DIR/agent.log (or to the file named by TB_AGENT_LOG
# given as `TB_AGENT_LOG=FILE _tb_agent_spawn ...`).  Without a --socket in
# ARGS it listens on $TB_DIR/agent.sock, exported as SCAGENT_SOCKET.  Returns
# when `$SCAGENT status` is answered (the socket file appears at bind(),
# before listen()); dies if the agent exits or is silent for 20 s.  The pid
# is tracked (the EXIT trap kills it) and left in TB_AGENT_PID, its socket
# in AGENT_SOCK.
_tb_agent_spawn() {
	local log=${TB_AGENT_LOG:-$TB_DIR/agent.log} sock="" a prev="" pid off
	for a in "$@"; do
		[ "$prev" = --socket ] && sock=$a
		case $a in --socket=*) sock=${a#--socket=} ;; esac
		prev=$a
	done
	if [ -z "$sock" ]; then
		sock=$TB_DIR/agent.sock
		set -- --socket "$sock" "$@"
		SCAGENT_SOCKET=$sock
		export SCAGENT_SOCKET
	fi
	AGENT_SOCK=$sock
	off=0
	[ -f "$log" ] && off=$(stat -c %s "$log")
	"$SCAGENTD" --foreground "$@" </dev/null >>"$log" 2>&1 &
	pid=$!
	tb_track_pid "$pid"
	# pid, where this agent's part of the log starts, the log
	printf '%s %s %s\n' "$pid" "$off" "$log" >>"$TB_DIR/agents"
	TB_AGENT_PID=$pid
	for _ in $(seq 200); do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -c +"$((off + 1))" "$log" >&2
			_tb_die "scagentd exited at start: $SCAGENTD --foreground $*"
		fi
		"$SCAGENT" --socket "$sock" status >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	tail -c +"$((off + 1))" "$log" >&2
	_tb_die "scagentd did not answer on $sock within 20 s"
}

# tb_agent_stop [PID [LOG]] (stop_agent without the assertion): SIGTERM to the agent (default: the last one
# _tb_agent_spawn started), wait for it (20 s, then SIGKILL) and return its
# exit status; an exit status of 0 with a sanitizer report (ASan, LSan,
# UBSan) in its part of the log returns 1.  The report is printed to stderr.
# PID and LOG name an agent started otherwise (e.g. through socket
# activation); it must be a child of this shell.  Under CI's ASan build this
# is what catches leaks and memory errors of the agent: the EXIT trap's kill
# ignores them.
tb_agent_stop() {
	local pid=${1:-${TB_AGENT_PID:-}} log=${2:-} off=0 rc=0 p o l
	[ -n "$pid" ] || _tb_die "stop_agent: no agent was started"
	if [ -z "$log" ] && [ -f "$TB_DIR/agents" ]; then
		while read -r p o l; do
			[ "$p" = "$pid" ] && { off=$o; log=$l; }
		done <"$TB_DIR/agents"
	fi
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 200); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "testbed: scagentd $pid did not exit within 20 s of SIGTERM; killed" >&2
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null || rc=$?
	if [ -n "$log" ] && [ -f "$log" ] &&
		tail -c +"$((off + 1))" "$log" | grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:'; then
		echo "testbed: sanitizer report in $log (scagentd $pid, exit $rc):" >&2
		tail -c +"$((off + 1))" "$log" | grep -A40 -m1 -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' >&2
		[ "$rc" = 0 ] && rc=1
	elif [ "$rc" != 0 ]; then
		echo "testbed: scagentd $pid exited with status $rc" >&2
		[ -n "$log" ] && [ -f "$log" ] && tail -c +"$((off + 1))" "$log" | tail -n 20 >&2
	fi
	[ "$pid" = "${TB_AGENT_PID:-}" ] && TB_AGENT_PID=
	return "$rc"
}

# ---------------------------------------------------------------- enrolment, TAP

# tb_issue_csr CSR OUT: issue a certificate for a PKCS#10 request with the
# issuing CA of tb_pki, copying the extensions the request asks for (SAN,
# EKU, key usage), as an AD CS enterprise CA does for its templates.
tb_issue_csr() {
	local csr=$1 out=$2 ext=$TB_DIR/pki/csr-ee.ext
	tb_pki
	cat >"$ext" <<-'EOF2'
		[ee]
		basicConstraints = critical, CA:FALSE
		subjectKeyIdentifier = hash
		authorityKeyIdentifier = keyid
	EOF2
	_tb_run openssl x509 -req -in "$csr" -CA "$TB_DIR/pki/issuing.pem" \
		-CAkey "$TB_DIR/pki/issuing.key" -set_serial "0x$(openssl rand -hex 8)" \
		-days 30 -copy_extensions copyall -extfile "$ext" -extensions ee -out "$out"
}

# ---------------------------------------------------------------- a test's start

# tb_agent_test [USER...]: the common start of an agent test: tb_init, and
# with USERs the token "demo" of the Contoso PKI with their keys and
# certificates (alice: id 01, RSA-2048; bob: id 02, EC P-256); then
# S=$TB_DIR/agent.sock (the socket start_agent "$S" uses), the work
# directory W=$TB_DIR/w and 2000 bytes of data to sign in $W/data.
# sc ARGS...: scagent on $S.
# tb_fault_module: $FAULT, the fault-injection module over SoftHSM
# (tests/mock/fault-pkcs11.c), built by make check; bails out without it.
tb_fault_module() {
	FAULT=$TOP_BUILDDIR/tests/mock/.libs/fault-pkcs11.so
	[ -f "$FAULT" ] || bail_out "fault module $FAULT not built (make check builds it)"
}

tb_agent_test() {
	local u
	tb_init
	if [ $# -gt 0 ]; then
		tb_pki
		tb_softhsm_token demo
	fi
	for u in "$@"; do
		case $u in
		alice) tb_enroll demo 01 alice rsa:2048 good ;;
		bob) tb_enroll demo 02 bob EC:prime256v1 good ;;
		*) _tb_die "tb_agent_test: no user $u (alice, bob)" ;;
		esac
	done
	S=$TB_DIR/agent.sock
	W=$TB_DIR/w
	mkdir -p "$W"
	head -c 2000 /dev/urandom >"$W/data"
}
sc() { "$SCAGENT" --socket "$S" "$@"; }

# need TOOL...: skip the test when a tool is missing; need_py: when python3 is.
need() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || skip_all "$t not installed"
	done
}
need_py() { [ -n "$PY" ] || skip_all "python3 not installed"; }

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

# json_eval JSON EXPR: print a Python expression over the JSON text as j
# (Python's repr: True, ('a', 1), ['x'])
json_eval() { "$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
# jq_py FILE|- EXPR: a Python expression over the JSON document in FILE (or
# stdin) as j; a string as is, anything else as JSON
jq_py() {
	"$PY" -c '
import json, sys
src = sys.argv[1]
j = json.load(sys.stdin if src == "-" else open(src))
r = eval(sys.argv[2])
print(json.dumps(r) if not isinstance(r, str) else r)
' "$@"
}

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

# cmocka_tap CMD...: run a cmocka test program; each of its tests becomes an
# assertion (its "[ RUN ]" then "[ OK ]" or "[ FAILED ]" lines), and one
# more asserts its exit status 0 (a crash loses no failure).
cmocka_tap() {
	local rc=0 line name o=$TB_DIR/cmocka.out
	local -A running=()
	"$@" >"$o" 2>&1 || rc=$?
	while IFS= read -r line; do
		name=${line#\[*\] }
		case $line in
		"[ RUN      ] "*) running[$name]=1 ;;
		"[       OK ] "*) [ -n "${running[$name]:-}" ] && { unset "running[$name]"; pass "$name"; } ;;
		"[  SKIPPED ] "*) [ -n "${running[$name]:-}" ] && { unset "running[$name]"; skip "$name" "cmocka skipped it"; } ;;
		"[  FAILED  ] "*|"[  ERROR   ] "*)
			[ -n "${running[$name]:-}" ] && { unset "running[$name]"; fail "$name"; } ;;
		*) diag "$line" ;;
		esac
	done <"$o"
	is "$(basename "${@: -1}") exits 0" "$rc" 0
}

# Under ASan/UBSan (CI), an agent that stopped during the test reported its
# memory errors and leaks to its log: they fail the test.  Also the logs in
# $TB_DIR/w/*.log (agents a test started otherwise, e.g. socket activation).
_tb_sanitizer_check() {
	local f p o
	[ -n "${TB_DIR:-}" ] && [ -d "$TB_DIR" ] || return 0
	{
		[ -f "$TB_DIR/agents" ] && while read -r p o f; do echo "$f"; done <"$TB_DIR/agents"
		for f in "$TB_DIR"/w/*.log; do [ -f "$f" ] && echo "$f"; done
	} | sort -u >"$TB_DIR/agent-logs"
	while IFS= read -r f; do
		[ -f "$f" ] || continue
		if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$f"; then
			fail "no sanitizer report in $(basename "$f")" "$(grep -A40 -m1 -E 'Sanitizer|runtime error:' "$f")"
		fi
	done <"$TB_DIR/agent-logs"
	if [ "$TAP_FAILED" -gt 0 ] && [ -n "${AGENT_LOG:-}" ] && [ -f "$AGENT_LOG" ]; then
		diag "last agent log ($AGENT_LOG):"
		tail -n 30 "$AGENT_LOG" | sed 's/^/#   /'
	fi
}
TAP_BEFORE_DONE+=(_tb_sanitizer_check)
