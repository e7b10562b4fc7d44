#!/usr/bin/env bash
# Speed of moekit against llama.cpp on an OLMoE-1B-7B-shaped random-weight model cut to 4 layers
# (d_model 2048, 64 experts, k 8, d_ff 1024, vocab 50304), BF16 weights. In one run:
#   1. read bandwidth with THREADS threads (bench/bw.c, best of 10 passes over 2 GiB);
#   2. `moekit synth` of the model (kept in $WORK between runs);
#   3. `moekit bench` pp$P / tg$N, exact kernels and the AVX512-BF16 (--bf16-dot) prefill;
#   4. llama.cpp's llama-bench on the same weights as GGUF (BF16 and F16), if LLAMA_CPP_DIR points
#      to a llama.cpp checkout with build/bin/llama-bench (built outside this repository);
#   5. a summary: pp and tg for both engines, ratios, decode as % of the bandwidth roof
#      (roof = bandwidth / bytes of weights one decoded token reads).
# Usage: bash bench/bench_speed.sh | tee bench/results-speed.md
# Env: LLAMA_CPP_VERSION (a label printed with llama.cpp's results), THREADS (2), REPS (3), P (512), N (128), WORK (/tmp/moekit-speed-bench), LLAMA_CPP_DIR (unset),
#      OMP_WAIT_POLICY for moekit (passive: idle OpenMP threads sleep instead of spinning, which
#      on a shared 2-core machine was 2-5× faster; `active` is libgomp's spinning).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
THREADS=${THREADS:-2}; REPS=${REPS:-3}; P=${P:-512}; N=${N:-128}; WORK=${WORK:-/tmp/moekit-speed-bench}
mkdir -p "$WORK"
MK=build/moekit
make -s -j2 "$MK" >&2
cc -O2 -march=native -fopenmp bench/bw.c -o "$WORK/bw"

echo "# moekit speed vs llama.cpp — OLMoE-1B-7B shape, 4 layers, BF16"
echo
echo "Run: \`OMP_WAIT_POLICY=$OMP_WAIT_POLICY THREADS=$THREADS REPS=$REPS P=$P N=$N LLAMA_CPP_DIR=${LLAMA_CPP_DIR:-} bash bench/bench_speed.sh\`  "
echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

BW=$(OMP_NUM_THREADS=$THREADS "$WORK/bw" 2048 10 2>/dev/null)
echo "## Read bandwidth"
echo
echo "\`OMP_NUM_THREADS=$THREADS bw 2048 10\` (bench/bw.c): **$BW GB/s** (best of 10 passes)"
echo

MODEL=$WORK/olmoe4-bf16
if [ ! -f "$MODEL/model.safetensors" ]; then
  "$MK" synth --config bench/OLMoE-1B-7B.config.json --layers 4 --dtype bf16 -o "$MODEL" >&2
fi
info=$("$MK" info -m "$MODEL")
field() { printf '%s\n' "$info" | awk -v k="$1" -F': *' '$1 == k {print $2}' | awk '{print $1}'; }
V=$(field vocab); H=$(field d_model); ACT=$(field "params active")
# per decoded token: every active weight once, except the embedding (one row); 2 bytes each (BF16)
BYTES=$(( (ACT - V * H + H) * 2 ))
ROOF=$(awk -v bw="$BW" -v b="$BYTES" 'BEGIN {printf "%.1f", bw * 1e9 / b}')
echo "## Model"
echo
echo "\`moekit synth --config bench/OLMoE-1B-7B.config.json --layers 4 --dtype bf16 -o $MODEL\`  "
echo "Active weight bytes per decoded token: $BYTES ($(awk -v b="$BYTES" 'BEGIN {printf "%.0f", b / 1e6}') MB) → bandwidth roof $ROOF tokens/s."
echo

# last_num TEST FILE: the mean t/s of the row whose test column matches TEST in a markdown table
# best_num TEST FILE: the highest t/s among the rows whose test column matches TEST
best_num() { awk -F'|' -v t="$1" '{for (i = 1; i <= NF; i++) if ($i ~ "^ *" t " *$") {split($(i + 1), a, " "); print a[1]}}' "$2" | sort -g | tail -n 1; }
last_num() { awk -F'|' -v t="$1" '{for (i = 1; i <= NF; i++) if ($i ~ "^ *" t " *$") {split($(i + 1), a, " "); print a[1]}}' "$2" | tail -n 1; }
echo "## moekit"
echo
cat "$MODEL/model.safetensors" > /dev/null   # into the page cache before timing
echo "\`$MK bench -m $MODEL -p $P -n $N -t $THREADS -r $REPS\`"
echo
"$MK" bench -m "$MODEL" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" | tee "$WORK/mk.md"
echo
echo "\`$MK bench -m $MODEL -p $P -n 0 -t $THREADS -r $REPS --bf16-dot\`"
echo
"$MK" bench -m "$MODEL" -p "$P" -n 0 -t "$THREADS" -r "$REPS" --bf16-dot | tee "$WORK/mk_dot.md"
echo
MK_PP=$(last_num "pp$P" "$WORK/mk.md"); MK_TG=$(last_num "tg$N" "$WORK/mk.md"); MK_PPD=$(last_num "pp$P" "$WORK/mk_dot.md")

