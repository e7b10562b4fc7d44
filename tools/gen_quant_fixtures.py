#!/usr/bin/env python3
"""Writes tests/fixtures/quant/quant_ref.safetensors: expected GGUF block bytes and dequantized
values computed by the `gguf` PyPI package's numpy quantizers (gguf.quants), which the C tests
(tests/test_quant.c) must reproduce bit for bit.

  pip install gguf numpy safetensors
  python3 tools/gen_quant_fixtures.py [--ggml-lib PATH/libggml-base.so]

Tensors written (F32 input rows x are (6, 512); U8 blocks are (6, row bytes)):
  x                      the input rows (normal, small-scale, zeros, an outlier, tiny, integers)
  q8_0.q / q8_0.deq      gguf.quants.quantize(x, Q8_0) and dequantize of it
  q4_0.q / q4_0.deq      the same for Q4_0
  mxfp4.q / mxfp4.deq    the same for MXFP4 (ggml's block layout: e, then 16 bytes of nibbles)
  bf16.q / f16.q         BF16 (gguf's numpy RNE) and numpy float16 of x, as raw bytes
  q4_k.blocks / .blocks_deq   random but valid Q4_K blocks and gguf's dequantization of them
  q6_k.blocks / .blocks_deq   the same for Q6_K
Also writes tests/fixtures/quant/mxfp4_hf.safetensors: random MXFP4 weights in the layout of HF's
gpt-oss checkpoints (`blocks` U8 (E, rows, G, 16): adjacent elements in a byte, low nibble first;
`scales` U8 (E, rows, G): E8M0 exponents) and `deq` F32 (E, rows, G*32), transformers'
convert_moe_packed_tensors of them in float32 (transposed back to (E, rows, cols)), which
mk_mxfp4_from_hf + MXFP4 dequantization must reproduce bit for bit. Needs torch and transformers.
The gguf package has no Q4_K / Q6_K quantizer. With --ggml-lib (a libggml-base.so, e.g. from a
llama-cpp-python build) the script also writes q4_k.q / q6_k.q from ggml's own
quantize_row_q4_K_ref / quantize_row_q6_K_ref through ctypes (and q4_k.deq / q6_k.deq, gguf's
dequantization of them; it also checks that ggml's quantize_row_mxfp4_ref gives gguf's MXFP4 bytes), an activation row `act` with act.q8_0 (gguf) / act.q8_k (ggml's
quantize_row_q8_K_ref), and dot.<type> (6): ggml's scalar ggml_vec_dot_<type>_q8_*_generic of each
row with it (from libggml-cpu.so beside libggml-base.so); the C test then checks those too. The committed fixture was made
with the libggml-base.so of llama-cpp-python 0.3.36 (pip, built from source).
"""
import argparse
import ctypes
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from safetensors.numpy import save_file

ROWS, COLS = 6, 512


def inputs(rng):
    x = np.zeros((ROWS, COLS), dtype=np.float32)
    x[0] = rng.standard_normal(COLS)
    x[1] = rng.standard_normal(COLS) * 0.02
    # x[2] stays zero (all-zero blocks)
    x[3] = rng.uniform(-1, 1, COLS)
    x[3, 37] = 25.0
    x[3, 300] = -40.0
    x[4] = rng.standard_normal(COLS) * 1e-6
    x[5] = rng.integers(-8, 8, COLS)
    return x


