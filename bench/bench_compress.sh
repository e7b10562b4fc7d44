#!/usr/bin/env bash
# Quality of expert pruning and merging on the testbed model (issues 7 and 8), in one run:
#   every pruning criterion x {25, 50, 75}% of experts removed x {mixed, same-domain calibration}
#   -> per-domain test perplexity, mean KLD and top-1 agreement against the base model;
#   plus rows that remove the super experts found by profile and as many random experts;
#   merging (M-SMoE, Sub-MoE) x {25, 50}%; CAMERA-P neuron pruning at {25, 50}%;
#   routing policies (top-k, top-p, skip) against the experts actually used per token.
# Writes bench/results-compress.md (and the raw JSON lines beside it).
#
#   bash bench/bench_compress.sh                 # the whole table (long: hours on 2 cores)
#   QUICK=1 bash bench/bench_compress.sh         # two methods, one budget, for a smoke run
# Environment: MODEL (default models/testbed), DATA (default data/testbed), EVAL_BYTES (bytes of
# each test slice evaluated, default 60000), CTX (default 256), OUT (default bench/results-compress.md).
set -euo pipefail
cd "$(dirname "$0")/.."
MK=${MK:-./build/moekit}
MODEL=${MODEL:-models/testbed}
DATA=${DATA:-data/testbed}
CTX=${CTX:-256}
EVAL_BYTES=${EVAL_BYTES:-60000}
OUT=${OUT:-bench/results-compress.md}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
[ -x "$MK" ] || make -j"$(nproc)" build/moekit >/dev/null
[ -f "$MODEL/config.json" ] || { echo "bench_compress: no model in $MODEL" >&2; exit 1; }
domains=$(ls "$DATA" | sed -n 's/\.test\.txt$//p' | sort)
methods="frequency gate-mass reap easy-ep tcess naee random"
removals="25 50 75"
if [ "${QUICK:-0}" = 1 ]; then methods="frequency reap"; removals="50"; fi
E=$(python3 -c "import json;c=json.load(open('$MODEL/config.json'));print(c.get('num_experts') or c.get('num_local_experts'))")
K=$(python3 -c "import json;print(json.load(open('$MODEL/config.json'))['num_experts_per_tok'])")

# Evaluation slices, the base model's stored logits per domain, and the calibration statistics.
for d in $domains; do
  head -c "$EVAL_BYTES" "$DATA/$d.test.txt" > "$W/$d.test.txt"
  "$MK" eval -m "$MODEL" --ppl "$W/$d.test.txt" --ctx "$CTX" --save-logits "$W/$d.logits" --json > "$W/$d.base.json" 2>/dev/null
