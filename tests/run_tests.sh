#!/usr/bin/env bash
# Runs every C test program and every CLI test script; prints one closing line
# "N passed, N failed" (the sum over all of them) and exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export MK_BUILD=$BUILD
export MK_SHARED=${MK_SHARED:-$(cd .. && pwd)/shared}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$(pwd)/tests/lsan.supp}
passed=0; failed=0; broken=()
run_one() {
  local name=$1; shift
  local out; out=$("$@" 2>&1); local rc=$?
  printf '%s\n' "$out" | grep -v '^ok ' || true
  local line; line=$(printf '%s\n' "$out" | grep -E '^[A-Za-z0-9_./-]+: [0-9]+ passed, [0-9]+ failed$' | tail -n 1)
  if [ -z "$line" ]; then
    echo "BROKEN $name (exit $rc, no summary line)"; failed=$((failed + 1)); broken+=("$name"); return
  fi
  local p f; p=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line"); f=$(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"$line")
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then echo "BROKEN $name (exit $rc)"; failed=$((failed + 1)); broken+=("$name"); fi
}
for src in tests/test_*.c; do
  t=$BUILD/tests/$(basename "$src" .c)   # only programs whose source exists (no stale binaries)
  if [ ! -x "$t" ]; then echo "BROKEN $(basename "$t") (not built)"; failed=$((failed + 1)); broken+=("$t"); continue; fi
  run_one "$(basename "$t")" "$t"
done
for s in tests/cli/test_*.sh; do
  [ -f "$s" ] || continue
  run_one "$(basename "$s")" bash "$s"
done
[ ${#broken[@]} -eq 0 ] || echo "broken: ${broken[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
