#!/bin/bash
# Token events from real TPM virtual smart cards (swtpm + tpm2-abrmd +
# tpm2-pkcs11): `scagent vsc create` while `scagent watch --json` runs gives
# token-added (label, module, slot, serial) and changed; `scagent vsc delete`
# gives token-removed.  Deleting re-initialises tpm2-pkcs11 (C_Finalize +
# C_Initialize, the only way it forgets a token), which ends the logins of
# the other cards of the TPM: they are reported removed and added again, and
# are logged out.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tpm/tpm-testbed.sh"
tb_tpm_need
tb_init
tb_tpm_start
start_agent --log-level info --module "$TB_TPM2_PKCS11"
A=$SCAGENT
EV=$TB_DIR/events.json

"$A" watch --json >"$EV" 2>"$TB_DIR/watch.err" &
tb_track_pid $!
sleep 0.5	# subscribed before anything happens (watch prints nothing until an event)

# events FROM EVENT: the events after line FROM named EVENT, one JSON per line
events() { tail -n +"$(($1 + 1))" "$EV" | grep -F "\"event\":\"$2\"" || true; }
# event_tokens FROM EVENT: their token labels, sorted, space-separated
event_tokens() {
	events "$1" "$2" | python3 -c 'import json,sys; print(" ".join(sorted(json.loads(l)["token"] for l in sys.stdin)))'
}
# wait_events FROM EVENT LABELS: until exactly those labels came (5 s)
wait_events() {
	for _ in $(seq 50); do
		[ "$(event_tokens "$1" "$2")" = "$3" ] && return 0
		sleep 0.1
	done
	return 1
}
mark() { wc -l <"$EV"; }

m=$(mark)
ok "vsc create vsc1 (agent watched)" bash -c "printf '123456\n12345678\n' | $A vsc create --label vsc1 --pin-stdin"
ok "token-added for vsc1" wait_events "$m" token-added vsc1
ev=$(events "$m" token-added)
is "  ... naming the tpm2-pkcs11 module" "$(json_eval "$ev" 'j["module"]')" "$TB_TPM2_PKCS11"
j=$($A vsc list --json)
is "  ... with the serial and slot that vsc list shows" \
	"$(json_eval "$ev" '(j["serial"], j["slot"])')" "$(json_eval "$j" '(j["tokens"][0]["serial"], j["tokens"][0]["slot"])')"
ok "  ... then changed" bash -c "tail -n +$((m + 1)) '$EV' | grep -q '\"event\":\"changed\"'"
is "  ... and no token-removed" "$(event_tokens "$m" token-removed)" ""

m=$(mark)
ok "vsc create vsc2" bash -c "printf '223344\n22334455\n' | $A vsc create --label vsc2 --pin-stdin"
ok "token-added for vsc2 only" wait_events "$m" token-added vsc2
ok "login vsc1" bash -c "echo 123456 | $A login --token vsc1 --pin-stdin"

m=$(mark)
ok "vsc delete vsc2" $A vsc delete --label vsc2 --yes
ok "token-removed for vsc2 (and vsc1, whose login the re-initialisation ended)" \
	wait_events "$m" token-removed "vsc1 vsc2"
ok "token-added for vsc1 only: it is still there" wait_events "$m" token-added vsc1
ok "  ... removals before the addition" python3 -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):]]
kinds = [e["event"] for e in ev if e["event"] in ("token-added", "token-removed")]
sys.exit(0 if kinds == ["token-removed", "token-removed", "token-added"] else kinds)' "$EV" "$m"
st=$($A status --json)
has "status: vsc1 logged out after the re-initialisation" "$st" '{"label":"vsc1","logged_in":false}'
is "list: only vsc1" "$(json_eval "$($A list --json)" '[t["label"] for t in j["tokens"]]')" "['vsc1']"

m=$(mark)
ok "vsc delete vsc1" $A vsc delete --label vsc1 --yes
ok "token-removed for vsc1" wait_events "$m" token-removed vsc1
sleep 0.3
is "  ... and no token-added" "$(event_tokens "$m" token-added)" ""

stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"
done_testing
