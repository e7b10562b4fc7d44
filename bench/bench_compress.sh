#!/usr/bin/env bash
# Quality of expert pruning and merging on the testbed model (issues 7 and 8), in one run:
#   every pruning criterion x {25, 50, 75}% of experts removed x {mixed, same-domain calibration}
#   -> per-domain test perplexity, mean KLD and top-1 agreement against the base model;
#   plus rows that remove the super experts found by profile and as many random experts (SEEDS draws);
#   merging (M-SMoE, Sub-MoE as published, and moekit's msmoe-slice / submoe-slice variants) x {25, 50}%; CAMERA-P neuron pruning at {25, 50}%;
#   routing policies (top-k, top-p, skip) against the experts actually used per token.
# Writes bench/results-compress.md (and the raw JSON lines beside it).
#
#   bash bench/bench_compress.sh                 # the whole table (long: hours on 2 cores)
#   QUICK=1 bash bench/bench_compress.sh         # two methods, one budget, for a smoke run
#   METHODS="naee" REMOVALS="50" GMETHODS="" bash bench/bench_compress.sh
#                                                # some pruning rows first (the same WORK resumes: a
#                                                # later full run adds the rest; the report lists what is there)
# Environment: MODEL (default models/testbed), DATA (default data/testbed), EVAL_BYTES (bytes of
# each test slice evaluated, default 60000), CTX (window, default 256), STRIDE (default CTX: windows
# do not overlap), CALIB_BYTES (bytes of each domain's calib split used by every calibrated method:
# profile statistics, NAEE, merging and CAMERA alike, default 60000), SEEDS (random draws of as many
# experts as there are super experts, default 20), WORK (default /tmp/moekit-compress-work: kept, so an
# interrupted run resumes where it stopped; rm -rf it to start over), OUT (default bench/results-compress.md; the routing plot goes beside it as .svg),
# TOP_K (logits stored per position of the base model: default the whole vocabulary, so every KLD is exact;
# 32 stores top-32 + a tail bucket, a lower bound, in 1/256 of the disk: 64 KB vs 264 B per scored token).
set -euo pipefail
cd "$(dirname "$0")/.."
MK=${MK:-./build/moekit}
MODEL=${MODEL:-models/testbed}
DATA=${DATA:-data/testbed}
CTX=${CTX:-256}
STRIDE=${STRIDE:-$CTX}
CALIB_BYTES=${CALIB_BYTES:-60000}
EVAL_BYTES=${EVAL_BYTES:-60000}
OUT=${OUT:-bench/results-compress.md}
SEEDS=${SEEDS:-20}
W=${WORK:-/tmp/moekit-compress-work}
mkdir -p "$W"
[ -x "$MK" ] || make -j"$(nproc)" build/moekit >/dev/null
[ -f "$MODEL/config.json" ] || { echo "bench_compress: no model in $MODEL" >&2; exit 1; }
domains=$(ls "$DATA" | sed -n 's/\.test\.txt$//p' | sort)
methods=${METHODS:-frequency gate-mass reap easy-ep easy-ep-pooled tcess naee random}
removals=${REMOVALS:-25 50 75}
if [ "${QUICK:-0}" = 1 ]; then methods="frequency reap"; removals="50"; fi
E=$(python3 -c "import json;c=json.load(open('$MODEL/config.json'));print(c.get('num_experts') or c.get('num_local_experts'))")
K=$(python3 -c "import json;print(json.load(open('$MODEL/config.json'))['num_experts_per_tok'])")
TOP_K=${TOP_K:-$(python3 -c "import json;print(json.load(open('$MODEL/config.json'))['vocab_size'])")}

# Evaluation slices, the base model's stored logits per domain, and the calibration statistics.
for d in $domains; do
  [ -s "$W/$d.logits" ] && continue
  head -c "$EVAL_BYTES" "$DATA/$d.test.txt" > "$W/$d.test.txt"
  "$MK" eval -m "$MODEL" --ppl "$W/$d.test.txt" --ctx "$CTX" --stride "$STRIDE" --save-logits "$W/$d.logits" --save-top-k "$TOP_K" --json > "$W/$d.base.json" 2>/dev/null
