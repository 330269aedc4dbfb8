#!/bin/bash
# The scagent OpenSSL provider signs through a live agent: PKCS#1 v1.5,
# PSS (reaching the agent as rsa-pss-*) and ECDSA, each verified with the
# certificate's public key.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tls/tls-common.sh"
tb_init
tls_agent
"$TOP_BUILDDIR/tests/tls/test-provider" alice bob || exit 1
# The agent's audit log names the schemes the token was asked for.
if ! grep -q 'alg=rsa-pss-sha384' "$TB_DIR/agent.log"; then
	echo "# the agent's log shows no rsa-pss-sha384 signature:"
	sed 's/^/# /' "$TB_DIR/agent.log" | tail -5
	exit 1
fi
tls_agent_stop >"$TB_DIR/stop.tap"
grep -q '^ok' "$TB_DIR/stop.tap" || { sed 's/^/# /' "$TB_DIR/stop.tap"; exit 1; }
