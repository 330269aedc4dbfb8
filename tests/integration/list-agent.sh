#!/bin/bash
# `scagent list` / `check` through the agent answer exactly what --direct
# answers on the same SoftHSM tokens; without an agent, exit 3 with a hint.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/list-common.sh"
: "${SCAGENTD:?run through make check (SCAGENTD unset)}"
tb_init
tb_demo_card
# A certificate that expires while the agent runs: the agent keeps list
# entries printed, and must print this one anew when it expires.
tb_softhsm_token brief
TB_CERT_END="+40 seconds" tb_enroll brief 01 brief rsa:2048 good
tb_write_ca_certs brief
brief_end=$(date -u -d "$(openssl x509 -in "$TB_DIR/certs/brief.pem" -noout -enddate | cut -d= -f2)" +%s)

W=$TB_DIR/list-agent S=$TB_DIR/agent.sock P=$TB_DIR/pki
mkdir -p "$W"
unset SCAGENT_SOCKET

# ---- no agent
"$SCAGENT" --socket "$S" list >"$W/na.out" 2>"$W/na.err"
is "list with no agent: exit 3" $? 3
file_has "no agent: names the socket" "$W/na.err" "no agent at $S"
file_has "no agent: hints how to start one" "$W/na.err" "scagentd"
file_has "no agent: hints at --direct" "$W/na.err" "--direct --module"
ok "no agent: one line on stderr, nothing on stdout" test "$(wc -l <"$W/na.err")" = 1 -a ! -s "$W/na.out"
SCAGENT_SOCKET=$S "$SCAGENT" check alice >/dev/null 2>"$W/na2.err"
is "check with no agent (SCAGENT_SOCKET): exit 3" $? 3
file_has "check with no agent: names the socket" "$W/na2.err" "no agent at $S"
"$SCAGENT" --socket "$S" --module "$TB_SOFTHSM" list >/dev/null 2>"$W/mod.err"
is "--module without --direct: usage error, exit 2" $? 2
file_has "--module without --direct: says why" "$W/mod.err" "--module goes with --direct"

# ---- the agent
TB_AGENT_LOG=$W/agent.log start_agent --module "$TB_SOFTHSM" --socket "$S" --log-level warn

# same DESC A.json B.json: equal JSON, token and certificate order ignored
same() {
	local out
	if out=$(python3 - "$2" "$3" <<-'PY' 2>&1
		import json, sys
		def norm(d):
		    # PC/SC readers are the machine's, which tests running
		    # alongside use: compare tokens and certificates only.
		    d.pop("readers", None)
		    d.pop("readers_error", None)
		    for t in d["tokens"]:
		        t["certificates"].sort(key=lambda c: (c["sha256"], c["uri"]))
		    d["tokens"].sort(key=lambda t: (t["label"], t["serial"]))
		    return d
		a, b = (norm(json.load(open(f))) for f in sys.argv[1:3])
		if a != b:
		    print(json.dumps(a, sort_keys=True, indent=1)[:3000])
		    print("----")
		    print(json.dumps(b, sort_keys=True, indent=1)[:3000])
		    sys.exit(1)
		n = sum(len(t["certificates"]) for t in a["tokens"])
		if n < 15:
		    sys.exit("only %d certificates listed" % n)
	PY
	); then pass "$1"; else fail "$1" "$out"; fi
}

"$SCAGENT" --socket "$S" list --json >"$W/a1.json" 2>"$W/a1.err"
is "list --json through the agent: exit 0" $? 0
sca list --json >"$W/d1.json" 2>/dev/null
same "agent list --json == --direct list --json (not logged in)" "$W/a1.json" "$W/d1.json"

# problems LIST.json LABEL: the cba problems of the certificate LABEL
problems() {
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join(p for t in d["tokens"] for c in t["certificates"] if c["label"] == sys.argv[2]
    for p in c["cba"]["problems"]) or "none")' "$1" "$2"
}
if [ "$(date -u +%s)" -lt "$brief_end" ]; then
	"$SCAGENT" --socket "$S" list --json >"$W/b1.json" 2>/dev/null
	ok "a certificate valid for a few seconds more: no problems" test "$(problems "$W/b1.json" brief)" = none
else
	echo "# skipped \"a certificate valid for a few seconds more\": it expired before the check (slow machine)"
fi

(cd "$P" && "$SCAGENT" --socket "$S" list --cafile root.pem --json >"$W/a2.json" 2>"$W/a2.err")
is "list --cafile (relative path) through the agent: exit 0" $? 0
sca list --cafile "$P/root.pem" --json >"$W/d2.json" 2>/dev/null
same "agent list --cafile == --direct list --cafile" "$W/a2.json" "$W/d2.json"
ok "agent --cafile: the rogue-issued certificate is untrusted" test "$(python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
print([c["label"] for t in d["tokens"] for c in t["certificates"] if "chain-untrusted" in c["cba"]["problems"]])' "$W/a2.json")" = "['untrusted']"

