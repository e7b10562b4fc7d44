#!/usr/bin/env bash
# RoPE configs: YaRN in each spelling transformers accepts gives the same model as the fixture
# transformers saved (tests/fixtures/*_yarn, checked against transformers in test_fidelity), with
# transformers' precedence (a top-level rope_scaling replaces rope_parameters, theta included);
# RoPE types moekit does not implement, and YaRN fields it does not know, are refused.
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib.sh
E=$FIX/eval
CHK="python3 tests/cli/eval_check.py"

# same_model WHAT DIR REF IDS: DIR's logits equal REF's at every scored position (KLD exactly 0).
same_model() {
  local what=$1 dir=$2 ref=$3 ids=$4 out msg
  if ! out=$($MK eval -t 1 -m "$dir" --ppl-ids "$ids" --ctx 64 --kld-base "$ref" --json 2>&1); then bad "$what" "$out"; return; fi
  if msg=$($CHK kld-zero <<<"$out"); then ok "$what: $msg"; else bad "$what" "$msg"; fi
}
# differs WHAT DIR REF IDS: DIR computes another model (mean KLD above 1e-6; equal models give exactly 0).
differs() {
  local what=$1 dir=$2 ref=$3 ids=$4 out msg
  if ! out=$($MK eval -t 1 -m "$dir" --ppl-ids "$ids" --ctx 64 --kld-base "$ref" --json 2>&1); then bad "$what" "$out"; return; fi
  if msg=$($CHK kld-range 1e-6 100 0 <<<"$out"); then ok "$what: $msg"; else bad "$what" "$msg"; fi
}
# variant SRC PYTHON: a copy of fixture SRC in $TMPD/v whose config dict `c` PYTHON rewrites.
variant() {
  rm -rf "$TMPD/v"; cp -r "$FIX/$1" "$TMPD/v"
  python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); exec(sys.argv[2]); json.dump(c,open(p,'w'))" "$TMPD/v/config.json" "$2"
}

Y=$FIX/qwen3_moe_yarn; YM=$FIX/mixtral_yarn
# the v4 spelling: rope_scaling with "type", rope_theta at the top level
variant mixtral_yarn 'r=c.pop("rope_parameters"); c["rope_theta"]=r.pop("rope_theta"); r["type"]=r.pop("rope_type"); c["rope_scaling"]=r'
same_model "yarn as v4 rope_scaling + top-level rope_theta" "$TMPD/v" "$YM" "$E/mixtral.ids"
# a model card's long-context advice added to a config transformers v5 saved: the top-level
# rope_scaling replaces the default rope_parameters; theta then comes from the top level
variant qwen3_moe_yarn 'r=c["rope_parameters"]; c["rope_theta"]=r["rope_theta"]; c["rope_scaling"]={"rope_type":"yarn","factor":r["factor"],"original_max_position_embeddings":r["original_max_position_embeddings"]}; c["rope_parameters"]={"rope_type":"default","rope_theta":r["rope_theta"]}'
same_model "yarn rope_scaling beside default rope_parameters" "$TMPD/v" "$Y" "$E/qwen3_moe.ids"
variant qwen3_moe_yarn 'r=c["rope_parameters"]; c["rope_scaling"]={"rope_type":"yarn","factor":r["factor"],"original_max_position_embeddings":r["original_max_position_embeddings"]}; c["rope_parameters"]={"rope_type":"default","rope_theta":r["rope_theta"]}'
differs "... without a top-level rope_theta, rope_parameters' theta is dropped (10000)" "$TMPD/v" "$Y" "$E/qwen3_moe.ids"
# original_max_position_embeddings at the top level wins over the one in the dict (transformers' rule)
variant qwen3_moe_yarn 'c["original_max_position_embeddings"]=c["rope_parameters"]["original_max_position_embeddings"]; c["rope_parameters"]["original_max_position_embeddings"]=4096'
same_model "top-level original_max_position_embeddings wins" "$TMPD/v" "$Y" "$E/qwen3_moe.ids"
# every field moekit reads changes the model
for f in '"factor"]=2.0' '"original_max_position_embeddings"]=512' '"beta_fast"]=4.0' '"attention_factor"]=1.0' '"mscale"]=0.5' '"truncate"]=True'; do
  variant mixtral_yarn "c[\"rope_parameters\"][$f"
  differs "yarn ${f%%\"]*}\" changed" "$TMPD/v" "$YM" "$E/mixtral.ids"
