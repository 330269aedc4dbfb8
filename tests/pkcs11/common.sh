# shellcheck shell=bash
# Shared by the tests of scagent-pkcs11.so: the demo card (SoftHSM) served by
# a private scagentd, and the module as the build left it.
#
#   . "$TOP_SRCDIR/tests/pkcs11/common.sh"   (brings testbed.sh: ok, nok, ...)
#   p11_setup [AGENT_MODULE]  demo card + agent (its module: SoftHSM, or the
#                           one given); sets MODULE, SCAGENT_SOCKET
#   ext CMD...              run a third-party program that loads MODULE

. "$TOP_SRCDIR/tests/testbed/testbed.sh"

# A sanitizer build of the module cannot be loaded into uninstrumented
# programs unless the runtime comes first; their own leaks are not ours
# (the C test of the module checks ours).
_P11_ENV=()
_p11_sanitizer_env() {
	local asan deps
	# Not `ldd | grep -q`: with pipefail, ldd killed by SIGPIPE fails the test.
	deps=$(ldd "$MODULE" 2>/dev/null)
	if grep -q 'libasan' <<<"$deps"; then
		asan=$(sed -n 's/.*libasan[^ ]* => \([^ ]*\).*/\1/p' <<<"$deps" | head -n 1)
		_P11_ENV=(LD_PRELOAD="$asan" ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0")
	fi
}
ext() { env "${_P11_ENV[@]}" "$@"; }

p11_setup() {
	need openssl pkcs11-tool softhsm2-util
	MODULE=$TOP_BUILDDIR/.libs/scagent-pkcs11.so
	[ -f "$MODULE" ] || bail_out "module $MODULE not built (make check builds it)"
	export MODULE
	_p11_sanitizer_env
	[ -n "${TB_DIR:-}" ] || tb_init
	tb_demo_card
	start_agent --module "${1:-$TB_SOFTHSM}"
}

# p11_verify PEM DGST-ARGS... -signature SIG DATA: verify with the certificate's key
p11_pubkey() { openssl x509 -in "$TB_DIR/certs/$1.pem" -pubkey -noout >"$TB_DIR/$1.pub"; echo "$TB_DIR/$1.pub"; }
# agent_logged_in TOKEN: true when the agent is logged in to TOKEN
agent_logged_in() { "$SCAGENT" status --json | grep -q "\"label\":\"$1\",\"logged_in\":true"; }
