#!/usr/bin/env python3
"""Checks that checkpoints written by `moekit prune` load in HF transformers, and saves the
logits transformers computes on them as fixtures for tests/test_prune.c.

For each fixture architecture: `moekit prune --method random --keep <E-2> --seed 7` into a
temporary directory, load it with transformers (eager attention, float32), run the fixture's
input_ids, and write tests/fixtures/prune/<name>.safetensors with `logits` and `kept` (the kept
expert ids per MoE layer, flattened, as I32) so the C test can check that moekit writes the same
plan and computes the same logits. Needs torch + transformers (tools/requirements-dev.txt) and a
built ./build/moekit.
"""
import json, os, subprocess, sys, tempfile
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
NAMES = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "qwen3_moe_fused"]


def main():
    out_dir = os.path.join(FIX, "prune")
    os.makedirs(out_dir, exist_ok=True)
    for name in NAMES:
        src = os.path.join(FIX, name)
        cfg = json.load(open(os.path.join(src, "config.json")))
        n_exp = cfg.get("num_local_experts") or cfg.get("num_experts")
        with tempfile.TemporaryDirectory() as tmp:
            dst = os.path.join(tmp, "pruned")
            subprocess.run([os.path.join(ROOT, "build", "moekit"), "prune", "-m", src, "--method", "random",
                            "--keep", str(n_exp - 2), "--seed", "7", "-o", dst], check=True)
            rec = json.load(open(os.path.join(dst, "moekit_compression.json")))
            model, info = AutoModelForCausalLM.from_pretrained(dst, dtype=torch.float32, attn_implementation="eager",
                                                               experts_implementation="eager", output_loading_info=True)
            model.eval()
            bad = {k: v for k, v in info.items() if v}
            if bad:
                sys.exit(f"{name}: transformers did not load the pruned model cleanly: {bad}")
            ids = load_file(os.path.join(src, "reference.safetensors"))["input_ids"].long()[None]
            with torch.no_grad():
                logits = model(ids).logits[0].float().contiguous()
            kept = [e for row in rec["kept_experts"] if row is not None for e in row]
            save_file({"logits": logits, "kept": torch.tensor(kept, dtype=torch.int32)},
                      os.path.join(out_dir, name + ".safetensors"))
            print(f"{name}: kept {rec['kept_experts']}, transformers loaded it, logits {tuple(logits.shape)}")
    # CAMERA-P neuron pruning at keep-frac 0.5, calibration ids (i * 53 + 7) % 256 for i < 256.
    for name in ["qwen3_moe", "mixtral"]:
        src = os.path.join(FIX, name)
        with tempfile.TemporaryDirectory() as tmp:
            ids_path = os.path.join(tmp, "calib.ids")
            open(ids_path, "w").write(" ".join(str((i * 53 + 7) % 256) for i in range(256)))
            dst = os.path.join(tmp, "camera")
            subprocess.run([os.path.join(ROOT, "build", "moekit"), "prune", "-m", src, "--method", "camera",
                            "--keep-frac", "0.5", "--calib-ids", ids_path, "--ctx", "64", "-o", dst], check=True)
            model, info = AutoModelForCausalLM.from_pretrained(dst, dtype=torch.float32, attn_implementation="eager",
                                                               experts_implementation="eager", output_loading_info=True)
            model.eval()
            bad = {k: v for k, v in info.items() if v}
            if bad:
                sys.exit(f"{name}: transformers did not load the neuron-pruned model cleanly: {bad}")
            ids = load_file(os.path.join(src, "reference.safetensors"))["input_ids"].long()[None]
            with torch.no_grad():
                logits = model(ids).logits[0].float().contiguous()
            save_file({"logits": logits}, os.path.join(out_dir, "camera_" + name + ".safetensors"))
            print(f"camera {name}: d_ff {model.config.to_dict().get('moe_intermediate_size') or model.config.intermediate_size}, transformers loaded it")
    import transformers
    json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "method": "random",
               "seed": 7, "keep": "n_expert - 2"}, open(os.path.join(out_dir, "versions.json"), "w"), indent=2)


if __name__ == "__main__":
    sys.exit(main())
