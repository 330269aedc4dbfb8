#!/bin/bash
# The physical-card path, end to end: real pcscd + vpcd, the test kit's
# emulated PIV card (`scagent testcard piv`), OpenSC's PIV driver, scagentd.
# list shows the card's token and certificates; a wrong PIN costs exactly one
# of the card's tries (read from the card's state); both keys sign (RSA-2048
# in 9A, EC P-256 in 9C with the PIN before every signature) and openssl
# verifies against the certificates; scagent connect does mutual TLS with the
# card's key; removal and reinsertion, and a pcscd restart, show as events and
# the card signs again afterwards.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$here/pcsc-lib.sh"
pcsc_tools
export SCAGENT_TESTCARD=$TOP_SRCDIR/src/testcard/scagent-testcard
tb_init
KIT=$TB_DIR/kit
"$SCAGENT" testcard init "$KIT" --json >"$TB_DIR/kit.json" 2>"$TB_DIR/kit.err" ||
	{ echo "# testcard init failed:"; sed 's/^/# /' "$TB_DIR/kit.err"; exit 99; }
STATE=$(jq_py "$TB_DIR/kit.json" 'j["piv"]["state"]')
PIN=$(jq_py "$TB_DIR/kit.json" 'j["piv"]["user_pin"]')
LABEL=$(jq_py "$TB_DIR/kit.json" 'j["piv"]["token_label"]')
fp_of() { jq_py "$TB_DIR/kit.json" "[c['sha256'] for c in j['piv']['certificates'] if c['slot'] == '$1'][0]"; }
FP_AUTH=$(fp_of 9a) FP_SIGN=$(fp_of 9c)
tries() { jq_py "$STATE" 'j["pin_tries_left"]'; }

pcsc_lock
no_foreign_pcscd
R0="Virtual PCD 00 00"

start_card() {
	"$SCAGENT" testcard piv "$KIT" --log "$TB_DIR/apdu.log" >>"$TB_DIR/card.log" 2>&1 &
	CARD_PID=$!
	tb_track_pid "$CARD_PID"
}
stop_card() {
	kill -TERM "$CARD_PID" 2>/dev/null
	wait "$CARD_PID" 2>/dev/null
	return 0
}
# the PIV token's field in `list --json`, or "none"
token_field() {
	sa list --json 2>/dev/null | jq_py - \
		"next((str(t.get('$1')) for t in j['tokens'] if t['label'] == '$LABEL'), 'none')"
}
token_shown() { [ "$(token_field label)" = "$LABEL" ]; }
token_gone() { [ "$(token_field label)" = none ]; }
# sign_ok REF ALG PEM: the agent signs through the card, openssl verifies
sign_ok() {
	local ref=$1 alg=$2 pem=$3 d=$TB_DIR/sig opts=()
	mkdir -p "$d"
	printf 'signed by the emulated PIV card\n' >"$d/data"
	rm -f "$d/$alg.sig"
	printf '%s\n' "$PIN" | sa sign --cert "$ref" --alg "$alg" --in "$d/data" --out "$d/$alg.sig" \
		--pin-stdin >>"$TB_DIR/sign.log" 2>&1 || return 1
	case $alg in
	rsa-pss-*) opts=(-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest) ;;
	esac
	openssl dgst "-${alg##*-}" "${opts[@]}" -verify <(openssl x509 -in "$pem" -pubkey -noout) \
		-signature "$d/$alg.sig" "$d/data" >>"$TB_DIR/sign.log" 2>&1
}

# ---------------------------------------------------------------- OpenSC alone

start_pcscd
start_card
ok "pkcs11-tool (OpenSC) lists the emulated card as a PIV token \"$LABEL\"" \
	wait_until 10 bash -c 'pkcs11-tool --module "$0" -L 2>/dev/null | grep -q "token label *: $1$"' "$OPENSC" "$LABEL"
printf 'opensc alone\n' >"$TB_DIR/opensc.data"
ok "pkcs11-tool signs with the card's RSA key (9A), openssl verifies" bash -c '
	pkcs11-tool --module "$0" --login --pin "$1" --sign --id 01 -m SHA256-RSA-PKCS \
		-i "$2/opensc.data" -o "$2/opensc.sig" >/dev/null 2>&1 &&
	openssl dgst -sha256 -verify <(openssl x509 -in "$3" -pubkey -noout) \
		-signature "$2/opensc.sig" "$2/opensc.data" >/dev/null' \
	"$OPENSC" "$PIN" "$TB_DIR" "$KIT/certs/piv-auth.pem"
