#!/usr/bin/env bash
# The main job on a fresh machine: install, build, describe the default model (models/testbed, a
# small Qwen3-MoE trained on five domains of real text; see its README) and generate from it, one
# prompt per domain. MOEKIT_MODEL=DIR runs another model (token-id prompts if it has no tokenizer).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
make -j"$(nproc 2>/dev/null || echo 2)" build/moekit >/dev/null
model=${MOEKIT_MODEL:-models/testbed}
./build/moekit info -m "$model"
if [ ! -f "$model/tokenizer.json" ]; then
  echo; echo "greedy continuation of token ids 1,2,3,4,5:"
  ./build/moekit run -m "$model" --prompt-ids 1,2,3,4,5 -n 32
  exit 0
fi
prompts=(
  "english|The old man walked slowly down to the harbour, where"
  "german|Die Geschichte der Stadt beginnt im Jahr"
  "c|static int parse_header(const char *buf, size_t len)
{"
  "python|def read_config(path):
    \"\"\""
  "techdoc|To install the package, run the following command"
)
for p in "${prompts[@]}"; do
  domain=${p%%|*}; text=${p#*|}
  echo
  echo "== $domain: $text"
  ./build/moekit run -m "$model" -p "$text" -n 48 --temp 0.7 --top-p 0.9 --seed 1 --quiet-stats
done
