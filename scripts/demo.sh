#!/usr/bin/env bash
# The main job on an embedded default: a SoftHSM demo card with a demo PKI
# (root CA -> issuing CA -> users whose keys were generated on the card), the
# agent serving it, and a local server that requires a client certificate.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
[ "$(id -u)" -eq 0 ] && ./scripts/install-deps.sh
./scripts/build.sh

# The test bed's card, PKI and server (tests/testbed/testbed.sh) with this build.
export SCAGENT=$top/scagent SCAGENTD=$top/scagentd TOP_SRCDIR=$top TOP_BUILDDIR=$top
. tests/testbed/testbed.sh
tb_init
echo "== Building the demo card (SoftHSM token \"demo\", PIN $TB_PIN) in $TB_DIR"
tb_demo_card
export SCAGENT_SOCKET=$TB_DIR/agent.sock
"$top/scagentd" --foreground --module "$TB_SOFTHSM" --socket "$SCAGENT_SOCKET" \
	--log-level warn & tb_track_pid $!
for _ in $(seq 50); do [ -S "$SCAGENT_SOCKET" ] && break; sleep 0.1; done
sc() { echo "\$ scagent $*" >&2; "$top/scagent" "$@"; }

echo; echo "== What is on the card, and will it work for certificate-based authentication?"
sc list
echo; sc check alice --cafile "$TB_DIR/pki/root.pem" || true
echo; sc check expired --cafile "$TB_DIR/pki/root.pem" || true

echo; echo "== Log the agent in once; every program then signs through it"
echo "$TB_PIN" | sc login --token demo --pin-stdin
printf 'hello from the demo\n' > "$TB_DIR/msg.txt"
sc sign --cert alice --alg rsa-pss-sha256 --in "$TB_DIR/msg.txt" --out "$TB_DIR/msg.sig"
openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest \
	-verify <(openssl x509 -in "$TB_DIR/certs/alice.pem" -pubkey -noout) \
	-signature "$TB_DIR/msg.sig" "$TB_DIR/msg.txt"

port=$(tb_port)
tb_s_server "$port"
echo; echo "== A server that requires a client certificate in the handshake: https://localhost:$port/"
sc probe --cafile "$TB_DIR/pki/root.pem" "https://localhost:$port/"
# The page's first lines (sed reads it all: head would leave connect writing
# into a closed pipe, and pipefail would turn its SIGPIPE into the demo's exit).
echo; sc -v connect --cert alice --cafile "$TB_DIR/pki/root.pem" "https://localhost:$port/" | sed -n 1,3p
echo; echo "Demo done: the card's keys signed the TLS handshakes through the agent."
echo "Everything above lives in $TB_DIR and goes when the demo ends (TB_KEEP=1 keeps it)."
echo "For a card, a PKI and a server that stay, without root: ./scagent testcard init DIR (docs/TESTCARD.md)."