ok "the card's counter is full before the agent" test "$(tries)" = 3

# ---------------------------------------------------------------- the agent

start_agent "$TB_DIR/agent.sock" --log-level info --module "$OPENSC" --audit-log "$TB_DIR/audit.log"
start_watch
ok "list: the PIV token \"$LABEL\" in reader 0" wait_until 10 token_shown
ok "list: the token is in \"$R0\"" test "$(token_field reader)" = "$R0"
ok "list: both certificates of init's JSON, by fingerprint" test "$(sa list --json | jq_py - \
	"sorted(c['sha256'] for t in j['tokens'] if t['label'] == '$LABEL' for c in t['certificates'])")" \
	= "$(python3 -c 'import json,sys; print(json.dumps(sorted(sys.argv[1:])))' "$FP_AUTH" "$FP_SIGN")"
ok "list: the 9A key is RSA-2048, the 9C key EC P-256" test "$(sa list --json | jq_py - \
	"sorted((c['key']['type'], c['key'].get('bits')) for t in j['tokens'] if t['label'] == '$LABEL' for c in t['certificates'])")" \
	= '[["ec", 256], ["rsa", 2048]]'

# ---------------------------------------------------------------- a wrong PIN

before=$(tries)
if printf '99999999\n' | sa login --token "$LABEL" --pin-stdin >"$TB_DIR/wrong.out" 2>&1; then
	fail "login with a wrong PIN fails"
else
	pass "login with a wrong PIN fails"
fi
after=$(tries)
ok "a wrong PIN costs the card exactly one try ($before -> $after)" test "$after" = $((before - 1))
ok "the agent says the PIN was wrong, in one line" grep -qi "pin" "$TB_DIR/wrong.out"
ok "and the card still answers VERIFY with 63 C$after (APDU log)" \
	grep -q "^< 63c$after$" "$TB_DIR/apdu.log"
ok "login with the right PIN" bash -c 'printf "%s\n" "$0" | "$1" --socket "$2" login --token "$3" --pin-stdin' \
	"$PIN" "$SCAGENT" "$AGENT_SOCK" "$LABEL"
ok "the right PIN resets the card's counter" test "$(tries)" = 3

# ---------------------------------------------------------------- signatures

for alg in rsa-pkcs1-sha256 rsa-pkcs1-sha384 rsa-pss-sha256 rsa-pss-sha512; do
	ok "sign $alg with the card's 9A key, openssl verifies" sign_ok "$FP_AUTH" "$alg" "$KIT/certs/piv-auth.pem"
done
for alg in ecdsa-sha256 ecdsa-sha384; do
	ok "sign $alg with the card's 9C key (PIN each time), openssl verifies" \
		sign_ok "$FP_SIGN" "$alg" "$KIT/certs/piv-sign.pem"
done

# ---------------------------------------------------------------- TLS

port=$(tb_port)
"$SCAGENT" testcard server "$KIT" --port "$port" >"$TB_DIR/server.log" 2>&1 &
tb_track_pid $!
wait_until 10 _tb_listening "$port" >/dev/null
tls_ok() {
	sa connect --cert "$FP_AUTH" --cafile "$KIT/pki/root.pem" ${1:+--tls-max "$1"} \
		"https://localhost:$port/" >"$TB_DIR/connect.out" 2>>"$TB_DIR/connect.err" &&
		grep -qx "subject: CN=$LABEL,O=Contoso" "$TB_DIR/connect.out"
}
ok "connect: mutual TLS 1.3 with the card's key, the server saw CN=$LABEL" tls_ok
ok "connect: mutual TLS 1.2 with the card's key" tls_ok 1.2

# A tunnel keeps the TLS session made with the card's key: the card signs once
# for several connections, until the card is pulled (below).
TP=$(tb_port)
"$SCAGENT" --socket "$AGENT_SOCK" tunnel --listen "127.0.0.1:$TP" --connect "localhost:$port" \
	--cafile "$KIT/pki/root.pem" --cert "$FP_AUTH" >"$TB_DIR/tunnel.log" 2>&1 &
