"""What the gen_*_reference.py tools share: loading a checkpoint moekit wrote with transformers
(eager attention and experts, float32), insisting it loads cleanly, and its logits on a fixture's
input_ids."""
import os, sys
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
MOEKIT = os.path.join(ROOT, "build", "moekit")


def load_clean(model_dir, what):
    """The model in model_dir, or exit naming `what` if transformers reports any missing,
    unexpected or mismatched tensor. MXFP4 checkpoints (GPT-OSS) are dequantized by transformers."""
    import json
    kw = {}
    if (json.load(open(os.path.join(model_dir, "config.json"))).get("quantization_config") or {}).get("quant_method") == "mxfp4":
        from transformers import Mxfp4Config
        kw["quantization_config"] = Mxfp4Config(dequantize=True)
    model, info = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager",
                                                       experts_implementation="eager", output_loading_info=True, **kw)
    model.eval()
    bad = {k: v for k, v in info.items() if v}
    if bad:
        sys.exit(f"{what}: transformers did not load {model_dir} cleanly: {bad}")
    return model


def fixture_logits(model, fixture):
    """(T, vocab) float32 logits of model on tests/fixtures/<fixture>/reference.safetensors' input_ids."""
    ids = load_file(os.path.join(FIX, fixture, "reference.safetensors"))["input_ids"].long()[None]
    with torch.no_grad():
        return model(ids).logits[0].float().contiguous()