done
for d in $domains; do  # a resumed WORK must hold what TOP_K asks for (header field top_k: u32 LE at byte 24)
  stored=$(python3 -c "import struct,sys;print(struct.unpack_from('<I',open(sys.argv[1],'rb').read(28),24)[0])" "$W/$d.logits")
  [ "$stored" = "$TOP_K" ] || { echo "bench_compress: $W/$d.logits stores top-$stored logits, TOP_K is $TOP_K (rm -rf $W, or set TOP_K=$stored)" >&2; exit 1; }
done
for d in $domains; do
  head -c "$CALIB_BYTES" "$DATA/$d.calib.txt" > "$W/$d.calib.txt"
done
[ -s "$W/stats.json" ] || "$MK" profile -m "$MODEL" $(for d in $domains; do printf -- '--data %s=%s ' "$d" "$W/$d.calib.txt"; done) --ctx "$CTX" -q -o "$W/stats.json"
for d in $domains; do cat "$W/$d.calib.txt"; done > "$W/mixed.calib.txt"

# eval_row LABEL MODEL_DIR DOMAINS [ROUTE...]: one JSON line per domain into $W/rows.jsonl
# have LABEL DOMAINS: true when every (LABEL, domain) row is already in rows.jsonl (a resumed run)
have() {
  local d
  for d in $2; do grep -qF "{\"label\": \"$1\", \"domain\": \"$d\"" "$W/rows.jsonl" || return 1; done
}

# timed LABEL CMD...: runs CMD, appends {"label", "seconds"} to $W/times.jsonl (rewrite/search time)
timed() {
  local label=$1; shift
  local t0 t1
  rm -rf "$W/p" "$W/g" "$W/c"   # a failed command must not leave an earlier model to be evaluated
  t0=$(date +%s.%N)
  "$@" 2>/dev/null || echo "bench_compress: failed: $*" >&2
  t1=$(date +%s.%N)
  printf '{"label": "%s", "seconds": %s}\n' "$label" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')" >> "$W/times.jsonl"
}

eval_row() {
  local label=$1 m=$2 doms=$3; shift 3
  for d in $doms; do
    have "$label" "$d" && continue
    local r
    r=$("$MK" eval -m "$m" --ppl "$W/$d.test.txt" --ctx "$CTX" --stride "$STRIDE" --kld-logits "$W/$d.logits" --json "$@" 2>/dev/null) || r='{"error": true}'
    python3 - "$label" "$d" "$r" >> "$W/rows.jsonl" <<'PY'
import json, sys
label, dom, r = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(json.dumps({"label": label, "domain": dom, "result": r}))
PY
  done
}

touch "$W/rows.jsonl" "$W/times.jsonl"
eval_row "base" "$MODEL" "$domains"
for pct in $removals; do
  keep=$(( E - E * pct / 100 )); [ "$keep" -lt "$K" ] && keep=$K
  for meth in $methods; do
    calib_opt=(--stats "$W/stats.json"); [ "$meth" = naee ] && calib_opt=(--calib "$W/mixed.calib.txt" --ctx "$CTX")
    [ "$meth" = random ] && calib_opt=()
    have "$meth -$pct% mixed" "$domains" || timed "$meth -$pct% mixed" "$MK" prune -m "$MODEL" --method "$meth" --keep "$keep" "${calib_opt[@]}" -o "$W/p" --force
    eval_row "$meth -$pct% mixed" "$W/p" "$domains"
    [ "$meth" = random ] && continue
    [ "$meth" = easy-ep-pooled ] && continue   # on one dataset it is easy-ep
    for d in $domains; do
      dom_opt=(--stats "$W/stats.json" --dataset "$d"); [ "$meth" = naee ] && dom_opt=(--calib "$W/$d.calib.txt" --ctx "$CTX")
      have "$meth -$pct% domain" "$d" && continue
      timed "$meth -$pct% domain $d" "$MK" prune -m "$MODEL" --method "$meth" --keep "$keep" "${dom_opt[@]}" -o "$W/p" --force
      eval_row "$meth -$pct% domain" "$W/p" "$d"
    done
  done