echo "$TB_PIN" | "$SCAGENT" --socket "$S" login --token negatives --pin-stdin >/dev/null 2>"$W/login.err"
is "login to negatives through the agent: exit 0" $? 0
"$SCAGENT" --socket "$S" list --json >"$W/a3.json" 2>/dev/null
echo "$TB_PIN" | sca list --login negatives --pin-stdin --json >"$W/d3.json" 2>/dev/null
same "agent list --json == --direct list --login negatives --json (logged in)" "$W/a3.json" "$W/d3.json"

"$SCAGENT" --socket "$S" list >"$W/ah.txt" 2>/dev/null
sca list >"$W/dh.txt" 2>/dev/null
file_has "agent human list: negatives logged in" "$W/ah.txt" "logged in"
file_has "agent human list: nokey has no private key" "$W/ah.txt" "problems: no-private-key"

for ref in nokey expired untrusted alice; do
	"$SCAGENT" --socket "$S" check "$ref" --cafile "$P/root.pem" --json >"$W/ac.json" 2>/dev/null
	arc=$?
	echo "$TB_PIN" | sca check "$ref" --cafile "$P/root.pem" --login negatives --pin-stdin --json \
		>"$W/dc.json" 2>/dev/null
	drc=$?
	if [ "$arc" = "$drc" ] && python3 -c '
import json,sys
a,b=(json.load(open(f)) for f in sys.argv[1:3])
sys.exit(a != b)' "$W/ac.json" "$W/dc.json"; then
		pass "check $ref through the agent == --direct (exit $arc)"
	else
		fail "check $ref through the agent == --direct" "exit $arc vs $drc" "$(cat "$W/ac.json" "$W/dc.json")"
	fi
done
"$SCAGENT" --socket "$S" check "Contoso Issuing CA" >/dev/null 2>"$W/amb.err"
is "agent: ambiguous REF: exit 1" $? 1
file_has "agent: ambiguous REF says so" "$W/amb.err" "more than one"

# Another program writes a certificate to a token the agent holds, then
# deletes it: the agent's list follows (it re-reads a token whose objects
# are other handles than it read).
openssl x509 -in "$TB_DIR/certs/brief.pem" -outform DER -out "$W/extra.der"
p11brief() { pkcs11-tool --module "$TB_SOFTHSM" --token-label brief --login --pin "$TB_PIN" "$@" >/dev/null 2>&1; }
# listed yes|no LABEL: whether the agent's list comes to show LABEL (or not), within 3 s
listed() {
	for _ in 1 2 3 4 5 6; do
		sleep 0.5
		"$SCAGENT" --socket "$S" list --json >"$W/x.json" 2>/dev/null
		python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
there = any(c["label"] == sys.argv[2] for t in d["tokens"] for c in t["certificates"])
sys.exit(0 if there == (sys.argv[3] == "yes") else 1)' "$W/x.json" "$2" "$1" && return 0
	done
	return 1
}
"$SCAGENT" --socket "$S" watch --json >"$W/watch.out" 2>/dev/null &
watcher=$!
tb_track_pid $watcher
sleep 0.5
p11brief --write-object "$W/extra.der" --type cert --id 0e --label extra
ok "a certificate another program writes to a token is listed by the agent" listed yes extra
kill $watcher 2>/dev/null
wait $watcher 2>/dev/null
ok "... and its watchers hear \"changed\"" grep -q '"event":"changed"' "$W/watch.out"
p11brief --delete-object --type cert --id 0e
ok "... and no longer once that program deletes it" listed no extra

# The certificate listed before has expired since: the agent says so, as --direct does.
while [ "$(date -u +%s)" -le "$brief_end" ]; do sleep 1; done
"$SCAGENT" --socket "$S" list --json >"$W/b2.json" 2>/dev/null
ok "the agent lists a certificate that expired since the last list as expired" \
	test "$(problems "$W/b2.json" brief)" = expired
sca list --json >"$W/d4.json" 2>/dev/null
"$SCAGENT" --socket "$S" logout --token negatives >/dev/null 2>&1
"$SCAGENT" --socket "$S" list --json >"$W/a4.json" 2>/dev/null
same "after the expiry and a logout: agent list --json == --direct list --json" "$W/a4.json" "$W/d4.json"

ok "the agent stops on SIGTERM: exit 0, no sanitizer report" tb_agent_stop
done_testing
