#!/bin/bash
# What `make install` gives a user (issue 24): the manual pages in their man
# sections, the bash completion in bash-completion's directory, and
# libscagent.pc, with which a program compiles and links against the
# installed libscagent and talks to a running agent; and the test kit
# (issue 25), with which the installed scagent makes a kit.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
_tb_need pkg-config cc make
tb_agent_test
tb_softhsm_token card1
D=$TB_DIR/dest
# The build's own configured paths, e.g. /usr/local/lib.
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$TOP_BUILDDIR" "$@"; }
var() { mk -f Makefile -f - print-var V="$1" <<<'print-var: ; @echo $($(V))'; }
run mk install DESTDIR="$D"
is "make install DESTDIR=... succeeds" "$RC" 0 || printf '#   %s\n' "$ERR" | head -n 5
libdir=$(var libdir) mandir=$(var mandir) bcdir=$(var bashcompletiondir)
includedir=$(var includedir) bindir=$(var bindir)
pkglibexecdir=$(var pkglibexecdir) pkgdatadir=$(var pkgdatadir)

for p in man1/scagent.1 man1/scagentd.1 man5/scagent.conf.5 man8/scagent-pkcs11.8; do
	ok "installed $mandir/$p" test -s "$D$mandir/$p"
done
ok "man -l renders the installed scagent.1" man -l "$D$mandir/man1/scagent.1"
ok "bash completion installed as $bcdir/scagent" test -s "$D$bcdir/scagent"
ok "... and found for scagentd too" test -e "$D$bcdir/scagentd"
ok "libscagent.pc installed in $libdir/pkgconfig" test -s "$D$libdir/pkgconfig/libscagent.pc"

# pkg-config on the staged tree: PKG_CONFIG_SYSROOT_DIR prefixes the paths.
export PKG_CONFIG_PATH=$D$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$D
run pkg-config --cflags --libs libscagent
is "pkg-config --cflags --libs libscagent" "$RC" 0
has "... gives the include directory" "$OUT" "-I$D$includedir"
has "... and -lscagent" "$OUT" "-lscagent"
is "pkg-config --modversion is the package's" "$(pkg-config --modversion libscagent)" \
	"$("$SCAGENT" --version | awk '{print $2}')"
flags=$OUT

cat >"$TB_DIR/prog.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <scagent/scagent.h>

int main(void)
{
	scagent_client *c = NULL;
	char *json = NULL;
	int r = scagent_connect(NULL, &c);

	if (r == 0)
		r = scagent_list(c, &json);
	if (r != 0) {
		fprintf(stderr, "prog: %s\n", c ? scagent_error(c) : scagent_strerror(r));
		scagent_close(c);
		return 1;
	}
	printf("%s\n", json);
	scagent_free(json);
	scagent_close(c);
	return 0;
}
C
# shellcheck disable=SC2086 # the flags are words
# A sanitizer build's libscagent needs the program built with the same
# runtime (which must come first), and the linker then warns about libasan's
# own tmpnam: that is the build's, not the package's.
san=
grep -q libasan <<<"$(ldd "$TOP_BUILDDIR/.libs/libscagent.so" 2>/dev/null)" && san=-fsanitize=address,undefined
run cc -Wall -Werror $san -o "$TB_DIR/prog" "$TB_DIR/prog.c" $flags
ERR=$(grep -v "libasan.so.*warning: the use of" <<<"$ERR")
is "a program compiles and links with pkg-config's flags" "$RC:$ERR" "0:"
run ldd "$TB_DIR/prog"
start_agent --module "$TB_SOFTHSM"
LD_LIBRARY_PATH=$D$libdir run "$TB_DIR/prog"
is "it runs against the installed library and lists the agent's tokens" "$RC" 0
has "... card1 among them" "$OUT" '"label":"card1"'
LD_LIBRARY_PATH=$D$libdir run ldd "$TB_DIR/prog"
has "... with the installed libscagent.so" "$OUT" "$D$libdir/libscagent.so"

# The test kit (docs/TESTCARD.md): the script in pkglibexecdir, its data in
# pkgdatadir/testcard. The installed scagent looks for them under the prefix
# it was built for, not under DESTDIR: SCAGENT_TESTCARD and
# SCAGENT_TESTCARD_DATA name the staged copies. The script falls back to its
# own folder, which holds no pki.sh, so init works only from the staged data.
kit=$D$pkglibexecdir/scagent-testcard
ok "the kit installed as $pkglibexecdir/scagent-testcard, executable" test -x "$kit"
for f in pki.sh piv-card.py server.py; do
	ok "the kit's $pkgdatadir/testcard/$f installed" test -s "$D$pkgdatadir/testcard/$f"
done
ok "... and no pki.sh next to the script" test ! -e "$D$pkglibexecdir/pki.sh"
SCAGENT_TESTCARD=$kit SCAGENT_TESTCARD_DATA=$D$pkgdatadir/testcard \
	run "$D$bindir/scagent" testcard init "$TB_DIR/kit" --json
is "the installed scagent testcard init --json: exit 0" "$RC" 0 || printf '#   %s\n' "$ERR" | tail -n 5
printf '%s\n' "$OUT" >"$TB_DIR/kit.json"
is "... prints the kit's JSON (its directory, 2 tokens, 13 certificates)" \
	"$("$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["dir"], len(j["tokens"]), len(j["certificates"]))' \
		"$TB_DIR/kit.json" 2>&1)" "$TB_DIR/kit 2 13"
ok "... and made the kit's tokens and root CA" test -s "$TB_DIR/kit/pki/root.pem" -a -d "$TB_DIR/kit/tokens"
# Without them it looks under its prefix; where nothing is installed there,
# one line says what to do.
if [ -e "$pkglibexecdir/scagent-testcard" ]; then
	skip "the installed scagent without SCAGENT_TESTCARD" "a kit is installed in $pkglibexecdir"
else
	env -u SCAGENT_TESTCARD -u SCAGENT_TESTCARD_DATA "$D$bindir/scagent" testcard init "$TB_DIR/kit2" \
		>/dev/null 2>"$TB_DIR/kit2.err"
	is "the installed scagent, its kit missing under $pkglibexecdir: exit 1" "$?" 1
	is "... one line that names the script and the fix" \
		"$(wc -l <"$TB_DIR/kit2.err"):$(grep -c "$pkglibexecdir/scagent-testcard.*reinstall scagent or set SCAGENT_TESTCARD" "$TB_DIR/kit2.err")" "1:1"
fi

run mk uninstall DESTDIR="$D"
is "make uninstall" "$RC" 0
left=$(find "$D" -type f -o -type l 2>/dev/null | head -n 5)
is "make uninstall leaves no file behind" "$left" ""
done_testing
