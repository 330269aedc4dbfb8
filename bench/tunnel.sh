#!/usr/bin/env bash
# Benchmark (issue 22): what a person waits for through `scagent tunnel` when
# the card is slow. The fault module gives SoftHSM a card's timing
# (delay-sign=300ms, delay-other=20ms, as a PIV card over USB); 16 HTTP
# requests (10 one after the other, then 6 at once) go through one tunnel to
# nginx, which requires a client certificate:
#   - with kept sessions (the default): goal under 2x one signature;
#   - --session-lifetime 0: a signature per connection;
#   - stunnel in client mode on the same token through the libp11 engine,
#     when stunnel4 and libengine-pkcs11-openssl are installed.
# Prints figures; asserts nothing (not a test).
#   bench/tunnel.sh [SIGN-MS [OTHER-MS]]   (default 300 20)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
sign_ms=${1:-300}
other_ms=${2:-20}
make -s scagent scagentd tests/mock/fault-pkcs11.la >/dev/null
FAULT=$top/tests/mock/.libs/fault-pkcs11.so
SCAGENT=$top/scagent
SCAGENTD=$top/scagentd
TOP_SRCDIR=$top
TOP_BUILDDIR=$top
export SCAGENT SCAGENTD TOP_SRCDIR TOP_BUILDDIR
. tests/testbed/testbed.sh
. tests/tls/tls-common.sh
tb_init
tb_pki
tb_softhsm_token card
tb_enroll card 01 alice rsa:2048 good
tb_write_ca_certs card
PKI=$TB_DIR/pki
export SCAGENT_FAULT_TARGET=$TB_SOFTHSM
export SCAGENT_FAULT="delay-sign=${sign_ms}ms,delay-other=${other_ms}ms"
start_agent --module "$FAULT" --log-level error
echo "$TB_PIN" | "$SCAGENT" login --token card --pin-stdin 2>/dev/null
NP=$(tb_port)
tls_nginx bench "$NP" "ssl_session_cache shared:SSL:1m; ssl_session_tickets on;"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# sixteen PORT: 10 requests one after the other, then 6 at once; FIRST gets
# the time of the first one (the full handshake, when the card signs)
# (each answer is kept and checked after the clock stopped: GOT counts nginx's pages)
sixteen() {
	local pids="" t0 t1 i
	rm -f "$TB_DIR"/ans.*
	t0=$(now)
	curl -s --max-time 60 -o "$TB_DIR/ans.1" "http://127.0.0.1:$1/"
	t1=$(now)
	for i in $(seq 2 10); do curl -s --max-time 60 -o "$TB_DIR/ans.$i" "http://127.0.0.1:$1/"; done
	for i in $(seq 11 16); do curl -s --max-time 60 -o "$TB_DIR/ans.$i" "http://127.0.0.1:$1/" & pids="$pids $!"; done
	# shellcheck disable=SC2086
	wait $pids
	FIRST=$(secs "$t0" "$t1")	# worked out after the clock stopped
	GOT=$(cat "$TB_DIR"/ans.* 2>/dev/null | grep -c 'hello from nginx')
}
# tunnel_time ARGS...: seconds for the 16 requests through a new tunnel
tunnel_time() {
	local lp t0 t1 pid
	lp=$(tb_port)
	"$SCAGENT" tunnel --listen "127.0.0.1:$lp" --connect "localhost:$NP" --cafile "$PKI/root.pem" \
		"$@" >"$TB_DIR/tunnel-$lp.log" 2>&1 & pid=$!
	tb_track_pid $pid
	wait_port "$lp"
	t0=$(now); sixteen "$lp"; t1=$(now)
	kill $pid; wait $pid 2>/dev/null || true
	TOTAL=$(secs "$t0" "$t1")
	if [ "$GOT" = 16 ]; then echo "$TOTAL s (the first $FIRST s)"
	else TOTAL=; echo "FAILED: $GOT of 16 requests got the page (see $TB_DIR/tunnel-$lp.log)"; fi
}

# One signature through the agent, as the tunnel asks for it.
head -c 32 /dev/urandom >"$TB_DIR/digest"
t0=$(now)
"$SCAGENT" sign --cert alice --alg rsa-pkcs1-sha256 --digest --in "$TB_DIR/digest" >/dev/null
t1=$(now)
one=$(secs "$t0" "$t1")

tunnel_time >"$TB_DIR/kept"; kept=$(cat "$TB_DIR/kept")
ratio=$([ -n "$TOTAL" ] && awk -v k="$TOTAL" -v o="$one" 'BEGIN { printf "%.2f x one signature (goal: under 2)", k / o }')
none=$(tunnel_time --session-lifetime 0)

st="-"
ENGINE=$(find /usr/lib -name 'pkcs11.so' -path '*engines*' 2>/dev/null | head -1)
if command -v stunnel4 >/dev/null 2>&1 && [ -n "$ENGINE" ]; then
	sp=$(tb_port)
	cat >"$TB_DIR/openssl.cnf" <<-CNF
		openssl_conf = init
		[init]
		engines = engines
		[engines]
		pkcs11 = pkcs11
		[pkcs11]
		engine_id = pkcs11
		dynamic_path = $ENGINE
		MODULE_PATH = $FAULT
		PIN = $TB_PIN
		init = 0
	CNF
	cat >"$TB_DIR/stunnel.conf" <<-CNF
		foreground = yes
		pid =
		engine = pkcs11
		engineCtrl = MODULE_PATH:$FAULT
		engineCtrl = PIN:$TB_PIN
		[bench]
		client = yes
		accept = 127.0.0.1:$sp
		connect = 127.0.0.1:$NP
		engineId = pkcs11
		cert = $TB_DIR/alice-chain.pem
		key = pkcs11:token=card;object=alice;type=private
		CAfile = $PKI/root.pem
		verifyChain = yes
		checkHost = localhost
		sni = localhost
	CNF
	# alice's certificate (as the testbed issued it) and the issuing CA
	cat "$TB_DIR/certs/alice.pem" "$PKI/issuing.pem" >"$TB_DIR/alice-chain.pem"
	OPENSSL_CONF=$TB_DIR/openssl.cnf stunnel4 "$TB_DIR/stunnel.conf" >"$TB_DIR/stunnel.log" 2>&1 &
	spid=$!
	tb_track_pid $spid
	# timed from the first connection (its full handshake) on, then checked
	if wait_port "$sp" && { t0=$(now); sixteen "$sp"; t1=$(now); } && [ "$GOT" = 16 ]; then
		st="$(secs "$t0" "$t1") s (the first $FIRST s)"
	else
		st="(could not be set up: see $TB_DIR/stunnel.log)"
		sed 's/^/  stunnel: /' "$TB_DIR/stunnel.log" | tail -5 >&2
	fi
	kill $spid 2>/dev/null || true
else
	st="(stunnel4 or the libp11 engine not installed)"
fi

cat <<-EOF
	bench/tunnel.sh $sign_ms $other_ms: a card of ${sign_ms} ms a signature, ${other_ms} ms other calls
	one signature through the agent (scagent sign):        ${one} s
	16 requests through one tunnel, sessions kept:         ${kept}   ${ratio}
	16 requests through one tunnel, --session-lifetime 0:  ${none}
	16 requests through stunnel (client mode, libp11):     ${st}
EOF
