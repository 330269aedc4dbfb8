# shellcheck shell=bash
# Shared by the list/check integration tests: the test bed (its assertions),
# tool checks and a --direct scagent on SoftHSM.  Source it from a test script.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
need openssl pkcs11-tool softhsm2-util python3
[ -r /usr/lib/softhsm/libsofthsm2.so ] || skip_all "libsofthsm2.so missing"

# sca ARGS...: scagent --direct on SoftHSM
sca() { "$SCAGENT" --direct --module "$TB_SOFTHSM" "$@"; }

# The fault-injecting module (built by make check).
FAULT_MODULE=${TOP_BUILDDIR:-.}/tests/mock/.libs/fault-pkcs11.so
