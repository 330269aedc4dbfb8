#!/bin/bash
# The test kit: `scagent testcard init DIR --json` in under 10 s, its JSON
# fields against the files and tokens it made, each certificate's "problems"
# against `scagent check`, `scagent testcard server` in its modes with
# `scagent connect`, and the same without root (uid 65534, its own HOME).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need openssl pkcs11-tool softhsm2-util setpriv curl
export SCAGENT_TESTCARD=$TOP_SRCDIR/src/testcard/scagent-testcard
tb_init
KIT=$TB_DIR/kit J=$TB_DIR/kit.json
jv() { "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); r=eval(sys.argv[2]); print(r if isinstance(r, str) else json.dumps(r))' "$J" "$1"; }

# ---------------------------------------------------------------- init
t0=$(date +%s%N)
run "$SCAGENT" testcard init "$KIT" --json
t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
echo "# testcard init took $ms ms"
is "init --json: exit 0" "$RC" 0
printf '%s\n' "$OUT" >"$J"
ok "init in under 10 s ($ms ms)" test "$ms" -lt 10000
ok "init --json prints one JSON document" "$PY" -c 'import json,sys; json.load(open(sys.argv[1]))' "$J"
is "softhsm2_conf names the kit's SoftHSM configuration" "$(jv 'j["softhsm2_conf"]')" "$KIT/softhsm2.conf"
ok "  ... which exists and points at the kit's tokens" grep -qx "directories.tokendir = $KIT/tokens" "$KIT/softhsm2.conf"
is "module is SoftHSM" "$(jv 'j["module"]')" "$TB_SOFTHSM"
ok "cafile is the kit's root CA (self-signed)" openssl verify -CAfile "$(jv 'j["cafile"]')" "$(jv 'j["cafile"]')"
is "tokens: testcard and problems with their PINs" "$(jv '[(t["label"], t["user_pin"], t["so_pin"]) for t in j["tokens"]]')" \
	'[["testcard", "123456", "12345678"], ["problems", "123456", "12345678"]]'
is "certificates: 3 users and one per CBA problem code" \
	"$(jv 'sorted(p for c in j["certificates"] for p in c["problems"]) + [len(j["certificates"])]')" \
	'["chain-invalid-ca", "chain-purpose", "chain-untrusted", "expired", "no-client-auth-eku", "no-digital-signature", "no-private-key", "no-upn", "not-yet-valid", "weak-key", 13]'
# every code scagent check knows (its explanation table) has its certificate:
# a code added later without one in the kit fails here
codes=$(sed -n 's/^\t{ "\([a-z-]*\)",$/\1/p' "$TOP_SRCDIR/src/cert/explain.c" | LC_ALL=C sort | tr '\n' ' ')
is "  ... every code of src/cert/explain.c" \
	"$(jv '" ".join(sorted(p for c in j["certificates"] for p in c["problems"]))') " "$codes"
# each certificate's "key" says its key's type: rsa:BITS or EC:prime256v1
mismatch=$("$PY" - "$J" <<'PYEOF'
import json, subprocess, sys
j = json.load(open(sys.argv[1]))
for c in j["certificates"]:
    pem = j["dir"] + "/certs/" + c["label"] + ".pem"
    text = subprocess.run(["openssl", "x509", "-in", pem, "-noout", "-text"],
                          capture_output=True, text=True).stdout
    if c["key"].startswith("rsa:"):
        good = "rsaEncryption" in text and "(%s bit)" % c["key"][4:] in text
    else:
        good = "id-ecPublicKey" in text and "prime256v1" in text
    if not good:
        print(c["label"], c["key"])
PYEOF
)
is "  ... each one's \"key\" is its key's type and size" "$mismatch" ""
export SOFTHSM2_CONF=$KIT/softhsm2.conf
ok "the tokens exist in the kit's SoftHSM" bash -c 'l=$(softhsm2-util --show-slots); grep -q "Label: *testcard" <<<"$l" && grep -q "Label: *problems" <<<"$l"'
# every user key was generated on the token: the private key is there, not extractable
for l in alice bob carol; do
	ok "$l's private key is on the token, sensitive and never extractable" bash -c \
		'pkcs11-tool --module "$0" --token-label testcard --login --pin 123456 --list-objects --type privkey --label "$1" 2>/dev/null |
		 grep -q "Access: *sensitive, always sensitive, never extractable"' "$TB_SOFTHSM" "$l"
done
has "alice: UPN in the SAN, clientAuth and smart-card logon EKUs" \
	"$(openssl x509 -in "$KIT/certs/alice.pem" -noout -ext subjectAltName,extendedKeyUsage)" "UPN::alice@contoso.com"
has "  ... smart card logon" "$(openssl x509 -in "$KIT/certs/alice.pem" -noout -ext extendedKeyUsage)" "Microsoft Smartcard Login"
run "$SCAGENT" testcard init "$KIT"
is "init into a kit that exists: exit 1" "$RC" 1
is "  ... with one line" "$(wc -l <<<"$ERR")" 1
has "  ... that says what to do" "$ERR" "give a new or empty directory"

# ---------------------------------------------------------------- problems vs check
start_agent "$TB_DIR/a.sock"
S=$TB_DIR/a.sock
for t in testcard problems; do
	printf '123456\n' | "$SCAGENT" --socket "$S" login --token "$t" --pin-stdin >/dev/null 2>&1
done
while read -r fp want label; do
	got=$("$SCAGENT" --socket "$S" check "$fp" --cafile "$KIT/pki/root.pem" --json 2>/dev/null |
		"$PY" -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["cba"]["problems"]))')
	is "$label: init's problems are what scagent check finds" "$got" "$want"
