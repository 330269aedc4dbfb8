#!/bin/bash
# verify-ecdsa = yes (scagent.conf, here a --config file): ECDSA signatures
# are verified against the certificate before they are returned, as RSA ones
# always are. A faulty token is simulated by tests/mock/fault-pkcs11 in front
# of SoftHSM (sign-bad flips one byte of the signature C_Sign returns).
# Without the setting the agent returns the bad ECDSA signature (openssl
# rejects it); with it the request fails with bad-signature and nothing is
# returned.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need_py
tb_fault_module

tb_agent_test bob
export SCAGENT_FAULT_TARGET=$TB_SOFTHSM SCAGENT_FAULT_FILE=$W/faults
verifies() { openssl dgst -sha256 -verify "$(pubkey bob)" -signature "$1" "$W/data"; }
printf 'verify-ecdsa = yes\n' >"$W/verify.conf"
printf 'verify-ecdsa = no\n' >"$W/noverify.conf"

# ---------------------------------------------------------------- verify-ecdsa = no (the default)
: >"$W/faults"
start_agent "$S" --module "$FAULT" --config "$W/noverify.conf"
sc login --token demo --pin-stdin <<<"$TB_PIN" 2>/dev/null
echo sign-bad >"$W/faults"
run sc sign --cert bob --alg ecdsa-sha256 --in "$W/data" --out "$W/noverify.sig"
is "verify-ecdsa = no, faulty token: the signature is returned (exit 0)" "$RC" 0
nok "  ... and it is bad: openssl rejects it" verifies "$W/noverify.sig"
stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"

# ---------------------------------------------------------------- verify-ecdsa = yes
: >"$W/faults"
start_agent "$S" --module "$FAULT" --config "$W/verify.conf"
sc login --token demo --pin-stdin <<<"$TB_PIN" 2>/dev/null
run sc sign --cert bob --alg ecdsa-sha256 --in "$W/data" --out "$W/good.sig"
is "verify-ecdsa = yes, sound token: exit 0" "$RC" 0
ok "  ... the signature verifies" verifies "$W/good.sig"
echo sign-bad >"$W/faults"
for alg in ecdsa-sha256 ecdsa-sha384; do
	rm -f "$W/bad.sig"
	run sc sign --cert bob --alg "$alg" --in "$W/data" --out "$W/bad.sig"
	is "verify-ecdsa = yes, faulty token, $alg: exit 1" "$RC" 1
	has "  ... says the signature did not verify" "$ERR" "does not verify"
	ok "  ... no signature written" test ! -s "$W/bad.sig"
done
l=$(printf '%s\n' '{"id":0,"op":"hello","version":1}' \
	"{\"id\":1,\"op\":\"sign\",\"ref\":\"bob\",\"alg\":\"ecdsa-sha256\",\"digest\":\"$(openssl dgst -sha256 -binary "$W/data" | base64 -w0)\"}" |
	"$PY" "$here/rawclient.py" "$S" --lines 2 --wait 10 | sed -n 2p)
has "protocol, over a digest (as TLS signs): error bad-signature" "$l" '"code":"bad-signature"'
hasnt "  ... no signature in the reply" "$l" '"signature"'
grep -q 'returned a signature that does not verify' "$AGENT_LOG"
is "the agent logs the faulty token" "$?" 0
: >"$W/faults"
run sc sign --cert bob --alg ecdsa-sha256 --in "$W/data" --out "$W/again.sig"
is "fault gone: exit 0" "$RC" 0
ok "  ... the signature verifies" verifies "$W/again.sig"
stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"
done_testing
