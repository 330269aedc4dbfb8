#!/bin/bash
# Which certificate goes when several fit (issue 24). Two certificates that
# share the label "alice", as on a PIV card, both fit an openssl s_server
# -Verify 2: unattended, the first goes and stderr names both (several-fit =
# fail: connect fails naming both, before any signature);
# `scagent prefer localhost:PORT REF` remembers one for connect, probe and
# tunnel (-v says "preferred"); at a terminal connect asks with a numbered
# list (pty-driver.py types the answers); with a display, the picker program
# (a fake zenity first on PATH) answers with a fingerprint.
. "$TOP_SRCDIR/tests/testbed/testbed.sh"
. "$TOP_SRCDIR/tests/tls/tls-common.sh"
_tb_need curl socat
tb_init
here=$TOP_SRCDIR/tests/integration
PKI=$TB_DIR/pki
tb_pki
tb_softhsm_token demo
tb_enroll demo 01 alice rsa:2048 good
tb_enroll demo 02 alice2 rsa:2048 good
# the second certificate relabelled "alice" (its subject stays CN=alice2)
_tb_p11 demo --delete-object --type cert --id 02
_tb_write_cert demo 02 alice "$TB_DIR/certs/alice2.pem"
tb_write_ca_certs demo
start_agent --module "$TB_SOFTHSM"
echo "$TB_PIN" | "$SCAGENT" login --token demo --pin-stdin 2>/dev/null || bail_out "login failed"
FP1=$(tls_sha256 "$TB_DIR/certs/alice.pem")
FP2=$(tls_sha256 "$TB_DIR/certs/alice2.pem")
P=$(tb_port)
tb_s_server "$P"
URL=https://localhost:$P/
CA=(--cafile "$PKI/root.pem")
out=$TB_DIR/out err=$TB_DIR/err
connect() { rc=0; "$SCAGENT" "$@" >"$out" 2>"$err" </dev/null || rc=$?; }
signs() { grep -c 'audit: sign ' "$AGENT_LOG"; }
# the client certificate's subject CN that s_server -www shows in its page
seen_cn() { grep -a 'Subject: ' "$1" | grep -o 'CN *= *[a-z0-9]*' | tail -1 | sed 's/.*= *//'; }

# Unattended, nothing remembered: the first that fits goes, as `--cert`
# "otherwise chosen automatically" has always meant, and stderr names both
# and how to choose.
before=$(signs)
connect connect "${CA[@]}" "$URL"
first=alice; grep -q "goes, the first" "$err" && grep "goes, the first" "$err" | grep -q "CN=alice2" && first=alice2
if [ "$rc" = 0 ] && grep -q "2 certificates fit localhost:$P" "$err" &&
	grep -q "${FP1:0:16}" "$err" && grep -q "${FP2:0:16}" "$err" &&
	grep -q "scagent prefer localhost:$P REF" "$err" && [ "$(seen_cn "$out")" = "$first" ] &&
	[ "$(signs)" = "$((before + 1))" ]; then
	pass "unattended, two fit: the first goes (CN=$first), stderr names both and what to do"
else
	fail "unattended, two fit, several-fit = first (rc=$rc)"; show "$err"
fi
# several-fit = fail: exit 1, both candidates, no signature.
echo "several-fit = fail" >"$TB_DIR/fail.conf"
before=$(signs)
connect --config "$TB_DIR/fail.conf" connect "${CA[@]}" "$URL"
if [ "$rc" = 1 ] && grep -q "several certificates fit localhost:$P" "$err" &&
	grep -q "${FP1:0:16}" "$err" && grep -q "${FP2:0:16}" "$err" &&
	grep -q "scagent prefer localhost:$P REF" "$err" && [ "$(signs)" = "$before" ]; then
	pass "several-fit = fail, two fit: exit 1 with both candidates and what to do; nothing signed"
else
	fail "unattended, two fit, several-fit = fail (rc=$rc)"; show "$err"
fi

