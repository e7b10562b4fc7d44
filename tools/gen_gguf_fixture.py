#!/usr/bin/env python3
"""Writes tests/fixtures/gguf/gguf_py.gguf with the `gguf` PyPI package's GGUFWriter: metadata of
every value type (scalars, strings, arrays of numbers and of strings) and tensors of F32, F16, Q8_0
and Q4_0 (quantized by gguf.quants), so tests/test_gguf.c can check moekit's reader against an
independent writer. `pip install gguf numpy`; deterministic output."""
import os

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
