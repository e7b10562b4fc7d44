#!/usr/bin/env bash
# Super experts (Su et al. 2025) on a synthetic model with planted massive activations: a random
# Qwen3-MoE (8 layers x 128 experts, k 8) whose down_proj weights are multiplied by 1e5 in three
# experts. Two sit in layers < round(0.75 x 8) = 6 and must be found, and nothing else; the third,
# in layer 7, is the largest of all but outside the paper's layer range, so it must not be.
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib.sh
python3 - "$TMPD/config.json" <<'PY'
import json, sys
json.dump({"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 64, "intermediate_size": 64,
           "moe_intermediate_size": 16, "num_hidden_layers": 8, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 16, "num_experts": 128, "num_experts_per_tok": 8, "norm_topk_prob": True, "vocab_size": 512,
           "mlp_only_layers": [], "decoder_sparse_step": 1, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
           "max_position_embeddings": 512, "tie_word_embeddings": False, "hidden_act": "silu"}, open(sys.argv[1], "w"))
PY
python3 -c "import random; r=random.Random(1); print(' '.join(str(r.randrange(512)) for _ in range(3000)))" > "$TMPD/d.ids"
expect_ok "synth a 128-expert model" $MK synth --config "$TMPD/config.json" --dtype f32 --seed 3 -o "$TMPD/m"
python3 tests/cli/plant_down_proj.py "$TMPD/m/model.safetensors" 1e5 1:5 4:40 7:3
if expect_ok "profile the planted model" $MK profile -m "$TMPD/m" --data "$TMPD/d.ids" --ctx 256 -q -o "$TMPD/s.json"; then
  got=$(python3 -c "
import json; s = json.load(open('$TMPD/s.json')); se = s['super_experts']; g = s['overall']['down_absmax']
print([(x['layer'], x['expert']) for x in se['experts']], se['include_layers'], g[7][3] > max(x['value'] for x in se['experts']))")
  [ "$got" = "[(4, 40), (1, 5)] 6 True" ] && ok "exactly the planted experts of layers < 6, largest first; layer 7's larger one left out" \
    || bad "planted super experts" "$got"
fi
summary
