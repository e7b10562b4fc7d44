#!/usr/bin/env python3
"""Checks a GGUF file written by `moekit quantize` with independent readers.

  python3 tools/check_gguf.py OUT.gguf HF_DIR [--llama] [--moekit build/moekit]

1. gguf-py (pip install gguf): GGUFReader must read the file; every tensor llama.cpp expects for
   the architecture must be there with the right ggml dims and a valid type; the metadata keys
   must match HF_DIR/config.json; and, for F32/F16/BF16/Q8_0 files, each tensor dequantized by
   gguf-py must equal the HF tensor (Mixtral's attn_q/attn_k after llama.cpp's row permutation,
   stacked experts expert by expert) within the type's rounding.
2. --llama (pip install llama-cpp-python): llama.cpp loads the file and, for F32/F16/BF16 files,
   its greedy continuation of a fixed prompt of token ids must equal `moekit run`'s on the same
   file (for quantized files the agreement is printed: llama.cpp quantizes the activations too).
Prints one line per check and exits non-zero on any failure.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType as T, quants
from safetensors.numpy import load_file

fails = 0


def check(ok, what):
    global fails
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        fails += 1


def field(r, key):
    f = r.fields.get(key)
    if f is None:
        return None
    v = f.contents()
    return v


def permute(w, n_head):  # llama.cpp's LlamaModel.permute (HF → GGUF rows)
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("hf_dir")
    ap.add_argument("--llama", action="store_true")
    ap.add_argument("--moekit", default="build/moekit")
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.hf_dir, "config.json")))
    hf = load_file(os.path.join(a.hf_dir, "model.safetensors"))
    mt = cfg["model_type"]
    arch = {"mixtral": "llama", "qwen2_moe": "qwen2moe", "qwen3_moe": "qwen3moe", "olmoe": "olmoe"}[mt]
    r = GGUFReader(a.gguf)
    check(True, f"GGUFReader reads {a.gguf}: {len(r.tensors)} tensors, {len(r.fields)} fields")
    check(field(r, "general.architecture") == arch, f"general.architecture = {field(r, 'general.architecture')!r}")
    H, L, nh = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    E = cfg.get("num_local_experts", cfg.get("num_experts"))
    I = cfg.get("moe_intermediate_size", cfg.get("intermediate_size"))
    expect_kv = {"block_count": L, "embedding_length": H, "attention.head_count": nh, "attention.head_count_kv": nkv,
                 "expert_count": E, "expert_used_count": cfg["num_experts_per_tok"], "vocab_size": cfg["vocab_size"]}
    if arch in ("qwen2moe", "qwen3moe"):
        expect_kv["expert_feed_forward_length"] = I
    else:
        expect_kv["feed_forward_length"] = I
    for k, v in expect_kv.items():
        got = field(r, f"{arch}.{k}")
        check(got == v, f"{arch}.{k} = {got} (config.json: {v})")
    eps = field(r, f"{arch}.attention.layer_norm_rms_epsilon")
    check(eps is not None and abs(eps - cfg["rms_norm_eps"]) <= 1e-6 * cfg["rms_norm_eps"] + 1e-12, f"{arch}.attention.layer_norm_rms_epsilon = {eps}")
    tensors = {t.name: t for t in r.tensors}
    moe = "block_sparse_moe" if mt == "mixtral" else "mlp"
    names = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight"}
    if "lm_head.weight" in hf:
        names["output.weight"] = "lm_head.weight"
    for l in range(L):
        p, b = f"model.layers.{l}.", f"blk.{l}."
        for g, h in (("attn_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm"), ("attn_q", "self_attn.q_proj"),
                     ("attn_k", "self_attn.k_proj"), ("attn_v", "self_attn.v_proj"), ("attn_output", "self_attn.o_proj"),
                     ("attn_q_norm", "self_attn.q_norm"), ("attn_k_norm", "self_attn.k_norm"), ("ffn_gate_inp", f"{moe}.gate"),
                     ("ffn_gate_shexp", "mlp.shared_expert.gate_proj"), ("ffn_up_shexp", "mlp.shared_expert.up_proj"),
                     ("ffn_down_shexp", "mlp.shared_expert.down_proj"), ("ffn_gate_inp_shexp", "mlp.shared_expert_gate")):
            for suf in ("weight", "bias"):
                if f"{p}{h}.{suf}" in hf:
                    names[f"{b}{g}.{suf}"] = f"{p}{h}.{suf}"
    check(set(tensors) >= set(names), f"all {len(names)} non-expert tensors present")
    typ = None
    bad = []
    for g, h in names.items():
        t = tensors.get(g)
        if t is None:
            continue
        want = hf[h].astype(np.float32)
        if g.endswith("ffn_gate_inp_shexp.weight"):
            want = want.reshape(-1)
        if mt == "mixtral" and g.split(".")[-2] in ("attn_q", "attn_k"):
            want = permute(want, nh if g.split(".")[-2] == "attn_q" else nkv)
        if list(t.shape) != list(reversed(want.shape)):
            bad.append(f"{g} ne {list(t.shape)} vs HF {list(want.shape)}")
            continue
        if t.tensor_type not in (T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_K, T.Q6_K):
            bad.append(f"{g} type {t.tensor_type.name}")
            continue
        if want.ndim == 1 or g.endswith("ffn_gate_inp.weight"):
            if t.tensor_type != T.F32:
                bad.append(f"{g}: {t.tensor_type.name}, expected F32 (norms, biases, routers)")
        elif g.startswith("blk."):
            typ = typ or t.tensor_type
        got = quants.dequantize(t.data, t.tensor_type).reshape(want.shape)
        tol = {T.F32: 0, T.F16: 1e-3, T.BF16: 8e-3, T.Q8_0: 1.2e-2}.get(t.tensor_type)
        if tol is not None:
            err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-12)
            if err > tol:
                bad.append(f"{g}: max error {err:.3g} of max|w| > {tol}")
    check(not bad, "non-expert tensors: shapes, types and values match the HF checkpoint" + ("" if not bad else ": " + "; ".join(bad[:4])))
    parts = (("ffn_gate_exps", "w1", "gate_proj"), ("ffn_up_exps", "w3", "up_proj"), ("ffn_down_exps", "w2", "down_proj"))
    bad = []
    for l in range(L):
        for g, w123, proj in parts:
            t = tensors.get(f"blk.{l}.{g}.weight")
            if t is None:
                bad.append(f"blk.{l}.{g}.weight missing")
                continue
            ex = [hf[f"model.layers.{l}.{moe}.experts.{e}.{w123 if mt == 'mixtral' else proj}.weight"] for e in range(E)]
            want = np.stack(ex).astype(np.float32)
            if list(t.shape) != list(reversed(want.shape)):
                bad.append(f"blk.{l}.{g}.weight ne {list(t.shape)} vs [E, rows, cols] {list(want.shape)}")
                continue
            got = quants.dequantize(t.data, t.tensor_type).reshape(want.shape)
            tol = {T.F32: 0, T.F16: 1e-3, T.BF16: 8e-3, T.Q8_0: 1.2e-2}.get(t.tensor_type)
            if tol is not None:
                err = np.abs(got - want).max() / np.abs(want).max()
                if err > tol:
                    bad.append(f"blk.{l}.{g}: max error {err:.3g} > {tol}")
    check(not bad, f"stacked experts ffn_{{gate,up,down}}_exps [n_embd|n_ff, n_ff|n_embd, {E}] match the HF experts" + ("" if not bad else ": " + "; ".join(bad[:4])))
    if a.llama:
        llama_check(a, cfg)
    print(f"check_gguf: {'all ok' if not fails else f'{fails} failed'}")
    return 1 if fails else 0


def llama_check(a, cfg):
    import llama_cpp
    prompt = [(t * 37 + 11) % cfg["vocab_size"] for t in range(8)]
    n = 12
    mk = subprocess.run([a.moekit, "run", "-m", a.gguf, "--prompt-ids", ",".join(map(str, prompt)), "-n", str(n), "--ignore-eos", "--quiet-stats", "-t", "1"],
                        capture_output=True, text=True)
    check(mk.returncode == 0, f"moekit run on the GGUF ({mk.stderr.strip()[:200]})")
    ours = [int(x) for x in mk.stdout.split()]
    try:
        llm = llama_cpp.Llama(model_path=a.gguf, n_ctx=64, n_threads=1, verbose=False, logits_all=True,
                              type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    except Exception as e:  # noqa: BLE001
        check(False, f"llama.cpp loads the file: {e}")
        return
    check(True, f"llama.cpp {llama_cpp.__version__} loads the file")
    llm.reset()
    llm.eval(prompt)
    theirs = []
    for _ in range(n):
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        tok = int(np.argmax(logits))
        theirs.append(tok)
        llm.eval([tok])
    same = sum(1 for x, y in zip(ours, theirs) if x == y)
    first_diff = next((i for i, (x, y) in enumerate(zip(ours, theirs)) if x != y), None)
    what = f"greedy continuation: moekit {ours} vs llama.cpp {theirs} ({same}/{n} equal, first difference at {first_diff})"
    ftype = field(GGUFReader(a.gguf), "general.file_type")
    if ftype in (0, 1, 32):  # F32, F16, BF16: the same weights, f32 activations on both sides
        check(ours == theirs, what)
    else:  # llama.cpp quantizes activations to Q8_0/Q8_K for its dot products, moekit keeps f32: near-ties may flip
        print("info " + what)


if __name__ == "__main__":
    sys.exit(main())
