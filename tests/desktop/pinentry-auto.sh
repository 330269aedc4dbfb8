#!/bin/bash
# pinentry = auto (issue 24), the built-in default and the shipped
# scagent.conf's: when a signature needs a login, the agent picks the
# system's pinentry at the time of asking. Scripted pinentries first on PATH,
# under the names auto looks for, record who was asked: with DISPLAY or
# WAYLAND_DISPLAY the graphical one (pinentry-gnome3 before pinentry-qt);
# without, on the terminal of GPG_TTY, pinentry-curses; with neither nobody
# is asked and the error says to run scagent login; `pinentry = no` and a
# configured program win over auto.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
need_py
tb_agent_test alice
mkdir -p "$W/bin" "$W/other"
head -c 1000 /dev/urandom >"$W/data"

# A scripted pinentry (GnuPG's Assuan protocol): one line per start in
# $W/asked with the name it was run under, the commands it got after it.
fake() {
	cat >"$1" <<SH
#!/bin/bash
echo "start \$(basename "\$0")" >>"$W/asked"
echo "OK pleased to meet you"
while IFS= read -r line; do
	echo "  \$line" >>"$W/asked"
	case \$line in
	GETPIN) echo "D $TB_PIN"; echo OK ;;
	BYE) echo OK; exit 0 ;;
	*) echo OK ;;
	esac
done
SH
	chmod +x "$1"
}
for name in pinentry-gnome3 pinentry-qt pinentry-curses pinentry-tty pinentry; do fake "$W/bin/$name"; done
fake "$W/other/my-pinentry"
asked() { grep '^start' "$W/asked" 2>/dev/null | tr '\n' ' '; }
# sign_once DESC: sign while logged out (the agent asks), $RC/$ERR kept
sign_once() {
	: >"$W/asked"
	sc logout --token demo >/dev/null 2>&1
	rm -f "$W/sig"
	run sc sign --cert alice --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/sig"
}
verifies() { openssl dgst -sha256 -verify "$(pubkey alice)" -signature "$W/sig" "$W/data"; }

ok "the shipped scagent.conf says pinentry = auto" \
	grep -qx 'pinentry = auto' "$TOP_SRCDIR/pkcs11-config/scagent.conf"

# ---------------------------------------------------------------- a display
# No --config and none installed in the test: the built-in default.
DISPLAY=:99 PATH=$W/bin:$PATH start_agent "$S" --audit-log "$W/audit.log"
sign_once
is "DISPLAY, built-in default: sign while logged out succeeds" "$RC" 0
ok "... the signature verifies" verifies
is "... asked through pinentry-gnome3, once" "$(asked)" "start pinentry-gnome3 "
has "... which was told what for" "$(cat "$W/asked")" 'SETDESC Enter the PIN of smart card "demo"'
has "... the login is audited as through pinentry" "$(cat "$W/audit.log")" 'via=pinentry result=ok'
rm "$W/bin/pinentry-gnome3"
sign_once
is "without pinentry-gnome3: pinentry-qt, the next in order" "$RC:$(asked)" "0:start pinentry-qt "
fake "$W/bin/pinentry-gnome3"
stop_agent "agent (DISPLAY) stops cleanly"

WAYLAND_DISPLAY=wayland-0 PATH=$W/bin:$PATH start_agent "$S"
sign_once
is "WAYLAND_DISPLAY alone: the graphical pinentry" "$RC:$(asked)" "0:start pinentry-gnome3 "
stop_agent "agent (Wayland) stops cleanly"

# ---------------------------------------------------------------- a terminal
"$PY" -c 'import os, pty, sys, time
m, s = pty.openpty(); open(sys.argv[1], "w").write(os.ttyname(s)); time.sleep(300)' "$W/tty" &
tb_track_pid $!
wait_for 10 test -s "$W/tty" || { echo "no pty"; exit 99; }
GPG_TTY=$(cat "$W/tty") PATH=$W/bin:$PATH start_agent "$S"
sign_once
is "no display, GPG_TTY a terminal: pinentry-curses" "$RC:$(asked)" "0:start pinentry-curses "
has "... told the terminal" "$(cat "$W/asked")" "OPTION ttyname=$(cat "$W/tty")"
stop_agent "agent (terminal) stops cleanly"

GPG_TTY=$TB_DIR/not-a-tty PATH=$W/bin:$PATH start_agent "$S"
: >"$TB_DIR/not-a-tty"
sign_once
is "GPG_TTY naming no terminal: nobody asked" "$(asked)" ""
is "... exit 1" "$RC" 1
stop_agent "agent (no terminal) stops cleanly"

# ---------------------------------------------------------------- neither
PATH=$W/bin:$PATH start_agent "$S"
sign_once
is "no display, no terminal: exit 1" "$RC" 1
is "... nobody was asked" "$(asked)" ""
has "... the error says to log in" "$ERR" 'needs a login: run `scagent login --token demo` first'
ok "... nothing signed" test ! -s "$W/sig"
# The PKCS#11 module's C_Login without a PIN, through the protocol: refused.
out=$(printf '%s\n' '{"id":0,"op":"hello","version":1}' '{"id":1,"op":"login","token":"demo"}' |
	"$PY" "$TOP_SRCDIR/tests/integration/rawclient.py" "$S" --lines 2 --wait 20 2>&1)
has "... a login without PIN is refused as not logged in" "$out" '"not-logged-in"'
is "... still nobody asked" "$(asked)" ""
stop_agent "agent (neither) stops cleanly"

# ---------------------------------------------------------------- configuration wins
printf 'pinentry = no\n' >"$W/no.conf"
DISPLAY=:99 PATH=$W/bin:$PATH start_agent "$S" --config "$W/no.conf"
sign_once
is "pinentry = no with a display: nobody asked, exit 1" "$RC:$(asked)" "1:"
has "... the error says to log in" "$ERR" "needs a login"
stop_agent "agent (pinentry = no) stops cleanly"

DISPLAY=:99 PATH=$W/bin:$PATH start_agent "$S" --pinentry no
sign_once
is "--pinentry no: nobody asked" "$RC:$(asked)" "1:"
stop_agent "agent (--pinentry no) stops cleanly"

printf 'pinentry = %s\n' "$W/other/my-pinentry" >"$W/prog.conf"
DISPLAY=:99 PATH=$W/bin:$PATH start_agent "$S" --config "$W/prog.conf"
sign_once
is "a configured program wins over auto" "$RC:$(asked)" "0:start my-pinentry "
stop_agent "agent (configured program) stops cleanly"

printf 'pinentry = auto\n' >"$W/auto.conf"
DISPLAY=:99 PATH=$W/bin:$PATH start_agent "$S" --config "$W/auto.conf"
sign_once
is "pinentry = auto written out: as the default" "$RC:$(asked)" "0:start pinentry-gnome3 "
stop_agent "agent (pinentry = auto) stops cleanly"
hasnt "no PIN in the agents' logs" "$(cat "$TB_DIR"/agent-*.log "$W/audit.log")" "$TB_PIN"
done_testing