# scagent prefer: an unknown REF and an ambiguous one are errors with the candidates.
rc=0; "$SCAGENT" prefer "localhost:$P" nosuch >"$out" 2>"$err" || rc=$?
ok "prefer with an unknown REF: exit 1, the candidates listed" \
	bash -c "[ $rc = 1 ] && grep -q 'alice' '$err' && ! [ -s '$XDG_CONFIG_HOME/scagent/preferences' ]"
rc=0; "$SCAGENT" prefer "localhost:$P" alice >"$out" 2>"$err" || rc=$?
ok "prefer with a REF that names both (label alice): exit 1" \
	bash -c "[ $rc = 1 ] && grep -q '${FP1:0:8}' '$err' && grep -q '${FP2:0:8}' '$err'"
rc=0; "$SCAGENT" prefer "localhost:$P:x" "$FP2" >"$out" 2>"$err" || rc=$?
ok "prefer with a bad HOST:PORT: usage error" [ "$rc" = 2 ]
rc=0; "$SCAGENT" prefer "localhost:$P" "$FP2" >"$out" 2>"$err" || rc=$?
if [ "$rc" = 0 ] && "$SCAGENT" prefer --list | grep -qx "localhost:$P $FP2"; then
	pass "prefer localhost:$P FINGERPRINT remembers it; --list shows it"
else
	fail "prefer (rc=$rc)"; show "$err"
fi
# connect uses it, -v says so; the server sees CN=alice2
connect -v connect "${CA[@]}" "$URL"
if [ "$rc" = 0 ] && grep -q "chose \"alice\" on demo (CN=alice2,O=Contoso): preferred for localhost:$P" "$err" &&
	[ "$(seen_cn "$out")" = alice2 ]; then
	pass "connect uses the preference, -v says \"preferred\"; the server sees CN=alice2"
else
	fail "connect with a preference (rc=$rc, server saw $(seen_cn "$out"))"; show "$err"
fi
# probe uses it
rc=0; "$SCAGENT" probe --json "${CA[@]}" "$URL" >"$out" 2>"$err" </dev/null || rc=$?
ok "probe uses the preference (client-cert-match names CN=alice2)" \
	bash -c "[ $rc = 0 ] && grep -q 'CN=alice2' '$out'"
# tunnel_get LOG: a tunnel to the server (its log in LOG, its pid in TPID),
# and one request through it, the answer in $TB_DIR/page
tunnel_get() {	# tunnel_get LOG [GLOBAL-OPTION...]
	local lp log=$1
	shift
	lp=$(tb_port)
	"$SCAGENT" "$@" tunnel --listen "127.0.0.1:$lp" --connect "localhost:$P" "${CA[@]}" >"$log" 2>&1 &
	TPID=$!
	tb_track_pid $TPID
	wait_port "$lp" || bail_out "the tunnel did not listen"
	printf 'GET / HTTP/1.0\r\n\r\n' | timeout 20 socat -t 10 - "TCP:127.0.0.1:$lp" >"$TB_DIR/page" 2>&1
}
# the tunnel uses it
tunnel_get "$TB_DIR/tunnel.log"
if [ "$(seen_cn "$TB_DIR/page")" = alice2 ]; then
	pass "the tunnel uses the preference: the server sees CN=alice2"
else
	fail "tunnel with a preference"; show "$TB_DIR/tunnel.log"
fi
kill $TPID
# forget
rc=0; "$SCAGENT" prefer --forget "localhost:$P" >/dev/null 2>&1 || rc=$?
rc2=0; "$SCAGENT" prefer --forget "localhost:$P" >/dev/null 2>"$err" || rc2=$?
ok "prefer --forget removes it; forgetting it again is an error" \
	bash -c "[ $rc = 0 ] && [ $rc2 = 1 ] && [ -z \"\$('$SCAGENT' prefer --list)\" ]"

# The tunnel never asks: with nothing remembered the first goes, said in its
# log; with several-fit = fail the connection fails with the candidates in
# the log, and the tunnel keeps listening.
tunnel_get "$TB_DIR/tunnel1.log"
if [ -n "$(seen_cn "$TB_DIR/page")" ] && grep -q "2 certificates fit localhost:$P" "$TB_DIR/tunnel1.log"; then
	pass "tunnel, nothing remembered: the first goes, its log names both"
