#!/usr/bin/env bash
# Do moekit and llama.cpp compute the same DeepSeek-V2/V3 and GLM-4.5 models? Each transformers
# fixture of these architectures (tests/fixtures: tiny random weights whose routing and logits are
# far from uniform) is written to GGUF by `moekit quantize` (llama.cpp's deepseek2 / glm4moe layouts:
# MLA's kv_b split into attn_k_b / attn_v_b, YaRN's log multiplier, sigmoid gating and the selection
# bias, partial RoPE), loaded by llama.cpp (libllama, bench/llama_logits.c) and by moekit, and run
# on the fixture's input ids; moekit's `eval --kld-logits` compares the two full distributions
# (top-k = the whole vocabulary) position by position.
# Usage: LLAMA_CPP_DIR=/path/to/llama.cpp bash bench/agree_llama_archs.sh | tee bench/results-agree-llama-archs.md
# Env: TYPES ("f32 f16"), WORK (/tmp/moekit-agree-archs), FIXTURES (the list below).
# Q8_0 is not in the default: on these tiny shapes llama.cpp's AMX Q8_0 kernel (a CPU with AMX and
# GGML_NATIVE) crashes inside ggml_backend_amx_mul_mat, whatever the file.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to a llama.cpp build (build/bin/libllama.so)}"
TYPES=${TYPES:-f32 f16}; WORK=${WORK:-/tmp/moekit-agree-archs}
FIXTURES=${FIXTURES:-deepseek_v2_lite deepseek_v2_group deepseek_v3 deepseek_v3_bf16 glm4_moe glm4_moe_bf16 glm4_moe_air}
MK=build/moekit L=$LLAMA_CPP_DIR
mkdir -p "$WORK"
make -s -j2 "$MK" build/libmoekit.a >&2
cc -O2 -std=c11 -D_GNU_SOURCE -Isrc -Iinclude -I"$L/include" -I"$L/ggml/include" bench/llama_logits.c build/libmoekit.a \
  -o "$WORK/llama_logits" -L"$L/build/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$L/build/bin" \
  -fopenmp -ljansson -lpcre2-8 -lutf8proc -llapacke -lm
echo "# moekit and llama.cpp on DeepSeek-V2/V3 and GLM-4.5 GGUF files"
echo
echo "Run: \`LLAMA_CPP_DIR=$L bash bench/agree_llama_archs.sh\`  "
echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); moekit commit $(git rev-parse --short HEAD); llama.cpp: $(if [ -d "$L/.git" ]; then git -C "$L" rev-parse --short HEAD; else realpath "$L"; fi)."
echo "Each fixture's 28 input ids, one window; KLD = mean over the 27 scored positions of KL(llama.cpp ‖ moekit) over the"
echo "whole vocabulary (320). Fixtures: tiny transformers checkpoints (tests/fixtures/README.md); no tokenizer, so no text."
echo "deepseek_v2_group is DeepSeek-V2's group-limited greedy routing (4 groups, 2 searched): llama.cpp scores a group by"
echo "the sum of its two best experts (llama-graph.cpp, build_moe_ffn), transformers and moekit by the best one, so"
echo "llama.cpp routes some tokens elsewhere there (\`moekit quantize\` warns when it writes such a file)."
echo
echo "| fixture | GGUF | llama.cpp arch | KLD mean | KLD max | top-1 agree | ppl llama.cpp | ppl moekit |"
echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"
for f in $FIXTURES; do
  python3 - "tests/fixtures/$f/reference.safetensors" > "$WORK/$f.ids" <<'PY'
import json, struct, sys
d = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", d[:8])[0]; h = json.loads(d[8:8 + n]); b, e = h["input_ids"]["data_offsets"]
print(" ".join(map(str, struct.unpack("<%di" % ((e - b) // 4), d[8 + n + b:8 + n + e]))))
PY
  T=$(wc -w < "$WORK/$f.ids")
  for t in $TYPES; do
    G=$WORK/$f.$t.gguf
    rm -f "$G"
    "$MK" quantize -m "tests/fixtures/$f" --type "$t" -o "$G" >&2
    V=$(python3 -c "import json;print(json.load(open('tests/fixtures/$f/config.json'))['vocab_size'])")
    THREADS=2 VOCAB=$V "$WORK/llama_logits" "$G" "$WORK/$f.ids" "$T" "$V" "$WORK/$f.$t.llama" > "$WORK/$f.$t.llama.json"
    r=$("$MK" eval -m "$G" --ppl-ids "$WORK/$f.ids" --ctx "$T" --stride "$T" --kld-logits "$WORK/$f.$t.llama" --json 2>/dev/null)
    python3 - "$f" "$t" "$r" "$(cat "$WORK/$f.$t.llama.json")" "$G" <<'PY'
import json, sys, struct
f, t, r, l, g = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
k = r["kld"]
arch = "deepseek2" if f.startswith("deepseek") else "gpt-oss" if f.startswith("gpt_oss") else "phimoe" if f.startswith("phimoe") else "glm4moe"
print(f"| {f} | {t.upper()} | {arch} | {k['kld_mean']:.2e} | {k['kld_max']:.2e} | {k['top1_agree']:.1%} | {l['ppl']:.4f} | {r['ppl']:.4f} |")
PY
  done
done
