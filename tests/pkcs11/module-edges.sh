#!/bin/bash
# Runs the cmocka test of the module's edge cases (test-p11-module) against
# an agent serving the demo card. The test stops and restarts that agent
# (the slot events of tokens going away and coming back) through the two
# scripts written here.
. "$TOP_SRCDIR/tests/pkcs11/common.sh"
p11_setup
openssl x509 -in "$TB_DIR/certs/alice.pem" -outform DER -out "$TB_DIR/alice.der"

# The agent p11_setup started is tracked by pid; the restarted one by a file.
agent_pid=$(tail -n 1 "$TB_DIR/pids")
echo "$agent_pid" >"$TB_DIR/agent.pid"
tb_on_exit 'kill $(cat "$TB_DIR/agent.pid")'
cat >"$TB_DIR/stop-agent" <<EOF2
#!/bin/sh
pid=\$(cat "$TB_DIR/agent.pid")
kill "\$pid"
while kill -0 "\$pid" 2>/dev/null; do sleep 0.1; done
EOF2
cat >"$TB_DIR/start-agent" <<EOF2
#!/bin/sh
"$SCAGENTD" --foreground --module "$TB_SOFTHSM" --socket "$SCAGENT_SOCKET" >>"$TB_DIR/agent.log" 2>&1 &
echo \$! >"$TB_DIR/agent.pid"
for i in \$(seq 100); do
	"$SCAGENT" status >/dev/null 2>&1 && exit 0
	sleep 0.1
done
exit 1
EOF2
chmod +x "$TB_DIR/stop-agent" "$TB_DIR/start-agent"

P11_MODULE=$MODULE P11_ALICE_DER=$TB_DIR/alice.der P11_PIN=$TB_PIN \
P11_STOP_AGENT=$TB_DIR/stop-agent P11_START_AGENT=$TB_DIR/start-agent \
	"$TOP_BUILDDIR/tests/pkcs11/test-p11-module"
