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
from safetensors.torch import save_file
from safetensors.torch import load_file
from hf_ref import FIX, MOEKIT, fixture_logits, load_clean

NAMES = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "qwen3_moe_fused"]


def main():
    """Sections to make (default all): random reap camera global."""
    want = set(sys.argv[1:]) or {"random", "reap", "camera", "global", "gptoss"}
    out_dir = os.path.join(FIX, "prune")
    os.makedirs(out_dir, exist_ok=True)
    for name in NAMES if "random" in want else []:
        src = os.path.join(FIX, name)
        cfg = json.load(open(os.path.join(src, "config.json")))
        n_exp = cfg.get("num_local_experts") or cfg.get("num_experts")
        with tempfile.TemporaryDirectory() as tmp:
            dst = os.path.join(tmp, "pruned")
            subprocess.run([MOEKIT, "prune", "-m", src, "--method", "random",
                            "--keep", str(n_exp - 2), "--seed", "7", "-o", dst], check=True)
            rec = json.load(open(os.path.join(dst, "moekit_compression.json")))
            logits = fixture_logits(load_clean(dst, f"{name} pruned"), name)
            kept = [e for row in rec["kept_experts"] if row is not None for e in row]
            save_file({"logits": logits, "kept": torch.tensor(kept, dtype=torch.int32)},
                      os.path.join(out_dir, name + ".safetensors"))
            print(f"{name}: kept {rec['kept_experts']}, transformers loaded it, logits {tuple(logits.shape)}")
    # DeepSeek and GLM-4.5 (issue 23): REAP at 50% from a moekit profile on the fixture's own input_ids. The
    # scores go into the reference too, so the C test makes the same plan without profiling; a
    # group-limited router keeps an equal share of every group (n_group stays as it was).
    for name in ["deepseek_v2_lite", "deepseek_v2_group", "deepseek_v3", "glm4_moe"] if "reap" in want else []:
        src = os.path.join(FIX, name)
        cfg = json.load(open(os.path.join(src, "config.json")))
        n_exp = cfg["n_routed_experts"]
        ids = load_file(os.path.join(src, "reference.safetensors"))["input_ids"].tolist()
        with tempfile.TemporaryDirectory() as tmp:
            ids_path, stats = os.path.join(tmp, "calib.ids"), os.path.join(tmp, "stats.json")
            open(ids_path, "w").write(" ".join(map(str, ids)) + "\n")
            subprocess.run([MOEKIT, "profile", "-m", src, "--data", ids_path, "-o", stats], check=True, capture_output=True)
            dst = os.path.join(tmp, "pruned")
            subprocess.run([MOEKIT, "prune", "-m", src, "--stats", stats, "--method", "reap", "--keep", str(n_exp // 2), "-o", dst],
                           check=True)
            rec = json.load(open(os.path.join(dst, "moekit_compression.json")))
            pc = json.load(open(os.path.join(dst, "config.json")))
            assert pc["n_routed_experts"] == n_exp // 2 and pc.get("n_group") == cfg.get("n_group"), pc
            model = load_clean(dst, f"{name} REAP 50%")
            logits = fixture_logits(model, name)
            L = cfg["num_hidden_layers"]
            reap = json.load(open(stats))["overall"]["reap"]
            moe = [l for l in range(L) if l >= cfg["first_k_dense_replace"]]
            scores = torch.zeros(L, n_exp, dtype=torch.float64)
            for i, l in enumerate(moe):
                scores[l] = torch.tensor(reap[i], dtype=torch.float64)
            kept = [e for row in rec["kept_experts"] if row is not None for e in row]
            save_file({"logits": logits, "kept": torch.tensor(kept, dtype=torch.int32), "scores": scores.contiguous()},
                      os.path.join(out_dir, "reap_" + name + ".safetensors"))
            print(f"reap {name}: kept {rec['kept_experts']}, n_group {pc.get('n_group')}, transformers loaded it")
    # GPT-OSS (issue 24): REAP at 25% and 50% on the F32 and the MXFP4 fixture; the output keeps
    # transformers' fused layout (MXFP4 blocks copied byte for byte), router and expert biases sliced
    # with their experts
    for name in ["gpt_oss", "gpt_oss_mxfp4"] if "gptoss" in want else []:
        src = os.path.join(FIX, name)
        cfg = json.load(open(os.path.join(src, "config.json")))
        n_exp, L = cfg["num_local_experts"], cfg["num_hidden_layers"]
        ids = load_file(os.path.join(src, "reference.safetensors"))["input_ids"].tolist()
        for keep in (n_exp * 3 // 4, n_exp // 2):
            with tempfile.TemporaryDirectory() as tmp:
                ids_path, stats = os.path.join(tmp, "calib.ids"), os.path.join(tmp, "stats.json")
                open(ids_path, "w").write(" ".join(map(str, ids)) + "\n")
                subprocess.run([MOEKIT, "profile", "-m", src, "--data", ids_path, "-o", stats], check=True, capture_output=True)
                dst = os.path.join(tmp, "pruned")
                subprocess.run([MOEKIT, "prune", "-m", src, "--stats", stats, "--method", "reap", "--keep", str(keep), "-o", dst], check=True)
                rec = json.load(open(os.path.join(dst, "moekit_compression.json")))
                pc = json.load(open(os.path.join(dst, "config.json")))
                assert pc["num_local_experts"] == keep, pc
                assert (pc.get("quantization_config") or {}).get("quant_method") == (cfg.get("quantization_config") or {}).get("quant_method")
                logits = fixture_logits(load_clean(dst, f"{name} REAP keep {keep}"), name)
                reap = json.load(open(stats))["overall"]["reap"]
                scores = torch.tensor(reap, dtype=torch.float64).reshape(L, n_exp)
                kept = [e for row in rec["kept_experts"] if row is not None for e in row]
                save_file({"logits": logits, "kept": torch.tensor(kept, dtype=torch.int32), "scores": scores.contiguous()},
                          os.path.join(out_dir, "reap%d_%s.safetensors" % (keep, name)))
                print(f"reap {name} keep {keep}: kept {rec['kept_experts']}, transformers loaded it")
    # CAMERA-P neuron pruning at keep-frac 0.5, calibration ids (i * 53 + 7) % 256 for i < 256.
    for name in ["qwen3_moe", "mixtral", "deepseek_v3", "glm4_moe"] if "camera" in want else []:
        src = os.path.join(FIX, name)
        with tempfile.TemporaryDirectory() as tmp:
            ids_path = os.path.join(tmp, "calib.ids")
            open(ids_path, "w").write(" ".join(str((i * 53 + 7) % 256) for i in range(256)))
            dst = os.path.join(tmp, "camera")
            subprocess.run([MOEKIT, "prune", "-m", src, "--method", "camera",
                            "--keep-frac", "0.5", "--calib-ids", ids_path, "--ctx", "64", "-o", dst], check=True)
            model = load_clean(dst, f"{name} neuron-pruned")
            logits = fixture_logits(model, name)
            save_file({"logits": logits}, os.path.join(out_dir, "camera_" + name + ".safetensors"))
            print(f"camera {name}: d_ff {model.config.to_dict().get('moe_intermediate_size') or model.config.intermediate_size}, transformers loaded it")
    # A global budget written as a per-layer model is moekit-only: transformers must not load it.
    if "global" in want:
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(FIX, "qwen3_moe")
            sp = os.path.join(tmp, "stats.json")
            json.dump({"schema": "moekit.profile", "version": 1,
                       "model": {"n_layer": 3, "n_expert": 8, "d_model": 64, "vocab": 304, "moe_layers": [0, 2]},
                       "overall": {"reap": [[8, 7, 6, 5, 4, 3, 2, 1], [100, 1, 1, 1, 1, 1, 1, 1]]}}, open(sp, "w"))
            dst = os.path.join(tmp, "global")
            subprocess.run([MOEKIT, "prune", "-m", src, "--stats", sp, "--method", "reap", "--keep", "5",
                            "--budget", "global", "-o", dst], check=True)
            counts = json.load(open(os.path.join(dst, "config.json")))["moekit_experts_per_layer"]
            try:
                load_clean(dst, "per-layer model")
            except (RuntimeError, ValueError, SystemExit) as e:
                print(f"per-layer model {counts}: transformers refuses it, as --help says ({str(e).splitlines()[0][:120]})")
            else:
                sys.exit(f"transformers loaded a per-layer model {counts}: update prune --help, it says moekit-only")
    import transformers
    json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "method": "random",
               "seed": 7, "keep": "n_expert - 2"}, open(os.path.join(out_dir, "versions.json"), "w"), indent=2)


if __name__ == "__main__":
    sys.exit(main())
