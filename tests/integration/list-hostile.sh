#!/bin/bash
# Labels, token fields and certificate names are written by whoever made the
# token or the certificate (issue 19). On a SoftHSM token whose labels hold a
# newline that forges a "[CBA ok]" line, invalid UTF-8 and ESC[2J, and a
# certificate whose UPN holds ESC[2J: `scagent list` / `check` print no raw
# control byte, no forged line and no invalid UTF-8; `list --json` is valid
# UTF-8 for a strict parser (Python's json.loads on bytes), with U+FFFD and a
# <name>_hex field holding the raw bytes; through --direct and the agent, and
# from the agent's socket as a client reads it.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/list-common.sh"
: "${SCAGENTD:?run through make check (SCAGENTD unset)}"
tb_init
tb_pki

W=$TB_DIR/hostile P=$TB_DIR/pki
mkdir -p "$W"
ESC=$'\x1b'
FORGED=$'alice\n  forged  [CBA ok]'
BAD=$'bad\xff\x1b[2J'
TOKBAD=$'card\x1b[2J\xfe'

# cert NAME EXTRA-SAN: a software-keyed certificate from the issuing CA whose
# SAN holds UPN (raw bytes allowed), as $W/NAME.der; the issuing CA's extension
# syntax is written with printf so that any byte reaches the config file.
cert() {
	local name=$1 upn=$2 eku=${3:-clientAuth}
	printf '[ee]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = %s\nauthorityKeyIdentifier = keyid\nsubjectAltName = @san\n[san]\notherName.1 = 1.3.6.1.4.1.311.20.2.3;FORMAT:UTF8,UTF8:%s\n' \
		"$eku" "$upn" >"$W/$name.ext"
	openssl req -new -newkey rsa:2048 -nodes -keyout "$W/$name.key" -subj "/O=Contoso/CN=$name" \
		-out "$W/$name.csr" 2>/dev/null &&
	openssl x509 -req -in "$W/$name.csr" -CA "$P/issuing.pem" -CAkey "$P/issuing.key" \
		-CAcreateserial -days 30 -extfile "$W/$name.ext" -extensions ee -out "$W/$name.pem" 2>/dev/null &&
	openssl x509 -in "$W/$name.pem" -outform DER -out "$W/$name.der"
}
# put TOKEN ID LABEL NAME: certificate NAME onto TOKEN with that label (bytes)
put() {
	pkcs11-tool --module "$TB_SOFTHSM" --token-label "$1" --login --pin "$TB_PIN" \
		--write-object "$W/$4.der" --type cert --id "$2" --label "$3" >/dev/null 2>&1
}
tb_softhsm_token plain
tb_softhsm_token "$TOKBAD"
ok "certificates made with openssl" cert plain plain@contoso.com
ok "another one" cert plain2 plain2@contoso.com
ok "a certificate with ESC[2J in its UPN" cert escupn "${ESC}[2Jmallory@contoso.com"
ok "a serverAuth certificate (CBA problems) for the forged label" cert srv srv@contoso.com serverAuth
openssl x509 -in "$W/escupn.pem" -noout -text >"$W/escupn.txt" 2>&1
ok "openssl reads the ESC byte in the UPN" grep -q "UPN::.\[2Jmallory@contoso.com" "$W/escupn.txt"
ok "label with a newline and [CBA ok] on a certificate with CBA problems" put plain 01 "$FORGED" srv
ok "label with invalid UTF-8 and ESC[2J" put plain 02 "$BAD" plain
ok "label escupn" put plain 03 escupn escupn
ok "certificate on the token whose label is invalid UTF-8 + ESC" put "$TOKBAD" 04 inbad plain2

# human DESC FILE: no raw control byte but newline, no forged line, valid
# UTF-8, every hostile string shown escaped
human() {
	local d=$1 f=$2
	if LC_ALL=C grep -q $'[\x01-\x09\x0b-\x1f\x7f]' "$f"; then
		fail "$d: no raw control byte" "$(od -c "$f" | head -20)"
	else pass "$d: no raw control byte"; fi
	ok "$d: valid UTF-8" python3 -c 'import sys; open(sys.argv[1], "rb").read().decode("utf-8")' "$f"
	if grep -q '^  forged' "$f"; then fail "$d: no line starts with the forged text" "$(cat "$f")"
	else pass "$d: no line starts with the forged text"; fi
	file_has "$d: the newline label shown escaped, with its real CBA state" "$f" \
		'  alice\n  forged  [CBA ok]  [CBA problems]'
	file_has "$d: the invalid UTF-8 label shown as \\xff \\x1b" "$f" '  bad\xff\x1b[2J  ['
	file_has "$d: the UPN's ESC shown as \\x1b" "$f" 'upn:      \x1b[2Jmallory@contoso.com'
	file_has "$d: the token label shown escaped" "$f" 'Token "card\x1b[2J\xfe"'
}
# json DESC FILE: strict UTF-8 JSON, U+FFFD + _hex, valid strings unchanged
json() {
	local out
	if out=$(python3 - "$1" <<-'PY' 2>&1
		import json, sys
		d = json.loads(open(sys.argv[1], "rb").read())   # bytes: strict UTF-8
		certs = {c["label"]: c for t in d["tokens"] for c in t["certificates"]}
		toks = {t["label"]: t for t in d["tokens"]}
		def want(a, b):
		    if a != b:
		        sys.exit("%r != %r" % (a, b))
		bad = certs["bad\ufffd\x1b[2J"]
		want(bad["label_hex"], "626164ff1b5b324a")
		want(certs["alice\n  forged  [CBA ok]"].get("label_hex"), None)
		want(certs["alice\n  forged  [CBA ok]"]["cba"]["problems"], ["no-client-auth-eku"])
		want(certs["escupn"]["upn"], ["\x1b[2Jmallory@contoso.com"])
		tb = toks["card\x1b[2J\ufffd"]
		want(tb["label_hex"], "636172641b5b324afe")
		want(tb["certificates"][0]["token_hex"], "636172641b5b324afe")
		want(toks["plain"].get("label_hex"), None)
		want(bad["token"], "plain")
		print("ok")
	PY
	); then pass "$2"; else fail "$2" "$out"; fi
}

