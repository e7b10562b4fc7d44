#!/usr/bin/env bash
# One layer of DeepSeek-V2-Lite and of DeepSeek-V3, and two of gpt-oss-20b, at their real shapes,
# moekit against transformers.
# The configs are the real ones (DeepSeek-V3's HF config.json; V2-Lite's values from
# research/formats.md §5, as DeepSeek's own config_16B.json is not in HF's schema) with the
# vocabulary cut to VOCAB and the layers to the first LAYERS: V2-Lite keeps its dense layer 0 and
# its first MoE layer (64 experts of 1408, 2 shared, 6 routed), V3 its dense layer 0 (MLA with
# q_lora 1536, kv_lora 512, 128 heads, YaRN factor 40 and m^2 = 1.87). `moekit synth` writes random
# BF16 weights (--std STD); transformers (float32 compute over the bf16 values, eager) and moekit
# run the same IDS; the table gives max |Δlogit|, top-1 agreement and, for the MoE layer, the
# smallest gap between the 6th and 7th routing probabilities (a tie there would make any two
# implementations disagree). gpt-oss-20b (issue 24): its real config cut to 2 layers (sliding
# window 128, full), GT tokens (default 160: the window matters), its experts MXFP4 as OpenAI ships
# them (`synth --dtype mxfp4`); transformers dequantizes them on load and computes in float32,
# moekit runs its exact products (MOEKIT_QACT=0: the activations stay f32, the MXFP4 weights are
# dequantized into the f32 GEMM).
# Usage: PY=/path/to/venv/bin/python3 bash bench/real_shapes.sh | tee bench/results-real-shapes.md
# Needs ../shared (the V3 config), torch and transformers (tools/requirements-dev.txt), ~8 GB of RAM.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}; WORK=${WORK:-/tmp/moekit-real-shapes}; VOCAB=${VOCAB:-4096}; STD=${STD:-0.02}; T=${T:-32}; GT=${GT:-160}
SHARED=${SHARED:-../shared}
mkdir -p "$WORK"
make -s -j2 build/moekit build/libmoekit.a >&2
cc -O2 -std=c11 -D_GNU_SOURCE -Isrc -Iinclude bench/mk_logits.c build/libmoekit.a -o "$WORK/mk_logits" -fopenmp -ljansson -lpcre2-8 -lutf8proc -llapacke -lm
"$PY" - "$WORK" "$SHARED/data/real/DeepSeek-V3.config.json" "$VOCAB" "$T" "$SHARED/data/real/gpt-oss-20b.config.json" "$GT" <<'PY'
import json, sys, random
work, v3, vocab, T, goss, GT = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
g = json.load(open(goss))
g.update(vocab_size=vocab, num_hidden_layers=2, layer_types=g["layer_types"][:2], pad_token_id=None, eos_token_id=None)
json.dump(g, open(f"{work}/gptoss20b.json", "w"), indent=1)
c = json.load(open(v3))
c.update(vocab_size=vocab, num_hidden_layers=1)
c.pop("auto_map", None)
json.dump(c, open(f"{work}/v3.json", "w"), indent=1)
lite = {"architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2", "vocab_size": vocab, "hidden_size": 2048,
        "intermediate_size": 10944, "moe_intermediate_size": 1408, "num_hidden_layers": 2, "num_attention_heads": 16,
        "num_key_value_heads": 16, "n_shared_experts": 2, "n_routed_experts": 64, "num_experts_per_tok": 6,
        "routed_scaling_factor": 1.0, "q_lora_rank": None, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
        "v_head_dim": 128, "topk_method": "greedy", "n_group": 1, "topk_group": 1, "norm_topk_prob": False, "scoring_func": "softmax",
        "first_k_dense_replace": 1, "moe_layer_freq": 1, "hidden_act": "silu", "rms_norm_eps": 1e-6, "max_position_embeddings": 163840,
        "rope_theta": 10000, "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
        "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}, "attention_bias": False, "tie_word_embeddings": False,
        "bos_token_id": 100000, "eos_token_id": 100001}
json.dump(lite, open(f"{work}/v2lite.json", "w"), indent=1)
random.seed(7)
open(f"{work}/ids.txt", "w").write(" ".join(str(random.randrange(vocab)) for _ in range(T)) + "\n")
open(f"{work}/ids_gptoss20b.txt", "w").write(" ".join(str(random.randrange(vocab)) for _ in range(GT)) + "\n")
PY
echo "# DeepSeek and gpt-oss-20b at real shapes: moekit against transformers"
echo
echo "Run: \`bash bench/real_shapes.sh\` (VOCAB=$VOCAB, STD=$STD, T=$T, GT=$GT). Date: $(date -u '+%Y-%m-%d %H:%M UTC'); moekit commit $(git rev-parse --short HEAD);"
echo "transformers $("$PY" -c 'import transformers; print(transformers.__version__)')."
echo
echo "| model | layers at real shape | params | max abs(Δlogit) | max abs(logit) | top-1 agree | min routing gap |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for m in ${MODELS:-v2lite v3 gptoss20b}; do
  rm -rf "$WORK/$m"
  dt=bf16 ids=$WORK/ids.txt
  [ "$m" = gptoss20b ] && dt=mxfp4 ids=$WORK/ids_gptoss20b.txt
  build/moekit synth --config "$WORK/$m.json" --dtype "$dt" --std "$STD" --seed 1 -o "$WORK/$m" >&2
  MOEKIT_QACT=0 "$WORK/mk_logits" "$WORK/$m" "$ids" "$WORK/$m.mk.f32" >&2
  "$PY" - "$WORK/$m" "$ids" "$WORK/$m.mk.f32" "$m" <<'PY'
import sys, json, numpy as np, torch, transformers
d, ids_path, mk_path, name = sys.argv[1:5]
ids = torch.tensor([[int(x) for x in open(ids_path).read().split()]])
kw = {}
if (json.load(open(d + "/config.json")).get("quantization_config") or {}).get("quant_method") == "mxfp4":
    kw["quantization_config"] = transformers.Mxfp4Config(dequantize=True)
model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager", **kw).eval()
gaps = []
def hook(mod, inp, out):
    p = torch.softmax(out[0].double(), -1) if not model.config.model_type.endswith("v3") else torch.sigmoid(out[0].double())
    s = torch.sort(p, -1, descending=True).values
    k = model.config.num_experts_per_tok
    gaps.append((s[:, k - 1] - s[:, k]).min().item())
for layer in model.model.layers:
    if hasattr(layer.mlp, "experts"):
        (layer.mlp.gate if hasattr(layer.mlp, "gate") else layer.mlp.router).register_forward_hook(hook)
with torch.no_grad():
    hf = model(ids).logits[0].float().numpy()
mk = np.fromfile(mk_path, dtype=np.float32).reshape(hf.shape)
c = model.config
desc = {"v2lite": "dense 0 + MoE 1 (64 x 1408, 2 shared, k 6)", "v3": "dense 0 (MLA, q_lora 1536)",
        "gptoss20b": f"sliding 0 + full 1 (32 x 2880 MXFP4, k 4, sinks), {ids.shape[1]} tokens"}[name]
params = sum(p.numel() for p in model.parameters())
top1 = (hf.argmax(-1) == mk.argmax(-1)).mean()
print(f"| {c.architectures[0]} ({name}) | {desc} | {params/1e6:.0f}M | {np.abs(hf - mk).max():.2e} | {np.abs(hf).max():.3f} | {top1:.0%} | "
      + (f"{min(gaps):.2e}" if gaps else "(no MoE layer)") + " |")
PY
done
