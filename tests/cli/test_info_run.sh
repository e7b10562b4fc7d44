#!/usr/bin/env bash
# moekit info prints the parameter counts the fixture script computed; moekit run streams the
# greedy continuation transformers produced.
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib.sh
for f in mixtral mixtral_sharded qwen2_moe qwen3_moe qwen3_moe_fused olmoe mixtral_bf16 deepseek_v2_lite deepseek_v3 glm4_moe glm4_moe_air; do
  out=$($MK info -m "$FIX/$f" 2>&1) || { bad "info $f" "exit $?: $out"; continue; }
  want_total=$(python3 -c "import json;print(json.load(open('$FIX/$f/fixture.json'))['params_total'])")
  want_active=$(python3 -c "import json;print(json.load(open('$FIX/$f/fixture.json'))['params_active'])")
  got_total=$(sed -n 's/^params total: *//p' <<<"$out"); got_active=$(sed -n 's/^params active: *//p' <<<"$out")
  if [ "$got_total" = "$want_total" ] && [ "$got_active" = "$want_active" ]; then ok "info $f: $got_total total, $got_active active"
  else bad "info $f" "params $got_total/$got_active, fixture.json says $want_total/$want_active"; fi
done
# info --config: what a config describes without weights. DeepSeek-V3's real config (fp8 weights) and
# Kimi-K2's (V3's class with 64 heads, 384 experts, n_group 1): parameters and KV bytes per token
# counted here from the published shapes (research/formats.md §5), independently of moekit's table;
# the MLA cache holds the latent and the RoPE key only.
mla_count() { # H V L nh E n_dense: total, active, KV bytes/token latent and expanded, from the published shapes
  python3 - "$@" <<'PY'
import sys
H, V, L, nh, E, n_dense = map(int, sys.argv[1:])
ql, r, dr, dn, dv, k, I, ID = 1536, 512, 64, 128, 128, 8, 2048, 18432
attn = 2 * H + H * ql + ql + ql * nh * (dn + dr) + H * (r + dr) + r + r * nh * (dn + dv) + nh * dv * H
moe = E * H + E + E * 3 * H * I + 3 * H * I
total = 2 * V * H + H + L * attn + n_dense * 3 * H * ID + (L - n_dense) * moe
active = total - (L - n_dense) * (E - k) * 3 * H * I
print(total, active, L * (r + dr) * 4, L * nh * (dn + dr + dv) * 4)
PY
}
for spec in "DeepSeek-V3 7168 129280 61 128 256 3" "Kimi-K2-Instruct 7168 163840 61 64 384 1"; do
  set -- $spec
  want=$(mla_count "$2" "$3" "$4" "$5" "$6" "$7")
  out=$($MK info --config "tests/data/configs/$1.config.json" 2>&1)
  got="$(sed -n 's/^params total: *//p' <<<"$out") $(sed -n 's/^params active: *//p' <<<"$out") $(sed -n 's/^KV cache: *\([0-9]*\) bytes.*would take \([0-9]*\).*/\1 \2/p' <<<"$out")"
  [ "$got" = "$want" ] && ok "info --config $1: total, active, KV bytes/token latent and expanded = $got" || bad "info --config $1" "got '$got', want '$want': $out"
