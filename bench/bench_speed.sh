#!/usr/bin/env bash
# Speed of moekit against llama.cpp on an OLMoE-1B-7B-shaped random-weight model cut to 4 layers
# (d_model 2048, 64 experts, k 8, d_ff 1024, vocab 50304), or another config (CONFIG, LAYERS; e.g.
# bench/DeepSeek-V2-Lite.config.json: MLA, 64 experts of 1408, 2 shared, k 6), in one run on this machine:
#   1. read bandwidth with THREADS threads (bench/bw.c, best of 10 passes over 2 GiB), at the start
#      and at the end (the roof uses the higher);
#   2. `moekit synth` of the model in BF16 (or SYNTH_DTYPE: mxfp4 writes gpt-oss as OpenAI ships it,
#      which keeps a full-size gpt-oss-20b at 13 GB on disk; kept in $WORK between runs), and `moekit quantize` of it
#      to GGUF files of each type in TYPES (bf16 q8_0 q4_k q6_k mxfp4): the files both engines read;
#   3. `moekit bench` and llama.cpp's `llama-bench` (if LLAMA_CPP_DIR points to a llama.cpp build
#      with build/bin/llama-bench, made outside this repository) on each file, alternately;
#   4. a summary: pp and tg for both engines, the ratios, each engine's peak resident memory over a
#      bench run (GNU time's maximum RSS: the weights it holds plus its buffers; moekit's from a run
#      without --roof, whose read buffer is not the engine's), and each decode figure as % of the
#      bandwidth roof (roof = bandwidth / weight bytes one decoded token reads). The bandwidth is
#      also measured just before and just after each type's runs (1 GiB, best of 5), and that
#      type's roof uses the highest of those two and the start and end figures: on a shared VM
#      the bandwidth moves by 10-25% from minute to minute. moekit's decode is also scored paired
#      (`moekit bench --roof`: a plain read interleaved with its generated tokens, every 0.2 s of
#      decode, and tg against the bandwidth that read had meanwhile); llama-bench cannot be paired.
# Both engines get random token ids (llama-bench has no text input; with random weights the
# routing does not depend on the text). Both read the weights into memory rather than run them
# from the file's mapping: moekit's default (a copy on transparent huge pages, as bw.c's buffer
# is), and llama-bench's `-lm none` (or `-mmp 0` in older builds), which was 2-9% faster in tg
# for llama.cpp on the Zen 3 VM (moekit: 10-17%).
# Usage: LLAMA_CPP_DIR=/path/to/llama.cpp bash bench/bench_speed.sh | tee bench/results-speed.md
# Env: THREADS (2), REPS (3), P (512), N (128), TYPES ("bf16 q8_0 q4_k q6_k"), WORK (/tmp/moekit-speed-bench), SYNTH_DTYPE (bf16),
#      CONFIG (bench/OLMoE-1B-7B.config.json), LAYERS (4),
#      LLAMA_CPP_DIR (unset: moekit only), LLAMA_CPP_VERSION (names the llama.cpp in the header: a vendored
#      copy has no commit), OMP_WAIT_POLICY (unset: libgomp's default, spin a while
#      then sleep — what a user gets; `passive` sleeps at once, `active` only spins).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}; REPS=${REPS:-3}; P=${P:-512}; N=${N:-128}; WORK=${WORK:-/tmp/moekit-speed-bench}
TYPES=${TYPES:-bf16 q8_0 q4_k q6_k}
mkdir -p "$WORK"
MK=build/moekit
make -s -j2 "$MK" >&2
cc -O2 -march=native -fopenmp bench/bw.c -o "$WORK/bw"
LB=${LLAMA_CPP_DIR:+$LLAMA_CPP_DIR/build/bin/llama-bench}
[ -n "$LB" ] && [ ! -x "$LB" ] && { echo "bench_speed: $LB is not an executable" >&2; exit 1; }
LBLOAD=()
if [ -n "$LB" ]; then
  lbhelp=$("$LB" --help 2>&1 || true)
  if grep -q -- '--load-mode' <<<"$lbhelp"; then LBLOAD=(-lm none)
  elif grep -q -- '--mmap' <<<"$lbhelp"; then LBLOAD=(-mmp 0); fi
fi

