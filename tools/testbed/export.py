#!/usr/bin/env python3
"""Export a training checkpoint into models/testbed as a BF16 Hugging Face checkpoint and verify it.

Writes config.json, model.safetensors (BF16, hub layout: one gate/up/down_proj per expert),
generation_config.json; copies the training state summary to tools/testbed/train_state.json.
config.json additionally carries the hub-style keys "num_experts" and "rope_theta" (transformers 5 writes
"num_local_experts" and "rope_parameters"), so loaders written against released Qwen3-MoE configs work.
Verification: reloads the exported directory with transformers (eager experts) and compares the loss on
fixed validation windows with the in-memory model rounded to BF16 (must match to 1e-3) and with the
FP32 training weights (reported).
"""
import argparse, json, os, shutil, sys
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as T


def loss_on(model, xb, bf16):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(input_ids=xb[:, :-1])
    lg = out.logits.float()
    return torch.nn.functional.cross_entropy(lg.reshape(-1, lg.size(-1)), xb[:, 1:].reshape(-1)).item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default="/work/testbed-data/run/ckpt.pt")
    ap.add_argument("--out", default="models/testbed")
    ap.add_argument("--tokens", default="/work/testbed-data/tokens")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from transformers import GenerationConfig, Qwen3MoeConfig, Qwen3MoeForCausalLM

    s = torch.load(a.ckpt, map_location="cpu", weights_only=False)
    cfgd = dict(s["config"])
    cfg = Qwen3MoeConfig.from_dict(cfgd)
    cfg.output_router_logits = False  # inference default; training used True (aux loss)
    model = Qwen3MoeForCausalLM(cfg)
    missing, unexpected = model.load_state_dict(s["model"], strict=True), None
    model.eval()

    # fixed verification windows: 4 per domain from the validation streams
    rng = np.random.default_rng(7)
    xb = torch.from_numpy(np.concatenate([T.windows(np.load(os.path.join(a.tokens, d + ".validation.npy"), mmap_mode="r"), rng, 4, 256)
                                          for d in T.DOMAINS]))
    loss_fp32 = loss_on(model, xb, False)

    mb = Qwen3MoeForCausalLM(cfg)
    mb.load_state_dict(s["model"])
    mb = mb.to(torch.bfloat16).eval()
    loss_bf16_mem = loss_on(mb, xb, False)
    mb.config.dtype = torch.bfloat16
    os.makedirs(a.out, exist_ok=True)
    mb.save_pretrained(a.out)
    # hub-compatible extra keys
    p = os.path.join(a.out, "config.json")
    c = json.load(open(p))
    c["num_experts"] = c.get("num_local_experts", cfg.num_experts)
    c["rope_theta"] = c.get("rope_parameters", {}).get("rope_theta", 10000.0)
    c["dtype"] = "bfloat16"
    c["torch_dtype"] = "bfloat16"
    json.dump(c, open(p, "w"), indent=2)
    gen = GenerationConfig(bos_token_id=0, eos_token_id=0, pad_token_id=0, do_sample=True, temperature=0.8,
                           top_p=0.95, top_k=40, max_new_tokens=256)
    gen.save_pretrained(a.out)

    re = Qwen3MoeForCausalLM.from_pretrained(a.out, dtype=torch.bfloat16, experts_implementation="eager").eval()
    loss_reload = loss_on(re, xb, False)
    n_params = sum(t.numel() for t in re.parameters())
    print("loss fp32 %.5f  bf16(in memory) %.5f  bf16(reloaded, eager experts) %.5f  params %d" % (
        loss_fp32, loss_bf16_mem, loss_reload, n_params))
    assert abs(loss_reload - loss_bf16_mem) < 1e-3, "exported model does not reproduce the in-memory loss"
    assert re.config.num_experts == cfg.num_experts and re.config.num_experts_per_tok == cfg.num_experts_per_tok
    info = {"train_tokens": {d: int(len(np.load(os.path.join(a.tokens, d + ".train.npy"), mmap_mode="r"))) for d in T.DOMAINS},
            "state": s["state"], "args": s["args"], "params_total": n_params,
            "verify": {"windows": "4 x 256 tokens per domain (validation)", "loss_fp32": loss_fp32,
                       "loss_bf16_in_memory": loss_bf16_mem, "loss_bf16_reloaded_eager": loss_reload}}
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_state.json"), "w") as f:
        json.dump(info, f, indent=1)
    print("size model.safetensors %.1f MB" % (os.path.getsize(os.path.join(a.out, "model.safetensors")) / 1e6))


if __name__ == "__main__":
    main()
