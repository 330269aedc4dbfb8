#!/bin/sh
# The whole test suite: installs what is needed, builds, runs `make check`,
# and ends with the line "N passed, N failed".  Shell tests run through
# automake's TAP driver: each assertion is one PASS/FAIL line, so the counts
# are of assertions (and of the compiled tests); a shell test that dies
# mid-way or exits non-zero is an ERROR line, counted as failed.
set -e
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
set +e
make -j"$(nproc)" check >make-check.out 2>&1
rc=$?
set -e
grep -E '^(PASS|FAIL|XPASS|ERROR|SKIP):' make-check.out || true
for f in $(grep -lE '^(:test-result: FAIL|:test-result: ERROR)' $(find tests -name '*.trs') 2>/dev/null); do
	echo "==== ${f%.trs}.log"
	# each failed assertion with the diagnostics under it, then the log's end
	awk '/^not ok/ { n = 25 } n > 0 && (/^not ok/ || /^#/) { print; n-- ; next } { n = 0 }' "${f%.trs}.log" | head -n 120
	echo "---- its last lines"
	tail -n 15 "${f%.trs}.log"
done
pass=$(grep -cE '^(PASS|XFAIL):' make-check.out || true)
fail=$(grep -cE '^(FAIL|XPASS|ERROR):' make-check.out || true)
skip=$(grep -cE '^SKIP:' make-check.out || true)
if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
	tail -n 30 make-check.out
	fail=1
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