CONFIG=${CONFIG:-bench/OLMoE-1B-7B.config.json}; LAYERS=${LAYERS:-4}
CNAME=$(basename "$CONFIG" .config.json); TAG=$(tr 'A-Z.' 'a-z-' <<<"$CNAME")$LAYERS
SYNTH_DTYPE=${SYNTH_DTYPE:-bf16}
TIME=/usr/bin/time; [ -x "$TIME" ] || TIME=""   # GNU time, for the peak RSS
echo "# moekit speed vs llama.cpp — $CNAME shape, $LAYERS layers"
echo
echo "Run: \`CONFIG=$CONFIG LAYERS=$LAYERS SYNTH_DTYPE=$SYNTH_DTYPE THREADS=$THREADS REPS=$REPS P=$P N=$N TYPES=\"$TYPES\" OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-} LLAMA_CPP_DIR=${LLAMA_CPP_DIR:-} bash bench/bench_speed.sh\`  "
echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); moekit commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "$LB" ]; then
  echo "llama.cpp: $LLAMA_CPP_DIR, ${LLAMA_CPP_VERSION:-commit $(git -C "$LLAMA_CPP_DIR" rev-parse --short HEAD 2>/dev/null || { "$LLAMA_CPP_DIR/build/bin/llama-bench" --version 2>&1 | head -1; } || echo '?')}"
fi
echo

BW=$(OMP_NUM_THREADS=$THREADS "$WORK/bw" 2048 10 2>/dev/null)
echo "## Read bandwidth"
echo
echo "\`OMP_NUM_THREADS=$THREADS bw 2048 10\` (bench/bw.c): **$BW GB/s** (best of 10 passes)"
echo

MODEL=$WORK/$TAG-$SYNTH_DTYPE
if [ ! -f "$MODEL/model.safetensors" ]; then
  "$MK" synth --config "$CONFIG" --layers "$LAYERS" --dtype "$SYNTH_DTYPE" -o "$MODEL" >&2
fi
info=$("$MK" info -m "$MODEL")
field() { printf '%s\n' "$info" | awk -v k="$1" -F': *' '$1 == k {print $2}' | awk '{print $1}'; }
V=$(field vocab); H=$(field d_model); ACT=$(field "params active")
# weights one decoded token reads: every active weight once except the embedding (one row)
WEIGHTS=$(( ACT - V * H + H ))
# of them, the ones every token reads again (all but the routed experts: attention, norms, router, output)
NL=$(printf '%s\n' "$info" | sed -n 's/^layers: *[0-9]* (\([0-9]*\) MoE.*/\1/p'); KX=$(printf '%s\n' "$info" | sed -n 's/.*k = \([0-9]*\).*/\1/p'); FX=$(printf '%s\n' "$info" | sed -n 's/.*expert d_ff \([0-9]*\).*/\1/p')
SHARED=$(( WEIGHTS - NL * KX * 3 * H * FX ))
L3=$(lscpu 2>/dev/null | awk -F': *' '/^L3 cache/ {print $2}')
bpw() { case $1 in bf16|f16) echo 2;; q8_0) echo "34/32";; q4_0) echo "18/32";; q4_k) echo "144/256";; q6_k) echo "210/256";; mxfp4) echo "17/32";; esac; }
# bytes per weight of the matrices every token re-reads: the type's, except mxfp4 (llama.cpp's
# MXFP4_MOE: the routed experts MXFP4, every other matrix Q8_0)
bpw_shared() { case $1 in mxfp4) echo "34/32";; *) bpw "$1";; esac; }
echo "## Model"
echo
echo "\`moekit synth --config $CONFIG --layers $LAYERS --dtype $SYNTH_DTYPE -o $MODEL\`, then"
echo "\`moekit quantize -m $MODEL --type T -o $WORK/$TAG-T.gguf\` for T in $TYPES. Weights read per decoded"
echo "token: $WEIGHTS (every matrix is of the file's type; norms and router F32), $SHARED of them read again by every"
echo "token (all but the routed experts). The roofs below assume every byte comes from DRAM; where the bytes"
echo "every token re-reads fit in the last-level cache (here: ${L3:-unknown}) part of them may come from"
echo "there, and a figure near or above 100% of the roof says so rather than that the kernels beat DRAM."
echo