done
# Global budget (issue 7 item 3): the same number of experts in all, ranked across layers by each
# expert's share of its layer's score, every layer keeping at least k; written as a per-layer
# (moekit-only) model and evaluated as written. Its per-layer counts go to global-counts.jsonl.
gmethods=${GMETHODS-frequency gate-mass reap easy-ep tcess}; [ "${QUICK:-0}" = 1 ] && gmethods="reap"
for pct in $removals; do
  keep=$(( E - E * pct / 100 )); [ "$keep" -lt "$K" ] && keep=$K
  for meth in $gmethods; do
    for cal in mixed domain; do
      [ "$cal" = domain ] && [ "$pct" != 50 ] && continue   # domain calibration at 50% only (the issue's goal)
      label="$meth -$pct% global $cal"
      for d in $([ "$cal" = domain ] && echo $domains || echo all); do
        dd=$([ "$d" = all ] && echo "$domains" || echo "$d")
        have "$label" "$dd" && continue
        ds=(); [ "$d" != all ] && ds=(--dataset "$d")
        timed "$meth -$pct% global $cal" "$MK" prune -m "$MODEL" --method "$meth" --keep "$keep" --budget global --stats "$W/stats.json" "${ds[@]}" -o "$W/p" --force
        python3 -c "import json,sys;c=json.load(open('$W/p/config.json'));print(json.dumps({'label': sys.argv[1], 'domain': sys.argv[2], 'counts': c.get('moekit_experts_per_layer')}))" \
          "$label" "$d" >> "$W/global-counts.jsonl" 2>/dev/null || true
        eval_row "$label" "$W/p" "$dd"
      done
    done
  done
done
# Super experts (Su et al. 2025's rule, computed by profile): remove them, and as many random other
# experts in each of SEEDS draws, both as the paper does (zero:) and by masking (mask:). super-info.json records the
# rule's thresholds and the spread of max |down_proj output| the rule saw.
python3 - "$W/stats.json" "$W" "$E" "$SEEDS" <<'PY'
import json, random, statistics, sys
s = json.load(open(sys.argv[1])); W = sys.argv[2]; E = int(sys.argv[3]); seeds = int(sys.argv[4])
L = s["model"]["n_layer"]; moe = s["model"]["moe_layers"]; so = s.get("super_experts", {})
sup = {(x["layer"], x["expert"]) for x in so.get("experts", [])}
keep = [None] * L
for l in moe:
    keep[l] = [e for e in range(E) if (l, e) not in sup]
json.dump({"kept_experts": keep, "removed": sorted(sup)}, open(f"{W}/super.json", "w"))
cand = [(l, e) for l in moe for e in range(E) if (l, e) not in sup]
for seed in range(seeds):
    rnd = set(random.Random(seed).sample(cand, len(sup)))
    json.dump({"kept_experts": [None if keep[l] is None else [e for e in range(E) if (l, e) not in rnd] for l in range(L)]},
              open(f"{W}/random_same_{seed}.json", "w"))
incl = so.get("include_layers", 0)
vals = [v for i, l in enumerate(moe) if l < incl for v in s["overall"]["down_absmax"][i] if v is not None and v > 0]
info = {"n_super": len(sup), "super": sorted(sup), "include_layers": incl, "n_values": len(vals),
        "percentile_99_5": so.get("percentile_99_5"), "floor_max_over_10": so.get("floor_max_over_10"),
        "max": max(vals) if vals else None, "median": statistics.median(vals) if vals else None}
