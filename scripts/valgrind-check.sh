#!/bin/sh
# The whole suite with scagent, scagentd and the unit tests under valgrind
# (memcheck: invalid accesses, uninitialised reads, definite leaks fail a test).
set -e
cd "$(dirname "$0")/.."
top=$(pwd)
./scripts/build.sh
wrap=$(mktemp -d)
trap 'rm -rf "$wrap"' EXIT
vg="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --suppressions=$top/tests/valgrind.supp"
for p in scagent scagentd; do
	printf '#!/bin/sh\nexec %s "%s/%s" "$@"\n' "$vg" "$top" "$p" > "$wrap/$p"
	chmod +x "$wrap/$p"
done
# The agent sees valgrind's tool as the client's executable (audit lines, confirmations).
SCAGENT_EXE_SEEN=/usr/libexec/valgrind/memcheck-$(uname -m | sed 's/x86_64/amd64/')-linux
export SCAGENT_EXE_SEEN
make -j"$(nproc)" check SCAGENT_WRAPPED="$wrap/scagent" SCAGENTD_WRAPPED="$wrap/scagentd" \
	LOG_COMPILER="$vg"
