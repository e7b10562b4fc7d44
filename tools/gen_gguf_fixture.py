#!/usr/bin/env python3
"""Writes the GGUF test fixtures (`pip install gguf numpy safetensors`; deterministic output):

tests/fixtures/gguf/gguf_py.gguf  by the `gguf` PyPI package's GGUFWriter: metadata of every value
    type (scalars, strings, arrays of numbers and of strings) and tensors of F32, F16, Q8_0 and Q4_0
    (quantized by gguf.quants), so tests/test_gguf.c checks moekit's reader against an independent
    writer;
tests/fixtures/gguf/tiny_qwen3moe.gguf  a tiny random Qwen3-MoE (1 layer, d_model 64, 4 experts)
    written by `build/moekit quantize --type q8_0` from a checkpoint made here, for the bad-input
    tests (tests/cli/test_bad_gguf.sh) that damage it with tests/cli/gguf_edit.py.
"""
import json
import os
import subprocess
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "gguf", "gguf_py.gguf")
w = gguf.GGUFWriter(out, "testarch")
w.add_uint8("t.u8", 200)
w.add_int8("t.i8", -100)
w.add_uint16("t.u16", 60000)
w.add_int16("t.i16", -30000)
w.add_uint32("t.u32", 4000000000)
w.add_int32("t.i32", -2000000000)
w.add_float32("t.f32", 0.15625)
w.add_bool("t.bool", True)
w.add_string("t.str", "héllo")
w.add_uint64("t.u64", 1 << 40)
w.add_int64("t.i64", -(1 << 40))
w.add_float64("t.f64", 2.5e-300)
w.add_array("t.arr_i32", [1, -2, 3])
w.add_array("t.arr_str", ["a", "", "ccc"])
rng = np.random.default_rng(7)
x = rng.standard_normal((4, 64)).astype(np.float32)
w.add_tensor("a.f32", x)
w.add_tensor("b.f16", x.astype(np.float16))
w.add_tensor("c.q8_0", gguf.quants.quantize(x, T.Q8_0), raw_dtype=T.Q8_0)
w.add_tensor("d.q4_0", gguf.quants.quantize(x, T.Q4_0), raw_dtype=T.Q4_0)
w.add_tensor("e.3d", rng.standard_normal((2, 3, 32)).astype(np.float32))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("wrote", out)


def tiny_qwen3moe(out_gguf):
    from safetensors.numpy import save_file
    H, NH, NKV, DH, E, K, I, V = 64, 2, 1, 32, 4, 2, 64, 96
    cfg = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "vocab_size": V, "hidden_size": H,
           "num_hidden_layers": 1, "num_attention_heads": NH, "num_key_value_heads": NKV, "head_dim": DH,
           "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 128, "num_experts": E,
           "num_experts_per_tok": K, "moe_intermediate_size": I, "intermediate_size": 128, "norm_topk_prob": True,
           "tie_word_embeddings": False, "hidden_act": "silu"}
    r = np.random.default_rng(3)
    t = {"model.embed_tokens.weight": r.standard_normal((V, H)), "model.norm.weight": 1 + 0.1 * r.standard_normal(H),
         "lm_head.weight": 0.1 * r.standard_normal((V, H))}
    p = "model.layers.0."
    t[p + "input_layernorm.weight"] = 1 + 0.1 * r.standard_normal(H)
    t[p + "post_attention_layernorm.weight"] = 1 + 0.1 * r.standard_normal(H)
    for n, shape in (("q_proj", (NH * DH, H)), ("k_proj", (NKV * DH, H)), ("v_proj", (NKV * DH, H)), ("o_proj", (H, NH * DH))):
        t[p + f"self_attn.{n}.weight"] = 0.1 * r.standard_normal(shape)
    t[p + "self_attn.q_norm.weight"] = 1 + 0.1 * r.standard_normal(DH)
    t[p + "self_attn.k_norm.weight"] = 1 + 0.1 * r.standard_normal(DH)
    t[p + "mlp.gate.weight"] = 0.3 * r.standard_normal((E, H))
    for e in range(E):
        t[p + f"mlp.experts.{e}.gate_proj.weight"] = 0.1 * r.standard_normal((I, H))
        t[p + f"mlp.experts.{e}.up_proj.weight"] = 0.1 * r.standard_normal((I, H))
        t[p + f"mlp.experts.{e}.down_proj.weight"] = 0.1 * r.standard_normal((H, I))
    with tempfile.TemporaryDirectory() as td:
        d = os.path.join(td, "tiny_qwen3moe")  # general.name
        os.mkdir(d)
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
        save_file({k: v.astype(np.float32) for k, v in t.items()}, os.path.join(d, "model.safetensors"))
        moekit = os.path.join(os.path.dirname(__file__), "..", "build", "moekit")
        subprocess.run([moekit, "quantize", "-m", d, "--type", "q8_0", "-o", out_gguf], check=True)


tiny_qwen3moe(os.path.join(os.path.dirname(out), "tiny_qwen3moe.gguf"))
