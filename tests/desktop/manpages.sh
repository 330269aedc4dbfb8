#!/bin/bash
# Manual pages (issue 24): each renders with man -l without a groff warning,
# scagent.1 has a section for every command `scagent --help` lists and names
# every option of its --help, and `make install` puts them in the man dirs
# (checked in tests/desktop/install.sh).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
command -v man >/dev/null && command -v groff >/dev/null ||
	skip_all "man and groff are needed"
tb_init
M=$TOP_BUILDDIR/man
export MANWIDTH=80 LC_ALL=C.UTF-8

for p in scagent.1 scagentd.1 scagent.conf.5 scagent-pkcs11.8; do
	f=$M/$p
	[ -f "$f" ] || { fail "$p is built" "no $f"; continue; }
	run man --warnings -l "$f"
	is "$p: man -l renders it" "$RC" 0
	is "$p: man -l warns about nothing" "$ERR" ""
	has "$p: it has a NAME section" "$OUT" "NAME"
	run groff -ww -man -z "$f"
	is "$p: groff -ww -man -z is silent" "$RC:$ERR" "0:"
	if grep -qE '@[a-zA-Z_]+@' "$f"; then fail "$p: no @variable@ left" "$(grep -m1 -E '@[a-zA-Z_]+@' "$f")"
	else pass "$p: no @variable@ left"; fi
	if command -v mandoc >/dev/null; then
		run mandoc -T lint -W warning "$f"
		is "$p: mandoc -T lint" "$ERR$OUT" ""
	fi
done

# Every command of `scagent --help` has its own subsection in scagent.1.
text=$(man -l "$M/scagent.1" 2>/dev/null)
cmds=$("$SCAGENT" --help | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z0-9-]*\) .*/\1/p')
[ -n "$cmds" ] || fail "scagent --help lists commands"
for c in $cmds; do
	if grep -qE "^   $c( |$)" <<<"$text"; then pass "scagent.1 documents '$c'"
	else fail "scagent.1 documents '$c'"; fi
	# and every long option of the command's --help
	opts=$("$SCAGENT" "$c" --help 2>/dev/null | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u)
	for o in $opts; do
		has "scagent.1 names $c's $o" "$text" "$o"
	done
done
# The daemon's options are all in scagentd.1.
dtext=$(man -l "$M/scagentd.1" 2>/dev/null)
for o in $("$SCAGENTD" --help | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u); do
	has "scagentd.1 names $o" "$dtext" "$o"
done
# Every setting conf.c accepts is in scagent.conf.5.
ctext=$(man -l "$M/scagent.conf.5" 2>/dev/null)
for k in $(grep -oE 'strcmp\(key, "[a-z-]+"\)' "$TOP_SRCDIR/src/common/conf.c" | sed 's/.*"\(.*\)".*/\1/' | sort -u); do
	has "scagent.conf.5 names '$k'" "$ctext" "$k"
done
done_testing
