#!/usr/bin/env bash
# The test command: installs what is needed, builds, runs the suite, then runs it again under
# ASan+UBSan, then a fixed-seed fuzz smoke of every file parser. Ends with one line
# "N passed, N failed, N skipped" over all three (a fuzz target that ran clean is one passed
# check) and exits non-zero on any failure, or, with CI=true, on any skip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)
P=0; F=0; S=0
# suite CMD...: runs a test suite, shows its output, adds its closing line to the totals.
suite() {
  local log rc line p f s
  log=$(mktemp)
  set +e; "$@" 2>&1 | tee "$log"; rc=${PIPESTATUS[0]}; set -e
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -n 1)
  rm -f "$log"
  if [ -z "$line" ]; then F=$((F + 1)); echo "test.sh: '$*' printed no closing line (exit $rc)"; return; fi
  read -r p f s < <(sed -E 's/^([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped$/\1 \2 \3/' <<<"$line")
  P=$((P + p)); F=$((F + f)); S=$((S + s))
  [ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || F=$((F + 1))
}
finish() {
  echo "== total: the suite, the sanitizer suite and the fuzz smoke =="
  echo "$P passed, $F failed, $S skipped"
  [ "$F" -eq 0 ] && { [ "$S" -eq 0 ] || [ "${CI:-}" != true ]; }
}
make -j"$jobs" all
suite make test
echo "== sanitizer build (ASan+UBSan) =="
make -j"$jobs" SAN=1 all
suite make SAN=1 test
if command -v clang >/dev/null 2>&1; then
  # A fixed number of runs from a fixed seed: the same inputs every time, so a pass here is a pass
  # in CI; open-ended fuzzing is `make fuzz-run FUZZ_SECONDS=N`.
  runs=${FUZZ_RUNS:-100000}
  echo "== fuzz smoke (libFuzzer, $runs runs per parser, seed 1) =="
  n=$(ls tests/fuzz/fuzz_*.c | wc -l)
  if make fuzz-run FUZZ_RUNS="$runs"; then P=$((P + n)); else F=$((F + 1)); fi
else
  echo "skip fuzz smoke: clang is not installed (bash scripts/setup.sh installs it)"
  S=$((S + 1))
fi
finish