done
"$MK" profile -m "$MODEL" $(for d in $domains; do printf -- '--data %s=%s ' "$d" "$DATA/$d.calib.txt"; done) --ctx "$CTX" -q -o "$W/stats.json"
cat "$DATA"/*.calib.txt > "$W/mixed.calib.txt"

# eval_row LABEL MODEL_DIR DOMAINS [ROUTE...]: one JSON line per domain into $W/rows.jsonl
eval_row() {
  local label=$1 m=$2 doms=$3; shift 3
  for d in $doms; do
    local r
    r=$("$MK" eval -m "$m" --ppl "$W/$d.test.txt" --ctx "$CTX" --kld-logits "$W/$d.logits" --json "$@" 2>/dev/null) || r='{"error": true}'
    python3 - "$label" "$d" "$r" >> "$W/rows.jsonl" <<'PY'
import json, sys
label, dom, r = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(json.dumps({"label": label, "domain": dom, "result": r}))
PY
  done
}

: > "$W/rows.jsonl"
eval_row "base" "$MODEL" "$domains"
for pct in $removals; do
  keep=$(( E - E * pct / 100 )); [ "$keep" -lt "$K" ] && keep=$K
  for meth in $methods; do
    calib_opt=(--stats "$W/stats.json"); [ "$meth" = naee ] && calib_opt=(--calib "$W/mixed.calib.txt" --ctx "$CTX")
    [ "$meth" = random ] && calib_opt=()
    "$MK" prune -m "$MODEL" --method "$meth" --keep "$keep" "${calib_opt[@]}" -o "$W/p" --force 2>/dev/null
    eval_row "$meth -$pct% mixed" "$W/p" "$domains"
    [ "$meth" = random ] && continue
    for d in $domains; do
      dom_opt=(--stats "$W/stats.json" --dataset "$d"); [ "$meth" = naee ] && dom_opt=(--calib "$DATA/$d.calib.txt" --ctx "$CTX")
      "$MK" prune -m "$MODEL" --method "$meth" --keep "$keep" "${dom_opt[@]}" -o "$W/p" --force 2>/dev/null
      eval_row "$meth -$pct% domain" "$W/p" "$d"
    done
  done
done
# Super experts: remove them (a mask that keeps every other expert), and as many random experts.
python3 - "$W/stats.json" "$W/super.json" "$W/random_same.json" "$E" <<'PY'
import json, random, sys
s = json.load(open(sys.argv[1])); E = int(sys.argv[4]); L = s["model"]["n_layer"]
sup = {(x["layer"], x["expert"]) for x in s.get("super_experts", {}).get("experts", [])}
keep = [None] * L
for l in s["model"]["moe_layers"]:
    keep[l] = [e for e in range(E) if (l, e) not in sup]
json.dump({"kept_experts": keep, "removed": sorted(sup)}, open(sys.argv[2], "w"))
rng = random.Random(0); moe = s["model"]["moe_layers"]
cand = [(l, e) for l in moe for e in range(E) if (l, e) not in sup]
rnd = set(rng.sample(cand, len(sup)))
json.dump({"kept_experts": [None if keep[l] is None else [e for e in range(E) if (l, e) not in rnd] for l in range(L)]},
          open(sys.argv[3], "w"))
print(f"super experts: {len(sup)}")
PY
eval_row "remove super experts" "$MODEL" "$domains" --route "mask:$W/super.json"
eval_row "remove as many random" "$MODEL" "$domains" --route "mask:$W/random_same.json"
# Merging and neuron pruning.
for pct in 25 50; do
  [ "${QUICK:-0}" = 1 ] && [ "$pct" = 25 ] && continue
  keep=$(( E - E * pct / 100 ))
  for mm in msmoe submoe; do
    "$MK" merge -m "$MODEL" --method "$mm" --keep "$keep" --stats "$W/stats.json" --calib "$W/mixed.calib.txt" --ctx "$CTX" -o "$W/g" --force 2>/dev/null
    eval_row "$mm -$pct% mixed" "$W/g" "$domains"
  done
  "$MK" prune -m "$MODEL" --method camera --keep-frac "0.$(( 100 - pct ))" --calib "$W/mixed.calib.txt" --ctx "$CTX" -o "$W/c" --force 2>/dev/null
  eval_row "camera neurons -$pct%" "$W/c" "$domains"
done
# Routing policies (no weights change): compute saved against quality.
for kk in $(seq 1 "$K"); do eval_row "route topk:$kk" "$MODEL" "$domains" --route "topk:$kk"; done
for pp in 0.3 0.5 0.7 0.9; do eval_row "route topp:$pp" "$MODEL" "$domains" --route "topp:$pp"; done
for bb in 0.1 0.3 0.5; do eval_row "route skip:$bb" "$MODEL" "$domains" --route "skip:$bb"; done

python3 - "$W/rows.jsonl" "$OUT" "$MODEL" <<'PY'
import collections, json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = collections.OrderedDict()
for r in rows:
    by.setdefault(r["label"], {})[r["domain"]] = r["result"]
doms = sorted({r["domain"] for r in rows})
def cell(res, key):
    v = res.get(key) if isinstance(res, dict) else None
    if isinstance(v, dict): v = v.get("mean")
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
out = [f"# Compression quality on {sys.argv[3]}", "", "Per-domain test perplexity; mean KLD and top-1 agreement (%) against the base model, averaged over the domains evaluated. Produced by `bash bench/bench_compress.sh`.", "",
       "| row | " + " | ".join(doms) + " | mean KLD | top-1 % | experts/token |", "|---|" + "---|" * (len(doms) + 3)]
for label, res in by.items():
    ppl = [cell(res[d], "ppl") if d in res else "" for d in doms]
    kl = [res[d]["kld"] for d in res if isinstance(res[d].get("kld"), dict)]
    klds = [k["kld_mean"] for k in kl if "kld_mean" in k]
    top1 = [100 * k["top1_agree"] for k in kl if "top1_agree" in k]
    ept = [res[d]["experts_per_token_mean"] for d in res if res[d].get("experts_per_token_mean") is not None]
    f = lambda xs, s="{:.4f}": s.format(sum(xs) / len(xs)) if xs else "-"
    out.append(f"| {label} | " + " | ".join(ppl) + f" | {f(klds)} | {f(top1, '{:.1f}')} | {f(ept, '{:.2f}')} |")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
cp "$W/rows.jsonl" "${OUT%.md}.jsonl"
