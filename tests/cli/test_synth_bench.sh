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
echo '{"architectures":["JambaForCausalLM"],"vocab_size":8}' > "$TMPD/oss.json"
expect_error "synth: unsupported architecture" "oss.json: field 'architectures' = 'JambaForCausalLM' is not a supported architecture" $MK synth --config "$TMPD/oss.json" -o "$TMPD/x"
echo "{\"a\":" > "$TMPD/bad.json"
expect_error "synth: malformed config" "bad.json: .*\(line [0-9]+\)" $MK synth --config "$TMPD/bad.json" -o "$TMPD/x"
expect_error "synth: layers beyond the config" "--layers 9 exceeds the config's 3 layers" $MK synth --config "$CFG" --layers 9 -o "$TMPD/y"
if [ ! -e "$TMPD/y" ]; then ok "failed synth leaves no output"; else bad "failed synth leaves no output" "$TMPD/y exists"; fi
summary
