#!/usr/bin/env bash
# Issue 21: a PKCS#11 module in a process of its own. Signatures per second
# on SoftHSM (RSA-2048 PKCS#1 and EC P-256, C_SignInit + C_Sign, one thread)
# in-process against p11-kit's remoting (p11-kit-client.so running
# p11-kit-remote MODULE as its child) and against a child of our own that
# answers one JSON line per request over a socketpair; then what the caller
# sees when the module segfaults in C_Sign or never returns from it.
# Prints figures and ratios; asserts nothing (not a test).
#
#   bench/isolation-bench.sh BUILDDIR [SECONDS] [ROUNDS]
#
# BUILDDIR: where isolation-bench and isolation-crashmod.so are built (made if
# missing). SECONDS: each design's share of one round (default 3); ROUNDS:
# rounds per algorithm (default 5); the designs take turns in 100 ms slices
# (A B C C B A ...) so that a machine that speeds up or slows down hits all
# alike. The table shows medians. Set P11_KIT_REMOTE to the p11-kit-remote
# program if it is not found, SCAGENT_SRCDIR to the source tree if this
# script is not in its bench/ directory.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BUILDDIR [SECONDS] [ROUNDS]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
build=$(cd "$1" && pwd)
secs=${2:-3}
rounds=${3:-5}
src=${SCAGENT_SRCDIR:-$here/..}
[ -r "$src/tests/testbed/testbed.sh" ] || src=$build
[ -r "$src/tests/testbed/testbed.sh" ] || { echo "$0: tests/testbed/testbed.sh not found: set SCAGENT_SRCDIR" >&2; exit 2; }

# p11-kit: the client module and the remote helper
client=$(pkg-config --variable=p11_module_path p11-kit-1)/p11-kit-client.so
remote=${P11_KIT_REMOTE:-}
if [ -z "$remote" ]; then
	for d in "$(pkg-config --variable=prefix p11-kit-1)"/{libexec,lib}/p11-kit; do
		[ -x "$d/p11-kit-remote" ] && { remote=$d/p11-kit-remote; break; }
	done
fi
[ -r "$client" ] || { echo "$0: $client not found (p11-kit-modules)" >&2; exit 2; }
[ -x "$remote" ] || { echo "$0: p11-kit-remote not found: set P11_KIT_REMOTE" >&2; exit 2; }

# the bench program and the misbehaving module
B=$build/isolation-bench
crashmod=$build/isolation-crashmod.so
if [ ! -x "$B" ] || [ "$here/isolation-bench.c" -nt "$B" ]; then
	# shellcheck disable=SC2046
	${CC:-cc} -O2 -Wall -Wextra -Werror -o "$B" "$here/isolation-bench.c" \
		$(pkg-config --cflags --libs p11-kit-1 json-c libcrypto) -lpthread -ldl
fi
if [ ! -r "$crashmod" ] || [ "$here/isolation-crashmod.c" -nt "$crashmod" ]; then
	# shellcheck disable=SC2046
	${CC:-cc} -O2 -Wall -Wextra -Werror -shared -fPIC -o "$crashmod" "$here/isolation-crashmod.c" \
		$(pkg-config --cflags p11-kit-1) -ldl
fi

# shellcheck source=/dev/null
. "$src/tests/testbed/testbed.sh"
tb_init
tb_softhsm_token bench
tb_enroll bench 01 alice rsa:2048 good
tb_enroll bench 02 bob EC:prime256v1 good
export BENCH_PIN=$TB_PIN CRASHMOD_TARGET=$TB_SOFTHSM CRASHMOD_TRIGGER=$TB_DIR/crash-trigger

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
spread() { sort -g | awk '{v[NR]=$1} END {printf "%.3f-%.3f", v[1], v[NR]}'; }

printf 'Signatures per second on SoftHSM, one thread (medians of %s rounds of %s s a design; %s CPUs, load %s)\n\n' \
	"$rounds" "$secs" "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)"
printf '%-6s %10s %10s %8s %12s %10s %8s %12s %9s %9s\n' alg direct p11kit ratio spread json ratio spread \
	"+us p11k" "+us json"
for alg in rsa ec; do
	case $alg in rsa) key=alice ;; ec) key=bob ;; esac
	"$B" sign "$secs" "$rounds" "$remote" "$client" "$TB_SOFTHSM" bench "$key" $alg >"$TB_DIR/$alg.out"
	col() { awk -v c="$1" '{print $c}' "$TB_DIR/$alg.out" | median; }
	rat() { awk -v c="$1" '{print $c / $1}' "$TB_DIR/$alg.out" | "$2"; }
	d=$(col 1) k=$(col 2) j=$(col 3)
	printf '%-6s %10s %10s %7.3fx %12s %10s %7.3fx %12s %9.1f %9.1f\n' $alg "$d" "$k" "$(rat 2 median)" \
		"$(rat 2 spread)" "$j" "$(rat 3 median)" "$(rat 3 spread)" \
		"$(awk -v a="$d" -v b="$k" 'BEGIN{print 1e6/b - 1e6/a}')" "$(awk -v a="$d" -v b="$j" 'BEGIN{print 1e6/b - 1e6/a}')"
done
cat <<-'EOT'

	direct: the module in this process; p11kit: p11-kit-client.so, P11_KIT_SERVER_ADDRESS="|p11-kit-remote
	MODULE" while its C_GetFunctionList runs (a child per instance, p11-kit's RPC over a socketpair);
	json: a child of our own, one JSON request and answer (json-c, base64) per signature over a socketpair.
	ratio: median of the rounds' design/direct; spread: lowest-highest of those; +us: time added per signature.
EOT

echo
echo "When C_Sign segfaults or never returns (isolation-crashmod.so around SoftHSM):"
"$B" crash "$remote" "$client" "$crashmod" bench alice rsa 2>"$TB_DIR/crash.err" | sed 's/^/  /'
echo
echo "Two p11-kit instances in one process, one module each:"
"$B" two "$remote" "$client" "$TB_SOFTHSM" "$crashmod" bench alice rsa 2>>"$TB_DIR/crash.err" | sed 's/^/  /'
echo "(CKR 0x30 is CKR_DEVICE_ERROR)"
