#!/bin/bash
# scagent status in words by default and the agent's JSON with --json;
# scagent logout --all logs out of every token the agent is logged in to,
# by token URI with its serial (two tokens share a label here, one has a
# space in it), one line for each (issue 24).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need_py
tb_agent_test
tb_softhsm_token twin
tb_softhsm_token "my card"
tb_softhsm_token spare
tb_softhsm_b_token twin
start_agent "$S" --module "$TB_SOFTHSM" --module "$TB_SOFTHSM_B"
serials=$(sc list --json | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(t["serial"] for t in d["tokens"] if t["label"] == "twin"))')
read -r s1 s2 <<<"$serials"
login() { echo "$TB_PIN" | sc login --token "$1" --pin-stdin 2>/dev/null; }
# logged_in: the labels the agent is logged in to, sorted, from status --json
logged_in() {
	sc status --json | "$PY" -c 'import json,sys; print(",".join(sorted(t["label"] for t in json.load(sys.stdin)["tokens"] if t["logged_in"])))'
}

run sc status
is "status: exit 0" "$RC" 0
has "status is in words: the agent" "$OUT" "agent:    scagentd "
has "... its pid" "$OUT" "pid $AGENT_PID"
has "... the modules" "$OUT" "modules:  2"
has "... a token not logged in" "$OUT" "$(printf '  %-32s not logged in' spare)"
hasnt "... no JSON" "$OUT" "{"
run sc status --json
is "status --json: exit 0" "$RC" 0
is "status --json is the agent's JSON" \
	"$("$PY" -c 'import json,sys; d=json.load(sys.stdin); print(d["pid"], d["protocol"], len(d["tokens"]))' <<<"$OUT")" \
	"$AGENT_PID 1 4"
run sc status extra
is "status with an extra argument: usage, exit 2" "$RC" 2

ok "log in to the first twin" login "pkcs11:token=twin;serial=$s1"
ok "and to the second" login "pkcs11:token=twin;serial=$s2"
ok "and to \"my card\"" login "my card"
is "three logins" "$(logged_in)" "my card,twin,twin"
has "status in words shows them" "$(sc status)" "$(printf '  %-32s logged in' "my card")"

run sc logout --all
is "logout --all: exit 0" "$RC" 0
has "... reports the first twin by its serial" "$OUT" "logged out of token \"twin\", serial $s1"
has "... and the second" "$OUT" "logged out of token \"twin\", serial $s2"
has "... and \"my card\"" "$OUT" 'logged out of token "my card"'
is "... three lines, none for spare" "$(wc -l <<<"$OUT")" 3
is "nobody is logged in now" "$(logged_in)" ""
is "the agent logged three logouts" "$(grep -c "logged out of \"" "$AGENT_LOG")" 3
run sc logout --all
is "logout --all again: exit 0" "$RC" 0
is "... says there was nothing" "$OUT" "not logged in to any token"

ok "log in to spare" login spare
run sc logout --token spare
is "logout --token still works" "$RC:$(logged_in)" "0:"
run sc logout
is "logout with neither --token nor --all: exit 2" "$RC" 2
run sc logout --all --token spare
is "logout with both: exit 2" "$RC" 2
tb_agent_stop >/dev/null 2>&1
run sc logout --all
is "logout --all without an agent: exit 3" "$RC" 3
done_testing
