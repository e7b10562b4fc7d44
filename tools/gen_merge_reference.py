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
from safetensors.torch import save_file
from hf_ref import FIX, MOEKIT, fixture_logits, load_clean

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
            subprocess.run([MOEKIT, "merge", "-m", src, "--method", "msmoe",
                            "--keep", str(n_exp - 2), "--stats", sp, "-o", dst], check=True)
            logits = fixture_logits(load_clean(dst, f"{name} merged"), name)
            groups = json.load(open(os.path.join(dst, "moekit_compression.json")))["groups"]
            save_file({"logits": logits, "freq": torch.tensor(freq, dtype=torch.float32)},
                      os.path.join(out_dir, name + ".safetensors"))
            print(f"{name}: groups {groups}; transformers loaded it, logits {tuple(logits.shape)}")


if __name__ == "__main__":
    sys.exit(main())
