#!/bin/bash
# The agent's socket protocol spoken raw (tests/integration/rawclient.py):
# handshake, every kind of bad request (error reply with its code, and the
# connection keeps working; duplicate keys, ids over 2^63, invalid UTF-8 and
# "cafile" among them), NUL bytes, truncated and oversized requests, CA
# certificates sent as "cas" and a FIFO named as cafile, half-sent requests,
# many clients at once, the socket's files and modes, a second agent, a stale
# socket, SIGTERM, and the SO_PEERCRED check.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need_py
need setpriv

tb_agent_test alice bob
S=$TB_DIR/run/agent.sock
raw() { "$PY" "$here/rawclient.py" "$S" "$@"; }
# code LINE: the error code of a reply line ("" when it is not an error)
code() { "$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["error"]["code"] if not d["ok"] else "ok")' "$1" 2>/dev/null; }
field() { "$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null; }

start_agent "$S" --request-timeout 2

# ---------------------------------------------------------------- socket files
is "socket directory is 0700" "$(stat -c %a "$TB_DIR/run")" 700
is "socket is 0600" "$(stat -c %a "$S")" 600
ok "socket is a socket" test -S "$S"

# ---------------------------------------------------------------- handshake
out=$(printf '%s\n' '{"id":1,"op":"list"}' '{"id":0,"op":"hello","version":1}' '{"id":2,"op":"status"}' | raw --wait 0.5)
l1=$(sed -n 1p <<<"$out") l2=$(sed -n 2p <<<"$out") l3=$(sed -n 3p <<<"$out")
is "no hello first: error protocol" "$(code "$l1")" protocol
is "no hello first: the reply keeps the id" "$(field "$l1" 'd["id"]')" 1
has "no hello first: says to send hello" "$l1" '\"op\":\"hello\"'
is "hello after that: ok" "$(code "$l2")" ok
is "hello: reports protocol 1" "$(field "$l2" 'd["result"]["protocol"]')" 1
has "hello: lists the ops" "$(field "$l2" 'd["result"]["ops"]')" "'sign'"
is "then status: ok" "$(code "$l3")" ok
is "connection still open" "$(tail -n 1 <<<"$out")" OPEN

out=$(printf '%s\n' '{"id":0,"op":"hello","version":2}' '{"id":1,"op":"status"}' \
	'{"id":2,"op":"hello"}' '{"id":3,"op":"hello","version":1}' '{"id":4,"op":"status"}' | raw --lines 5)
l=$(sed -n 1p <<<"$out")
is "bad version: error unsupported" "$(code "$l")" unsupported
has "bad version: says which version the agent speaks" "$l" "this agent speaks 1"
is "bad version: no session (status refused)" "$(code "$(sed -n 2p <<<"$out")")" protocol
is "hello without version: error invalid" "$(code "$(sed -n 3p <<<"$out")")" invalid
is "hello with version 1 after all that: ok" "$(code "$(sed -n 4p <<<"$out")")" ok
is "status afterwards: ok" "$(code "$(sed -n 5p <<<"$out")")" ok

# ---------------------------------------------------------------- bad requests, one connection
# Each bad line is followed by a good status request: the connection must keep working.
bad=(
	'malformed JSON|{"id":1,"op":|protocol'
	'trailing garbage|{"id":1,"op":"status"} x|protocol'
	'two objects on a line|{"id":1,"op":"status"}{"id":2,"op":"status"}|protocol'
	'non-object|[1,2,3]|protocol'
	'a string|"status"|protocol'
	'missing id|{"op":"status"}|protocol'
	'negative id|{"id":-5,"op":"status"}|protocol'
	'string id|{"id":"7","op":"status"}|protocol'
	'missing op|{"id":1}|protocol'
	'op not a string|{"id":1,"op":5}|protocol'
	'unknown op|{"id":1,"op":"format-disk"}|unsupported'
	'unknown argument|{"id":1,"op":"list","module":"/tmp/evil.so"}|invalid'
	'wrong argument type (string wanted)|{"id":1,"op":"sign","ref":1,"alg":"rsa-pss-sha256","data":""}|invalid'
	'wrong argument type (bool wanted)|{"id":1,"op":"get-cert","ref":"alice","chain":"yes"}|invalid'
	'missing required argument|{"id":1,"op":"sign","alg":"rsa-pss-sha256","data":""}|invalid'
	'deep nesting|{"id":1,"op":"status","x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}|protocol'
	'bad base64|{"id":1,"op":"sign","ref":"alice","alg":"rsa-pss-sha256","data":"!!!"}|invalid'
	'data and digest|{"id":1,"op":"sign","ref":"alice","alg":"rsa-pss-sha256","data":"","digest":""}|invalid'
	'unknown alg|{"id":1,"op":"sign","ref":"alice","alg":"dsa","data":""}|invalid'
	'invalid UTF-8|{"id":1,"op":"get-cert","ref":"\xff\xfe"}|invalid'
	'overlong UTF-8 (json-c takes it)|{"id":1,"op":"get-cert","ref":"\xc0\xaf"}|invalid'
	'a UTF-16 surrogate in UTF-8|{"id":1,"op":"get-cert","ref":"\xed\xa0\x80"}|invalid'
	'a code point over U+10FFFF|{"id":1,"op":"get-cert","ref":"\xf4\x90\x80\x80"}|invalid'
	'invalid UTF-8 in a sign request|{"id":1,"op":"sign","ref":"\xe0\x80\xaf","alg":"rsa-pss-sha256","data":""}|invalid'
	'a key twice (json-c keeps the last)|{"id":1,"op":"status","op":"list"}|invalid'
	'id twice|{"id":1,"id":2,"op":"status"}|invalid'
	'a key twice in a sign request|{"id":1,"op":"sign","ref":"alice","alg":"rsa-pss-sha256","data":"","ref":"bob"}|invalid'
	'id 2^63 (json-c clamps it)|{"id":9223372036854775808,"op":"status"}|invalid'
	'id 2^64|{"id":18446744073709551616,"op":"status"}|invalid'
	'cafile (the agent opens no file a client names)|{"id":1,"op":"list","cafile":"/etc/ssl/certs/ca-certificates.crt"}|invalid'
	'cas that holds no certificate|{"id":1,"op":"find","ref":"alice","cas":"not PEM"}|invalid'
)
for b in "${bad[@]}"; do
	IFS='|' read -r what line want <<<"$b"
	out=$(printf '%b\n{"id":99,"op":"status"}\n' "$line" | raw --hello --lines 2)
	l=$(sed -n 1p <<<"$out")
	got=$(code "$l")
	if [ -n "$want" ]; then
		is "$what: error $want" "$got" "$want"
	else
		# any well-formed error reply
		ok "$what: an error reply" test -n "$got" -a "$got" != ok
	fi
	has "$what: the reply has a message" "$l" '"message":"'
	is "$what: next request on the connection answered" "$(code "$(sed -n 2p <<<"$out")")" ok
done
l=$(printf '{"id":12,"op":"format-disk"}\n' | raw --hello --lines 1 | head -n 1)
is "unknown op: the reply keeps the id" "$(field "$l" 'd["id"]')" 12
l=$(printf '{"id":1,"op":\n' | raw --hello --lines 1 | head -n 1)
is "malformed: the reply's id is null" "$(field "$l" 'd["id"]')" None
l=$(printf '{"id":13,"op":"status","op":"list"}\n' | raw --hello --lines 1 | head -n 1)
is "a key twice: the reply keeps the id" "$(field "$l" 'd["id"]')" 13
has "a key twice: says so" "$l" "a key appears twice in one object"
l=$(printf '{"id":18446744073709551616,"op":"status"}\n' | raw --hello --lines 1 | head -n 1)
is "id 2^64: the reply's id is null (not a clamped one)" "$(field "$l" 'd["id"]')" None
has "id 2^64: says it is out of range" "$l" "out of range"
l=$(printf '{"id":14,"op":"list","cafile":"ca.pem"}\n' | raw --hello --lines 1 | head -n 1)
has "cafile: says to send the certificates as cas" "$l" 'send its certificates as \"cas\" (PEM text)'

# ---------------------------------------------------------------- CA certificates as "cas"
# The client sends the PEM text; the agent opens no file a client names.
cas=$("$PY" -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$TB_DIR/pki/ca-chain.pem")
l=$(printf '{"id":15,"op":"find","ref":"alice","cas":%s}\n' "$cas" | raw --hello --lines 1 | head -n 1)
is "find with cas (issuing CA and root): ok" "$(code "$l")" ok
is "... alice chains to it: suitable" "$(field "$l" 'd["result"]["cba"]["suitable"]')" True
cas=$("$PY" -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$TB_DIR/pki/rogue.pem")
l=$(printf '{"id":16,"op":"list","cas":%s}\n' "$cas" | raw --hello --lines 1 | head -n 1)
has "list with cas (another root): chain-untrusted" "$l" '"chain-untrusted"'
# A FIFO named as cafile would block the thread that opens it for good, and
# SIGTERM with it. A second agent, so that SIGTERM is tried on it.
mkfifo "$W/fifo"
main_pid=$AGENT_PID main_log=$AGENT_LOG
start_agent "$TB_DIR/fifo.sock"
t0=$(date +%s%N)
out=$(printf '{"id":1,"op":"list","cafile":"%s"}\n{"id":2,"op":"find","ref":"alice","cafile":"%s"}\n{"id":3,"op":"status"}\n' \
	"$W/fifo" "$W/fifo" | "$PY" "$here/rawclient.py" "$TB_DIR/fifo.sock" --hello --lines 3 --wait 5)
ms=$((($(date +%s%N) - t0) / 1000000))
is "a FIFO as list's cafile: refused, invalid" "$(code "$(sed -n 1p <<<"$out")")" invalid
is "a FIFO as find's cafile: refused, invalid" "$(code "$(sed -n 2p <<<"$out")")" invalid
is "... the connection keeps working" "$(code "$(sed -n 3p <<<"$out")")" ok
ok "... answered at once ($ms ms)" test "$ms" -lt 3000
ok "... the agent never opened the FIFO" bash -c '! ls -l /proc/$1/fd | grep -q -- "$2"' _ "$AGENT_PID" "$W/fifo"
ok "... other clients are served" "$SCAGENT" --socket "$TB_DIR/fifo.sock" status
run timeout 5 "$SCAGENT" --socket "$TB_DIR/fifo.sock" list --cafile "$W/fifo"
is "scagent list --cafile FIFO: exit 2 at once" "$RC" 2
has "... says it is not a regular file" "$ERR" "the CA file $W/fifo is not a regular file"
run timeout 5 "$SCAGENT" --socket "$TB_DIR/fifo.sock" check alice --cafile /dev/zero
is "scagent check --cafile /dev/zero: exit 2 at once" "$RC" 2
has "... says it is not a regular file" "$ERR" "is not a regular file"
stop_agent "a FIFO named as cafile: SIGTERM still ends the agent, exit 0"
AGENT_PID=$main_pid AGENT_LOG=$main_log

# CRLF, empty lines and pipelined requests
out=$(printf '{"id":5,"op":"status"}\r\n\n\n{"id":6,"op":"status"}\n{"id":7,"op":"status"}\n' | raw --hello --lines 3)
is "CRLF line: answered" "$(field "$(sed -n 1p <<<"$out")" 'd["id"]')" 5
is "pipelined requests answered in order" \
	"$(field "$(sed -n 2p <<<"$out")" 'd["id"]'),$(field "$(sed -n 3p <<<"$out")" 'd["id"]')" 6,7
out=$(printf '{"id":8,"op":"status"}\n' | raw --hello --chunk 3 --lines 1)
is "a request sent 3 bytes at a time: answered" "$(code "$(sed -n 1p <<<"$out")")" ok

# ---------------------------------------------------------------- NUL, truncation, size cap
out=$(printf '{"id":1,"op":"st\0atus"}\n{"id":2,"op":"status"}\n' | raw --hello --lines 2)
l=$(sed -n 1p <<<"$out")
is "embedded NUL: error protocol" "$(code "$l")" protocol
has "embedded NUL: says so" "$l" "NUL"
is "embedded NUL: next request answered" "$(field "$(sed -n 2p <<<"$out")" 'd["id"]')" 2

out=$(printf '{"id":1,"op":"list","cas":"-----BEGIN' | raw --hello --wait 0.3)
is "truncated request then disconnect: no reply" "$out" OPEN
ok "the agent survived the disconnect" sc status

"$PY" -c 'import sys; sys.stdout.write("{\"id\":1,\"op\":\"list\",\"cas\":\"" + "A" * (300 * 1024) + "\"}\n")' >"$W/big"
out=$(raw --hello --wait 5 <"$W/big")
l=$(sed -n 1p <<<"$out")
is "300 KiB request: error too-large" "$(code "$l")" too-large
is "300 KiB request: connection dropped" "$(tail -n 1 <<<"$out")" EOF
"$PY" -c 'import sys; sys.stdout.write("{\"id\":1,\"op\":\"list\",\"cas\":\"" + "A" * (300 * 1024))' >"$W/big2"
out=$(raw --hello --wait 5 <"$W/big2")
is "300 KiB without a newline: dropped too" "$(tail -n 1 <<<"$out")" EOF
grep -q "request over 262144 bytes" "$AGENT_LOG"
is "the agent logs the oversized request" "$?" 0

# ---------------------------------------------------------------- the agent keeps serving
run sc list --json
is "after all that: list works" "$RC" 0
has "after all that: list shows alice" "$OUT" '"label": "alice"'
sc login --token demo --pin-stdin <<<"$TB_PIN" 2>/dev/null
head -c 1000 /dev/urandom >"$W/data"
run sc sign --cert alice --alg rsa-pss-sha256 --in "$W/data" --out "$W/after.sig"
is "after all that: sign works" "$RC" 0
ok "after all that: the signature verifies" openssl dgst -sha256 -verify "$(pubkey alice)" \
	-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -signature "$W/after.sig" "$W/data"

# A big request just under the cap is fine: 150 KB of data to sign (200 KB of base64).
head -c 150000 /dev/urandom >"$W/bigdata"
"$PY" -c 'import base64,sys; d=open(sys.argv[1],"rb").read(); sys.stdout.write("{\"id\":3,\"op\":\"sign\",\"ref\":\"alice\",\"alg\":\"rsa-pkcs1-sha256\",\"data\":\"%s\"}\n" % base64.b64encode(d).decode())' "$W/bigdata" >"$W/bigreq"
l=$(raw --hello --wait 5 <"$W/bigreq" | head -n 1)
field "$l" 'd["result"]["signature"]' | base64 -d >"$W/big.sig"
ok "200 KB request under the cap: signed, verifies" openssl dgst -sha256 -verify "$(pubkey alice)" \
	-signature "$W/big.sig" "$W/bigdata"

# ---------------------------------------------------------------- many clients at once
pids=()
for i in $(seq 20); do
	sc list --json >"$W/list.$i" 2>&1 &
	pids+=($!)
	sc sign --cert alice --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/par.$i.sig" 2>"$W/sign.$i.err" &
	pids+=($!)
	sc sign --cert bob --alg ecdsa-sha256 --in "$W/data" --out "$W/parec.$i.sig" 2>"$W/signec.$i.err" &
	pids+=($!)
done
bad=0
for p in "${pids[@]}"; do wait "$p" || bad=$((bad + 1)); done
is "60 concurrent clients (list, RSA and EC signs): all exit 0" "$bad" 0
bad=0
for i in $(seq 20); do
	grep -q '"label": "alice"' "$W/list.$i" || bad=$((bad + 1))
	openssl dgst -sha256 -verify "$(pubkey alice)" -signature "$W/par.$i.sig" "$W/data" >/dev/null 2>&1 || bad=$((bad + 1))
	openssl dgst -sha256 -verify "$(pubkey bob)" -signature "$W/parec.$i.sig" "$W/data" >/dev/null 2>&1 || bad=$((bad + 1))
done
is "concurrent clients: every list complete, every signature verifies" "$bad" 0

# ---------------------------------------------------------------- a half-sent request
t0=$(date +%s.%N)
printf '{"id":1,"op":"sta' | raw --hello --wait 10 >"$W/half.out" &
half=$!
sleep 0.5
t1=$(date +%s.%N)
run sc list --json
t2=$(date +%s.%N)
is "while a client is half-way through a request: list works" "$RC" 0
ok "... and answers within 1 s" "$PY" -c "import sys; sys.exit(not ($t2 - $t1 < 1.0))"
wait "$half"
t3=$(date +%s.%N)
is "the half-sent request is dropped (connection closed)" "$(tail -n 1 "$W/half.out")" EOF
ok "... after the 2 s request timeout (not before 1.5 s, within 6 s)" \
	"$PY" -c "import sys; d = $t3 - $t0; sys.exit(not (1.5 <= d <= 6))"
grep -q "request not completed in time" "$AGENT_LOG"
is "the agent logs the timeout" "$?" 0
# A request trickled a byte every 0.3 s never leaves the connection idle for
# a whole poll round; the request timeout holds all the same.
t0=$(date +%s.%N)
printf '{"id":1,"op":"status","x":"%s"}' "$(printf 'a%.0s' $(seq 40))" |
	raw --hello --chunk 1 --pace 0.3 --wait 20 >"$W/trickle.out"
t1=$(date +%s.%N)
is "a trickled request is dropped (connection closed)" "$(tail -n 1 "$W/trickle.out")" EOF
ok "... after the 2 s request timeout (within 6 s, not after the 20 s it takes to send)" \
	"$PY" -c "import sys; d = $t1 - $t0; sys.exit(not (1.5 <= d <= 6))"

# ---------------------------------------------------------------- events
raw --hello --wait 15 --lines 3 >"$W/watch.out" <<<'{"id":1,"op":"watch"}' &
watcher=$!
sleep 0.5
sc logout --token demo 2>/dev/null
sc login --token demo --pin-stdin <<<"$TB_PIN" 2>/dev/null
wait "$watcher"
has "watch: logout event with the token" "$(cat "$W/watch.out")" '{"token":"demo","event":"logout"}'
has "watch: login event with the token" "$(cat "$W/watch.out")" '{"token":"demo","event":"login"}'

# A logout closes the sessions of the operations prepared for the next
# signatures; when that closes a slot's last session, SoftHSM numbers its
# objects anew (not in every run: this case cannot force it; agent-faults.sh
# does, with the fault module's renumber).
# Either way a refresh after the logout finds nothing changed and no "changed"
# event goes out: the reload after the logout found the certificates under
# whatever handles they have now.
for k in "alice rsa-pkcs1-sha256" "bob ecdsa-sha256"; do
	read -r ref alg <<<"$k"
	sc sign --cert "$ref" --alg "$alg" --in /dev/null >/dev/null 2>&1
	is "$ref signs (and an operation is prepared for the next signature)" "$?" 0
done
out=$(raw --hello <<<'{"id":1,"op":"refresh"}' | sed -n 1p)
is "refresh while logged in: nothing changed" "$(field "$out" 'd["result"]["changed"]')" False
raw --hello --wait 4 --lines 3 >"$W/watch2.out" <<<'{"id":1,"op":"watch"}' &
watcher=$!
sleep 0.5
sc logout --token demo 2>/dev/null
out=$(raw --hello <<<'{"id":1,"op":"refresh"}' | sed -n 1p)
is "refresh after a logout: nothing changed" "$(field "$out" 'd["result"]["changed"]')" False
wait "$watcher"
has "watch: the logout event" "$(cat "$W/watch2.out")" '{"token":"demo","event":"logout"}'
hasnt "watch: no changed event after the logout" "$(cat "$W/watch2.out")" '"event":"changed"'
sc login --token demo --pin-stdin <<<"$TB_PIN" 2>/dev/null

# ---------------------------------------------------------------- a second agent, a stale socket
run timeout 10 "$SCAGENTD" --foreground --module "$TB_SOFTHSM" --socket "$S"
is "second agent on the same socket: exit 1" "$RC" 1
has "second agent: clear error" "$ERR" "an agent is already running on $S"
ok "the first agent keeps serving" sc status
ok "the socket is still there" test -S "$S"

kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
ok "killed -9: the socket file stays behind (stale)" test -S "$S"
run sc status
is "stale socket: clients get exit 3" "$RC" 3
start_agent "$S"
replaced_pid=$AGENT_PID
ok "a new agent replaces the stale socket" sc status
is "replaced socket is 0600" "$(stat -c %a "$S")" 600

mkdir -m 0755 "$TB_DIR/open"
start_agent "$TB_DIR/open/agent.sock"
is "an existing directory given with --socket keeps its mode (think /tmp)" "$(stat -c %a "$TB_DIR/open")" 755
is "  ... and the socket in it is 0600" "$(stat -c %a "$TB_DIR/open/agent.sock")" 600

# ---------------------------------------------------------------- SIGTERM
stop_agent "SIGTERM: exit status 0, no sanitizer report"
ok "SIGTERM: socket removed" test ! -e "$TB_DIR/open/agent.sock"
grep -q "shutting down" "$AGENT_LOG"
is "SIGTERM: logged" "$?" 0

# ---------------------------------------------------------------- the default directory
# Without --socket and $SCAGENT_SOCKET the directory is the agent's own:
# $XDG_RUNTIME_DIR/scagent, made 0700 even when it exists with another mode.
mkdir -p "$TB_DIR/xdg/scagent" && chmod 0755 "$TB_DIR/xdg/scagent"
env -u SCAGENT_SOCKET XDG_RUNTIME_DIR="$TB_DIR/xdg" "$SCAGENTD" --foreground --module "$TB_SOFTHSM" \
	>"$TB_DIR/xdg.log" 2>&1 &
xdg_pid=$!
tb_track_pid $xdg_pid
for _ in $(seq 100); do [ -S "$TB_DIR/xdg/scagent/agent.sock" ] && break; sleep 0.05; done
is "default socket: \$XDG_RUNTIME_DIR/scagent/agent.sock" "$(stat -c %F "$TB_DIR/xdg/scagent/agent.sock" 2>&1)" socket
is "default directory made 0700" "$(stat -c %a "$TB_DIR/xdg/scagent")" 700
kill -TERM $xdg_pid; wait $xdg_pid
is "default-socket agent: SIGTERM exits 0" "$?" 0

# ---------------------------------------------------------------- peer credentials
# The socket directory is normally 0700, which keeps other users out before
# the agent even sees them.  To exercise the SO_PEERCRED check itself, this
# agent's directory and socket are opened to everyone: the connection of
# `nobody` then reaches accept() and must be refused there.
PD=$(mktemp -d "${TMPDIR:-/tmp}/scagent-peer.XXXXXX")
tb_on_exit "rm -rf '$PD'"
chmod 0711 "$PD"
start_agent "$PD/s/agent.sock"
peer_log=$AGENT_LOG
chmod 0711 "$PD/s"
chmod 0666 "$PD/s/agent.sock"
client=$(cat "$here/rawclient.py")
out=$(printf '{"id":0,"op":"hello","version":1}\n{"id":1,"op":"list"}\n' |
	setpriv --reuid=nobody --regid=nogroup --clear-groups "$PY" -c "$client" "$PD/s/agent.sock" --wait 5 2>&1)
is "uid nobody: connection accepted by the kernel, then closed without an answer" "$out" EOF
grep -q "refused a connection from uid $(id -u nobody)" "$peer_log"
is "uid nobody: refusal logged with the uid" "$?" 0
out=$(printf '{"id":0,"op":"hello","version":1}\n' | "$PY" "$here/rawclient.py" "$PD/s/agent.sock" --wait 1)
is "same socket, same uid as the agent: answered" "$(code "$(head -n 1 <<<"$out")")" ok

stop_agent "the agent of the replaced socket stops: exit 0, no sanitizer report" "$replaced_pid"
stop_agent "the peer-credentials agent stops: exit 0, no sanitizer report"
done_testing