tb_track_pid $!
wait_until 10 _tb_listening "$TP" >/dev/null
signs() { grep -c ' sign pid=.* result=ok' "$TB_DIR/audit.log" || true; }
through_tunnel() { curl -sS --max-time 30 "http://127.0.0.1:$TP/" 2>&1 | grep -qx "subject: CN=$LABEL,O=Contoso"; }
s0=$(signs)
ok "tunnel: a request through it is served with the card's certificate" through_tunnel
ok "tunnel: ... and a second, on a new connection" through_tunnel
ok "tunnel: ... and a third" through_tunnel
is "tunnel: the card signed once for the three connections (a resumed session)" "$(( $(signs) - s0 ))" 1

# ---------------------------------------------------------------- removal, reinsertion

m=$(mark)
stop_card
ok "watch: card-removed from reader 0" wait_event "$m" 10 card-removed reader "$R0"
ok "watch: token-removed \"$LABEL\"" wait_event "$m" 10 token-removed token "$LABEL"
ok "list: the token is gone" wait_until 5 token_gone
ok "tunnel: the card's removal makes it forget the session made with it" \
	wait_until 10 grep -Eq "token-removed of token $LABEL: forgot [1-9][0-9]* kept session" "$TB_DIR/tunnel.log"
m=$(mark)
start_card
ok "watch: card-inserted into reader 0" wait_event "$m" 10 card-inserted reader "$R0"
ok "watch: token-added \"$LABEL\"" wait_event "$m" 10 token-added token "$LABEL"
ok "list: the token is back" wait_until 5 token_shown
relogin_signs() { # DESC: the login went with the card; after a new one the card signs
	if sign_ok "$FP_AUTH" rsa-pkcs1-sha256 "$KIT/certs/piv-auth.pem"; then
		fail "$1: the agent's login went with the card"
	else
		pass "$1: the agent's login went with the card"
	fi
	ok "$1: login again" bash -c 'printf "%s\n" "$0" | "$1" --socket "$2" login --token "$3" --pin-stdin' \
		"$PIN" "$SCAGENT" "$AGENT_SOCK" "$LABEL"
	ok "$1: the card signs again" sign_ok "$FP_AUTH" rsa-pkcs1-sha256 "$KIT/certs/piv-auth.pem"
}
relogin_signs "after reinsertion"
s0=$(signs)
ok "tunnel: after reinsertion and a new login, a request is served" through_tunnel
is "tunnel: ... with a new signature by the card (the forgotten session is not resumed)" \
	"$(( $(signs) - s0 ))" 1

# ---------------------------------------------------------------- pcscd restart

m=$(mark)
stop_pcscd
ok "watch: pcsc-unavailable when pcscd stops" wait_event "$m" 10 pcsc-unavailable
ok "the agent keeps running" kill -0 "$AGENT_PID"
m=$(mark)
start_pcscd
ok "watch: pcsc-available when pcscd is back" wait_event "$m" 10 pcsc-available
# the card process reconnects to the new vpcd by itself: it stayed "in the reader"
ok "watch: token-added \"$LABEL\" after the restart" wait_event "$m" 15 token-added token "$LABEL"
ok "list: the token is back after the restart" wait_until 5 token_shown
relogin_signs "after the pcscd restart"
ok "and TLS works again" tls_ok
ok "no PIN try was lost on the way" test "$(tries)" = 3

stop_card
stop_agent "the agent stops cleanly, no sanitizer report"
if [ "$TAP_FAILED" != 0 ]; then
	echo "# --- agent log"; tail -n 40 "$AGENT_LOG" | sed 's/^/# /'
	echo "# --- events"; sed 's/^/# /' "$TB_DIR/events.txt"
	echo "# --- card"; tail -n 20 "$TB_DIR/card.log" | sed 's/^/# /'
	echo "# --- sign"; tail -n 20 "$TB_DIR/sign.log" 2>/dev/null | sed 's/^/# /'
	echo "# --- connect"; tail -n 5 "$TB_DIR/connect.err" 2>/dev/null | sed 's/^/# /'
fi
done_testing