done < <(jv '"\n".join("%s %s %s" % (c["sha256"], json.dumps(c["problems"]).replace(" ", ""), c["label"]) for c in j["certificates"])')

# ---------------------------------------------------------------- server
# server_up PORT ARGS...: the kit's server on PORT; its pid in SRV
server_up() {
	local port=$1; shift
	"$SCAGENT" testcard server "$KIT" --port "$port" "$@" >"$TB_DIR/server-$port.log" 2>&1 &
	SRV=$!
	tb_track_pid "$SRV"
	wait_for 10 _tb_listening "$port"
}
conn() { "$SCAGENT" --socket "$S" connect --cafile "$KIT/pki/root.pem" "$@"; }
p1=$(tb_port) p2=$(tb_port) p3=$(tb_port) p4=$(tb_port)
server_up "$p1"
run conn --cert alice "https://localhost:$p1/"
is "server --verify require: connect with alice: exit 0" "$RC" 0
has "  ... the server saw alice" "$OUT" "subject: CN=alice,O=Contoso"
run curl -sS --cacert "$KIT/pki/root.pem" "https://localhost:$p1/"
ok "  ... and refuses a client without a certificate" test "$RC" != 0
run conn --cert bob "https://localhost:$p1/"
has "  ... bob (EC P-256) too" "$OUT" "subject: CN=bob,O=Contoso"
server_up "$p2" --verify optional --tls 1.2
run curl -sS --cacert "$KIT/pki/root.pem" "https://localhost:$p2/"
has "server --verify optional: a client without a certificate gets an answer" "$OUT" "subject: (none)"
run conn --cert carol "https://localhost:$p2/"
has "  ... carol (RSA-3072) is seen" "$OUT" "subject: CN=carol,O=Contoso"
has "  ... over TLS 1.2 (--tls 1.2)" "$OUT" "tls: TLSv1.2"
server_up "$p3" --renegotiate /secure
run conn --cert alice "https://localhost:$p3/"
has "server --renegotiate /secure: nothing asked for /" "$OUT" "subject: (none)"
run conn --cert alice "https://localhost:$p3/secure/page"
has "  ... a certificate asked for /secure/page (TLS 1.3 post-handshake)" "$OUT" "subject: CN=alice,O=Contoso"
run curl -sS --cacert "$KIT/pki/root.pem" "https://localhost:$p3/secure/page"
has "  ... 403 without one" "$OUT" "status: 403"
run "$SCAGENT" testcard server "$KIT" --port "$p4" --renegotiate /secure --tls 1.2
is "--renegotiate with --tls 1.2 is refused: exit 1" "$RC" 1
has "  ... saying why" "$ERR" "TLS 1.3"
run "$SCAGENT" testcard server "$TB_DIR/nothing" --port "$p4"
is "server on a directory without a kit: exit 1" "$RC" 1
has "  ... and how to make one" "$ERR" "scagent testcard init"
stop_agent "the agent stops cleanly"

