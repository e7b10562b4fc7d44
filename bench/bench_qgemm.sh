#!/usr/bin/env bash
# The integer prefill GEMMs in isolation (bench/bench_qgemm.c), one thread.
# Usage: bash bench/bench_qgemm.sh [ROWS IN TOK REPS]   (default 256 2048 64 20)
set -euo pipefail
cd "$(dirname "$0")/.."
make -s -j2 build/libmoekit.a >&2
out=${WORK:-/tmp}/bench_qgemm
cc -std=c11 -D_GNU_SOURCE -O2 -march=native -fopenmp -Iinclude -Isrc bench/bench_qgemm.c build/libmoekit.a -o "$out" \
  $(pkg-config --libs jansson libpcre2-8 libutf8proc lapacke 2>/dev/null) -lm -lpthread
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); moekit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo
OMP_NUM_THREADS=1 "$out" "$@"
