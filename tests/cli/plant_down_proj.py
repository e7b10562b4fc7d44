# Multiplies the down_proj weights of chosen experts of an F32 per-expert safetensors file in place:
#   plant_down_proj.py FILE SCALE LAYER:EXPERT...
# so that those experts emit massive activations (tests/cli/test_super.sh). Standard library only.
import json, struct, sys
from array import array
path, scale = sys.argv[1], float(sys.argv[2])
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    for t in sys.argv[3:]:
        l, e = t.split(":")
        ti = h[f"model.layers.{l}.mlp.experts.{e}.down_proj.weight"]
        assert ti["dtype"] == "F32", ti
        lo, hi = ti["data_offsets"]
        f.seek(8 + n + lo)
        v = array("f")
        v.frombytes(f.read(hi - lo))
        f.seek(8 + n + lo)
        f.write(array("f", [x * scale for x in v]).tobytes())
