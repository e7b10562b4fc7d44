#!/usr/bin/env bash
# moekit eval: perplexity and multiple-choice log-likelihoods against HF transformers
# (tests/fixtures/eval/*.ref.json from tools/gen_eval_reference.py; relative difference <= 1e-4
# with F32 weights), KL divergence (self = 0, BF16 copy small and positive, stored logits), and
# bad input (one clear line on stderr, no crash; this script also runs under ASan+UBSan).
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib.sh
E=$FIX/eval
CHK="python3 tests/cli/eval_check.py"
EV="$MK eval -t 1"

# check WHAT CMD... | checker: runs the moekit command, pipes its JSON into the checker.
check() {
  local what=$1 args=$2; shift 2
  local out rc
  out=$($EV $args --json 2>"$TMPD/err"); rc=$?
  if [ "$rc" -ne 0 ]; then bad "$what" "exit $rc: $(cat "$TMPD/err")"; return; fi
  local msg; msg=$($CHK "$@" <<<"$out"); rc=$?
  if [ "$rc" -eq 0 ]; then ok "$what: $msg"; else bad "$what" "$msg"; fi
}

# ---- fidelity: perplexity and MC logliks against transformers ----
for n in mixtral qwen2_moe qwen3_moe olmoe; do
  check "ppl $n ctx 64 stride 32" "-m $FIX/$n --ppl-ids $E/$n.ids --ctx 64 --stride 32" ppl $E/$n.ref.json 64 32 1e-4
  check "mc loglik $n" "-m $FIX/$n --mc $E/$n.mc.jsonl --ctx 64" mc $E/$n.ref.json 1e-4
done
check "ppl qwen3_moe stride == ctx" "-m $FIX/qwen3_moe --ppl-ids $E/qwen3_moe.ids --ctx 64 --stride 64" ppl $E/qwen3_moe.ref.json 64 64 1e-4
check "ppl qwen3_moe ctx 48 stride 20" "-m $FIX/qwen3_moe --ppl-ids $E/qwen3_moe.ids --ctx 48 --stride 20 --batch 7" ppl $E/qwen3_moe.ref.json 48 20 1e-4
check "text shorter than ctx: one window" "-m $FIX/mixtral --ppl-ids $E/mixtral.short.ids --ctx 64" short $E/mixtral.ref.json 1e-4

# ---- KL divergence ----
Q=$FIX/qwen3_moe; QI="--ppl-ids $E/qwen3_moe.ids --ctx 64"
check "KLD of a model against itself" "-m $Q $QI --kld-base $Q" kld-zero
# BF16 copy vs F32: measured mean KLD 6e-5..7e-4 on the four fixtures; bound (0, 5e-3), top-1 >= 90%
for n in mixtral qwen3_moe; do
  check "KLD bf16 vs f32 $n" "-m $FIX/${n}_bf16 --ppl-ids $E/$n.ids --ctx 64 --kld-base $FIX/$n" kld-range 0 5e-3 0.9
done
# Q8_0 / Q4_0 GGUF copies (moekit quantize) vs F32: measured mean KLD 3.5e-4..1.0e-3 (Q8_0) and
# 0.08..0.12 (Q4_0) on the four fixtures; bound for Q8_0 (0, 5e-3) with top-1 >= 90 %, and Q4_0 > Q8_0
if $MK quantize -m $Q --type q8_0 -o "$TMPD/q8.gguf" >/dev/null 2>&1 && $MK quantize -m $Q --type q4_0 -o "$TMPD/q4.gguf" >/dev/null 2>&1; then
  check "KLD q8_0 GGUF vs f32 qwen3_moe" "-m $TMPD/q8.gguf $QI --kld-base $Q" kld-range 0 5e-3 0.9
  $EV -m "$TMPD/q8.gguf" $QI --kld-base $Q --json > "$TMPD/q8.json" 2>/dev/null
  check "KLD q4_0 > q8_0" "-m $TMPD/q4.gguf $QI --kld-base $Q" kld-range "$(python3 -c "import json; print(json.load(open('$TMPD/q8.json'))['kld']['kld_mean'])")" 1 0.5
else
  bad "quantize for the KLD tests" "moekit quantize failed"
