#!/usr/bin/env bash
# moekit info prints the parameter counts the fixture script computed; moekit run streams the
# greedy continuation transformers produced.
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib.sh
for f in mixtral mixtral_sharded qwen2_moe qwen3_moe qwen3_moe_fused olmoe mixtral_bf16; do
  out=$($MK info -m "$FIX/$f" 2>&1) || { bad "info $f" "exit $?: $out"; continue; }
  want_total=$(python3 -c "import json;print(json.load(open('$FIX/$f/fixture.json'))['params_total'])")
  want_active=$(python3 -c "import json;print(json.load(open('$FIX/$f/fixture.json'))['params_active'])")
  got_total=$(sed -n 's/^params total: *//p' <<<"$out"); got_active=$(sed -n 's/^params active: *//p' <<<"$out")
  if [ "$got_total" = "$want_total" ] && [ "$got_active" = "$want_active" ]; then ok "info $f: $got_total total, $got_active active"
  else bad "info $f" "params $got_total/$got_active, fixture.json says $want_total/$want_active"; fi
done
# Greedy continuation via the CLI equals transformers' greedy_ids.
for f in qwen3_moe olmoe; do
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
# SCMoE with beta = 0 is plain greedy decoding; with beta > 0 it is a different, valid sequence.
plain=$($MK run -m "$FIX/qwen3_moe" --prompt-ids 1,2,3,4 -n 12 --quiet-stats 2>&1)
b0=$($MK run -m "$FIX/qwen3_moe" --prompt-ids 1,2,3,4 -n 12 --scmoe 0.1:0 --quiet-stats 2>&1)
b5=$($MK run -m "$FIX/qwen3_moe" --prompt-ids 1,2,3,4 -n 12 --scmoe 0.1:0.5:2 --quiet-stats 2>&1)
if [ "$plain" = "$b0" ]; then ok "scmoe beta=0 equals greedy"; else bad "scmoe beta=0" "'$b0' vs '$plain'"; fi
if [ "$(wc -w <<<"$b5")" = 12 ] && [ "$b5" != "$plain" ]; then ok "scmoe beta=0.5 contrasts"; else bad "scmoe beta=0.5" "'$b5'"; fi
expect_error "scmoe malformed" "--scmoe '0.1': expected ALPHA:BETA\[:RANK\]" $MK run -m "$FIX/qwen3_moe" --prompt-ids 1,2 --scmoe 0.1
expect_error "run without a prompt" "give a prompt" $MK run -m "$FIX/olmoe"
expect_error "run with a bad route" "route 'topk:0': K must be a positive integer \(expected topk:K" $MK run -m "$FIX/olmoe" --prompt-ids 1,2 --route topk:0
expect_error "run with k above the expert count" "route: k = 99 exceeds the model's 8 experts" $MK run -m "$FIX/olmoe" --prompt-ids 1,2 --route topk:99
summary
