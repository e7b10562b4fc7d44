#!/usr/bin/env bash
# The whole testbed-model pipeline, one command:  bash tools/testbed/pipeline.sh
# Env knobs (defaults = the shipped model):
#   SCRATCH=/work/testbed-data   corpus, token cache (outside the repo)
#   RUN=$SCRATCH/run2            checkpoints of this training run; use a new directory for a new recipe
#   TOTAL_TOKENS=36e6            token budget of the run (the cosine schedule spans it)
#   STOP_AT=HH:MM (UTC)          pause training then (checkpoint, exit 0 without exporting); or
#   BUDGET_MIN=N                 pause after N minutes. Rerunning the same command resumes the run.
#   TRAIN_ARGS="--layers 6 ..."  extra train.py arguments (bigger model, more experts, ...)
#   Continuing the shipped model for more tokens (a new phase: fresh optimizer, new warmup and cosine):
#     RUN=$SCRATCH/run3 TOTAL_TOKENS=12e6 TRAIN_ARGS="--init-from models/testbed" bash tools/testbed/pipeline.sh
#   THREADS=2 NICE=19
#   FORCE=1                      rebuild corpus, tokenizer and slices even if present (a new tokenizer
#                                invalidates the token cache, which train.py then rebuilds, and any checkpoint)
# Run from the repository root. Steps whose outputs exist are skipped; rerunning continues training from
# $RUN/ckpt.pt (with STOP_AT/BUDGET_MIN counting the time already trained).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
SCRATCH=${SCRATCH:-/work/testbed-data}
RUN=${RUN:-$SCRATCH/run2}
THREADS=${THREADS:-2}
NICE=${NICE:-19}
TOTAL_TOKENS=${TOTAL_TOKENS:-36e6}
FORCE=${FORCE:-0}
TIME_ARG=()
[ -n "${BUDGET_MIN:-}" ] && TIME_ARG=(--time-budget-min "$BUDGET_MIN")
[ -n "${STOP_AT:-}" ] && TIME_ARG=(--stop-at "$STOP_AT")

if [ "$FORCE" = 1 ] || [ ! -f "$SCRATCH/corpus/techdoc.test.jsonl" ]; then
  python3 tools/testbed/build_corpus.py --scratch "$SCRATCH"                              # 1. corpus + manifest
fi
if [ "$FORCE" = 1 ] || [ ! -f models/testbed/tokenizer.json ]; then
  python3 tools/testbed/train_tokenizer.py --corpus "$SCRATCH/corpus" --out models/testbed   # 2. tokenizer
fi
if [ "$FORCE" = 1 ] || [ ! -f data/testbed/techdoc.test.txt ]; then
  python3 tools/testbed/make_slices.py --corpus "$SCRATCH/corpus" --out data/testbed          #    eval slices
fi
mkdir -p "$RUN"
nice -n "$NICE" python3 tools/testbed/train.py --corpus "$SCRATCH/corpus" --scratch "$RUN" --cache "$SCRATCH/tokens" \
    --threads "$THREADS" --total-tokens "$TOTAL_TOKENS" "${TIME_ARG[@]}" ${TRAIN_ARGS:-} 2>&1 | tee -a "$RUN/train.log"   # 3. train
if [ ! -f "$RUN/final/config.json" ]; then
  echo "pipeline: training paused before its token budget; rerun this command to resume" >&2; exit 0
fi
python3 tools/testbed/export.py --ckpt "$RUN/ckpt.pt" --tokens "$SCRATCH/tokens" --out models/testbed   # 4. export + verify
python3 tools/testbed/evaluate.py --model models/testbed --tokens "$SCRATCH/tokens"          # 5. evaluate + card
