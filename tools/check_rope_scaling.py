#!/usr/bin/env python3
"""Shows that transformers applies a top-level rope_scaling (YaRN here) placed beside the default
rope_parameters of a config that transformers v5 saved (tests/fixtures/qwen3_moe), so a loader that
reads only rope_parameters runs a different RoPE than transformers. moekit follows the same precedence
(tests/cli/test_rope.sh: such a config equals the YaRN fixture qwen3_moe_yarn).

usage: python3 tools/check_rope_scaling.py   (from the repository root; needs torch, transformers)
"""
import json, shutil, tempfile, os, torch, transformers
from safetensors.torch import load_file
d = tempfile.mkdtemp(); src = "tests/fixtures/qwen3_moe"
for f in os.listdir(src): shutil.copy(os.path.join(src, f), d)
c = json.load(open(d + "/config.json")); c["rope_scaling"] = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8}
json.dump(c, open(d + "/config.json", "w"))
ref = load_file(src + "/reference.safetensors")
m = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
print("rope_parameters as loaded:", m.config.rope_parameters)
with torch.no_grad(): lg = m(ref["input_ids"].long()[None]).logits[0]
print("max |dlogit| vs the default-RoPE reference:", (lg - ref["logits"]).abs().max().item())
