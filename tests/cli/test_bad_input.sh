#!/usr/bin/env bash
# Bad checkpoints: each must give a non-zero exit and one line naming the file and the field,
# with no crash (this script also runs under the ASan+UBSan build).
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib.sh
SRC=$FIX/qwen3_moe
EDIT="python3 tests/cli/st_edit.py"

fresh() { rm -rf "$TMPD/m"; cp -r "$SRC" "$TMPD/m"; }
ST=$TMPD/m/model.safetensors
Q=model.layers.0.self_attn.q_proj.weight

fresh; head -c $(( $(stat -c %s "$ST") / 2 )) "$SRC/model.safetensors" > "$ST"
expect_error "truncated safetensors" "m/model.safetensors: tensor '.*': data_offsets end [0-9]+ is past the end of the data .*truncated" $MK info -m "$TMPD/m"

fresh; head -c 100 "$SRC/model.safetensors" > "$ST"
expect_error "truncated inside the header" "m/model.safetensors: header length [0-9]+ runs past the end of the file" $MK info -m "$TMPD/m"

fresh; $EDIT "$SRC/model.safetensors" "$ST" offset-past-end $Q
expect_error "header offset past the end" "m/model.safetensors: tensor '$Q': data_offsets end" $MK info -m "$TMPD/m"

fresh; $EDIT "$SRC/model.safetensors" "$ST" shape-bytes $Q
expect_error "shape/byte-length mismatch" "m/model.safetensors: tensor '$Q': shape × dtype size" $MK info -m "$TMPD/m"

fresh; $EDIT "$SRC/model.safetensors" "$ST" dtype $Q Q9_X
expect_error "unknown dtype" "m/model.safetensors: tensor '$Q': unsupported dtype 'Q9_X'" $MK info -m "$TMPD/m"

fresh; $EDIT "$SRC/model.safetensors" "$ST" dtype $Q I32
expect_error "integer dtype as a weight" "m/model.safetensors: tensor '$Q': dtype I32 is not a supported weight dtype" $MK info -m "$TMPD/m"

fresh; $EDIT "$SRC/model.safetensors" "$ST" drop $Q
expect_error "missing tensor" "m: tensor '$Q' is missing" $MK info -m "$TMPD/m"

fresh; $EDIT "$SRC/model.safetensors" "$ST" transpose $Q
expect_error "shape not matching config.json" "m/model.safetensors: tensor '$Q': shape \[[0-9]+, [0-9]+\] does not match config.json \(expected" $MK info -m "$TMPD/m"

# a tensor the loader does not read is an error naming the file and the tensor (an o_proj bias
# once went unread and gave wrong logits); rotary inv_freq buffers and MTP layers are known-unused
O=model.layers.1.self_attn.o_proj.weight
fresh; $EDIT "$SRC/model.safetensors" "$ST" dup $O model.layers.1.self_attn.o_proj.bias_extra
expect_error "unused tensor" "m/model.safetensors: tensor 'model.layers.1.self_attn.o_proj.bias_extra' is not used by moekit's Qwen3MoeForCausalLM loader; running without it would give wrong results" $MK info -m "$TMPD/m"
fresh; $EDIT "$SRC/model.safetensors" "$ST" dup $Q model.layers.3.self_attn.q_proj.weight
expect_error "a layer past num_hidden_layers" "m/model.safetensors: tensor 'model.layers.3.self_attn.q_proj.weight' is not used" $MK info -m "$TMPD/m"
python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['num_nextn_predict_layers']=1; json.dump(c,open(p,'w'))" "$TMPD/m/config.json"
expect_ok "the same layer as an MTP layer (num_nextn_predict_layers 1)" $MK info -m "$TMPD/m"
fresh; $EDIT "$SRC/model.safetensors" "$ST" dup model.layers.0.input_layernorm.weight model.layers.0.self_attn.rotary_emb.inv_freq
expect_ok "a rotary inv_freq buffer is accepted" $MK info -m "$TMPD/m"
fresh; python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['tie_word_embeddings']=True; json.dump(c,open(p,'w'))" "$TMPD/m/config.json"
expect_error "lm_head with tied embeddings" "m/model.safetensors: tensor 'lm_head.weight' is not used .*\(tie_word_embeddings is true" $MK info -m "$TMPD/m"

