#!/bin/bash
# Login hygiene: the PIN read from the terminal without echo (a real
# pseudo-terminal), or from --pin-stdin, never without either; the idle
# timeout drops the login (and use keeps it); the audit log has one line per
# signature with the peer's pid, uid and executable, the certificate's
# fingerprint, the algorithm and the result.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need_py
need setsid

tb_agent_test alice
fp=$(openssl x509 -in "$TB_DIR/certs/alice.pem" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f)

start_agent "$S" --audit-log "$W/audit.log"

# ---------------------------------------------------------------- PIN from the terminal
out=$("$PY" "$here/pty-driver.py" run "$TB_PIN" "$SCAGENT" --socket "$S" login --token demo)
has "terminal: the prompt names the token" "$out" 'PIN for token "demo": '
hasnt "terminal: the PIN is not echoed" "$out" "$TB_PIN"
has "terminal: logged in" "$out" 'logged in to token "demo"'
has "terminal: exit 0" "$out" "EXIT 0"
has "terminal login: the agent is logged in" "$(sc status --json)" '{"label":"demo","logged_in":true}'
sc logout --token demo
out=$("$PY" "$here/pty-driver.py" run 654321 "$SCAGENT" --socket "$S" login --token demo)
hasnt "terminal, wrong PIN: not echoed" "$out" 654321
has "terminal, wrong PIN: clear error" "$out" 'wrong PIN for token "demo"'
has "terminal, wrong PIN: exit 1" "$out" "EXIT 1"
run setsid "$SCAGENT" --socket "$S" login --token demo </dev/null
is "no terminal and no --pin-stdin: exit 1" "$RC" 1
has "no terminal and no --pin-stdin: says to use --pin-stdin" "$ERR" "use --pin-stdin"
run sc login --token demo --pin-stdin <<<""
is "empty PIN on stdin: exit 1" "$RC" 1
has "empty PIN: nothing sent to the token" "$ERR" "empty PIN"
run sc login --token demo --pin-stdin <<<"$TB_PIN"
is "--pin-stdin: exit 0" "$RC" 0

# ---------------------------------------------------------------- audit log
cat >"$W/signer.py" <<'PYEOF'
import base64, json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
f = s.makefile("rwb")
for req in ({"id": 0, "op": "hello", "version": 1},
            {"id": 1, "op": "sign", "ref": sys.argv[2], "alg": sys.argv[3], "data": base64.b64encode(b"x").decode()}):
    f.write(json.dumps(req).encode() + b"\n")
    f.flush()
    resp = json.loads(f.readline())
print(os.getpid(), "ok" if resp["ok"] else resp["error"]["code"])
PYEOF
read -r pid1 res1 < <("$PY" "$W/signer.py" "$S" alice rsa-pss-sha384)
read -r pid2 res2 < <("$PY" "$W/signer.py" "$S" alice ecdsa-sha256)
is "audit: the good signature is made" "$res1" ok
is "audit: the bad one is refused" "$res2" key
exe=$(readlink -f "$PY")
has "audit: signature line with pid, uid, exe, fingerprint, alg, result=ok" "$(cat "$W/audit.log")" \
	"sign pid=$pid1 uid=$(id -u) exe=$exe cert=$fp alg=rsa-pss-sha384 result=ok"
has "audit: a refused signature is logged with its fingerprint and error" "$(cat "$W/audit.log")" \
	"sign pid=$pid2 uid=$(id -u) exe=$exe cert=$fp alg=ecdsa-sha256 result=key"
before=$(grep -c ' sign ' "$W/audit.log")
for i in 1 2 3; do sc sign --cert alice --alg rsa-pkcs1-sha256 --in "$W/data" >/dev/null; done
is "audit: one line per signature" "$(grep -c ' sign ' "$W/audit.log")" $((before + 3))
before=$(grep -c ' sign ' "$W/audit.log")
run sc sign --cert 'pkcs11:object=%zz' --alg rsa-pkcs1-sha256 --in "$W/data"
has "a REF the agent finds invalid: refused" "$ERR" "not a valid pkcs11: URI"
is "audit: ... in one line: the request was sent once" "$(grep -c ' sign .*result=invalid' "$W/audit.log")" 1
is "audit: ... and no other" "$(grep -c ' sign ' "$W/audit.log")" $((before + 1))
is "audit: lines carry the scagent executable" "$(grep -c "exe=${SCAGENT_EXE_SEEN:-$(readlink -f "$SCAGENT")} cert=$fp alg=rsa-pkcs1-sha256 result=ok" "$W/audit.log")" 3
ok "audit: every line starts with a UTC time" test -z "$(grep -vE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z ' "$W/audit.log")"
is "audit: logins are logged" "$(grep -c 'login .*token="demo" result=pin-incorrect' "$W/audit.log")" 1
is "audit log is 0600" "$(stat -c %a "$W/audit.log")" 600
hasnt "audit: no PIN in the log" "$(cat "$W/audit.log" "$AGENT_LOG")" "$TB_PIN"

stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"

# ---------------------------------------------------------------- idle timeout
# (3 s: under ASan on a loaded machine a client takes up to a second to start.)
start_agent "$S" --idle-timeout 3
"$SCAGENT" --socket "$S" watch --json >"$W/idle-events" 2>&1 &
wpid=$!
sc login --token demo --pin-stdin <<<"$TB_PIN" 2>/dev/null
fails=0
for i in 1 2 3 4; do
	sc sign --cert alice --alg rsa-pkcs1-sha256 --in "$W/data" >/dev/null 2>&1 || fails=$((fails + 1))
	sleep 1.2
done
is "idle timeout 3 s: signatures 1.2 s apart keep the login (4.8 s in all)" "$fails" 0
sleep 3.5
run sc sign --cert alice --alg rsa-pkcs1-sha256 --in "$W/data"
is "idle timeout: after 4.7 s idle the sign fails" "$RC" 1
has "idle timeout: not logged in any more" "$ERR" "needs a login"
has "idle timeout: status says logged out" "$(sc status --json)" '{"label":"demo","logged_in":false}'
grep -q 'logged out of "demo"' "$AGENT_LOG"
is "idle timeout: logged" "$?" 0
has "idle timeout: the log says why" "$(cat "$AGENT_LOG")" 'the login to "demo" was idle for too long'
has "idle timeout: watchers get a logout event naming the token" "$(grep '"logout"' "$W/idle-events")" \
	'"token":"demo","reason":"idle-timeout"'
kill "$wpid" 2>/dev/null
wait "$wpid" 2>/dev/null
run sc login --token demo --pin-stdin <<<"$TB_PIN"
is "idle timeout: a new login works" "$RC" 0

stop_agent "the idle-timeout agent stops on SIGTERM: exit 0, no sanitizer report"
done_testing
