#!/usr/bin/env bash
# moekit and llama.cpp on real text for the DeepSeek-V3 and GLM-4.5 architectures (issue 23). The
# fixtures of bench/agree_llama_archs.sh have no tokenizer; here each architecture gets a small
# random-weight model (moekit synth) that carries DeepSeek-V3's real tokenizer (129,280 tokens, from
# ../shared/data/real/tokenizers/deepseek_v3), so each side tokenizes the testbed's real test text from
# its own copy of the tokenizer (moekit from tokenizer.json, llama.cpp from the GGUF moekit wrote), and
# bench/agree_llama.sh compares the two distributions position by position in F32, Q8_0 and Q4_K.
#   deepseek_v3: V3's real config (MLA with q_lora, YaRN factor 40 with mscale, sigmoid routing with
#                the selection bias, 8 groups of which 4 searched, routed scaling 2.5, shared expert,
#                a dense first layer), cut to 4 layers of width 256, 64 experts, top-8
#   glm4_moe:    GLM-4.5's layout (partial NeoX RoPE, q/k/v biases, q/k norm, sigmoid routing, shared
#                expert, a dense first layer) at the same width. GLM-4.5's own tokenizer (151k tokens,
#                pre-tokenizer glm4) is not public outside the model hub, so it borrows DeepSeek-V3's.
# Weights: uniform with std STD (default 0.08), large enough that the distributions are far from
# uniform (at 0.02 every model is within a hair of uniform and every KLD is trivially small).
# Controls, F32 only: each architecture again with 8 experts of which all 8 are active (no routing
# choice, one group). A random router's choice of 8 among 64 has near-ties that the two engines'
# last-bit differences (different summation orders, ggml's vectorised exp in softmax and SiLU) break
# differently, and a changed expert moves that token's output; the control shows what the rest of the
# forward pass contributes.
# Usage: LLAMA_CPP_DIR=/path/to/llama.cpp bash bench/agree_llama_text_archs.sh | tee bench/results-agree-llama-text-archs.md
# Env: SHARED (../shared), STD (0.08), BYTES (4000), CTX (256), TYPES ("f32 q8_0 q4_k"), WORK (/tmp/moekit-agree-text-archs)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to a llama.cpp build (build/bin/libllama.so)}"
SHARED=${SHARED:-../shared}; STD=${STD:-0.08}; WORK=${WORK:-/tmp/moekit-agree-text-archs}
TOK=$SHARED/data/real/tokenizers/deepseek_v3
[ -f "$TOK/tokenizer.json" ] || { echo "agree_llama_text_archs: no $TOK/tokenizer.json" >&2; exit 1; }
mkdir -p "$WORK"
export KV_F32=${KV_F32:-1}  # llama.cpp's KV cache in F32, as moekit keeps it (its default F16 adds its own rounding)
echo "# moekit and llama.cpp on real text: DeepSeek-V3 and GLM-4.5 shapes with a real tokenizer"
echo
echo "Run: \`LLAMA_CPP_DIR=$LLAMA_CPP_DIR bash bench/agree_llama_text_archs.sh\` (STD=$STD, KV_F32=$KV_F32: llama.cpp's KV cache in F32)."
echo
make -s -j2 build/moekit >&2
for name in deepseek_v3 deepseek_v3_all8 glm4_moe glm4_moe_all8; do
  M=$WORK/$name
  if [ ! -f "$M/model.safetensors" ]; then
    python3 - "$name" "$SHARED/data/real/DeepSeek-V3.config.json" "$WORK/$name.config.json" <<'PY'
import json, sys
name, v3, out = sys.argv[1:4]
small = {"hidden_size": 256, "intermediate_size": 512, "moe_intermediate_size": 128, "num_hidden_layers": 4,
         "first_k_dense_replace": 1, "n_routed_experts": 64, "num_experts_per_tok": 8, "n_shared_experts": 1,
         "routed_scaling_factor": 2.5, "norm_topk_prob": True, "vocab_size": 129280, "bos_token_id": 0, "eos_token_id": 1,
         "tie_word_embeddings": False, "rms_norm_eps": 1e-6}
base, all8 = name.replace("_all8", ""), name.endswith("_all8")
if base == "deepseek_v3":
    c = json.load(open(v3))
    c.update(small, num_attention_heads=8, num_key_value_heads=8, q_lora_rank=256, kv_lora_rank=128,
             qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32, n_group=8, topk_group=4, num_nextn_predict_layers=0)
else:
    c = {"architectures": ["Glm4MoeForCausalLM"], "model_type": "glm4_moe", "attention_bias": True, "hidden_act": "silu",
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "max_position_embeddings": 4096,
         "rope_theta": 1000000.0, "partial_rotary_factor": 0.5, "use_qk_norm": True, "n_group": 1, "topk_group": 1,
         "num_nextn_predict_layers": 0}
    c.update(small)
if all8:
    c.update(n_routed_experts=8, n_group=1, topk_group=1)
json.dump(c, open(out, "w"), indent=1)
PY
    build/moekit synth --config "$WORK/$name.config.json" --dtype f32 --std "$STD" --seed 1 -o "$M" >&2
    cp "$TOK/tokenizer.json" "$TOK/tokenizer_config.json" "$M/"
  fi
  types=${TYPES:-f32 q8_0 q4_k}
  case $name in *_all8) types=f32; echo "## $name: control, every one of 8 experts active (random weights, std $STD; DeepSeek-V3's tokenizer)" ;;
    *) echo "## $name (random weights, std $STD; DeepSeek-V3's tokenizer)" ;; esac
  echo
  MODEL=$M WORK=$WORK/$name-run TYPES="$types" BYTES="${BYTES:-4000}" CTX="${CTX:-256}" bash bench/agree_llama.sh | sed 's/^# /### /'
  echo
done
