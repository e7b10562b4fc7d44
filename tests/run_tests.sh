#!/usr/bin/env bash
# Runs every C test program and every CLI test script; prints one closing line
# "N passed, N failed, N skipped" (the sum over all of them) and exits non-zero if anything
# failed, or, with CI=true, if anything was skipped (CI installs what every check needs).
# The test data in tests/data is unpacked into $BUILD/testdata first.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export MK_BUILD=$BUILD
export MK_TESTDATA=${MK_TESTDATA:-$(pwd)/$BUILD/testdata}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$(pwd)/tests/lsan.supp}
bash tests/data/unpack.sh "$MK_TESTDATA" || { echo "cannot unpack tests/data into $MK_TESTDATA"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }
passed=0; failed=0; skipped=0; broken=()
run_one() {
  local name=$1; shift
  local out; out=$("$@" 2>&1); local rc=$?
  printf '%s\n' "$out" | grep -v '^ok ' || true
  local line; line=$(printf '%s\n' "$out" | grep -E '^[A-Za-z0-9_./-]+: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' | tail -n 1)
  if [ -z "$line" ]; then
    echo "BROKEN $name (exit $rc, no summary line)"; failed=$((failed + 1)); broken+=("$name"); return
  fi
  local p f s
  read -r p f s < <(sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped$/\1 \2 \3/' <<<"$line")
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
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
if [ "${CI:-}" = true ] && [ "$skipped" -gt 0 ]; then
  echo "CI=true: $skipped skipped checks count as failures (install what they need: bash scripts/setup.sh)"
  failed=$((failed + skipped))
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
