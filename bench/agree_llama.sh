#!/usr/bin/env bash
# Do moekit and llama.cpp compute the same model? On the project's testbed model (Qwen3-MoE,
# llama.cpp arch qwen3moe) written to GGUF by `moekit quantize` (F32, Q8_0, Q4_K), over the first
# BYTES of each domain's real test text, window by window (CTX tokens, no overlap):
#   llama.cpp (libllama, through bench/llama_logits.c) stores its distributions in moekit's
#   stored-logits format; `moekit eval --kld-logits` then reports KL(llama.cpp ‖ moekit) and top-1
#   agreement position by position, and both perplexities.
# For quantized files moekit computes as llama.cpp does by default: activations quantized to
# Q8_0/Q8_K for every product, integer block sums (its batched products use the integer GEMM; with
# MOEKIT_QGEMM=0 they would dequantize the weights into the f32 GEMM instead). Against the F32
# file's llama.cpp logits it also shows how far each quantized run is from the unquantized model.
# Usage: LLAMA_CPP_DIR=/path/to/llama.cpp bash bench/agree_llama.sh | tee bench/results-agree-llama.md
# (LLAMA_CPP_VERSION, where set, names the llama.cpp in the header: a vendored copy has no commit.) On a CPU
# with AMX, build llama.cpp with GGML_NATIVE=OFF and the AVX-512 flags: the AMX Q8_0 kernel of
# llama-cpp-python 0.3.36's llama.cpp crashes on the testbed's shapes (ggml_backend_amx_mul_mat).
# Env: MODEL (models/testbed), DATA (data/testbed), BYTES (4000), CTX (256), TYPES ("f32 q8_0 q4_k q6_k"),
#      THREADS (2), WORK (/tmp/moekit-agree).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to a llama.cpp build (build/bin/libllama.so)}"
MODEL=${MODEL:-models/testbed}; DATA=${DATA:-data/testbed}; BYTES=${BYTES:-4000}; CTX=${CTX:-256}
TYPES=${TYPES:-f32 q8_0 q4_k q6_k}; THREADS=${THREADS:-2}; WORK=${WORK:-/tmp/moekit-agree}
MK=build/moekit; NAME=$(basename "$MODEL")
mkdir -p "$WORK"
make -s -j2 "$MK" build/libmoekit.a >&2
L=$LLAMA_CPP_DIR
cc -O2 -std=c11 -D_GNU_SOURCE -Isrc -Iinclude -I"$L/include" -I"$L/ggml/include" bench/llama_logits.c build/libmoekit.a \
  -o "$WORK/llama_logits" -L"$L/build/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$L/build/bin" \
  -fopenmp -ljansson -lpcre2-8 -lutf8proc -llapacke -lm
V=$(python3 -c "import json;print(json.load(open('$MODEL/config.json'))['vocab_size'])")
domains=$(ls "$DATA" | sed -n 's/\.test\.txt$//p' | sort)

echo "# moekit and llama.cpp on the same GGUF files"
echo
echo "Run: \`LLAMA_CPP_DIR=$L BYTES=$BYTES CTX=$CTX TYPES=\"$TYPES\" bash bench/agree_llama.sh\`  "
echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); moekit commit $(git rev-parse --short HEAD); llama.cpp ${LLAMA_CPP_VERSION:-$(git -C "$L" rev-parse --short HEAD 2>/dev/null || { [ -x "$L/build/bin/llama-bench" ] && "$L/build/bin/llama-bench" --version 2>&1 | head -1; } || echo "at $(realpath "$L")")}; model $MODEL (GGUF written by \`moekit quantize\`, which llama.cpp loads)."
echo "Text: the first $BYTES bytes of each domain's test split, tokenized by moekit; windows of $CTX tokens, each"
echo "scoring its tokens 2..$CTX. KLD = mean over positions of KL(llama.cpp ‖ moekit), from llama.cpp's top-32"
echo "logits plus a tail bucket (a lower bound of the exact value)."
echo
echo "Tokens: llama.cpp also tokenizes each text from the GGUF's own tokenizer; \"same\" = its ids equal moekit's."
echo
echo "| GGUF | domain | positions | tokens | moekit mode | KLD mean | KLD max | top-1 agree | ppl llama.cpp | ppl moekit | KLD vs llama.cpp F32 |"
echo "| --- | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for T in $TYPES; do
  G=$WORK/$NAME-$T.gguf
  [ -f "$G" ] || "$MK" quantize -m "$MODEL" --type "$T" -o "$G" >&2
done
for d in $domains; do
  head -c "$BYTES" "$DATA/$d.test.txt" > "$WORK/$d.txt"
  "$MK" tokenize -m "$MODEL" --ids -f "$WORK/$d.txt" > "$WORK/$d.ids"
  for T in $TYPES; do
    TEXT="$WORK/$d.txt" THREADS=$THREADS VOCAB=$V "$WORK/llama_logits" "$WORK/$NAME-$T.gguf" "$WORK/$d.ids" "$CTX" 32 "$WORK/$d.$T.llama" > "$WORK/$d.$T.llama.json"
  done
done
for T in $TYPES; do
  for d in $domains; do
    r=$("$MK" eval -m "$WORK/$NAME-$T.gguf" --ppl-ids "$WORK/$d.ids" --ctx "$CTX" --stride "$CTX" -t "$THREADS" \
          --kld-logits "$WORK/$d.$T.llama" --json 2>/dev/null)
    rf=$("$MK" eval -m "$WORK/$NAME-$T.gguf" --ppl-ids "$WORK/$d.ids" --ctx "$CTX" --stride "$CTX" -t "$THREADS" \
          --kld-logits "$WORK/$d.f32.llama" --json 2>/dev/null || echo '{}')
    python3 - "$T" "$d" "$r" "$rf" "$(cat "$WORK/$d.$T.llama.json")" <<'PY'
import json, sys
t, d, r, rf, l = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]), json.loads(sys.argv[5])
k, kf = r["kld"], rf.get("kld", {})
m = "f32" if t == "f32" else "int8 activations (integer GEMM)"
vf = "-" if t == "f32" or "kld_mean" not in kf else f"{kf['kld_mean']:.3g}"
tk = "same" if l.get("tokens_first_diff", 0) == -1 else f"differ at {l.get('tokens_first_diff')}"
print(f"| {t} | {d} | {l['scored']} | {tk} | {m} | {k['kld_mean']:.3g} | {k['kld_max']:.3g} | {100 * k['top1_agree']:.2f}% | {l['ppl']:.4f} | {r['ppl']:.4f} | {vf} |")
PY
  done
done
