#!/usr/bin/env bash
# The main job on a fresh machine: install, build, describe the model and generate from it.
# Until the testbed model lands this runs on a tiny random fixture checkpoint (its text is noise;
# the point is the engine path from files to streamed tokens).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
make -j"$(nproc 2>/dev/null || echo 2)" build/moekit >/dev/null
model=${MOEKIT_MODEL:-}
if [ -z "$model" ]; then
  if [ -f models/testbed/config.json ]; then model=models/testbed; else model=tests/fixtures/qwen3_moe; fi
fi
./build/moekit info -m "$model"
echo
echo "greedy continuation of token ids 1,2,3,4,5:"
./build/moekit run -m "$model" --prompt-ids 1,2,3,4,5 -n 32
