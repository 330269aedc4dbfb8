#!/bin/bash
# One handshake in flight per (server, certificate) in `scagent tunnel`
# (issue 22), where it can go wrong: connections that wait while the card
# signs for another must not each ask the card once that handshake fails,
# and a kept session lives no longer than the server's ticket lifetime (a
# stale one offered by every connection at once made the card sign for each
# of them). The card is SoftHSM behind the fault module, which makes it slow
# and, when told, fail; its trace counts the signatures.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tls/tls-common.sh"
_tb_need curl
tb_fault_module
tb_init
tls_card
PKI=$TB_DIR/pki
TRACE=$TB_DIR/fault.trace
FFILE=$TB_DIR/faults
: >"$TRACE"
: >"$FFILE"
PCSCLITE_CSOCK_NAME=$TB_DIR/no-pcscd SCAGENT_FAULT_TARGET=$TB_SOFTHSM SCAGENT_FAULT_FILE=$FFILE \
	SCAGENT_FAULT_TRACE=$TRACE start_agent --module "$FAULT"
echo "$TB_PIN" | "$SCAGENT" login --token demo --pin-stdin 2>/dev/null ||
	bail_out "login failed"

# signs FROM-LINE: signatures made or refused by the card after line FROM of the trace
signs() { tail -n +"$(($1 + 1))" "$TRACE" | grep -c '^Sign ' || true; }
# tunnel NAME ARGS...: a tunnel to the server, its port in LP, its log in LOG
tunnel() {
	local name=$1
	shift
	LP=$(tb_port)
	LOG=$TB_DIR/tunnel-$name.log
	"$SCAGENT" -v tunnel --listen "127.0.0.1:$LP" --cafile "$PKI/root.pem" "$@" >"$LOG" 2>&1 &
	TP=$!
	tb_track_pid $TP
	wait_port "$LP" || { show "$LOG"; bail_out "tunnel did not listen"; }
}
untunnel() { kill "$TP"; wait "$TP" 2>/dev/null; }
# parallel N PREFIX: N requests at once through the tunnel, answers in PREFIX.I
parallel() {
	local pids="" i
	for i in $(seq "$1"); do
		curl -sS --max-time 30 "http://127.0.0.1:$LP/" >"$2.$i" 2>&1 &
		pids="$pids $!"
	done
	# shellcheck disable=SC2086
	wait $pids
}

NP=$(tb_port)
# The server keeps sessions and tickets for 2 s only (its ticket lifetime).
tls_nginx main "$NP" "ssl_session_cache shared:SSL:1m; ssl_session_tickets on; ssl_session_timeout 2s;"

# --- A failing card: the first connection signs (slowly) and fails; the
# others waited for it and fail with it, without asking the card.
echo "delay-sign=1500ms,sign-fail=CKR_FUNCTION_FAILED" >"$FFILE"
tunnel fail --connect "localhost:$NP"
s0=$(wc -l <"$TRACE")
parallel 4 "$TB_DIR/f"
n=$(signs "$s0")
if [ "$n" = 1 ] && [ "$(grep -c 'upstream .* failed: ' "$LOG")" = 4 ] &&
	[ "$(grep -c 'the card was not asked again' "$LOG")" = 3 ]; then
	pass "4 connections at once, the card fails: it was asked once; the 3 that waited fail with it"
else
	fail "a failing card was asked $n times for 4 connections at once (1 wanted)"; show "$LOG"
fi
# A new connection after the failure asks the card again (the card works now).
: >"$FFILE"
s0=$(wc -l <"$TRACE")
body=$(curl -sS --max-time 30 "http://127.0.0.1:$LP/" 2>&1)
if [ "$body" = "hello from nginx main" ] && [ "$(signs "$s0")" = 1 ]; then
	pass "after the failure, the next connection asks the card again and gets the page"
else
	fail "after the failure: $body ($(signs "$s0") signatures)"; show "$LOG"
fi
untunnel

# --- The server's ticket lifetime (2 s) ends the kept session: after it,
# 4 connections at once make one handshake with the card, not 4.
echo "delay-sign=500ms" >"$FFILE"
tunnel expire --connect "localhost:$NP"
s0=$(wc -l <"$TRACE")
body=$(curl -sS --max-time 30 "http://127.0.0.1:$LP/" 2>&1)
[ "$body" = "hello from nginx main" ] || { fail "first request: $body"; show "$LOG"; }
ok "the kept session is kept for the server's 2 s, not --session-lifetime" \
	grep -q 'session kept for .* for 2 s at most' "$LOG"
sleep 3
s1=$(wc -l <"$TRACE")
parallel 4 "$TB_DIR/e"
bad=0
for i in 1 2 3 4; do grep -q "hello from nginx main" "$TB_DIR/e.$i" || { bad=1; show "$TB_DIR/e.$i"; }; done
n=$(signs "$s1")
if [ "$bad" = 0 ] && [ "$(signs "$s0")" = $((n + 1)) ] && [ "$n" = 1 ]; then
	pass "after the server's ticket lifetime, 4 connections at once cost one signature"
else
	fail "after the ticket lifetime: $n signatures for 4 connections at once (1 wanted)"; show "$LOG"
fi
file_hasnt "the expired session was not offered" "$LOG" 'did not resume'
untunnel

stop_agent
done_testing
