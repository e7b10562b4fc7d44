#!/usr/bin/env bash
# The tokenizer in GGUF files: moekit quantize writes the source's tokenizer.json as llama.cpp's
# tokenizer.ggml.* keys with its chat template, and every command that takes a model's tokenizer
# reads it back from the .gguf: the same ids, text, chat prompt and perplexity as from the model
# directory. Damaged tokenizer metadata gives one line naming the file and the key.
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib.sh
TB=models/testbed
G=$TMPD/tb.gguf   # BF16 = the testbed's own weights, so generation matches the directory's too
if ! out=$($MK quantize -m $TB --type bf16 -o $G 2>&1); then bad "quantize the testbed" "$out"; summary; exit; fi
want="tokenizer: gpt2 pre smaug-bpe, 8192 tokens, 7933 merges, 1 chat template"
grep -qxF "$want" <<<"$out" && ok "quantize writes the tokenizer ($want)" || bad "quantize report" "$out"

# moekit tokenize: ids and token strings, for a slice of each testbed domain and edge cases
n=0; same=0
for f in data/testbed/*.test.txt; do
  head -c 3000 "$f" > "$TMPD/in.txt"
  a=$($MK tokenize -m $TB -f "$TMPD/in.txt" 2>&1); b=$($MK tokenize -m $G -f "$TMPD/in.txt" 2>&1)
  n=$((n + 1)); [ -n "$a" ] && [ "$a" = "$b" ] && same=$((same + 1))
done
for s in "Hello world" "  leading and   inner   spaces  " "$(printf 'tabs\tand\r\nCRLF\n\n')" "1234567 3.14159 0x1F" \
         "<|im_start|>user
Hi!<|im_end|>" "naïve café 日本語 😀 Ünïcödé" "don't we'll I'M" "<|endoftext|><|endoftext|>x"; do
  a=$($MK tokenize -m $TB "$s" 2>&1); b=$($MK tokenize -m $G "$s" 2>&1)
  n=$((n + 1)); if [ -n "$a" ] && [ "$a" = "$b" ]; then same=$((same + 1)); else echo "  differs: '$s': '$a' vs '$b'"; fi
done
[ "$same" = "$n" ] && ok "tokenize: GGUF = tokenizer.json on $n texts (ids and tokens)" || bad "tokenize" "$same of $n identical"

# moekit run: the prompt (plain and chat) encodes the same, and BF16 weights generate the same
run_same() {
  local what=$1; shift
  local a b
  a=$($MK run -m $TB "$@" -n 10 --ids --quiet-stats 2>&1); b=$($MK run -m $G "$@" -n 10 --ids --quiet-stats 2>&1)
  if [[ "$a" =~ ^[0-9][0-9\ ]*$ ]] && [ "$a" = "$b" ]; then ok "$what: same tokens ($a)"; else bad "$what" "'$a' vs '$b'"; fi
}
run_same "run -p" -p "The capital of"
run_same "run --chat" --chat -p "What is a compiler?"
run_same "run --chat --system" --chat --system "Be brief." -p "Hi"
a=$($MK run -m $TB -p "int main(" -n 12 --quiet-stats 2>&1); b=$($MK run -m $G -p "int main(" -n 12 --quiet-stats 2>&1)
[ -n "$a" ] && [ "$a" = "$b" ] && ok "run: same streamed text" || bad "run text" "'$a' vs '$b'"

# moekit eval --ppl TEXT and moekit profile --data TEXT
head -c 4000 data/testbed/english.test.txt > "$TMPD/en.txt"
a=$($MK eval -m $TB --ppl "$TMPD/en.txt" --ctx 128 2>/dev/null | grep '^perplexity'); b=$($MK eval -m $G --ppl "$TMPD/en.txt" --ctx 128 2>/dev/null | grep '^perplexity')
[ -n "$a" ] && [ "$a" = "$b" ] && ok "eval --ppl text: $a" || bad "eval --ppl text" "'$a' vs '$b'"
expect_ok "profile --data text on the GGUF" $MK profile -m $G --data "$TMPD/en.txt" --tokens 256 --ctx 128 -o "$TMPD/p.json"

# GGUF -> GGUF keeps the tokenizer
out=$($MK quantize -m $G --type q8_0 -o $TMPD/q8.gguf 2>&1)
grep -qxF "$want" <<<"$out" && ok "requantizing a GGUF keeps its tokenizer" || bad "requantize" "$out"
a=$($MK tokenize -m $TB --ids -f "$TMPD/en.txt"); b=$($MK tokenize -m $TMPD/q8.gguf --ids -f "$TMPD/en.txt")
[ "$a" = "$b" ] && ok "tokenize: requantized GGUF = tokenizer.json" || bad "tokenize requantized" "differs"

# a model without tokenizer.json: tokenizer.ggml.model = "none", and the commands say so
out=$($MK quantize -m $FIX/qwen3_moe --type f32 -o $TMPD/none.gguf 2>&1)
grep -qxF "tokenizer: none" <<<"$out" && ok "no tokenizer.json: tokenizer none" || bad "quantize without tokenizer" "$out"
expect_error "tokenize a GGUF without a tokenizer" "none.gguf: no tokenizer in this GGUF file \(tokenizer.ggml.model is 'none'\)" $MK tokenize -m $TMPD/none.gguf "x"
expect_error "run -p on a GGUF without a tokenizer" "none.gguf has no tokenizer in its metadata .*; give the prompt as --prompt-ids" $MK run -m $TMPD/none.gguf -p "x"
expect_error "eval text on a GGUF without a tokenizer" "none.gguf has no tokenizer in its metadata" $MK eval -m $TMPD/none.gguf --ppl "$TMPD/en.txt"
expect_ok "--prompt-ids still runs" $MK run -m $TMPD/none.gguf --prompt-ids 1,2,3 -n 2 --quiet-stats

# a tokenizer moekit cannot read is left out with a warning; a malformed one, or one larger than
# the model's vocabulary, is an error
mkdir -p "$TMPD/m"; cp $FIX/qwen3_moe/config.json $FIX/qwen3_moe/model.safetensors "$TMPD/m/"
printf '{"model": {"type": "Unigram", "vocab": []}}' > "$TMPD/m/tokenizer.json"
out=$($MK quantize -m "$TMPD/m" --type f32 -o "$TMPD/m.gguf" 2>&1)
grep -q "^tokenizer: none" <<<"$out" && grep -q "warning: .*tokenizer.json: model.type: 'Unigram' is not supported (only BPE): tokenizer not written" <<<"$out" &&
  ok "quantize: unsupported tokenizer left out with a warning" || bad "unsupported tokenizer" "$out"
printf '{"model": {"type": "BPE", "vocab": {' > "$TMPD/m/tokenizer.json"
expect_error "quantize: malformed tokenizer.json" "m/tokenizer.json: line 1: malformed JSON" $MK quantize -m "$TMPD/m" --type f32 -o "$TMPD/m.gguf"
cp $TB/tokenizer.json "$TMPD/m/"
expect_error "quantize: tokenizer larger than the vocabulary" "m/tokenizer.json: the tokenizer has 8192 ids, more than the model's vocab_size 304" $MK quantize -m "$TMPD/m" --type f32 -o "$TMPD/m.gguf"

# Real tokenizers through moekit quantize: random models with Qwen3's (gpt2, qwen2) and Llama-2's
# (llama, scores) tokenizer give the ids of their tokenizer.json on all the tokenizer fixture texts
python3 -c "
import json
t = [json.loads(l) for l in open('$FIX/tokenizer/texts.jsonl')]
open('$TMPD/texts.txt', 'w', encoding='utf-8', newline='').write('\n\n'.join(t))"
for tk in qwen3:151936:gpt2.pre.qwen2 llama2:32000:llama; do
  IFS=: read -r name vocab kind <<<"$tk"
  if [ ! -f "$(data tokenizers/$name/tokenizer.json)" ]; then bad "$name test data" "no $(data tokenizers/$name/tokenizer.json)"; continue; fi
  python3 -c "
import json; c = json.load(open('$FIX/qwen3_moe/config.json')); c['vocab_size'] = $vocab
json.dump(c, open('$TMPD/cfg.json', 'w'))"
  rm -rf "$TMPD/syn"
  if ! $MK synth --config "$TMPD/cfg.json" -o "$TMPD/syn" >/dev/null 2>&1 || ! cp "$(data tokenizers/$name)/"tokenizer*.json "$TMPD/syn/"; then
    bad "synth with the $name tokenizer" "moekit synth failed"; continue
  fi
  out=$($MK quantize -m "$TMPD/syn" --type q8_0 -o "$TMPD/syn.gguf" 2>&1)
  grep -q "^tokenizer: ${kind//./ }, $vocab tokens" <<<"$out" && ok "quantize with the $name tokenizer: $(grep '^tokenizer:' <<<"$out")" || bad "quantize $name" "$out"
  a=$($MK tokenize -m "$TMPD/syn" --ids -f "$TMPD/texts.txt" 2>&1); b=$($MK tokenize -m "$TMPD/syn.gguf" --ids -f "$TMPD/texts.txt" 2>&1)
  [ -n "$a" ] && [ "$a" = "$b" ] && ok "$name: GGUF = tokenizer.json on the fixture texts ($(wc -w <<<"$a") ids)" || bad "$name fixture texts" "ids differ"
done

# damaged tokenizer metadata
EDIT="python3 tests/cli/gguf_edit.py $TMPD/q8.gguf $TMPD/bad.gguf"
$EDIT set-str tokenizer.ggml.pre nope
expect_error "unknown pre-tokenizer" "bad.gguf: tokenizer.ggml.pre 'nope' is not supported" $MK tokenize -m $TMPD/bad.gguf "x"
expect_error "run -p: unknown pre-tokenizer" "bad.gguf: tokenizer.ggml.pre 'nope' is not supported" $MK run -m $TMPD/bad.gguf -p "x" -n 1
$EDIT del-key tokenizer.ggml.merges
expect_error "no merges" "bad.gguf: metadata key 'tokenizer.ggml.merges' is missing" $MK tokenize -m $TMPD/bad.gguf "x"
$EDIT set-u32 tokenizer.ggml.eos_token_id 9000
expect_error "eos id out of range" "bad.gguf: tokenizer.ggml.eos_token_id: token id 9000 is out of range \(tokenizer.ggml.tokens has 8192 entries\)" $MK tokenize -m $TMPD/bad.gguf "x"
$EDIT set-str tokenizer.ggml.model bert
expect_error "unsupported vocabulary type" "bad.gguf: tokenizer.ggml.model 'bert' is not supported" $MK eval -m $TMPD/bad.gguf --ppl "$TMPD/en.txt"
summary