done
out=$($MK info --config tests/data/configs/DeepSeek-V3.config.json 2>&1)
grep -q "weights quantized: fp8" <<<"$out" && ok "info --config names the fp8 weights" || bad "info --config fp8" "$out"
out=$($MK info --config tests/data/configs/Qwen3-30B-A3B.config.json 2>&1)
grep -q "^KV cache: *196608 bytes/token" <<<"$out" && ok "info --config Qwen3-30B-A3B: KV 48 layers x 4 kv heads x 128 x 2 x 4 bytes" || bad "info Qwen3 KV" "$out"
expect_error "info: both -m and --config" "give -m MODEL or --config CONFIG.json, not both" $MK info -m "$FIX/qwen3_moe" --config tests/data/configs/Qwen3-30B-A3B.config.json
# a quantized checkpoint is refused at load, naming the field
d=$(mktemp -d); cp -r "$FIX/deepseek_v3/." "$d/"
python3 - "$d/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3"}; json.dump(c, open(sys.argv[1], "w"))
PY
expect_error "load: quantized checkpoint" "config.json: field 'quantization_config' \\(fp8\\) is not supported" $MK info -m "$d"
rm -rf "$d"
# GGUF of the new architectures: llama.cpp's group scoring differs from DeepSeek-V2's (a warning),
# and a half-rotation MLA RoPE has no deepseek2 form (refused, nothing left behind)
d=$(mktemp -d)
out=$($MK quantize -m "$FIX/deepseek_v2_group" --type f32 -o "$d/g.gguf" 2>&1) && grep -q "warning: llama.cpp scores expert groups by the sum of their two best" <<<"$out" \
  && ok "quantize deepseek_v2_group warns that llama.cpp routes groups differently" || bad "quantize V2 group warning" "$out"
