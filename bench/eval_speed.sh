#!/usr/bin/env bash
# Speed of `moekit eval --ppl` beside `moekit bench`'s prefill on the benchmark model of
# bench/bench_speed.sh (OLMoE-1B-7B shape cut to 4 layers, BF16, random weights; the same
# $WORK/olmoe4-bf16 directory, made here if missing). Both are one batched prefill per 512 tokens;
# eval also runs the LM head for every scored position and a double-precision log-softmax.
# Usage: bash bench/eval_speed.sh      Env: THREADS (2), REPS (3), P (512), WORK (/tmp/moekit-speed-bench), MODEL (WORK/olmoe4-bf16)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
THREADS=${THREADS:-2}; REPS=${REPS:-3}; P=${P:-512}; WORK=${WORK:-/tmp/moekit-speed-bench}
MK=build/moekit
make -s -j2 "$MK" >&2
mkdir -p "$WORK"
MODEL=${MODEL:-$WORK/olmoe4-bf16}
[ -f "$MODEL/model.safetensors" ] || "$MK" synth --config bench/OLMoE-1B-7B.config.json --layers 4 --dtype bf16 -o "$MODEL" >&2
cat "$MODEL/model.safetensors" > /dev/null
# 2·P + 1 pseudo-random token ids: with --ctx P --stride P, two windows of P tokens
python3 -c "import random; random.seed(0); print(' '.join(str(random.randrange(50304)) for _ in range(2 * $P + 1)))" > "$WORK/eval_ids.txt"
echo "# moekit eval --ppl vs moekit bench pp$P — OLMoE-1B-7B shape, 4 layers, BF16"
echo
echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $THREADS threads; OMP_WAIT_POLICY=$OMP_WAIT_POLICY; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$MK" bench -m "$MODEL" -p "$P" -n 0 -t "$THREADS" -r "$REPS"
echo
for r in $(seq "$REPS"); do
  "$MK" eval -m "$MODEL" --ppl-ids "$WORK/eval_ids.txt" --ctx "$P" --stride "$P" -t "$THREADS" --json |
    python3 -c "import json,sys; j=json.load(sys.stdin); print(f\"eval --ppl run $r: {j['tokens_fed']} tokens fed in {j['seconds']:.2f} s = {j['tok_per_s']:.2f} tok/s\")"
done
