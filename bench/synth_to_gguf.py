#!/usr/bin/env python3
"""Writes a GGUF that llama.cpp loads from a moekit `synth` OLMoE checkpoint (HF layout), for the
speed comparison in bench_speed.sh. Uses the `gguf` package from PyPI (gguf-py); no llama.cpp code.
The tokenizer is a placeholder (SentencePiece-style: <unk> <s> </s>, 256 byte tokens, fillers up
to vocab_size): the benchmark feeds random token ids, so only the vocabulary size matters.
Until moekit writes GGUF itself (issue 9 item 5), this is the path from a synth model to llama.cpp.

usage: synth_to_gguf.py MODEL_DIR OUT.gguf [--outtype bf16|f16]"""
import argparse, json, sys

import numpy as np
import torch
from safetensors import safe_open
import gguf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--outtype", default="bf16", choices=["bf16", "f16"])
    a = ap.parse_args()
    cfg = json.load(open(f"{a.model}/config.json"))
    if cfg["architectures"][0] != "OlmoeForCausalLM":
        sys.exit("synth_to_gguf.py: only OlmoeForCausalLM is handled")
    H, F, E = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_experts"]
    L, V, nh = cfg["num_hidden_layers"], cfg["vocab_size"], cfg["num_attention_heads"]
    w = gguf.GGUFWriter(a.out, "olmoe")
    w.add_name("moekit-synth-olmoe")
    w.add_context_length(cfg.get("max_position_embeddings", 4096))
    w.add_embedding_length(H)
    w.add_block_count(L)
    w.add_feed_forward_length(F)
    w.add_head_count(nh)
    w.add_head_count_kv(cfg.get("num_key_value_heads", nh))
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-5))
    w.add_expert_count(E)
    w.add_expert_used_count(cfg["num_experts_per_tok"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16 if a.outtype == "bf16" else gguf.LlamaFileType.MOSTLY_F16)
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    toks += [f"\u2581t{i}" for i in range(len(toks), V)]
    types += [gguf.TokenType.NORMAL] * (V - len(types))
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([0.0] * V)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    qt = gguf.GGMLQuantizationType.BF16 if a.outtype == "bf16" else gguf.GGMLQuantizationType.F16
    st = safe_open(f"{a.model}/model.safetensors", framework="pt")

    def get(name):
        return st.get_tensor(name)

    def put(name, t, keep_f32=False):
        if keep_f32 or t.dim() == 1:
            w.add_tensor(name, t.float().numpy())
        elif a.outtype == "bf16":
            arr = t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
            w.add_tensor(name, arr, raw_shape=arr.shape, raw_dtype=qt)
        else:
            w.add_tensor(name, t.to(torch.float16).numpy())

    put("token_embd.weight", get("model.embed_tokens.weight"))
    for l in range(L):
        p = f"model.layers.{l}."
        put(f"blk.{l}.attn_norm.weight", get(p + "input_layernorm.weight"))
        put(f"blk.{l}.ffn_norm.weight", get(p + "post_attention_layernorm.weight"))
        for hf, gg in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v"), ("o_proj", "attn_output")):
            put(f"blk.{l}.{gg}.weight", get(p + f"self_attn.{hf}.weight"))
        put(f"blk.{l}.attn_q_norm.weight", get(p + "self_attn.q_norm.weight"))
        put(f"blk.{l}.attn_k_norm.weight", get(p + "self_attn.k_norm.weight"))
        put(f"blk.{l}.ffn_gate_inp.weight", get(p + "mlp.gate.weight"), keep_f32=True)
        for hf, gg in (("gate_proj", "ffn_gate_exps"), ("up_proj", "ffn_up_exps"), ("down_proj", "ffn_down_exps")):
            put(f"blk.{l}.{gg}.weight", torch.stack([get(p + f"mlp.experts.{e}.{hf}.weight") for e in range(E)]))
    put("output_norm.weight", get("model.norm.weight"))
    put("output.weight", get("lm_head.weight"))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{a.out}: written ({a.outtype})")


if __name__ == "__main__":
    main()
