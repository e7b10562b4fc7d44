#!/usr/bin/env python3
"""Checks that checkpoints written by `moekit merge` load in HF transformers, and saves the
logits transformers computes on them as fixtures for tests/test_merge.c.

For each fixture: a stats.json with deterministic pseudo-random usage frequencies, then
`moekit merge --method msmoe --keep <E-2> --stats stats.json` (similarity from the router's
weight rows, aligned), load the result with transformers (eager, float32; loading must report
no missing or unexpected tensors) and save tests/fixtures/merge/<name>.safetensors with `logits`
and `freq` ((n_layer, n_expert) float32, zeros for dense layers). Needs torch + transformers
(tools/requirements-dev.txt) and a built ./build/moekit.
"""
import json, os, random, subprocess, sys, tempfile
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
NAMES = ["qwen3_moe", "mixtral", "qwen3_moe_fused"]


def main():
    out_dir = os.path.join(FIX, "merge")
    os.makedirs(out_dir, exist_ok=True)
    for name in NAMES:
        src = os.path.join(FIX, name)
        fx = json.load(open(os.path.join(src, "fixture.json")))
        cfg = json.load(open(os.path.join(src, "config.json")))
        n_layer, n_exp = fx["n_layer"], fx["n_expert"]
        moe = fx["moe_layers"]
        rng = random.Random(name)
        freq = [[0.0] * n_exp for _ in range(n_layer)]
        for l in moe:
            w = [rng.random() for _ in range(n_exp)]
            freq[l] = [x / sum(w) for x in w]
        with tempfile.TemporaryDirectory() as tmp:
            stats = {"schema": "moekit.profile", "version": 1,
                     "model": {"n_layer": n_layer, "n_expert": n_exp, "d_model": cfg["hidden_size"],
                               "vocab": cfg["vocab_size"], "moe_layers": moe},
                     "overall": {"freq": [freq[l] for l in moe]}}
            sp = os.path.join(tmp, "stats.json")
            json.dump(stats, open(sp, "w"))
            dst = os.path.join(tmp, "merged")
            subprocess.run([os.path.join(ROOT, "build", "moekit"), "merge", "-m", src, "--method", "msmoe",
                            "--keep", str(n_exp - 2), "--stats", sp, "-o", dst], check=True)
            model, info = AutoModelForCausalLM.from_pretrained(dst, dtype=torch.float32, attn_implementation="eager",
                                                               experts_implementation="eager", output_loading_info=True)
            model.eval()
            bad = {k: v for k, v in info.items() if v}
            if bad:
                sys.exit(f"{name}: transformers did not load the merged model cleanly: {bad}")
            ids = load_file(os.path.join(src, "reference.safetensors"))["input_ids"].long()[None]
            with torch.no_grad():
                logits = model(ids).logits[0].float().contiguous()
            groups = json.load(open(os.path.join(dst, "moekit_compression.json")))["groups"]
            save_file({"logits": logits, "freq": torch.tensor(freq, dtype=torch.float32)},
                      os.path.join(out_dir, name + ".safetensors"))
            print(f"{name}: groups {groups}; transformers loaded it, logits {tuple(logits.shape)}")


if __name__ == "__main__":
    sys.exit(main())