fi
$EV -m $FIX/qwen3_moe_bf16 $QI --kld-base $Q --json > "$TMPD/exact.json" 2>/dev/null
expect_ok "save base logits (top-k = vocab)" $EV -m $Q $QI --save-logits "$TMPD/full.lg" --save-top-k 304
check "stored full logits give the exact KLD" "-m $FIX/qwen3_moe_bf16 $QI --kld-logits $TMPD/full.lg" same "$TMPD/exact.json" exact kld_mean kld_p99 top1_agree base_ppl
expect_ok "save base logits with --kld-base (top-32)" $EV -m $FIX/qwen3_moe_bf16 $QI --kld-base $Q --save-logits "$TMPD/k32.lg"
check "stored top-32: same top-1 and base ppl" "-m $FIX/qwen3_moe_bf16 $QI --kld-logits $TMPD/k32.lg" same "$TMPD/exact.json" top1_agree base_ppl delta_ppl
check "stored top-32: KLD in range" "-m $FIX/qwen3_moe_bf16 $QI --kld-logits $TMPD/k32.lg" kld-range 0 5e-3 0.9
# --experts 2 against transformers with num_experts_per_tok = 2 (tools/gen_route_reference.py)
$EV -m $Q --ppl-ids $E/qwen3_moe.ids --ctx 64 --stride 32 --experts 2 --kld-base $Q --json > "$TMPD/k2.json" 2>"$TMPD/err"
if msg=$(python3 - "$FIX/route/reference.json" "$TMPD/k2.json" 2>&1 <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["experts_k"]
g = json.load(open(sys.argv[2])); k = g["kld"]
assert g["n_scored"] == r["n_scored"], (g["n_scored"], r["n_scored"])
for got, want, what in [(k["kld_mean"], r["kld_mean"], "kld_mean"), (k["kld_median"], r["kld_median"], "kld_median"),
                        (k["kld_max"], r["kld_max"], "kld_max"), (g["ppl"], r["ppl"], "ppl"), (k["base_ppl"], r["base_ppl"], "base_ppl")]:
    assert abs(got - want) <= 1e-4 * abs(want), (what, got, want)
assert abs(k["top1_agree"] - r["top1_agree"]) < 1e-9, (k["top1_agree"], r["top1_agree"])
print("kld_mean %.6g, top-1 %.4f, ppl %.4f as transformers" % (k["kld_mean"], k["top1_agree"], g["ppl"]))
PY
); then ok "--experts 2 = transformers top-2: $msg"; else bad "--experts 2" "$msg $(cat "$TMPD/err")"; fi

# --route zero:FILE (the Super Experts paper's removal: router unchanged, the expert's down_proj
# zero) against transformers with those down_proj zeroed; mask:FILE (re-routing) differs from it
$EV -m $Q --ppl-ids $E/qwen3_moe.ids --ctx 64 --stride 32 --route "zero:$FIX/route/zero.kept.json" --json > "$TMPD/z.json" 2>"$TMPD/err"
$EV -m $Q --ppl-ids $E/qwen3_moe.ids --ctx 64 --stride 32 --route "mask:$FIX/route/zero.kept.json" --json > "$TMPD/zm.json" 2>>"$TMPD/err"
if msg=$(python3 - "$FIX/route/reference.json" "$TMPD/z.json" "$TMPD/zm.json" 2>&1 <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["zero"]; z = json.load(open(sys.argv[2])); zm = json.load(open(sys.argv[3]))
assert z["n_scored"] == r["n_scored"] and abs(z["ppl"] - r["ppl"]) <= 1e-5 * r["ppl"], (z["ppl"], r["ppl"])
assert abs(zm["ppl"] - r["ppl"]) > 1e-3 * r["ppl"], ("mask:FILE gives the zero:FILE perplexity", zm["ppl"])
print("ppl %.4f as transformers (mask: %.4f)" % (z["ppl"], zm["ppl"]))
PY
); then ok "--route zero:FILE = transformers with the down_proj zeroed: $msg"; else bad "--route zero:FILE" "$msg $(cat "$TMPD/err")"; fi