else
	fail "tunnel without a preference, several-fit = first"; show "$TB_DIR/tunnel1.log"
fi
kill $TPID
tunnel_get "$TB_DIR/tunnel2.log" --config "$TB_DIR/fail.conf"
if wait_for 10 grep -q "several certificates fit localhost:$P" "$TB_DIR/tunnel2.log" &&
	grep -q "${FP2:0:16}" "$TB_DIR/tunnel2.log" && kill -0 $TPID; then
	pass "tunnel, nothing remembered, several-fit = fail: the connection fails with the candidates in the log"
else
	fail "tunnel without a preference"; show "$TB_DIR/tunnel2.log"
fi
kill $TPID

# At a terminal: a numbered list; #2 chosen, not remembered.
line2() { grep -a '^ *2) ' "$1" | head -1; }
"$PY" "$here/pty-driver.py" run-pins "2/n" "$SCAGENT" connect "${CA[@]}" "$URL" >"$out" 2>&1
want=alice; line2 "$out" | grep -q 'CN=alice2' && want=alice2
if grep -q 'EXIT 0' "$out" && grep -aq '^ *1) "alice" on demo' "$out" && line2 "$out" | grep -q 'SHA-256 ' &&
	grep -aq "Certificate for localhost:$P \[1-2\]:" "$out" && [ "$(seen_cn "$out")" = "$want" ] &&
	[ -z "$("$SCAGENT" prefer --list)" ]; then
	pass "at a terminal: a numbered list, #2 goes (the server sees CN=$want), not remembered"
else
	fail "terminal choice"; show "$out"
fi
# Three answers that are not a choice: exit 1.
"$PY" "$here/pty-driver.py" run-pins "x/0/3" "$SCAGENT" connect "${CA[@]}" "$URL" >"$out" 2>&1
ok "at a terminal, three bad answers: exit 1, no certificate chosen" \
	bash -c "grep -q 'EXIT 1' '$out' && grep -q 'three answers' '$out'"
# Remembered when asked to.
"$PY" "$here/pty-driver.py" run-pins "1/y" "$SCAGENT" connect "${CA[@]}" "$URL" >"$out" 2>&1
if grep -q 'EXIT 0' "$out" && "$SCAGENT" prefer --list | grep -q "^localhost:$P "; then
	pass "at a terminal, \"y\" remembers the choice for localhost:$P"
else
	fail "remember at a terminal"; show "$out"
fi
"$SCAGENT" prefer --forget "localhost:$P" >/dev/null

# A picker: scagent.conf's picker "auto" runs zenity when there is a display.
mkdir -p "$TB_DIR/bin"
cat >"$TB_DIR/bin/zenity" <<PICK
#!/bin/sh
printf '%s\n' "\$@" >"$TB_DIR/zenity.args"
echo "$FP1"
PICK
chmod +x "$TB_DIR/bin/zenity"
rc=0
PATH=$TB_DIR/bin:$PATH DISPLAY=:99 "$SCAGENT" -v connect "${CA[@]}" "$URL" >"$out" 2>"$err" </dev/null || rc=$?
if [ "$rc" = 0 ] && grep -qx -- '--list' "$TB_DIR/zenity.args" && grep -qx "$FP2" "$TB_DIR/zenity.args" &&
	grep -q 'the picker zenity chose "alice"' "$err" && [ "$(seen_cn "$out")" = alice ]; then
	pass "with a display, zenity (first on PATH) is asked; its fingerprint goes (CN=alice)"
else
	fail "picker (rc=$rc)"; show "$err"
fi
# picker = no in scagent.conf: nobody to ask again
printf 'picker = no\nseveral-fit = fail\n' >"$TB_DIR/scagent.conf"
rc=0
PATH=$TB_DIR/bin:$PATH DISPLAY=:99 "$SCAGENT" --config "$TB_DIR/scagent.conf" connect "${CA[@]}" "$URL" \
	>"$out" 2>"$err" </dev/null || rc=$?
ok "picker = no: the picker is not run, exit 1 with the candidates" \
	bash -c "[ $rc = 1 ] && grep -q 'several certificates fit' '$err'"
stop_agent
done_testing
