#!/usr/bin/env bash
# Runs every cmocka unit test binary in its own process with a timeout and
# prints one summary line. Exits non-zero if any test failed or crashed.
set -u
passed=0; failed=0; broken=()
for t in "$@"; do
    out=$(timeout 300 "$t" 2>&1); rc=$?
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
    if [ $rc -ne 0 ] || [ -z "$p$f" ]; then
        printf '%s\n' "$out" | tail -40
        echo "unit: $t exited with status $rc"
        [ -z "$f" ] && failed=$((failed + 1))
        broken+=("$t")
    fi
done
echo "cmocka: ${#@} test programs"
echo "cmocka: $passed passed, $failed failed"
[ $failed -eq 0 ] && [ ${#broken[@]} -eq 0 ]