expect_error "quantize: MLA with half-rotation RoPE" "rope_interleave = false cannot be written as llama.cpp's deepseek2" $MK quantize -m "$FIX/deepseek_v3_g1" --type f32 -o "$d/g1.gguf"
[ ! -e "$d/g1.gguf" ] && ok "refused GGUF not written" || bad "refused GGUF" "$d/g1.gguf exists"
rm -rf "$d"
# Greedy continuation via the CLI equals transformers' greedy_ids.
for f in qwen3_moe olmoe deepseek_v2_group deepseek_v3 glm4_moe; do
  read -r ids greedy < <(python3 - "$FIX/$f/reference.safetensors" <<'PY'
import json, struct, sys
d = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", d[:8])[0]; h = json.loads(d[8:8+n]); body = d[8+n:]
def ints(name):
    b, e = h[name]["data_offsets"]; return list(struct.unpack("<%di" % ((e-b)//4), body[b:e]))
print(",".join(map(str, ints("input_ids"))), " ".join(map(str, ints("greedy_ids"))))
PY
)
  got=$($MK run -m "$FIX/$f" --prompt-ids "$ids" -n 32 --ignore-eos --quiet-stats 2>&1)
  if [ "$got" = "$greedy" ]; then ok "run $f greedy = transformers"; else bad "run $f" "got '$got' want '$greedy'"; fi
done
# SCMoE against transformers (tools/gen_route_reference.py: a strong pass as configured, a weak
# pass routing each token to the expert at rank R, argmax of (1+B) z_s - B z_w above the alpha
# cutoff): the same 12 tokens for three (A, B, R); and B = 0 is plain greedy decoding.
R=$FIX/route/reference.json
plain=$($MK run -m "$FIX/qwen3_moe" --prompt-ids 1,2,3,4 -n 12 --quiet-stats 2>&1)
b0=$($MK run -m "$FIX/qwen3_moe" --prompt-ids 1,2,3,4 -n 12 --scmoe 0.1:0 --quiet-stats 2>&1)
want=$(python3 -c "import json,sys; print(' '.join(map(str, json.load(open(sys.argv[1]))['scmoe'][0]['greedy'])))" $R)
[ "$plain" = "$want" ] && [ "$b0" = "$want" ] && ok "scmoe beta=0 equals greedy = transformers" || bad "scmoe beta=0" "'$b0' / '$plain' vs '$want'"
for i in 0 1 2; do
  read -r spec want < <(python3 -c "import json,sys; c=json.load(open(sys.argv[1]))['scmoe'][int(sys.argv[2])]; print('%g:%g:%d' % (c['alpha'], c['beta'], c['rank']), ' '.join(map(str, c['ids'])))" $R $i)
  got=$($MK run -m "$FIX/qwen3_moe" --prompt-ids 1,2,3,4 -n 12 --scmoe "$spec" --quiet-stats 2>&1)
  [ "$got" = "$want" ] && ok "scmoe $spec = transformers ($got)" || bad "scmoe $spec" "got '$got', transformers '$want'"
done
expect_error "scmoe malformed" "--scmoe '0.1': expected ALPHA:BETA\[:RANK\]" $MK run -m "$FIX/qwen3_moe" --prompt-ids 1,2 --scmoe 0.1
# Text prompts: a random model with a real tokenizer (llama2's, from tests/data) prompts from text
# and streams decoded text; the prompt is encoded as moekit tokenize encodes it.
python3 -c "
import json; c = json.load(open('$FIX/qwen3_moe/config.json')); c['vocab_size'] = 32000
json.dump(c, open('$TMPD/cfg.json', 'w'))"
if $MK synth --config "$TMPD/cfg.json" --std 0.1 -o "$TMPD/syn" >/dev/null 2>&1 && cp "$(data tokenizers/llama2)/"tokenizer*.json "$TMPD/syn/"; then
  out=$($MK run -m "$TMPD/syn" -p "The capital of France is" -n 8 --ignore-eos 2>"$TMPD/err")
  n_prompt=$(sed -n 's/^prompt: \([0-9]*\) tokens.*/\1/p' "$TMPD/err")
  n_tok=$($MK tokenize -m "$TMPD/syn" --ids "The capital of France is" | wc -w)
  if [ -n "$out" ] && [ "$n_prompt" = "$n_tok" ]; then ok "run -p: $n_prompt prompt tokens, text out"; else bad "run -p" "prompt $n_prompt vs tokenize $n_tok, out '$out'"; fi
  ids=$($MK run -m "$TMPD/syn" -p "The capital of France is" -n 8 --ignore-eos --ids --quiet-stats)
  dec=$($MK run -m "$TMPD/syn" -p "The capital of France is" -n 8 --ignore-eos --quiet-stats)
  [ "$(wc -w <<<"$ids")" = 8 ] && [ -n "$dec" ] && ok "run --ids prints 8 ids" || bad "run --ids" "'$ids'"
  # --chat renders the chat template (a small one added to llama2's tokenizer_config.json)
  # before encoding: more prompt tokens than the bare text.
  python3 -c "
import json; p = '$TMPD/syn/tokenizer_config.json'; c = json.load(open(p))
c['chat_template'] = '{% for m in messages %}<|{{ m.role }}|> {{ m.content }}\\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}'
json.dump(c, open(p, 'w'))"
  $MK run -m "$TMPD/syn" --chat -p "The capital of France is" -n 2 --ignore-eos >/dev/null 2>"$TMPD/err2"
  n_chat=$(sed -n 's/^prompt: \([0-9]*\) tokens.*/\1/p' "$TMPD/err2")
  [ -n "$n_chat" ] && [ "$n_chat" -gt "$n_prompt" ] && ok "run --chat renders the template ($n_chat > $n_prompt tokens)" || bad "run --chat" "$(cat "$TMPD/err2")"
  expect_error "text prompt without a tokenizer" "has no tokenizer.json; give the prompt as --prompt-ids" $MK run -m "$FIX/olmoe" -p "hello"
else
  bad "synth for the text test" "moekit synth failed"
fi
expect_error "run without a prompt" "give a prompt" $MK run -m "$FIX/olmoe"
expect_error "run with a bad route" "route 'topk:0': K must be a positive integer \(expected topk:K" $MK run -m "$FIX/olmoe" --prompt-ids 1,2 --route topk:0
expect_error "run with k above the expert count" "route: k = 99 exceeds the model's 8 experts" $MK run -m "$FIX/olmoe" --prompt-ids 1,2 --route topk:99
# The work split does not change the numbers: every output element is computed by one thread in
# a fixed order, so 1, 5 and 16 threads (oversubscribed here) give the same perplexity to the
# last digit and the same greedy text on the default model.
head -c 3000 README.md > "$TMPD/threads.txt"
p1=$($MK eval -m models/testbed --ppl "$TMPD/threads.txt" --ctx 256 --stride 128 -t 1 2>&1 | grep -o 'perplexity: [0-9.]*')
g1=$($MK run -m models/testbed -p "The river" -n 24 -t 1 --quiet-stats 2>&1)
for t in 5 16; do
  pt=$($MK eval -m models/testbed --ppl "$TMPD/threads.txt" --ctx 256 --stride 128 -t $t 2>&1 | grep -o 'perplexity: [0-9.]*')
  gt=$($MK run -m models/testbed -p "The river" -n 24 -t $t --quiet-stats 2>&1)
  if [ -n "$p1" ] && [ "$pt" = "$p1" ] && [ -n "$g1" ] && [ "$gt" = "$g1" ]; then ok "$t threads = 1 thread ($p1, same greedy text)"
  else bad "$t threads = 1 thread" "'$pt' vs '$p1'; '$gt' vs '$g1'"; fi
done
# every checkpoint and GGUF among the fixtures loads, so each passes the loader's check that every
# tensor in the file is used (the GGUFs the tests write pass it where they are loaded)
n=0; bad_list=""
for d in $(find $FIX -name config.json -printf '%h\n' | sort) $(find $FIX -name '*.gguf' ! -name gguf_py.gguf | sort); do  # gguf_py.gguf: a reader test file, no model
  n=$((n + 1)); $MK info -m "$d" >/dev/null 2>"$TMPD/err" || bad_list="$bad_list $d: $(cat "$TMPD/err")"
done
[ -z "$bad_list" ] && [ "$n" -ge 15 ] && ok "all $n fixture checkpoints and GGUFs load with every tensor used" || bad "fixtures load" "$n checked;$bad_list"
# quantize names the tensors it writes in another type than asked, and why (Qwen2-MoE's shared
# expert down_proj has rows of 48, not a multiple of Q8_0's 32: llama.cpp's F16 fallback)
err=$($MK quantize -m "$FIX/qwen2_moe_dense0" --type q8_0 -o "$TMPD/d0.gguf" 2>&1 >/dev/null)
want="moekit quantize: note: 2 tensors written as F16 instead of Q8_0: rows of 48 values are not a multiple of Q8_0's block of 32 (blk.1.ffn_down_shexp.weight, blk.2.ffn_down_shexp.weight)"
[ "$err" = "$want" ] && ok "quantize q8_0 names its F16 fallbacks" || bad "quantize q8_0 fallback note" "'$err'"
err=$($MK quantize -m "$FIX/olmoe" --type q8_0 -o "$TMPD/o.gguf" 2>&1 >/dev/null)
[ -z "$err" ] && ok "quantize q8_0 without fallbacks prints no note" || bad "quantize q8_0 note" "'$err'"
# info on a GGUF says what info on its source checkpoint says (a Qwen2-MoE whose layer 0 is dense:
# the GGUF loader once looked for the shared expert in blk.0 only and reported 0 shared)
for f in qwen2_moe_dense0 qwen3_moe_attn_bias; do
  if $MK quantize -m "$FIX/$f" --type f32 -o "$TMPD/$f.gguf" >/dev/null 2>&1; then
    a=$($MK info -m "$FIX/$f" | grep -v -E '^(model|bytes)'); b=$($MK info -m "$TMPD/$f.gguf" | grep -v -E '^(model|bytes)')
    [ -n "$a" ] && [ "$a" = "$b" ] && ok "info: $f.gguf = $f ($(grep '^experts' <<<"$a"))" || bad "info $f.gguf" "$(diff <(echo "$a") <(echo "$b"))"
  else bad "quantize $f" "failed"; fi
done
summary