LB_PP_BF=""; LB_TG_BF=""; LB_PP_F16=""; LB_TG_F16=""
LB=${LLAMA_CPP_DIR:+$LLAMA_CPP_DIR/build/bin/llama-bench}
echo "## llama.cpp"
echo
if [ -n "$LB" ] && [ -x "$LB" ]; then
  for t in bf16 f16; do
    G=$WORK/olmoe4-$t.gguf
    [ -f "$G" ] || python3 bench/synth_to_gguf.py "$MODEL" "$G" --outtype $t >&2
    cat "$G" > /dev/null
    # --poll 0,50: llama.cpp's threads sleeping at once (like OMP_WAIT_POLICY=passive) and polling (its default)
    echo "\`llama-bench -m $G -p $P -n $N -t $THREADS -r $REPS --poll 0,50 -o md\` (llama.cpp ${LLAMA_CPP_VERSION:-version not given})"
    echo
    "$LB" -m "$G" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" --poll 0,50 -o md 2>/dev/null | tee "$WORK/lb_$t.md"
    echo
  done
  # llama.cpp's better poll setting for each figure
  LB_PP_BF=$(best_num "pp$P" "$WORK/lb_bf16.md"); LB_TG_BF=$(best_num "tg$N" "$WORK/lb_bf16.md")
  LB_PP_F16=$(best_num "pp$P" "$WORK/lb_f16.md"); LB_TG_F16=$(best_num "tg$N" "$WORK/lb_f16.md")
else
  echo "LLAMA_CPP_DIR is not set (or has no build/bin/llama-bench): llama.cpp not run. To compare, build"
  echo "llama.cpp outside this repository and set LLAMA_CPP_DIR; the GGUF files are made from the synth"
  echo "model by bench/synth_to_gguf.py (gguf-py from PyPI). Issue 9's figures for llama.cpp on this"
  echo "machine kind (F16, 2 threads): pp512 157 t/s, tg128 36.5 t/s."
  echo
fi

BW_END=$(OMP_NUM_THREADS=$THREADS "$WORK/bw" 2048 10 2>/dev/null)
BW=$(awk -v a="$BW" -v b="$BW_END" 'BEGIN {print (b > a ? b : a)}')
ROOF=$(awk -v bw="$BW" -v b="$BYTES" 'BEGIN {printf "%.1f", bw * 1e9 / b}')
echo "Read bandwidth measured again at the end: $BW_END GB/s; the roof below uses the higher of the two ($BW GB/s → $ROOF t/s)."
echo
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b == "" || b == 0) print "–"; else printf "%.2f×", a / b}'; }
pct() { awk -v a="$1" -v r="$ROOF" 'BEGIN {if (a == "") print "–"; else printf "%.0f%%", 100 * a / r}'; }
echo "## Summary ($THREADS threads; mean of $REPS runs; bandwidth $BW GB/s, roof $ROOF t/s)"
echo
echo "| engine | weights | pp$P t/s | tg$N t/s | decode % of roof | pp vs llama.cpp BF16 | tg vs llama.cpp BF16 |"
echo "| ------ | ------- | -------: | -------: | ---------------: | ---: | ---: |"
echo "| moekit (exact f32 math) | BF16 | $MK_PP | $MK_TG | $(pct "$MK_TG") | $(ratio "$MK_PP" "$LB_PP_BF") | $(ratio "$MK_TG" "$LB_TG_BF") |"
echo "| moekit --bf16-dot | BF16 | $MK_PPD | (same) | | $(ratio "$MK_PPD" "$LB_PP_BF") | |"
[ -n "$LB_PP_BF" ] && echo "| llama.cpp | BF16 | $LB_PP_BF | $LB_TG_BF | $(pct "$LB_TG_BF") | 1.00× | 1.00× |"
[ -n "$LB_PP_F16" ] && echo "| llama.cpp | F16 | $LB_PP_F16 | $LB_TG_F16 | $(pct "$LB_TG_F16") | | |"
echo
echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared; see the notes in bench/results-speed.md)."