# ---------------------------------------------------------------- without root
# The uid needs the build tree and a directory of its own it can reach; a CI
# sandbox may deny either (a 0700 build directory, a /tmp only root enters):
# that is the machine's doing, not the kit's, and is a skip that says which.
AS_OTHER=(setpriv --reuid=65534 --regid=65534 --clear-groups)
why=
if [ "$(id -u)" != 0 ]; then
	why="not root: this run is already without root"
elif ! "${AS_OTHER[@]}" test -x "$SCAGENT" || ! "${AS_OTHER[@]}" test -x "$SCAGENTD"; then
	why="uid 65534 cannot run $SCAGENT"
elif ! "${AS_OTHER[@]}" test -r "$SCAGENT_TESTCARD" ||
	! "${AS_OTHER[@]}" test -r "$(dirname "$SCAGENT_TESTCARD")/pki.sh"; then
	why="uid 65534 cannot read the kit's files in $(dirname "$SCAGENT_TESTCARD")"
elif ! U=$(tb_open_dir 65534:65534); then
	why="no directory uid 65534 can reach ($TB_DIR, /var/tmp, /dev/shm)"
fi
if [ -n "$why" ]; then
	skip "as uid 65534: init, server, agent and connect" "$why"
else
	mkdir -p "$U/home"
	chown 65534:65534 "$U/home"
	pn=$(tb_port)
	# Debian's python3 first: another one on root's PATH may not be the uid's to run
	"${AS_OTHER[@]}" env -i PATH="/usr/bin:/bin:$PATH" HOME="$U/home" \
		SCAGENT_TESTCARD="$SCAGENT_TESTCARD" SCAGENT="$SCAGENT" SCAGENTD="$SCAGENTD" \
		U="$U" PORT="$pn" bash -c '
		set -u
		s=$(date +%s%N)
		"$SCAGENT" testcard init "$U/kit" --json >"$U/kit.json" 2>"$U/init.err" || exit 11
		echo $(( ($(date +%s%N) - s) / 1000000 )) >"$U/init.ms"
		. "$U/kit/env.sh"
		"$SCAGENT" testcard server "$U/kit" --port "$PORT" >"$U/server.log" 2>&1 & srv=$!
		"$SCAGENTD" --foreground --module "$SCAGENT_TESTCARD_MODULE" --socket "$U/a.sock" >"$U/agent.log" 2>&1 & ag=$!
		for _ in $(seq 100); do "$SCAGENT" --socket "$U/a.sock" status >/dev/null 2>&1 && break; sleep 0.1; done
		for _ in $(seq 100); do grep -q "^listening" "$U/server.log" && break; sleep 0.1; done
		printf "123456\n" | "$SCAGENT" --socket "$U/a.sock" login --token testcard --pin-stdin >/dev/null 2>&1
		"$SCAGENT" --socket "$U/a.sock" connect --cert alice --cafile "$SCAGENT_TESTCARD_CAFILE" \
			"https://localhost:$PORT/" >"$U/connect.out" 2>"$U/connect.err"
		rc=$?
		kill "$srv" "$ag"; wait "$ag"
		exit $rc' >"$TB_DIR/nobody.out" 2>&1
	rc=$?
	is "as uid 65534: init, server, agent and connect: exit 0" "$rc" 0
	if [ "$rc" != 0 ]; then
		for f in "$TB_DIR/nobody.out" "$U/init.err" "$U/kit/testbed.log" "$U/connect.err" "$U/agent.log" "$U/server.log"; do
			[ -s "$f" ] && { diag "$f:"; tail -n 8 "$f" | sed 's/^/#   /'; }
		done
	fi
	ms=$(cat "$U/init.ms" 2>/dev/null || echo 99999)
	ok "as uid 65534: init in under 10 s ($ms ms)" test "$ms" -lt 10000
	is "as uid 65534: the kit's files belong to it" "$([ -d "$U/kit" ] && find "$U/kit" ! -uid 65534 | wc -l)" 0
	has "as uid 65534: the server saw alice" "$(cat "$U/connect.out" 2>/dev/null)" "subject: CN=alice,O=Contoso"
fi
done_testing