def random_blocks(rng, n_blocks, size, f16_offsets):
    b = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    for off in f16_offsets:  # sane scales: random halves in [1e-3, 1e-1)
        d = rng.uniform(1e-3, 1e-1, n_blocks).astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
        b[:, off:off + 2] = d
    return b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ggml-lib", help="libggml-base.so for Q4_K/Q6_K reference quantization")
    ap.add_argument("-o", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "quant", "quant_ref.safetensors"))
    a = ap.parse_args()
    rng = np.random.default_rng(20261123)
    x = inputs(rng)
    out = {"x": x}
    for name, t in (("q8_0", T.Q8_0), ("q4_0", T.Q4_0), ("mxfp4", T.MXFP4)):
        q = quants.quantize(x, t)
        out[f"{name}.q"] = np.ascontiguousarray(q)
        out[f"{name}.deq"] = quants.dequantize(q, t).astype(np.float32)
    out["bf16.q"] = np.ascontiguousarray(quants.quantize(x, T.BF16)).view(np.uint8).reshape(ROWS, -1)
    out["f16.q"] = x.astype(np.float16).view(np.uint8).reshape(ROWS, -1)
    # K-quants: gguf can only dequantize; random valid blocks (d, dmin at 0,2 for Q4_K; d at 208 for Q6_K).
    nb = 8
    b4 = random_blocks(rng, nb, 144, [0, 2])
    b6 = random_blocks(rng, nb, 210, [208])
    out["q4_k.blocks"] = b4
    out["q4_k.blocks_deq"] = quants.dequantize(b4.reshape(1, -1), T.Q4_K).reshape(nb, 256).astype(np.float32)
    out["q6_k.blocks"] = b6
    out["q6_k.blocks_deq"] = quants.dequantize(b6.reshape(1, -1), T.Q6_K).reshape(nb, 256).astype(np.float32)
    if a.ggml_lib:
        lib = ctypes.CDLL(a.ggml_lib)
        for name, fn, size in (("q4_k", "quantize_row_q4_K_ref", 144), ("q6_k", "quantize_row_q6_K_ref", 210)):
            f = getattr(lib, fn)
            f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            q = np.zeros((ROWS, COLS // 256 * size), dtype=np.uint8)
            for r in range(ROWS):
                xr = np.ascontiguousarray(x[r])
                f(xr.ctypes.data, q[r].ctypes.data, COLS)
            out[f"{name}.q"] = q
            out[f"{name}.deq"] = quants.dequantize(q, T.Q4_K if name == "q4_k" else T.Q6_K).astype(np.float32)
        f = lib.quantize_row_mxfp4_ref
        f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        q = np.zeros_like(out["mxfp4.q"])
        f(np.ascontiguousarray(x).ctypes.data, q.ctypes.data, ROWS * COLS)
        assert np.array_equal(q, out["mxfp4.q"]), "ggml's MXFP4 quantizer and gguf's disagree"
        # activations quantized by ggml (Q8_K) / gguf (Q8_0), and ggml's scalar dot products
        act = rng.standard_normal(COLS).astype(np.float32)
        out["act"] = act
        out["act.q8_0"] = np.ascontiguousarray(quants.quantize(act.reshape(1, -1), T.Q8_0))
        q8k = np.zeros((1, COLS // 256 * 292), dtype=np.uint8)
        f = lib.quantize_row_q8_K_ref
        f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        f(act.ctypes.data, q8k.ctypes.data, COLS)
        out["act.q8_k"] = q8k
        cpu = ctypes.CDLL(os.path.join(os.path.dirname(a.ggml_lib), "libggml-cpu.so"))
        cpu.ggml_cpu_init()  # fills the f16 → f32 table the CPU kernels read
        for name, fn, act_q in (("q8_0", "ggml_vec_dot_q8_0_q8_0_generic", "act.q8_0"), ("q4_0", "ggml_vec_dot_q4_0_q8_0_generic", "act.q8_0"),
                                ("q4_k", "ggml_vec_dot_q4_K_q8_K_generic", "act.q8_k"), ("q6_k", "ggml_vec_dot_q6_K_q8_K_generic", "act.q8_k"),
                                ("mxfp4", "ggml_vec_dot_mxfp4_q8_0_generic", "act.q8_0")):
            f = getattr(cpu, fn)
            f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            w, av = out[f"{name}.q"], out[act_q]
            res = np.zeros(ROWS, dtype=np.float32)
            for r in range(ROWS):
                wr = np.ascontiguousarray(w[r])
                f(COLS, res[r:].ctypes.data, 0, wr.ctypes.data, 0, av.ctypes.data, 0, 1)
            out[f"dot.{name}"] = res
    os.makedirs(os.path.dirname(a.o), exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, a.o)
    print(f"wrote {a.o}: {', '.join(sorted(out))}")
    hf_mxfp4(os.path.join(os.path.dirname(a.o), "mxfp4_hf.safetensors"))


def hf_mxfp4(path):
    import torch
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    rng = np.random.default_rng(20261207)
    E, R, G = 2, 6, 3
    blocks = rng.integers(0, 256, (E, R, G, 16), dtype=np.uint8)
    scales = rng.integers(100, 141, (E, R, G), dtype=np.uint8)
    scales[0, 0, 0], scales[0, 0, 1], scales[1, 5, 2] = 0, 1, 127  # the subnormal scales, and 2^0
    deq = convert_moe_packed_tensors(torch.from_numpy(blocks), torch.from_numpy(scales), dtype=torch.float32)
    deq = deq.transpose(1, 2).contiguous().numpy()  # transformers returns (E, cols, rows)
    assert deq.shape == (E, R, G * 32)
    save_file({"blocks": blocks, "scales": scales, "deq": deq.astype(np.float32)}, path)
    print(f"wrote {path}: blocks {blocks.shape}, scales {scales.shape}, deq {deq.shape}")


if __name__ == "__main__":
    main()
