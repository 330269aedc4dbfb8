#!/bin/bash
# docs/PROTOCOL.md's examples really work: the socat lines and the Python
# client (tests/integration/python-client.py, which must be the document's
# copy) sign through the agent, and the signatures verify with openssl.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need_py
need socat
doc=$TOP_SRCDIR/docs/PROTOCOL.md

tb_agent_test alice bob
SCAGENT_SOCKET=$TB_DIR/agent.sock
export SCAGENT_SOCKET
start_agent "$SCAGENT_SOCKET"

# fenced LANG: the first ```LANG block of the document
fenced() { awk -v l="$1" '$0 == "```" l { on = 1; next } on && $0 == "```" { exit } on' "$doc"; }

# ---------------------------------------------------------------- Python
fenced python >"$W/doc-client.py"
ok "PROTOCOL.md's Python example is tests/integration/python-client.py" \
	cmp "$W/doc-client.py" "$here/python-client.py"
is "the Python example is about 20 lines of code" \
	"$(grep -cvE '^\s*(#|$)' "$here/python-client.py" | awk '{ print ($1 <= 30) }')" 1
head -c 5000 /dev/urandom >"$W/doc.txt"
run "$PY" "$here/python-client.py" "$SCAGENT_SOCKET" alice rsa-pss-sha256 "$W/doc.txt"
is "Python client without PIN: fails" "$RC" 1
has "Python client without PIN: the agent's code and message" "$ERR" "not-logged-in: the token \"demo\""
PIN=$TB_PIN "$PY" "$here/python-client.py" "$SCAGENT_SOCKET" alice rsa-pss-sha256 "$W/doc.txt" >"$W/doc.sig"
is "Python client with PIN: exit 0" "$?" 0
ok "Python client: RSA-PSS signature verifies" openssl dgst -sha256 -verify "$(pubkey alice)" \
	-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -signature "$W/doc.sig" "$W/doc.txt"
"$PY" "$here/python-client.py" "$SCAGENT_SOCKET" bob ecdsa-sha384 "$W/doc.txt" >"$W/bob.sig"
is "Python client, already logged in: ECDSA exit 0" "$?" 0
ok "Python client: ECDSA signature verifies" openssl dgst -sha384 -verify "$(pubkey bob)" \
	-signature "$W/bob.sig" "$W/doc.txt"
run "$PY" "$here/python-client.py" "$SCAGENT_SOCKET" nosuch rsa-pss-sha256 "$W/doc.txt"
has "Python client, unknown REF: not-found" "$ERR" "not-found: no certificate matches"

# ---------------------------------------------------------------- socat
fenced sh >"$W/socat.sh"
ok "PROTOCOL.md has a socat example" grep -q socat "$W/socat.sh"
run timeout 20 bash "$W/socat.sh"
is "socat example: exit 0" "$RC" 0
is "socat example: three answers" "$(wc -l <<<"$OUT")" 3
is "socat example: all ok" "$(grep -c '"ok":true' <<<"$OUT")" 3
printf hello >"$W/hello"
sed -n 3p <<<"$OUT" | "$PY" -c 'import json,sys,base64; sys.stdout.buffer.write(base64.b64decode(json.load(sys.stdin)["result"]["signature"]))' >"$W/socat.sig"
ok "socat example: the signature verifies" openssl dgst -sha256 -verify "$(pubkey alice)" \
	-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -signature "$W/socat.sig" "$W/hello"

# ---------------------------------------------------------------- the documented op table
ops=$(printf '{"id":0,"op":"hello","version":1}\n' | socat -t 5 - UNIX-CONNECT:"$SCAGENT_SOCKET" |
	"$PY" -c 'import json,sys; print(" ".join(json.load(sys.stdin)["result"]["ops"]))')
for op in $ops; do
	ok "op $op is documented in PROTOCOL.md's table" grep -q "^| \`$op\` |" "$doc"
done
for c in $(sed -n 's/.*{ SC_ERR[A-Z_]*, "\([a-z-]*\)".*/\1/p' "$TOP_SRCDIR/src/common/err.c"); do
	[ "$c" = ok ] && continue
	ok "error code $c is documented" grep -q "^| \`$c\` |" "$doc"
done

stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"
done_testing
