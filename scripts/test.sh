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
  echo "== fuzz smoke (libFuzzer, ${FUZZ_SECONDS:-15}s per parser) =="
  make fuzz-run FUZZ_SECONDS="${FUZZ_SECONDS:-15}"
fi
