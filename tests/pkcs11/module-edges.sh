#!/bin/bash
# Runs the cmocka test of the module's edge cases (test-p11-module) against
# an agent serving the demo card. The test stops and restarts that agent
# (the slot events of tokens going away and coming back) through the two
# scripts written here. With tests/mock/pin-scan.so preloaded, the test's
# process (the module, libscagent, json-c in it) must hold no copy of the
# PIN it logged in with when it ends.
. "$TOP_SRCDIR/tests/pkcs11/common.sh"
# A PIN that no other bytes of the process could match by chance.
TB_PIN='Mq5-module-PIN-residue-z8'
p11_setup
openssl x509 -in "$TB_DIR/certs/alice.pem" -outform DER -out "$TB_DIR/alice.der"

# The agent p11_setup started is tracked by pid; the restarted one by a file.
echo "$AGENT_PID" >"$TB_DIR/agent.pid"
# Stopped and waited for, so that the test bed's directory goes with nothing writing to it.
tb_on_exit '"$TB_DIR/stop-agent" 2>/dev/null'
cat >"$TB_DIR/stop-agent" <<EOF2
#!/bin/sh
pid=\$(cat "$TB_DIR/agent.pid")
kill "\$pid"
while kill -0 "\$pid" 2>/dev/null; do sleep 0.1; done
EOF2
cat >"$TB_DIR/start-agent" <<EOF2
#!/bin/sh
"$SCAGENTD" --foreground --module "$TB_SOFTHSM" --socket "$SCAGENT_SOCKET" >>"$AGENT_LOG" 2>&1 &
echo \$! >"$TB_DIR/agent.pid"
for i in \$(seq 100); do
	"$SCAGENT" status >/dev/null 2>&1 && exit 0
	sleep 0.1
done
exit 1
EOF2
chmod +x "$TB_DIR/stop-agent" "$TB_DIR/start-agent"

SCAN=$TOP_BUILDDIR/tests/mock/.libs/pin-scan.so
scan=()
# A sanitizer's runtime must come first among the libraries: no preloading then.
# (Not `ldd | grep -q`: with pipefail, ldd killed by SIGPIPE fails.)
deps=$(ldd "$TOP_BUILDDIR/tests/pkcs11/test-p11-module" 2>/dev/null)
if [ -r "$SCAN" ] && ! grep -q libasan <<<"$deps"; then
	scan=(LD_PRELOAD="$SCAN" SCAN_PIN_HEX="$(printf '%s' "$TB_PIN" | od -An -tx1 | tr -d ' \n')"
		SCAN_OUT="$TB_DIR/module.scan")
fi
# Each cmocka test an assertion of this test.
cmocka_tap env "${scan[@]}" P11_MODULE="$MODULE" P11_ALICE_DER="$TB_DIR/alice.der" P11_PIN="$TB_PIN" \
	P11_STOP_AGENT="$TB_DIR/stop-agent" P11_START_AGENT="$TB_DIR/start-agent" \
	"$TOP_BUILDDIR/tests/pkcs11/test-p11-module"
if [ ${#scan[@]} -gt 0 ]; then
	is "no copy of the PIN left in the process of the module" \
		"$(sed -n 's/^hits //p' "$TB_DIR/module.scan" 2>/dev/null)" 0
else
	skip "no copy of the PIN left in the process of the module" "sanitizer build or no pin-scan.so"
fi
done_testing
