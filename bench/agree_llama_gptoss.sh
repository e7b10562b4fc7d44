#!/usr/bin/env bash
# moekit and llama.cpp on real text for GPT-OSS (issue 24): a random-weight model with gpt-oss-20b's
# layout (attention sinks, layers alternating sliding window 128 / full, biases on q/k/v/o, router and
# experts, the clamped SwiGLU with alpha 1.702 and limit 7.0, YaRN factor 32, softmax over the top-4
# router logits) cut to 4 layers of width 512, 32 experts of 512, with the real o200k-harmony tokenizer
# (201,088 tokens, ../shared/data/real/tokenizers/gptoss). `moekit synth` writes it, `moekit quantize`
# writes the GGUF files (F32, Q8_0, and MXFP4_MOE: experts MXFP4, the rest Q8_0, as llama.cpp's own
# gpt-oss files), llama.cpp loads them (its gpt-oss architecture) and bench/agree_llama.sh compares the
# two distributions position by position on the testbed's test text, each side tokenizing it from its
# own copy of the tokenizer.
# Usage: LLAMA_CPP_DIR=/path/to/llama.cpp bash bench/agree_llama_gptoss.sh | tee bench/results-agree-llama-gptoss.md
# Env: SHARED (../shared), STD (0.05), BYTES (4000), CTX (256), TYPES ("f32 q8_0 mxfp4"), WORK (/tmp/moekit-agree-gptoss)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to a llama.cpp build (build/bin/libllama.so)}"
SHARED=${SHARED:-../shared}; STD=${STD:-0.05}; WORK=${WORK:-/tmp/moekit-agree-gptoss}
TOK=$SHARED/data/real/tokenizers/gptoss; CFG=$SHARED/data/real/gpt-oss-20b.config.json
[ -f "$TOK/tokenizer.json" ] && [ -f "$CFG" ] || { echo "agree_llama_gptoss: needs $TOK/tokenizer.json and $CFG" >&2; exit 1; }
mkdir -p "$WORK"
export KV_F32=${KV_F32:-1}  # llama.cpp's KV cache in F32, as moekit keeps it
make -s -j2 build/moekit >&2
M=$WORK/gpt_oss
if [ ! -f "$M/model.safetensors" ]; then
  python3 - "$CFG" "$WORK/gpt_oss.config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.pop("quantization_config")  # synth writes float weights; quantize makes the MXFP4 file
L = 4
c.update(hidden_size=512, intermediate_size=512, num_hidden_layers=L, num_attention_heads=8, num_key_value_heads=2,
         head_dim=64, num_local_experts=32, layer_types=c["layer_types"][:L], max_position_embeddings=4096)
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
  build/moekit synth --config "$WORK/gpt_oss.config.json" --dtype f32 --std "$STD" --seed 1 -o "$M" >&2
  cp "$TOK/tokenizer.json" "$TOK/tokenizer_config.json" "$M/"
fi
echo "# moekit and llama.cpp on real text: GPT-OSS's layout with its real tokenizer"
echo
echo "Run: \`LLAMA_CPP_DIR=$LLAMA_CPP_DIR bash bench/agree_llama_gptoss.sh\` (STD=$STD, KV_F32=$KV_F32: llama.cpp's KV cache in F32)."
echo "Model: gpt-oss-20b's config.json cut to 4 layers (sliding, full, sliding, full), width 512, 8 query / 2 KV heads of 64,"
echo "32 experts of 512, top-4; random weights with std $STD; o200k-harmony tokenizer."
echo
MODEL=$M WORK=$WORK/run TYPES="${TYPES:-f32 q8_0 mxfp4}" BYTES="${BYTES:-4000}" CTX="${CTX:-256}" bash bench/agree_llama.sh | sed 's/^# /## /'
