#!/usr/bin/env bash
# Decode speed as % of the bandwidth roof, in repeated rounds: on a shared VM the read bandwidth
# moves 10-25% from minute to minute, so one tg figure against one bandwidth figure says little.
# Each round scores decode two ways:
#  - paired: `moekit bench -p 0 -n N --roof` interleaves a plain read of a 1 GiB buffer with the
#    generated tokens (every 0.2 s of decode) and scores tg against the bandwidth that read had
#    meanwhile (mean against mean, over the same minutes);
#  - bracketed: the read bandwidth by bench/bw.c (2 GiB, best of 5) before and after the run,
#    and tg scored against the higher of the two (a bound from below: the best pass of the
#    better minute).
# Both divide by the weight bytes one token reads as moekit counts them (`bench --roof`'s "roof:"
# line). The script prints every round and the median and range per type for both.
# Usage: WORK=/tmp/moekit-speed-bench bash bench/decode_roof.sh   (after bench_speed.sh made the files)
# Env: THREADS (2), ROUNDS (8), N (128), TYPES ("bf16 q8_0"), WORK (/tmp/moekit-speed-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}; ROUNDS=${ROUNDS:-8}; N=${N:-128}; TYPES=${TYPES:-bf16 q8_0}; WORK=${WORK:-/tmp/moekit-speed-bench}
MK=build/moekit
make -s -j2 "$MK" >&2
[ -x "$WORK/bw" ] || cc -O2 -march=native -fopenmp bench/bw.c -o "$WORK/bw"
bwq() { OMP_NUM_THREADS=$THREADS "$WORK/bw" 2048 5 2>/dev/null; }
echo "# Decode % of the bandwidth roof, $ROUNDS rounds"
echo
echo "Run: \`THREADS=$THREADS ROUNDS=$ROUNDS N=$N TYPES=\"$TYPES\" bash bench/decode_roof.sh\`  "
echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); moekit commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo
echo "| round | type | bw.c before / after (GB/s) | roof t/s | tg$N t/s | % of roof, bracketed | read GB/s during tg | % of roof, paired |"
echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
declare -A PCTS PAIRED
for r in $(seq "$ROUNDS"); do
  for T in $TYPES; do
    G=$WORK/olmoe4-$T.gguf
    [ -f "$G" ] || { echo "decode_roof: $G missing (run bench/bench_speed.sh first)" >&2; exit 1; }
    b0=$(bwq)
    # tg, the read's bandwidth, the paired %, and the weight bytes per token moekit counted (the
    # "roof:" line), which the bracketed figure divides by too
    read -r tg rbw ppct BYTES < <("$MK" bench -m "$G" -p 0 -n "$N" -t "$THREADS" -r 2 --roof |
      awk -F'|' -v t="tg$N" '$8 ~ t {split($9, a, " "); split($11, b, " "); split($12, c, " ")} /^roof: / {split($0, r, " ")}
                             END {print a[1], b[1], c[1], r[2] * 1e6}')
    b1=$(bwq)
    read -r roof pct < <(awk -v a="$b0" -v b="$b1" -v t="$tg" -v by="$BYTES" 'BEGIN {bw = (a > b ? a : b); r = bw * 1e9 / by; printf "%.1f %.1f\n", r, 100 * t / r}')
    PCTS[$T]="${PCTS[$T]:-} $pct"
    PAIRED[$T]="${PAIRED[$T]:-} $ppct"
    echo "| $r | $T | $b0 / $b1 | $roof | $tg | $pct% | $rbw | $ppct% |"
  done
done
echo
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.1f%% | %.1f-%.1f%%", m, a[1], a[NR]}'; }
echo "| type | paired: median % of roof | range | bracketed: median % of roof | range |"
echo "| --- | ---: | --- | ---: | --- |"
for T in $TYPES; do
  echo "| $T | $(med ${PAIRED[$T]}) | $(med ${PCTS[$T]}) |"
done