done
# beta_fast / beta_slow of 0 mean the defaults 32 / 1 (transformers: `.get("beta_slow") or 1`)
variant mixtral_yarn 'c["rope_parameters"]["beta_slow"]=1; c["rope_parameters"]["beta_fast"]=32'; rm -rf "$TMPD/a"; mv "$TMPD/v" "$TMPD/a"
variant mixtral_yarn 'c["rope_parameters"]["beta_slow"]=0; c["rope_parameters"]["beta_fast"]=0'
same_model "beta_fast 0, beta_slow 0 = the defaults 32, 1" "$TMPD/v" "$TMPD/a" "$E/mixtral.ids"

out=$($MK info -m "$Y" 2>&1)
grep -q "rope:            theta 150000, YaRN factor 4 over 128 original positions, attention factor 1.13863" <<<"$out" && ok "info shows YaRN (attention factor 1 + 0.1 ln 4)" || bad "info shows YaRN" "$(grep rope <<<"$out")"
out=$($MK info -m "$YM" 2>&1)
grep -q "attention factor 1.05546$" <<<"$out" && ok "info: mscale 0.9 / mscale_all_dim 0.6 give transformers' 1.055463" || bad "info mscale" "$(grep rope <<<"$out")"

# refused
variant qwen3_moe 'c["rope_parameters"]={"rope_type":"longrope","rope_theta":1e4,"short_factor":[1.0],"long_factor":[1.0]}'
expect_error "longrope" "v/config.json: field 'rope_parameters.rope_type' = 'longrope' is supported for PhimoeForCausalLM only \(default and yarn are for Qwen3MoeForCausalLM\)" $MK info -m "$TMPD/v"
# Phi-MoE's LongRoPE: a factor list of the wrong length, a missing mscale
variant phimoe 'c["rope_parameters"]["short_factor"]=[1.0, 2.0]'
expect_error "longrope factors" "v/config.json: field 'rope_parameters.short_factor' must be a list of 8 numbers \(head_dim / 2\)" $MK info -m "$TMPD/v"
variant phimoe 'del c["rope_parameters"]["long_mscale"]'
expect_error "longrope mscale" "v/config.json: field 'rope_parameters.long_mscale' is missing" $MK info -m "$TMPD/v"
out=$($MK info -m "$FIX/phimoe" 2>&1)
grep -q "LongRoPE: short factors (mscale 1.1) up to 64 positions, long factors (mscale 1.25)" <<<"$out" && grep -q "sparsemixer routing" <<<"$out" \
  && ok "info: phimoe's LongRoPE and sparsemixer" || bad "info phimoe" "$out"
out=$($MK info -m "$FIX/gpt_oss" 2>&1)
grep -q "sliding window:  8 positions, in 2 of 3 layers" <<<"$out" && grep -q "a sink logit per head" <<<"$out" && ok "info: gpt-oss's window and sinks" || bad "info gpt_oss" "$out"
variant qwen3_moe 'c["rope_scaling"]={"type":"llama3","factor":8.0}'
expect_error "llama3 rope_scaling" "v/config.json: field 'rope_scaling.type' = 'llama3' is not supported" $MK info -m "$TMPD/v"
variant qwen3_moe_yarn 'del c["rope_parameters"]["factor"]'
expect_error "yarn without factor" "v/config.json: field 'rope_parameters.factor' is missing \(YaRN\)" $MK info -m "$TMPD/v"
variant qwen3_moe_yarn 'c["rope_parameters"]["short_factor"]=[1.0]'
expect_error "a yarn field moekit does not know" "v/config.json: field 'rope_parameters.short_factor' is not supported with YaRN RoPE" $MK info -m "$TMPD/v"
variant qwen3_moe_yarn 'c["rope_parameters"]["factor"]="4"'
expect_error "yarn factor of the wrong type" "v/config.json: .*factor.* must be a number" $MK info -m "$TMPD/v"
expect_error "quantize refuses YaRN (GGUF cannot carry it yet)" "qwen3_moe_yarn: YaRN RoPE \(rope_scaling\) cannot be written to GGUF yet" $MK quantize -m "$Y" --type q8_0 -o "$TMPD/y.gguf"
[ ! -e "$TMPD/y.gguf" ] && ok "no GGUF left behind" || bad "no GGUF left behind" "$TMPD/y.gguf exists"
summary
