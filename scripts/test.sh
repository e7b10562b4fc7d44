#!/usr/bin/env bash
# The test command: installs what is needed, builds, runs the suite, then runs it again under
# ASan+UBSan. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)
make -j"$jobs" all
make test
echo "== sanitizer build (ASan+UBSan) =="
make -j"$jobs" SAN=1 all
make SAN=1 test
if command -v clang >/dev/null 2>&1; then
  # A fixed number of runs from a fixed seed: the same inputs every time, so a pass here is a pass
  # in CI; open-ended fuzzing is `make fuzz-run FUZZ_SECONDS=N`.
  echo "== fuzz smoke (libFuzzer, ${FUZZ_RUNS:-100000} runs per parser, seed 1) =="
  make fuzz-run FUZZ_RUNS="${FUZZ_RUNS:-100000}"
fi
