#!/bin/bash
# softhsm-fixture.sh DIR: the tokens the C tests of the token store and the
# dispatcher (tests/unit/test-store.c, test-dispatch.c) run against, made with
# the test kit's own builder (src/testcard/pki.sh) in DIR, which the C test
# owns and removes:
#   DIR/softhsm2.conf   SoftHSM's configuration (SOFTHSM2_CONF)
#   token "card1"       alice (RSA-2048, id 01) and bob (EC P-256, id 02),
#                       both with keys made on the token and a good certificate
#   token "card2"       carol (RSA-2048, id 03): the token a test takes away
# Prints nothing on success; on an error, what failed, and exits 99.
set -eu
[ $# = 1 ] || { echo "usage: softhsm-fixture.sh DIR" >&2; exit 99; }
TB_DIR=$1
export TB_DIR
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../src/testcard/pki.sh
. "$here/../../src/testcard/pki.sh"
_tb_need openssl pkcs11-tool softhsm2-util setsid
mkdir -p "$TB_DIR"
: >"$TB_DIR/testbed.log"
tb_pki
tb_softhsm_token card1
tb_enroll card1 01 alice rsa:2048 good
tb_enroll card1 02 bob EC:prime256v1 good
tb_softhsm_token card2
tb_enroll card2 03 carol rsa:2048 good