json.dump(info, open(f"{W}/super-info.json", "w"))
print(f"super experts: {len(sup)} {info}")
PY
# zero: the paper's removal (router unchanged, down_proj zeroed); remove: masked out of the routing
for how in zero:zero mask:remove; do
  eval_row "${how#*:} super experts" "$MODEL" "$domains" --route "${how%%:*}:$W/super.json"
  for seed in $(seq 0 $((SEEDS - 1))); do
    eval_row "${how#*:} as many random (seed $seed)" "$MODEL" "$domains" --route "${how%%:*}:$W/random_same_$seed.json"
  done
done
# Merging and neuron pruning.
for pct in 25 50; do
  [ "${QUICK:-0}" = 1 ] && [ "$pct" = 25 ] && continue
  keep=$(( E - E * pct / 100 ))
  # msmoe / submoe: the published methods (router unchanged, every expert kept and bound to its group's
  # merged weights; msmoe spreads keep groups per layer on average by MC-SMoE's global usage threshold);
  # the -slice variants: moekit's earlier ones, which write keep experts with the dominants' router rows.
  for mm in msmoe submoe msmoe-slice submoe-slice; do
    have "$mm -$pct% mixed" "$domains" || timed "$mm -$pct% mixed" "$MK" merge -m "$MODEL" --method "$mm" --keep "$keep" --stats "$W/stats.json" --calib "$W/mixed.calib.txt" --ctx "$CTX" -o "$W/g" --force
    eval_row "$mm -$pct% mixed" "$W/g" "$domains"
  done
  have "camera neurons -$pct%" "$domains" || timed "camera neurons -$pct%" "$MK" prune -m "$MODEL" --method camera --keep-frac "0.$(( 100 - pct ))" --calib "$W/mixed.calib.txt" --ctx "$CTX" -o "$W/c" --force
  eval_row "camera neurons -$pct%" "$W/c" "$domains"
done
# Routing policies (no weights change): compute saved against quality.
for kk in $(seq 1 "$K"); do eval_row "route topk:$kk" "$MODEL" "$domains" --route "topk:$kk"; done
# top-p without a cap (the paper's dynamic routing: more experts where the router is unsure) and capped
# at the model's k (fewer experts where it is sure); skip at several beta and NAEE's per-layer auto beta.
# top-p weights are the raw probabilities, as published (p = 0.4 is the paper's default); :renorm rows
# are moekit's variant that rescales the kept weights to sum to 1, as this model's top-k does.
for pp in 0.1 0.2 0.3 0.4 0.5 0.7 0.9; do eval_row "route topp:$pp" "$MODEL" "$domains" --route "topp:$pp"; done
for pp in 0.2 0.4 0.7; do eval_row "route topp:$pp:renorm" "$MODEL" "$domains" --route "topp:$pp:renorm"; done
for pp in 0.1 0.2 0.3 0.4; do eval_row "route topp:$pp:$K" "$MODEL" "$domains" --route "topp:$pp:$K"; done
for bb in 0.1 0.2 0.3 0.5 0.7 0.9; do eval_row "route skip:$bb" "$MODEL" "$domains" --route "skip:$bb"; done
eval_row "route skip:auto" "$MODEL" "$domains" --route "skip:auto:$W/stats.json"

nsuper=$(python3 -c "import json;print(len(json.load(open('$W/super.json'))['removed']))")
python3 bench/compress_report.py --rows "$W/rows.jsonl" --times "$W/times.jsonl" --out "$OUT" --model "$MODEL" \
  --n-super "$nsuper" --ctx "$CTX" --stride "$STRIDE" --eval-bytes "$EVAL_BYTES" --calib-bytes "$CALIB_BYTES" --super-info "$W/super-info.json" --quick "${QUICK:-0}" --top-k "$TOP_K" \
  --global-counts "$W/global-counts.jsonl" --auto-beta "$(python3 -c "import json;s=json.load(open('$W/stats.json'));print(' '.join('%.3f' % b for b in s['naee_beta']))" 2>/dev/null || true)"
cp "$W/rows.jsonl" "${OUT%.md}.jsonl"; cp "$W/times.jsonl" "${OUT%.md}-times.jsonl"; cp "$W/global-counts.jsonl" "${OUT%.md}-global-counts.jsonl"