# ---- --direct
LC_ALL=C.UTF-8 sca list >"$W/d.txt" 2>"$W/d.err"
is "--direct list: exit 0" $? 0
human "--direct list (UTF-8 locale)" "$W/d.txt"
sca list --json >"$W/d.json" 2>"$W/d.err"
is "--direct list --json: exit 0" $? 0
json "$W/d.json" "--direct list --json: strict UTF-8, U+FFFD and _hex"
sha=$(python3 -c 'import json,sys; print([c["sha256"] for t in json.load(open(sys.argv[1]))["tokens"] for c in t["certificates"] if c.get("label_hex") == "626164ff1b5b324a"][0])' "$W/d.json")
LC_ALL=C.UTF-8 sca check "$sha" >"$W/dc.txt" 2>&1
file_has "--direct check (human): the label escaped" "$W/dc.txt" 'Certificate "bad\xff\x1b[2J" on token "plain"'
ok "--direct check (human): no raw ESC" sh -c "! grep -q '$ESC' '$W/dc.txt'"
# An ambiguous REF lists candidates on stderr: escaped too.
LC_ALL=C.UTF-8 sca check nosuch >/dev/null 2>"$W/dnf.err"
file_has "--direct unknown REF: candidates' labels escaped" "$W/dnf.err" 'alice\n  forged  [CBA ok] ('
ok "--direct unknown REF: no raw ESC on stderr" sh -c "! grep -q '$ESC' '$W/dnf.err'"
# Non-UTF-8 locale: everything non-ASCII escaped, the output is ASCII.
LC_ALL=C LANG= sca list >"$W/dc-ascii.txt" 2>&1
ok "--direct list in the C locale: pure ASCII" \
	python3 -c 'import sys; open(sys.argv[1], "rb").read().decode("ascii")' "$W/dc-ascii.txt"

# ---- the agent
TB_AGENT_LOG=$W/agent.log start_agent --module "$TB_SOFTHSM" --log-level warn
LC_ALL=C.UTF-8 "$SCAGENT" list >"$W/a.txt" 2>"$W/a.err"
is "agent list: exit 0" $? 0
human "agent list" "$W/a.txt"
"$SCAGENT" list --json >"$W/a.json" 2>"$W/a.err"
is "agent list --json: exit 0" $? 0
json "$W/a.json" "agent list --json: strict UTF-8, U+FFFD and _hex"
LC_ALL=C.UTF-8 "$SCAGENT" check "$sha" >"$W/ac.txt" 2>&1
file_has "agent check (human): the label escaped from label_hex" "$W/ac.txt" \
	'Certificate "bad\xff\x1b[2J" on token "plain"'
LC_ALL=C.UTF-8 "$SCAGENT" check nosuch >/dev/null 2>"$W/anf.err"
ok "agent unknown REF: no raw ESC on stderr" sh -c "! grep -q '$ESC' '$W/anf.err'"
file_has "agent unknown REF: candidates' labels escaped" "$W/anf.err" 'alice\n  forged  [CBA ok] ('
LC_ALL=C.UTF-8 "$SCAGENT" status >"$W/st.txt" 2>"$W/st.err"
is "agent status: exit 0" $? 0
if LC_ALL=C grep -q $'[\x01-\x09\x0b-\x1f\x7f]' "$W/st.txt"; then
	fail "agent status: no raw control byte" "$(od -c "$W/st.txt" | head -20)"
else pass "agent status: no raw control byte"; fi
ok "agent status: valid UTF-8" python3 -c 'import sys; open(sys.argv[1], "rb").read().decode("utf-8")' "$W/st.txt"
file_has "agent status: the token label shown escaped (its invalid byte as U+FFFD)" "$W/st.txt" \
	"card\\x1b[2J$(printf '\xef\xbf\xbd')"

# The socket as a client reads it (python-client.py's way: json.loads on bytes).
if out=$(python3 - "$SCAGENT_SOCKET" "$sha" <<-'PY' 2>&1
	import itertools, json, socket, sys
	s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
	s.connect(sys.argv[1])
	f, ids = s.makefile("rwb"), itertools.count()
	def call(op, **args):
	    req = dict(args, id=next(ids), op=op)
	    f.write(json.dumps(req).encode() + b"\n")
	    f.flush()
	    while True:
	        resp = json.loads(f.readline())      # bytes: strict UTF-8
	        if resp.get("id") == req["id"]:
	            return resp
	call("hello", version=1)
	lst = call("list")["result"]
	n = sum(len(t["certificates"]) for t in lst["tokens"])
	assert n == 4, n
	c = call("find", ref=sys.argv[2])["result"]
	assert c["label"] == "bad\ufffd\x1b[2J" and c["label_hex"] == "626164ff1b5b324a", c
	err = call("find", ref="nosuch")
	assert not err["ok"], err
	print("ok")
PY
); then pass "agent socket: list, find and an error answer parse as strict UTF-8"
else fail "agent socket: list, find and an error answer parse as strict UTF-8" "$out"; fi
tb_agent_stop >/dev/null
is "agent stops cleanly" $? 0

done_testing
