#!/bin/bash
# With several modules the agent asks each worker which one holds a
# certificate before it signs. It asks them to look in what they know
# ("cached"): a signature on one card costs no slot re-reading of any other
# module's card, and the card that signs sees its signature and nothing else.
# A certificate no worker knows yet (a card that just came) is looked for
# again with slots read. The fault module over the second SoftHSM traces
# every token read (GetSlotList, FindObjectsInit) and signature.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
tb_fault_module
tb_init
tb_pki
tb_softhsm_token fast
tb_enroll fast 01 alice rsa:2048 good
tb_softhsm_b_token slow
SOFTHSM2_CONF=$SOFTHSM2_CONG tb_enroll slow 03 carol rsa:2048 good
export SCAGENT_FAULT_TARGET=$TB_SOFTHSM_B SCAGENT_FAULT_TRACE=$TB_DIR/trace
S=$TB_DIR/agent.sock
sc() { "$SCAGENT" --socket "$S" "$@"; }
head -c 32 /dev/urandom >"$TB_DIR/digest"
# (no PC/SC: a pcscd another test starts meanwhile would make the agent re-read
# every module's slots on its readers' events)
PCSCLITE_CSOCK_NAME=$TB_DIR/no-pcscd start_agent "$S" --module "$TB_SOFTHSM" --module "$FAULT"
for t in fast slow; do
	echo "$TB_PIN" | sc login --token "$t" --pin-stdin >/dev/null 2>&1 || bail_out "login to $t failed"
done
# calls: what the faulty module's card was asked, one word per call
calls() { sed 's/[ 0-9=]*$//; s/ .*//' "$TB_DIR/trace" 2>/dev/null | tr '\n' ' '; }
# sign_as CERT: after the workers' last slot read is over a second old (a
# client's list would re-read them), the module trace emptied
sign_as() {
	sleep 1.2
	: >"$TB_DIR/trace"
	run sc sign --cert "$1" --alg rsa-pkcs1-sha256 --digest --in "$TB_DIR/digest" --out "$TB_DIR/$1.sig"
}
verifies() {
	openssl pkeyutl -verify -pubin -inkey <(openssl x509 -in "$TB_DIR/certs/$1.pem" -pubkey -noout) \
		-in "$TB_DIR/digest" -sigfile "$TB_DIR/$1.sig" -pkeyopt digest:sha256 >/dev/null 2>&1
}

for i in 1 2; do
	sign_as alice
	is "signature $i on the other module's card: made" "$RC" 0
	is "... with no call at all to this module's card" "$(calls)" ""
done
ok "... and it verifies" verifies alice
for i in 1 2; do
	sign_as carol
	is "signature $i on this module's card: made" "$RC" 0
	is "... its card sees the signature and nothing else (no slot or object re-read)" "$(calls)" "SignInit Sign "
done
ok "... and it verifies" verifies carol

# A certificate that came after the workers last read their slots.
SOFTHSM2_CONF=$SOFTHSM2_CONG tb_enroll slow 05 dave rsa:2048 good
sign_as dave
is "a certificate written to the card after the last slot read: found, signed" "$RC" 0
has "... by reading the card's slots again, once no worker knew it" "$(calls)" "GetSlotList"
ok "... and the signature verifies" verifies dave
sign_as nobody
is "a certificate no card holds: not found (exit 1)" "$RC" 1
has "... the error lists what both modules' cards hold" "$ERR" "alice"
has "... and the other's" "$ERR" "carol"
stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"
done_testing