# ---- bad input ----
: > "$TMPD/empty"
expect_error "empty ids file" "empty: no tokens \(empty file\)" $EV -m $Q --ppl-ids "$TMPD/empty"
expect_error "empty text file" "empty: empty file" $EV -m $Q --ppl "$TMPD/empty"
echo "7" > "$TMPD/one"
expect_error "one token" "1 token, perplexity needs at least 2" $EV -m $Q --ppl-ids "$TMPD/one"
printf '1 2 3\n4 x 5\n' > "$TMPD/junk"
expect_error "junk in ids file" "junk: line 2: 'x' is not part of a token id" $EV -m $Q --ppl-ids "$TMPD/junk"
echo "1 2 99999" > "$TMPD/big"
expect_error "token id out of range" "token id 99999 at index 2 is out of range" $EV -m $Q --ppl-ids "$TMPD/big"
expect_error "different-vocabulary base" "base model .*mixtral has a vocabulary of 320 tokens, .*qwen3_moe has 304: KL divergence needs the same vocabulary" $EV -m $Q $QI --kld-base $FIX/mixtral
expect_error "stored logits of another vocabulary" "stored logits are of a vocabulary of 304 tokens, the model has 320" $EV -m $FIX/mixtral --ppl-ids $E/mixtral.ids --ctx 64 --kld-logits "$TMPD/k32.lg"
expect_error "stored logits of another text" "stored logits were made on another text" $EV -m $Q --ppl-ids $E/qwen2_moe.ids --ctx 64 --kld-logits "$TMPD/k32.lg"
expect_error "stored logits of other windows" "stored logits were made with --ctx 64 --stride 32, this run uses 48 / 24" $EV -m $Q --ppl-ids $E/qwen3_moe.ids --ctx 48 --kld-logits "$TMPD/k32.lg"
head -c 1000 "$TMPD/k32.lg" > "$TMPD/trunc.lg"
expect_error "truncated stored logits" "trunc.lg: .* records of .* bytes do not fill" $EV -m $Q $QI --kld-logits "$TMPD/trunc.lg"
printf 'NOTLOGITS%0100d' 0 > "$TMPD/magic.lg"
expect_error "stored logits with a bad magic" "magic.lg: not a moekit stored-logits file" $EV -m $Q $QI --kld-logits "$TMPD/magic.lg"
expect_error "stride larger than ctx" "--stride 65 is larger than --ctx 64" $EV -m $Q $QI --stride 65
{ head -n 2 $E/qwen3_moe.mc.jsonl; echo '{"context_ids": [1, 2], "choice_ids": [[3]], "gold": '; } > "$TMPD/bad.jsonl"
expect_error "malformed JSONL line names the line" "bad.jsonl: line 3: malformed JSON" $EV -m $Q --mc "$TMPD/bad.jsonl"
{ head -n 1 $E/qwen3_moe.mc.jsonl; echo '{"context_ids": [1, 2], "choice_ids": [[3], [4]], "gold": 2}'; } > "$TMPD/gold.jsonl"
expect_error "gold out of range names the line" "gold.jsonl: line 2: field 'gold' = 2 is not a choice index in \[0, 2\)" $EV -m $Q --mc "$TMPD/gold.jsonl"
echo '{"context_ids": [1, 2], "choice_ids": [[3], []], "gold": 0}' > "$TMPD/emptych.jsonl"
expect_error "empty choice names the line" "emptych.jsonl: line 1: field 'choice_ids\[1\]' must be a non-empty array" $EV -m $Q --mc "$TMPD/emptych.jsonl"
expect_error "empty MC file" "empty: no items \(empty file\)" $EV -m $Q --mc "$TMPD/empty"
echo '{"context": "Question: 1+1?\nAnswer:", "choices": ["2", "3"], "gold": 0}' > "$TMPD/text.jsonl"
expect_error "text MC item on a model without a tokenizer" "text items in --mc \(line 1\): .*qwen3_moe has no tokenizer.json; give token ids" $EV -m $Q --mc "$TMPD/text.jsonl"
expect_error "text ppl on a model without a tokenizer" "--ppl \(text\): .*qwen3_moe has no tokenizer.json" $EV -m $Q --ppl tests/fixtures/eval/mc_text.jsonl
echo '{"context": "Question", "choices": "2", "gold": 0}' > "$TMPD/textbad.jsonl"
expect_error "text MC item with a malformed field names the line" "textbad.jsonl: line 1: field 'choices' must be a non-empty array of strings" $EV -m $Q --mc "$TMPD/textbad.jsonl"

