#!/usr/bin/env bash
# The whole testbed-model pipeline, one command:  bash tools/testbed/pipeline.sh
# Env knobs (defaults = the shipped model):
#   SCRATCH=/work/testbed-data   corpus, token cache, checkpoints (outside the repo)
#   STOP_AT=HH:MM (UTC)          wall-clock end of training (cosine schedule follows it), or
#   BUDGET_MIN=80                training time budget in minutes (used when STOP_AT is unset)
#   TRAIN_ARGS="--layers 6 ..."  extra train.py arguments (bigger model, more experts, ...)
#   THREADS=2 NICE=19
# Run from the repository root. Resumable: rerunning continues training from $SCRATCH/run/ckpt.pt.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
SCRATCH=${SCRATCH:-/work/testbed-data}
THREADS=${THREADS:-2}
NICE=${NICE:-19}
BUDGET_MIN=${BUDGET_MIN:-80}
TIME_ARG=(--time-budget-min "$BUDGET_MIN")
[ -n "${STOP_AT:-}" ] && TIME_ARG=(--stop-at "$STOP_AT")

python3 tools/testbed/build_corpus.py --scratch "$SCRATCH"                       # 1. corpus + manifest
python3 tools/testbed/train_tokenizer.py --corpus "$SCRATCH/corpus" --out models/testbed   # 2. tokenizer
python3 tools/testbed/make_slices.py --corpus "$SCRATCH/corpus" --out data/testbed        #    eval slices
mkdir -p "$SCRATCH/run"
nice -n "$NICE" python3 tools/testbed/train.py --corpus "$SCRATCH/corpus" --scratch "$SCRATCH/run" \
    --threads "$THREADS" "${TIME_ARG[@]}" ${TRAIN_ARGS:-} 2>&1 | tee -a "$SCRATCH/run/train.log"  # 3. train
python3 tools/testbed/export.py --ckpt "$SCRATCH/run/ckpt.pt" --tokens "$SCRATCH/tokens" --out models/testbed  # 4. export + verify
python3 tools/testbed/evaluate.py --model models/testbed --tokens "$SCRATCH/tokens"       # 5. evaluate + model card
