# shellcheck shell=bash
# scagent test bed: SoftHSM tokens, a demo PKI modelled on AD CS, and TLS
# servers that demand a client certificate.  Source it from a bash test:
#
#     . "$srcdir/tests/testbed/testbed.sh"
#     tb_init
#     tb_demo_card
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

_tb_src=$(dirname "${BASH_SOURCE[0]}")/../../src/testcard/pki.sh
[ -r "$_tb_src" ] || { echo "testbed: $_tb_src not found" >&2; exit 99; }
# shellcheck source=../../src/testcard/pki.sh
. "$_tb_src"
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
	: >"$TB_DIR/pids"
	: >"$TB_DIR/ports"
	: >"$TB_DIR/on-exit"
	: >"$TB_DIR/testbed.log"
	trap '_tb_cleanup' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	_tb_log "TB_DIR=$TB_DIR"
}

tb_track_pid() { echo "$1" >>"$TB_DIR/pids"; }
tb_on_exit() { printf '%s\n' "$*" >>"$TB_DIR/on-exit"; }

_tb_cleanup() {
	local rc=$? pid alive cmd
	set +e
	[ -n "${TB_DIR:-}" ] && [ -d "$TB_DIR" ] || exit "$rc"
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

# tb_agent_start [scagentd ARGS...]: scagentd --foreground with ARGS, its
# output appended to $TB_DIR/agent.log (or to the file named by TB_AGENT_LOG
# given as `TB_AGENT_LOG=FILE tb_agent_start ...`).  Without a --socket in
# ARGS it listens on $TB_DIR/agent.sock, exported as SCAGENT_SOCKET.  Returns
# when `$SCAGENT status` is answered (the socket file appears at bind(),
# before listen()); dies if the agent exits or is silent for 20 s.  The pid
# is tracked (the EXIT trap kills it) and left in TB_AGENT_PID.
tb_agent_start() {
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

# tb_agent_stop [PID [LOG]]: SIGTERM to the agent (default: the last one
# tb_agent_start started), wait for it (20 s, then SIGKILL) and return its
# exit status; an exit status of 0 with a sanitizer report (ASan, LSan,
# UBSan) in its part of the log returns 1.  The report is printed to stderr.
# PID and LOG name an agent started otherwise (e.g. through socket
# activation); it must be a child of this shell.  Under CI's ASan build this
# is what catches leaks and memory errors of the agent: the EXIT trap's kill
# ignores them.
tb_agent_stop() {
	local pid=${1:-${TB_AGENT_PID:-}} log=${2:-} off=0 rc=0 p o l
	[ -n "$pid" ] || _tb_die "tb_agent_stop: no agent was started"
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

# TAP-like helpers of the TPM and enrolment tests: ok DESC CMD... (CMD must
# succeed), nok DESC CMD... (CMD must fail), tb_done (exit status from the
# count of failures).  The agent, PC/SC, TLS and list tests define their own
# helpers of these names after sourcing this file, which replace these.
TB_N=0 TB_FAILED=0
ok() {
	local d=$1; shift
	TB_N=$((TB_N + 1))
	if "$@" >>"$TB_DIR/test.log" 2>&1; then echo "ok $TB_N - $d"
	else echo "not ok $TB_N - $d"; TB_FAILED=$((TB_FAILED + 1)); fi
}
nok() {
	local d=$1; shift
	TB_N=$((TB_N + 1))
	if "$@" >>"$TB_DIR/test.log" 2>&1; then echo "not ok $TB_N - $d"; TB_FAILED=$((TB_FAILED + 1))
	else echo "ok $TB_N - $d"; fi
}
# has TEXT NEEDLE: TEXT contains NEEDLE
has() { grep -qF -- "$2" <<<"$1"; }
# eq A B
eq() { [ "$1" = "$2" ]; }
# jq_py JSON EXPR: print a Python expression over the JSON document j
jq_py() { python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
tb_done() {
	echo "1..$TB_N"
	if [ "$TB_FAILED" -ne 0 ]; then
		echo "# $TB_FAILED of $TB_N failed; agent log:"
		sed 's/^/# /' "$TB_DIR/agent.log" 2>/dev/null | tail -40
		exit 1
	fi
	exit 0
}
