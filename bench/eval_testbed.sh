#!/usr/bin/env bash
# The evaluation table of the testbed model (issue 5): perplexity on each domain's shipped test
# slice, and ARC-Easy / HellaSwag / PIQA accuracy in lm-eval's zero-shot formats (tools/mc_convert.py).
# At the testbed's size, accuracy near chance (25 % ARC-Easy and HellaSwag, 50 % PIQA) is expected:
# the table shows that the harness runs end to end on the model, not that the model can answer.
# Usage: bash bench/eval_testbed.sh | tee bench/results-eval-testbed.md
# Env: MODEL (models/testbed), DATA (data/testbed: <domain>.test.txt), CTX (512), STRIDE (CTX/2),
#      MC_LIMIT (first N items per task; 0 = all; default 500), THREADS (2), EVAL_DIR (../shared/data/eval)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/testbed}; DATA=${DATA:-data/testbed}; CTX=${CTX:-512}; STRIDE=${STRIDE:-$((CTX / 2))}
MC_LIMIT=${MC_LIMIT:-500}; THREADS=${THREADS:-2}; EVAL_DIR=${EVAL_DIR:-../shared/data/eval}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
MK=build/moekit
make -s -j2 "$MK" >&2
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
j() { python3 -c "import json,sys; d=json.load(open('$1')); print($2)"; }

echo "# moekit eval on the testbed model"
echo
echo "Model \`$MODEL\`; $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $THREADS threads."
echo
echo "## Perplexity per domain (test slices; --ctx $CTX --stride $STRIDE, HF sliding windows)"
echo
echo "| domain | tokens | scored | perplexity | tok/s |"
echo "|---|---:|---:|---:|---:|"
for f in "$DATA"/*.test.txt; do
  d=$(basename "$f" .test.txt)
  "$MK" eval -m "$MODEL" --ppl "$f" --ctx "$CTX" --stride "$STRIDE" -t "$THREADS" --json > "$TMP/$d.json" 2>/dev/null
  echo "| $d | $(j "$TMP/$d.json" "d['n_tokens']") | $(j "$TMP/$d.json" "d['n_scored']") | $(j "$TMP/$d.json" "'%.3f' % d['ppl']") | $(j "$TMP/$d.json" "'%.1f' % d['tok_per_s']") |"
done
echo
echo "## Multiple choice (zero-shot, lm-eval formats; first $MC_LIMIT items per task, 0 = all)"
echo
echo "| task | items | acc | acc_norm | chance |"
echo "|---|---:|---:|---:|---:|"
for t in arc_easy hellaswag piqa; do
  python3 tools/mc_convert.py "$t" --data "$EVAL_DIR" --limit "$MC_LIMIT" > "$TMP/$t.jsonl" 2>/dev/null
  "$MK" eval -m "$MODEL" --mc "$TMP/$t.jsonl" --ctx "$CTX" -t "$THREADS" --json > "$TMP/$t.json" 2>/dev/null
  chance=$(python3 -c "
import json; L=[json.loads(l) for l in open('$TMP/$t.jsonl')]
print('%.3f' % (sum(1 / len(x.get('choices') or x.get('contexts')) for x in L) / len(L)))")
  echo "| $t | $(j "$TMP/$t.json" "d['n']") | $(j "$TMP/$t.json" "'%.4f ± %.4f' % (d['acc'], d['acc_stderr'])") | $(j "$TMP/$t.json" "'%.4f ± %.4f' % (d['acc_norm'], d['acc_norm_stderr'])") | $chance |"
done
