#!/bin/bash
# A module whose device is absent (issue 24: tpm2-pkcs11 without a TPM, a
# module without pcscd): its C_Initialize fails. The agent reports it once,
# in status and the log, not on every list; it is no crash (never "broken");
# `scagent refresh` tries it again, and once it loads its tokens are added.
# The fault module's C_Initialize failure (fault-pkcs11 "init", switched at
# run time through its fault file) stands for the absent device.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need_py
FAULT=$TOP_BUILDDIR/tests/mock/.libs/fault-pkcs11.so
[ -f "$FAULT" ] || skip_all "fault module $FAULT not built"
tb_agent_test alice
tb_softhsm_b_token late
export SCAGENT_FAULT_TARGET=$TB_SOFTHSM_B SCAGENT_FAULT_FILE=$W/faults
echo init >"$W/faults"
jq() { "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$@"; }

start_agent "$S" --log-level info --module "$FAULT" --module "$TB_SOFTHSM"
for i in 1 2 3; do
	run sc list
	is "list $i: exit 0" "$RC" 0
	is "list $i: nothing on stderr about the absent module" "$ERR" ""
done
has "... the other module's token is listed" "$OUT" 'Token "demo"'
run sc list --json
is "list --json: exit 0, nothing on stderr" "$RC:$ERR" "0:"
is "list --json keeps the module in errors, marked absent" \
	"$(jq '[(e["module"], e["error"], e.get("state")) for e in d["errors"]]' <<<"$OUT")" \
	"[('$FAULT', 'C_Initialize failed: Device error', 'absent')]"

run sc status
has "status: modules counted with the absent one" "$OUT" "modules:  2, 1 loaded, 1 absent"
has "status: the absent module and why" "$OUT" "  $FAULT: absent: C_Initialize failed: Device error"
run sc status --json
is "status --json: state absent, its reason, no pid, no restart" \
	"$(jq '[(p["state"], p["last_error"], p["pid"], p["restarts"]) for p in d["processes"] if p["module"] == sys.argv[2]]' "$FAULT" <<<"$OUT")" \
	"[('absent', 'C_Initialize failed: Device error', None, 0)]"
is "... the modules loaded: 1" "$(jq 'd["modules"]' <<<"$OUT")" 1

# refresh while it is still absent: tried again, quietly; never broken
for i in 1 2 3 4 5 6; do
	run sc refresh
done
is "refresh with the module still absent: exit 0" "$RC" 0
has "... says it is still absent" "$ERR" "the module $FAULT is still absent: C_Initialize failed: Device error"
run sc status --json
is "after 6 refreshes: still absent, not broken, no restart counted" \
	"$(jq '[(p["state"], p["restarts"]) for p in d["processes"] if p["module"] == sys.argv[2]]' "$FAULT" <<<"$OUT")" \
	"[('absent', 0)]"
is "the log says it is absent once" "$(grep -c "is absent: C_Initialize failed" "$AGENT_LOG")" 1
is "... and the module's failure nowhere else" "$(grep -c "C_Initialize failed" "$AGENT_LOG")" 1
is "... no worker counted as ended" "$(grep -c "ended (" "$AGENT_LOG")" 0

# the device comes: refresh loads it and its token is added
sc watch --json >"$W/events" 2>&1 &
wpid=$!
tb_track_pid $wpid
sleep 0.3
: >"$W/faults"
run sc refresh
is "refresh with the device back: exit 0" "$RC" 0
is "... the tokens changed" "$OUT" "the tokens changed"
is "... nothing on stderr" "$ERR" ""
is "its token is listed now" "$(sc list --json | jq '" ".join(sorted(t["label"] for t in d["tokens"]))')" "demo late"
run sc status --json
is "status: running, no restart, no error" \
	"$(jq '[(p["state"], p["restarts"], p["last_error"]) for p in d["processes"] if p["module"] == sys.argv[2]]' "$FAULT" <<<"$OUT")" \
	"[('running', 0, None)]"
wait_for 5 grep -q '"token-added".*"late"' "$W/events"
file_has "watch saw its token added" "$W/events" '"token":"late"'
file_has "the log says it loaded" "$AGENT_LOG" "module $FAULT: loaded now (it was absent: C_Initialize failed: Device error)"
echo "$TB_PIN" | sc login --token late --pin-stdin 2>/dev/null
is "its token logs in" "$(sc status --json | jq '[t["logged_in"] for t in d["tokens"] if t["label"] == "late"]')" "[True]"
kill $wpid 2>/dev/null
stop_agent

# an absent module alone: requests that need it say so
echo init >"$W/faults"
start_agent "$S" --module "$FAULT"
run sc login --token late --pin-stdin <<<"$TB_PIN"
is "login with the only module absent: fails" "$RC" 1
has "... saying the module is absent and what to do" "$ERR" "is absent: C_Initialize failed: Device error (\`scagent refresh\` tries it again)"
stop_agent
done_testing