# mean TEST FILE: the t/s of the row whose test column is TEST in a markdown table (the last such row)
mean_of() { awk -F'|' -v t="$1" '{for (i = 1; i <= NF; i++) if ($i ~ "^ *" t " *$") {split($(i + 1), a, " "); v = a[1]}} END {print v}' "$2"; }
declare -A MKPP MKTG MKPR LBPP LBTG BWT MKRSS LBRSS
# run CMD... under GNU time, its peak RSS (kB) into file $RSSF
timed() { if [ -n "$TIME" ]; then "$TIME" -f '%M' -o "$RSSF" "$@"; else : > "$RSSF"; "$@"; fi; }
gib() { awk -v k="$1" 'BEGIN {if (k == "") print "–"; else printf "%.2f GiB", k / 1048576}'; }
bwq() { OMP_NUM_THREADS=$THREADS "$WORK/bw" 1024 5 2>/dev/null; }
for T in $TYPES; do
  G=$WORK/$TAG-$T.gguf
  [ -f "$G" ] || "$MK" quantize -m "$MODEL" --type "$T" -o "$G" >&2
  cat "$G" > /dev/null   # into the page cache before timing
  echo "## $T"
  echo
  B0=$(bwq)
  echo "\`$MK bench -m $G -p $P -n $N -t $THREADS -r $REPS --roof\`"
  echo
  "$MK" bench -m "$G" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" --roof | tee "$WORK/mk_$T.md"
  # the peak RSS from a run of its own: --roof's 1 GiB read buffer is not moekit's to count
  RSSF=$WORK/mk_$T.rss timed "$MK" bench -m "$G" -p "$P" -n "$N" -t "$THREADS" -r 1 > /dev/null
  MKRSS[$T]=$(tail -n 1 "$WORK/mk_$T.rss")
  echo
  MKPP[$T]=$(mean_of "pp$P" "$WORK/mk_$T.md"); MKTG[$T]=$(mean_of "tg$N" "$WORK/mk_$T.md")
  MKPR[$T]=$(awk -F'|' -v t="tg$N" '$8 ~ t {split($12, a, " "); print a[1]}' "$WORK/mk_$T.md")
  if [ -n "$LB" ]; then
    echo "\`llama-bench -m $G -p $P -n $N -t $THREADS -r $REPS ${LBLOAD[*]} -o md\` (default polling)"
    echo
    RSSF=$WORK/lb_$T.rss timed "$LB" -m "$G" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" "${LBLOAD[@]}" -o md 2>/dev/null | tee "$WORK/lb_$T.md" \
      || echo "llama-bench stopped with an error on this file (exit ${PIPESTATUS[0]}); the other types still run"
    LBRSS[$T]=$(tail -n 1 "$WORK/lb_$T.rss")
    echo
    LBPP[$T]=$(mean_of "pp$P" "$WORK/lb_$T.md"); LBTG[$T]=$(mean_of "tg$N" "$WORK/lb_$T.md")
  fi
  B1=$(bwq)
  BWT[$T]=$(awk -v a="$B0" -v b="$B1" 'BEGIN {print (b > a ? b : a)}')
  echo "Read bandwidth just before and after these runs: $B0 and $B1 GB/s."
  echo
done

BW_END=$(OMP_NUM_THREADS=$THREADS "$WORK/bw" 2048 10 2>/dev/null)
BWM=$(awk -v a="$BW" -v b="$BW_END" 'BEGIN {print (b > a ? b : a)}')
echo "Read bandwidth measured again at the end: $BW_END GB/s. Each type's roof uses the highest of the"
echo "start and end figures ($BWM GB/s at most) and the two measured around its own runs."
echo
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b == "" || b == 0) print "–"; else printf "%.2f×", a / b}'; }
echo "## Summary ($THREADS threads; mean of $REPS runs)"
echo
echo "| weights | bytes/token | re-read/token | bandwidth | roof t/s | moekit pp$P | llama.cpp pp$P | pp ratio | moekit tg$N | llama.cpp tg$N | tg ratio | moekit % of roof | llama.cpp % of roof | moekit % of roof, paired | moekit peak RSS | llama.cpp peak RSS |"
echo "| ------- | ----------: | ----------: | --------: | -------: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for T in $TYPES; do
  BYTES=$(awk -v w="$WEIGHTS" -v s="$SHARED" -v b="$(bpw "$T")" -v c="$(bpw_shared "$T")" \
    'BEGIN {split(b, f, "/"); r = (f[2] ? f[1] / f[2] : f[1]); split(c, g, "/"); q = (g[2] ? g[1] / g[2] : g[1]); printf "%.0f", (w - s) * r + s * q}')
  BWR=$(awk -v a="$BWM" -v b="${BWT[$T]}" 'BEGIN {print (b > a ? b : a)}')
  ROOF=$(awk -v bw="$BWR" -v b="$BYTES" 'BEGIN {printf "%.1f", bw * 1e9 / b}')
  pct() { awk -v a="$1" -v r="$ROOF" 'BEGIN {if (a == "") print "–"; else printf "%.0f%%", 100 * a / r}'; }
  RB=$(awk -v w="$SHARED" -v b="$(bpw_shared "$T")" 'BEGIN {split(b, f, "/"); r = (f[2] ? f[1] / f[2] : f[1]); printf "%.0f MB", w * r / 1e6}')
  echo "| $T | $(awk -v b="$BYTES" 'BEGIN {printf "%.0f MB", b / 1e6}') | $RB | $BWR GB/s | $ROOF | ${MKPP[$T]} | ${LBPP[$T]:-–} | $(ratio "${MKPP[$T]}" "${LBPP[$T]:-}") | ${MKTG[$T]} | ${LBTG[$T]:-–} | $(ratio "${MKTG[$T]}" "${LBTG[$T]:-}") | $(pct "${MKTG[$T]}") | $(pct "${LBTG[$T]:-}") | ${MKPR[$T]:-–}% | $(gib "${MKRSS[$T]:-}") | $(gib "${LBRSS[$T]:-}") |"
done
echo
echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg)."