# RoPE: default and YaRN are read (tests/cli/test_rope.sh); an empty or default rope_scaling changes nothing
setcfg() { python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c.update(json.loads(sys.argv[2])); json.dump(c,open(p,'w'))" "$TMPD/m/config.json" "$1"; }
fresh; setcfg '{"rope_scaling": {"type": "dynamic", "factor": 4.0}}'
expect_error "dynamic rope_scaling beside default rope_parameters" "m/config.json: field 'rope_scaling.type' = 'dynamic' is not supported \(default and yarn are\)" $MK info -m "$TMPD/m"
fresh; setcfg '{"rope_scaling": {"rope_type": "default"}}'
expect_ok "a default rope_scaling is accepted" $MK info -m "$TMPD/m"

# non-finite weights: run, eval and profile stop with one line naming the layer whose output
# first holds a non-finite value (transformers: tests/fixtures/nonfinite/reference.json)
fresh; $EDIT "$SRC/model.safetensors" "$ST" fill model.layers.1.mlp.down_proj.weight 7 -inf
printf '1 2 3 4 5 6 7 8 9 10\n' > "$TMPD/ids"
NF="non-finite activation \((NaN|infinity)\) in the output of layer 1 at token position 0"
expect_error "run: non-finite weights" "$NF" $MK run -m "$TMPD/m" --prompt-ids 1,2,3 -n 2
expect_error "eval: non-finite weights" "$NF" $MK eval -m "$TMPD/m" --ppl-ids "$TMPD/ids" --ctx 8
expect_error "profile --stream: non-finite weights" "$NF" $MK profile -m "$TMPD/m" --data "$TMPD/ids" --stream -o "$TMPD/p.json"
fresh; $EDIT "$SRC/model.safetensors" "$ST" fill model.layers.2.mlp.experts.3.gate_proj.weight 5 nan
expect_error "run: NaN in an expert" "non-finite activation \(NaN\) in the output of layer 2" $MK run -m "$TMPD/m" --prompt-ids 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 -n 2

fresh; head -c 200 "$SRC/config.json" > "$TMPD/m/config.json"
expect_error "malformed config.json" "m/config.json: malformed JSON: .*line" $MK info -m "$TMPD/m"

fresh; sed -i 's/Qwen3MoeForCausalLM/FooMoeForCausalLM/' "$TMPD/m/config.json"
expect_error "unknown architecture" "m/config.json: field 'architectures' = 'FooMoeForCausalLM' is not a supported architecture" $MK info -m "$TMPD/m"

fresh; sed -i 's/"hidden_size": [0-9]*/"hidden_size": "wide"/' "$TMPD/m/config.json"
expect_error "config field of the wrong type" "m/config.json: field 'hidden_size' must be an integer" $MK info -m "$TMPD/m"

fresh; sed -i 's/"num_hidden_layers": [0-9]*/"num_hidden_layers": 4222222222/' "$TMPD/m/config.json"
expect_error "absurd layer count" "m/config.json: field 'num_hidden_layers' = 4222222222 is out of range \[1, 4096\]" $MK info -m "$TMPD/m"

fresh; rm "$TMPD/m/config.json"
expect_error "missing config.json" "m/config.json: cannot open" $MK info -m "$TMPD/m"

fresh; rm "$ST"
expect_error "no weights" "m: no model.safetensors" $MK info -m "$TMPD/m"

expect_error "token id out of range" "token id 99999 at index 1 is out of range" $MK run -m "$SRC" --prompt-ids 1,99999 -n 2
summary
