#!/usr/bin/env python3
"""What transformers computes when a weight holds NaN or infinity (issue 21: moekit's fast exp
and router softmax once turned such values back into finite logits).

For each case, one row of one weight of tests/fixtures/qwen3_moe is set to a non-finite value and
the fixture's prompt is run through transformers (eager, f32, CPU). Records, per case: how many
logits are non-finite, and the first layer (and first token position in it) whose output
(the residual stream after the layer) holds a non-finite value. Writes
tests/fixtures/nonfinite/reference.json.

usage: python3 tools/gen_nonfinite_reference.py   (from the repository root)
"""
import json
import os
import shutil
import tempfile

import torch
import transformers
from safetensors.torch import load_file, save_file

FIX = "tests/fixtures/qwen3_moe"
OUT = "tests/fixtures/nonfinite/reference.json"
# (tensor, row, value): attention (softmax over NaN scores), the router (softmax over a NaN logit),
# an expert (SwiGLU), an infinite key projection, a dense layer
CASES = [
    ("model.layers.0.self_attn.q_proj.weight", 0, "nan"),
    ("model.layers.0.mlp.gate.weight", 0, "nan"),
    ("model.layers.2.mlp.experts.3.gate_proj.weight", 5, "nan"),
    ("model.layers.0.self_attn.k_proj.weight", 0, "inf"),
    ("model.layers.1.mlp.down_proj.weight", 7, "-inf"),
]


def main():
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    ref = load_file(os.path.join(FIX, "reference.safetensors"))
    ids = ref["input_ids"].long()[None]
    out = {"fixture": FIX, "input_ids": ids[0].tolist(), "transformers": transformers.__version__,
           "torch": torch.__version__, "cases": []}
    for name, row, val in CASES:
        d = tempfile.mkdtemp()
        try:
            for f in ("config.json", "model.safetensors"):
                shutil.copy(os.path.join(FIX, f), d)
            w = load_file(os.path.join(d, "model.safetensors"))
            w[name][row, :] = float(val)
            save_file(w, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
            m = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager",
                                                                  experts_implementation="eager")
            m.eval()
            first = []

            def hook(l):
                def f(mod, inp, o):
                    h = (o[0] if isinstance(o, (tuple, list)) else o)[0]
                    bad = ~torch.isfinite(h).all(dim=-1)
                    if bad.any() and not first:
                        first.append((l, int(bad.nonzero()[0, 0])))
                return f

            hs = [layer.register_forward_hook(hook(l)) for l, layer in enumerate(m.model.layers)]
            with torch.no_grad():
                logits = m(ids).logits[0]
            for h in hs:
                h.remove()
            n_bad = int((~torch.isfinite(logits)).sum())
            case = {"tensor": name, "row": row, "value": val, "nonfinite_logits": n_bad, "n_logits": logits.numel(),
                    "first_layer": first[0][0] if first else None, "first_position": first[0][1] if first else None}
            print(case)
            out["cases"].append(case)
        finally:
            shutil.rmtree(d)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
