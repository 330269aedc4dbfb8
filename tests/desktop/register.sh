#!/bin/bash
# scagent register (issue 24): scagent-pkcs11.so goes into the NSS databases
# of the Firefox and Thunderbird profiles of profiles.ini (relative and
# absolute paths) and of ~/.pki/nssdb, once however often it runs;
# --unregister takes it out; a database whose program runs (Firefox's lock
# symlink, its .parentlock fcntl lock, Chromium's SingletonLock) is refused
# and left unchanged, a stale lock is not in the way.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
_tb_need certutil modutil
need_py
tb_init
MOD=$TOP_BUILDDIR/.libs/scagent-pkcs11.so
# modutil loads the module: an instrumented one needs the sanitizer's runtime
# first, and NSS's tools with it preloaded did not register every database in
# CI's sanitizer run. As p11tool.sh, this runs in the plain build only.
module_env "$MOD"
[ ${#P11ENV[@]} -eq 0 ] || skip_all "NSS's modutil with a sanitizer's runtime preloaded (sanitizer build)"
H=$TB_DIR/home
FF=$H/.mozilla/firefox
mkdir -p "$FF/ab12.default-release" "$TB_DIR/elsewhere/work" "$H/.thunderbird/tb1.default" \
	"$H/.pki/nssdb" "$FF/never.started"
cat >"$FF/profiles.ini" <<INI
[Install4F96D1932A9F858E]
Default=ab12.default-release
Locked=1

[Profile1]
Name=work
IsRelative=0
Path=$TB_DIR/elsewhere/work

[Profile0]
Name=default-release
IsRelative=1
Path=ab12.default-release
Default=1

[Profile2]
Name=never
IsRelative=1
Path=never.started

[General]
StartWithLastProfile=1
Version=2
INI
printf '[Profile0]\nName=default\nIsRelative=1\nPath=tb1.default\n' >"$H/.thunderbird/profiles.ini"
DBS=("$FF/ab12.default-release" "$TB_DIR/elsewhere/work" "$H/.thunderbird/tb1.default" "$H/.pki/nssdb")
for d in "${DBS[@]}"; do certutil -N -d "sql:$d" --empty-password || exit 99; done
reg() { HOME=$H env "${P11ENV[@]}" "$SCAGENT" register "$@"; }
# count DIR: how often modutil -list names the module (it loads nothing else of ours)
count() { modutil -dbdir "sql:$1" -list 2>/dev/null | grep -c "^ *[0-9]*\. scagent$"; }
libfile() { modutil -dbdir "sql:$1" -list 2>/dev/null | grep -A1 "^ *[0-9]*\. scagent$" | sed -n 's/.*library name: //p'; }

run reg --library "$MOD"
is "register: exit 0" "$RC" 0
for d in "${DBS[@]}"; do
	is "registered once in ${d#"$TB_DIR"/}" "$(count "$d")" 1
	is "... with the module's path" "$(libfile "$d")" "$MOD"
done
has "it names the Firefox profile" "$OUT" 'registered in Firefox profile "default-release"'
has "the absolute-path profile" "$OUT" 'registered in Firefox profile "work"'
has "Thunderbird's" "$OUT" 'registered in Thunderbird profile "default"'
has "Chromium's" "$OUT" "registered in Chromium's NSS database"
hasnt "a profile without a database is passed over" "$OUT" "never"
ok "it made no database in a profile that has none" test ! -e "$FF/never.started/cert9.db"

run reg --nss --library "$MOD"
is "register again: exit 0" "$RC" 0
has "... says it is there already" "$OUT" 'already registered in Firefox profile "default-release"'
for d in "${DBS[@]}"; do is "still once in ${d#"$TB_DIR"/}" "$(count "$d")" 1; done

run reg --unregister
is "unregister: exit 0" "$RC" 0
for d in "${DBS[@]}"; do is "gone from ${d#"$TB_DIR"/}" "$(count "$d")" 0; done
run reg --unregister
is "unregister again: exit 0, nothing to do" "$RC:$(grep -c '^not registered in' <<<"$OUT")" "0:4"

# A running Firefox: its lock symlink names this host and a live pid.
P=$FF/ab12.default-release
sleep 300 &
holder=$!
tb_track_pid "$holder"
ln -s "$(hostname):+$holder" "$P/lock"
run reg --library "$MOD"
is "a running Firefox: exit 1" "$RC" 1
has "... the error says which program holds which profile" "$ERR" \
	"Firefox profile \"default-release\" is in use by a running program (pid $holder): close it"
is "... that database is unchanged" "$(count "$P")" 0
is "... the others are registered" "$(count "$H/.pki/nssdb"):$(count "$TB_DIR/elsewhere/work")" "1:1"
kill "$holder"; wait "$holder" 2>/dev/null
run reg --library "$MOD"
is "a stale lock (the pid is gone) is not in the way" "$RC:$(count "$P")" "0:1"
sleep 300 &
holder=$!
tb_track_pid "$holder"
ln -sfn "$(hostname):+$holder" "$P/lock"
run reg --unregister
is "unregister with Firefox running: exit 1, the module stays" "$RC:$(count "$P")" "1:1"
has "... and says so" "$ERR" "is in use by a running program (pid $holder)"
kill "$holder"; wait "$holder" 2>/dev/null
rm -f "$P/lock"
reg --unregister >/dev/null

# Firefox's other lock: an fcntl lock on .parentlock, held by a live process.
touch "$P/.parentlock"
"$PY" -c 'import fcntl, sys, time
f = open(sys.argv[1], "r+"); fcntl.lockf(f, fcntl.LOCK_EX); open(sys.argv[2], "w").close(); time.sleep(300)' \
	"$P/.parentlock" "$TB_DIR/locked" &
holder=$!
tb_track_pid "$holder"
wait_for 10 test -e "$TB_DIR/locked"
run reg --library "$MOD"
is "a .parentlock held: exit 1, unchanged" "$RC:$(count "$P")" "1:0"
has "... naming the holder" "$ERR" "(pid $holder)"
kill "$holder"; wait "$holder" 2>/dev/null

# A running Chromium (SingletonLock "HOST-PID") keeps ~/.pki/nssdb as it is.
reg --unregister >/dev/null
mkdir -p "$H/.config/chromium"
sleep 300 &
holder=$!
tb_track_pid "$holder"
ln -s "$(hostname)-$holder" "$H/.config/chromium/SingletonLock"
run reg --library "$MOD"
is "a running Chromium: exit 1, ~/.pki/nssdb unchanged" "$RC:$(count "$H/.pki/nssdb")" "1:0"
has "... said so" "$ERR" "Chromium's NSS database is in use by a running program (pid $holder)"
is "... Firefox's got it" "$(count "$P")" 1
kill "$holder"; wait "$holder" 2>/dev/null

# Errors: no module file, no database at all.
run reg --library "$TB_DIR/nonexistent.so"
is "a missing module: exit 1" "$RC" 1
has "... says so" "$ERR" "is not there"
mkdir -p "$TB_DIR/empty"
HOME=$TB_DIR/empty run "$SCAGENT" register --library "$MOD"
is "no database at all: exit 1" "$RC" 1
has "... with what to do" "$ERR" "start the browser once"
run "$SCAGENT" register extra
is "an extra argument: usage, exit 2" "$RC" 2
done_testing
