#!/bin/bash
# The scagent OpenSSL provider signs through a live agent: PKCS#1 v1.5,
# PSS (reaching the agent as rsa-pss-*) and ECDSA, each verified with the
# certificate's public key.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tls/tls-common.sh"
tb_init
tls_agent
# test-provider's own TAP lines, each an assertion of this test.
rc=0
"$TOP_BUILDDIR/tests/tls/test-provider" alice bob >"$TB_DIR/provider.tap" 2>"$TB_DIR/provider.err" || rc=$?
while IFS= read -r line; do
	case $line in
	"ok "*) pass "${line#ok * - }" ;;
	"not ok "*) fail "${line#not ok * - }" "$(tail -n 5 "$TB_DIR/provider.err")" ;;
	1..*) ;;
	*) diag "$line" ;;
	esac
done <"$TB_DIR/provider.tap"
is "test-provider exits 0" "$rc" 0
# The agent's log names the schemes the token was asked for.
ok "the agent's log shows an rsa-pss-sha384 signature" grep -q 'alg=rsa-pss-sha384' "$AGENT_LOG"
stop_agent
done_testing
