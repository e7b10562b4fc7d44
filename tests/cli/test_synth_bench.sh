#!/usr/bin/env bash
# `moekit synth` and `moekit bench` end to end on a tiny config (also under ASan+UBSan).
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib.sh
CFG=$TMPD/cfg.json
cat > "$CFG" <<'J'
{"architectures":["OlmoeForCausalLM"],"vocab_size":211,"hidden_size":64,"num_hidden_layers":3,
 "num_attention_heads":4,"num_experts":8,"num_experts_per_tok":2,"intermediate_size":48,"rms_norm_eps":1e-5}
J
for dt in bf16 f16 f32; do
  expect_ok "synth --dtype $dt" $MK synth --config "$CFG" --layers 2 --dtype $dt --seed 3 -o "$TMPD/m_$dt"
done
out=$($MK info -m "$TMPD/m_bf16" 2>&1)
if grep -q "layers: *2 (2 MoE" <<<"$out" && grep -q "bytes BF16" <<<"$out"; then ok "synth output loads: 2 layers, BF16"; else bad "synth output loads" "$out"; fi
if [ -z "$(ls "$TMPD" | grep '\.tmp\.')" ]; then ok "no temporary files left"; else bad "no temporary files left" "$(ls "$TMPD")"; fi
cmp -s "$TMPD/m_f32/model.safetensors" <($MK synth --config "$CFG" --layers 2 --dtype f32 --seed 3 -o "$TMPD/again" >/dev/null && cat "$TMPD/again/model.safetensors") \
  && ok "same seed, same bytes" || bad "same seed, same bytes" "files differ"
out=$($MK bench -m "$TMPD/m_bf16" -p 16 -n 4 -r 2 -t 2 2>&1)
if grep -q "| pp16 | [0-9.]* ± [0-9.]* |" <<<"$out" && grep -q "| tg4 | " <<<"$out"; then ok "bench prints pp16 and tg4"; else bad "bench table" "$out"; fi
# --roof: the read's bandwidth (positive), the bytes per token, and tg as % of the roof, which is
# t/s x bytes / bandwidth (the bytes are printed rounded to 0.1 MB, hence the tolerance; on this
# tiny model the % is near 0, since a token's time is mostly overhead)
out=$($MK bench -m "$TMPD/m_bf16" -p 0 -n 4 -r 2 -t 2 --roof 2>&1)
mb=$(sed -n 's/^roof: \([0-9.]*\) MB of weights per token.*/\1/p' <<<"$out")
if [ -n "$mb" ] && awk -F'|' -v mb="$mb" '$8 ~ /tg4/ {split($9, t, " "); split($11, b, " "); split($12, p, " ");
     want = 100 * t[1] * mb * 1e6 / (b[1] * 1e9); d = p[1] - want; if (d < 0) d = -d
     ok = b[1] > 0 && p[1] ~ /^[0-9.]+$/ && d <= 0.05 + 0.3 * want} END {exit !ok}' <<<"$out"; then
  ok "bench --roof prints bandwidth, bytes per token and % of roof"; else bad "bench --roof" "$out"; fi
# GPT-OSS as OpenAI ships it: experts as MXFP4 blocks/scales (quantization_config mxfp4), the rest BF16
cat > "$TMPD/gptoss.json" <<'J'
{"architectures":["GptOssForCausalLM"],"model_type":"gpt_oss","vocab_size":96,"hidden_size":64,"intermediate_size":32,
 "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"num_local_experts":4,
 "num_experts_per_tok":2,"sliding_window":8,"rms_norm_eps":1e-5}
J
expect_ok "synth --dtype mxfp4 (gpt-oss)" $MK synth --config "$TMPD/gptoss.json" --dtype mxfp4 --seed 3 -o "$TMPD/oss_mx"
out=$($MK info -m "$TMPD/oss_mx" 2>&1)
# the experts: 2 layers x 4 experts x 3 matrices of 64x32 values, 17 bytes per 32
if grep -q "bytes MXFP4 *26112$" <<<"$out" && grep -q "quant_method\": \"mxfp4" "$TMPD/oss_mx/config.json"; then ok "gpt-oss MXFP4 synth loads: its experts are MXFP4"; else bad "gpt-oss MXFP4 synth" "$out"; fi
expect_error "synth: mxfp4 for another architecture" "dtype mxfp4 is GPT-OSS's expert format" $MK synth --config "$CFG" --dtype mxfp4 -o "$TMPD/z"
echo '{"architectures":["JambaForCausalLM"],"vocab_size":8}' > "$TMPD/oss.json"
expect_error "synth: unsupported architecture" "oss.json: field 'architectures' = 'JambaForCausalLM' is not a supported architecture" $MK synth --config "$TMPD/oss.json" -o "$TMPD/x"
echo "{\"a\":" > "$TMPD/bad.json"
expect_error "synth: malformed config" "bad.json: .*\(line [0-9]+\)" $MK synth --config "$TMPD/bad.json" -o "$TMPD/x"
expect_error "synth: layers beyond the config" "--layers 9 exceeds the config's 3 layers" $MK synth --config "$CFG" --layers 9 -o "$TMPD/y"
if [ ! -e "$TMPD/y" ]; then ok "failed synth leaves no output"; else bad "failed synth leaves no output" "$TMPD/y exists"; fi
summary