# ---- text through the tokenizer: a random model with llama2's tokenizer (from tests/data) ----
# MC text items must give exactly the logliks of the same items tokenized by lm-eval's
# _encode_pair in Python (tools/mc_convert.py's Encoder, HF tokenizers: mc_text.llama2.jsonl);
# --ppl TEXT must equal --ppl-ids of `moekit tokenize` (special tokens added, as HF tokenizer(text)).
python3 -c "
import json; c = json.load(open('$FIX/qwen3_moe/config.json')); c['vocab_size'] = 32000
json.dump(c, open('$TMPD/cfg.json', 'w'))"
if $MK synth --config "$TMPD/cfg.json" --std 0.1 -o "$TMPD/syn" >/dev/null 2>&1 && cp "$(data tokenizers/llama2)/"tokenizer*.json "$TMPD/syn/"; then
  $EV -m "$TMPD/syn" --mc $E/mc_text.jsonl --ctx 64 --json > "$TMPD/mc_text.json" 2>"$TMPD/err"
  $EV -m "$TMPD/syn" --mc $E/mc_text.llama2.jsonl --ctx 64 --json > "$TMPD/mc_ids.json" 2>>"$TMPD/err"
  if msg=$(python3 -c "
import json, sys
a = json.load(open('$TMPD/mc_text.json')); b = json.load(open('$TMPD/mc_ids.json'))
ok = a['loglik'] == b['loglik'] and a['acc_norm'] == b['acc_norm'] and len(a['loglik']) == 6
print(f\"{len(a['loglik'])} items, logliks identical: {a['loglik'] == b['loglik']}, acc_norm {a['acc_norm']} vs {b['acc_norm']}\")
sys.exit(0 if ok else 1)" 2>&1); then ok "MC text items = lm-eval's encode_pair ids: $msg"; else bad "MC text vs ids" "$msg $(cat "$TMPD/err")"; fi
  printf 'The quick brown fox jumps over the lazy dog.\nA second line, with some more words in it: 42!\n' > "$TMPD/text.txt"
  $MK tokenize -m "$TMPD/syn" --ids -f "$TMPD/text.txt" > "$TMPD/text.ids"
  a=$($EV -m "$TMPD/syn" --ppl "$TMPD/text.txt" --ctx 16 --stride 8 --json 2>/dev/null | python3 -c "import json,sys; j=json.load(sys.stdin); print(j['ppl'], j['n_tokens'])")
  b=$($EV -m "$TMPD/syn" --ppl-ids "$TMPD/text.ids" --ctx 16 --stride 8 --json 2>/dev/null | python3 -c "import json,sys; j=json.load(sys.stdin); print(j['ppl'], j['n_tokens'])")
  if [ -n "$a" ] && [ "$a" = "$b" ]; then ok "--ppl text = --ppl-ids of moekit tokenize ($a)"; else bad "--ppl text" "'$a' vs '$b'"; fi
else
  bad "synth for the text tests" "moekit synth failed"
fi
# Routing policies report the experts actually used per token (qwen3_moe: k = 4 of 8).
python3 -c "print(' '.join(str((i * 53 + 7) % 304) for i in range(128)))" > "$TMPD/ept.ids"
for spec in "topk:4 4" "topk:2 2" "topp:1.0 8"; do
  set -- $spec
  got=$($MK eval -m "$FIX/qwen3_moe" --ppl-ids "$TMPD/ept.ids" --ctx 64 --route "$1" --json 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['experts_per_token_mean'])")
  python3 -c "import sys; sys.exit(0 if abs($got - $2) < 1e-9 else 1)" && ok "eval --route $1 uses $2 experts per token" || bad "eval --route $1" "experts_per_token_mean $got, expected $2"
done
# skip:auto:STATS uses the per-layer NAEE beta (median p(2)/p(1)) that profile records.
$MK profile -m "$FIX/qwen3_moe" --data "$TMPD/ept.ids" --ctx 64 -q -o "$TMPD/st.json" 2>/dev/null
nb=$(python3 -c "import json; b=json.load(open('$TMPD/st.json'))['naee_beta']; print(len(b), all(0 < x < 1 for x in b))")
[ "$nb" = "2 True" ] && ok "profile records naee_beta for both MoE layers" || bad "naee_beta" "$nb"
got=$($MK eval -m "$FIX/qwen3_moe" --ppl-ids "$TMPD/ept.ids" --ctx 64 --route "skip:auto:$TMPD/st.json" --json 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['experts_per_token_mean'])")
python3 -c "import sys; sys.exit(0 if 1 <= $got < 4 else 1)" && ok "skip:auto skips experts ($got per token of 4)" || bad "skip:auto" "experts_per_token_mean $got"
expect_error "skip:auto without stats" "skip:auto needs a stats.json: skip:auto:STATS" $MK eval -m "$FIX/qwen3_moe" --ppl-ids "$TMPD/ept.ids" --ctx 64 --route skip:auto
summary
