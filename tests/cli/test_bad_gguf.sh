#!/usr/bin/env bash
# Bad GGUF files: each must give a non-zero exit and one line naming the file and the field, with
# no crash (this script also runs under the ASan+UBSan build). The damaged files are made from
# tests/fixtures/gguf/tiny_qwen3moe.gguf by tests/cli/gguf_edit.py.
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib.sh
SRC=tests/fixtures/gguf/tiny_qwen3moe.gguf
G=$TMPD/m.gguf
EDIT="python3 tests/cli/gguf_edit.py $SRC $G"
Q=blk.0.attn_q.weight
K=blk.0.attn_k.weight

expect_ok "the intact file loads" $MK info -m $SRC
expect_ok "the intact file runs" $MK run -m $SRC --prompt-ids 1,2,3 -n 2 --quiet-stats

# a tensor the loader does not read is an error naming the file and the tensor, whatever its type
$EDIT dup $Q rope_freqs.weight
expect_error "unused tensor" "m.gguf: tensor 'rope_freqs.weight' is not used by moekit's Qwen3MoeForCausalLM loader" $MK info -m $G
$EDIT dup blk.0.attn_norm.weight blk.0.attn_output.bias_x 6
expect_error "unused tensor of a type moekit does not read" "m.gguf: tensor 'blk.0.attn_output.bias_x' \(ggml type [A-Z0-9_]+\) is not used by moekit's Qwen3MoeForCausalLM loader" $MK info -m $G
$EDIT magic
expect_error "bad magic" "m.gguf: not a GGUF file \(bad magic" $MK info -m $G
$EDIT version 1
expect_error "old version" "m.gguf: version 1 is not supported \(only GGUF v2 and v3\)" $MK info -m $G
$EDIT version 7
expect_error "unknown version" "m.gguf: version 7 is not supported" $MK info -m $G
$EDIT version 50331648
expect_error "big-endian file" "m.gguf: version: big-endian GGUF files are not supported" $MK info -m $G
$EDIT tensor-count 1000000000000
expect_error "absurd tensor count" "m.gguf: tensor_count 1000000000000 is more than the file's [0-9]+ remaining bytes can hold" $MK info -m $G
$EDIT kv-count 18446744073709551615
expect_error "absurd metadata count" "m.gguf: metadata_kv_count 18446744073709551615 is more than" $MK info -m $G
$EDIT tensor-count 40
expect_error "more tensor infos than present" "m.gguf: tensor (info #[0-9]+|'.*'): .*(runs past the end|n_dims|unknown ggml type|name length)" $MK info -m $G
$EDIT offset-past-end $Q
expect_error "offset past the end" "m.gguf: tensor '$Q': data \[offset [0-9]+, \+[0-9]+ bytes\] runs past the end of the file" $MK info -m $G
$EDIT misaligned $Q
expect_error "misaligned offset" "m.gguf: tensor '$Q': offset [0-9]+ is not a multiple of the alignment 32" $MK info -m $G
$EDIT type $Q 99
expect_error "unknown ggml type" "m.gguf: tensor '$Q': unknown ggml type 99" $MK info -m $G
$EDIT type $Q 3
expect_error "ggml type without kernels" "m.gguf: tensor '$Q': ggml type Q4_1 \(3\) is not supported" $MK info -m $G
$EDIT swap-dims $K
expect_error "shape not matching the metadata" "m.gguf: tensor '$K': shape \[64, 32\] does not match the GGUF metadata \(expected \[32, 64\]\)" $MK info -m $G
$EDIT rename $Q blk.0.attn_qq.weight
expect_error "missing tensor" "m.gguf: tensor '$Q' is missing" $MK info -m $G
$EDIT rename blk.0.ffn_up_exps.weight blk.0.ffn_upx.weight
expect_error "missing expert tensor" "m.gguf: tensor 'blk.0.ffn_up_exps.weight \(expert 0\)' is missing" $MK info -m $G
$EDIT set-u32 qwen3moe.expert_count 8
expect_error "expert count not matching the tensors" "m.gguf: tensor 'blk.0.ffn_(gate|up|down)_exps.weight': shape .* does not hold 8 experts" $MK info -m $G
$EDIT set-u32 qwen3moe.expert_used_count 9
expect_error "top-k above the expert count" "m.gguf: metadata key 'qwen3moe.expert_used_count' \(9\) exceeds expert_count \(4\)" $MK info -m $G
$EDIT del-key qwen3moe.attention.layer_norm_rms_epsilon
expect_error "missing metadata key" "m.gguf: metadata key 'qwen3moe.attention.layer_norm_rms_epsilon' is missing" $MK info -m $G
$EDIT set-str general.architecture gptx
expect_error "unsupported architecture" "m.gguf: metadata key 'general.architecture' = 'gptx' is not a supported architecture" $MK info -m $G
$EDIT add-u32 general.alignment 48
expect_error "alignment not a power of two" "m.gguf: metadata key 'general.alignment' = 48 is not a power of two" $MK info -m $G
head -c 5000 $SRC > $G
expect_error "truncated file" "m.gguf: tensor '.*': data .* runs past the end of the file .*truncated" $MK info -m $G
head -c 100 $SRC > $G
expect_error "truncated in the metadata" "m.gguf: metadata_kv_count 22 is more than the file's 76 remaining bytes can hold" $MK info -m $G
head -c 1000 $SRC > $G
expect_error "truncated in the tensor infos" "m.gguf: (metadata key|tensor) .*runs past the end of the file" $MK info -m $G
expect_error "quantize: unknown type" "moekit quantize: --type 'q3_k' is not one of" $MK quantize -m $SRC --type q3_k -o $TMPD/o.gguf
expect_ok "quantize a GGUF again (q4_0)" $MK quantize -m $SRC --type q4_0 -o $TMPD/o.gguf
expect_ok "the re-quantized file runs" $MK run -m $TMPD/o.gguf --prompt-ids 1,2,3 -n 2 --quiet-stats
expect_error "quantize into a missing directory" "/nonexistent/o.gguf: cannot create a temporary file beside it" $MK quantize -m $SRC --type f16 -o /nonexistent/o.gguf
summary
