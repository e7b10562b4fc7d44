#!/usr/bin/env python3
"""Reference values for routing overrides, computed in transformers (eager, f32, CPU) on
tests/fixtures/qwen3_moe (8 experts, top-4, norm_topk_prob), written to
tests/fixtures/route/reference.json:

  experts_k: `moekit eval --experts 2 --kld-base BASE` -- the model with num_experts_per_tok = 2
             (top-2, renormalised as the config says) against the unchanged model, over HF's
             sliding windows (ctx 64, stride 32) of tests/fixtures/eval/qwen3_moe.ids: mean,
             median and max KL(base || top-2) over the scored positions, top-1 agreement, and
             both perplexities.
  scmoe:     `moekit run --scmoe A:B:R` -- SCMoE (Shi et al., 2024; research/methods.md 4.4)
             greedy decoding: strong = the model as configured, weak = rank-R routing (each token
             to the expert at 0-based rank R of its router probabilities, weight 1); each step
             picks argmax over v of (1+B) z_s - B z_w among tokens with z_s >= log A + max z_s.
             Each pass keeps its own sequence (full recompute per step, no KV cache).
  zero:      `moekit eval --route zero:FILE` -- experts (layer 0, expert 3) and (layer 2, expert 5)
             with their down_proj zeroed (routing unchanged: the Super Experts paper's removal):
             perplexity over the same windows, and the kept-experts file (zero.kept.json).

usage: python3 tools/gen_route_reference.py   (from the repository root)
"""
import json
import math

import torch
import transformers

FIX = "tests/fixtures/qwen3_moe"
IDS = "tests/fixtures/eval/qwen3_moe.ids"
OUT = "tests/fixtures/route/reference.json"
CTX, STRIDE = 64, 32
PROMPT = [1, 2, 3, 4]
N_NEW = 12
SCMOE = [(0.1, 0.5, 2), (0.1, 1.0, 0), (0.5, 0.5, 3)]
ZERO = [(0, 3), (2, 5)]
ZERO_FILE = "tests/fixtures/route/zero.kept.json"


def load(k=None):
    m = transformers.AutoModelForCausalLM.from_pretrained(FIX, dtype=torch.float32, attn_implementation="eager",
                                                          experts_implementation="eager")
    if k is not None:
        m.config.num_experts_per_tok = k
        for layer in m.model.layers:
            if hasattr(layer.mlp, "gate"):
                layer.mlp.gate.top_k = k
    m.eval()
    return m


def rank_routing(model, rank):
    """Forward hooks on every router: each token goes to the expert at 0-based rank `rank` of its
    router probabilities, with weight 1 (what moekit's rank:R policy does)."""
    def hook(mod, inp, out):
        logits = out[0]
        order = torch.argsort(torch.softmax(logits.float(), dim=-1), dim=-1, descending=True, stable=True)
        idx = order[:, rank:rank + 1]
        return logits, torch.ones_like(idx, dtype=out[1].dtype), idx
    return [layer.mlp.gate.register_forward_hook(hook) for layer in model.model.layers if hasattr(layer.mlp, "gate")]


@torch.no_grad()
def logprobs(model, ids):
    return torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)


@torch.no_grad()
def windows(model_a, model_b, ids):
    """HF sliding windows: per scored target, (log p_a, log p_b) over the vocabulary."""
    out, prev_end = [], 0
    for begin in range(0, len(ids), STRIDE):
        end = min(begin + CTX, len(ids))
        first = max(prev_end, begin + 1)
        la, lb = logprobs(model_a, ids[begin:end]), logprobs(model_b, ids[begin:end])
        for t in range(first, end):
            out.append((la[t - 1 - begin], lb[t - 1 - begin], ids[t]))
        prev_end = end
        if end == len(ids):
            break
    return out


def main():
    transformers.logging.set_verbosity_error()
    ids = [int(x) for x in open(IDS).read().split()]
    base, k2 = load(), load(2)
    # the top-2 model really routes to 2 experts
    seen = []
    h = k2.model.layers[0].mlp.gate.register_forward_hook(lambda m, i, o: seen.append(o[2].shape[-1]))
    k2(torch.tensor([ids[:8]]))
    h.remove()
    assert seen == [2], seen
    rows = windows(base, k2, ids)
    kld = [float((lb.exp() * (lb - la)).sum()) for lb, la, _ in rows]
    top1 = sum(int(lb.argmax() == la.argmax()) for lb, la, _ in rows) / len(rows)
    nll_base = -sum(float(lb[t]) for lb, _, t in rows)
    nll_k = -sum(float(la[t]) for _, la, t in rows)
    ks = sorted(kld)
    ref = {"fixture": FIX, "transformers": transformers.__version__, "torch": torch.__version__,
           "experts_k": {"ids": IDS, "ctx": CTX, "stride": STRIDE, "k": 2, "n_scored": len(rows),
                         "kld_mean": sum(kld) / len(kld), "kld_median": (ks[(len(ks) - 1) // 2] + ks[len(ks) // 2]) / 2,
                         "kld_max": max(kld), "top1_agree": top1,
                         "ppl": math.exp(nll_k / len(rows)), "base_ppl": math.exp(nll_base / len(rows))},
           "scmoe": []}
    print("experts_k", ref["experts_k"])
    for alpha, beta, rank in SCMOE:
        weak = load()
        hooks = rank_routing(weak, rank)
        s, w = list(PROMPT), list(PROMPT)
        gen, greedy = [], []
        with torch.no_grad():
            g = list(PROMPT)
            for _ in range(N_NEW):
                zs = base(torch.tensor([s])).logits[0, -1].double()
                zw = weak(torch.tensor([w])).logits[0, -1].double()
                cutoff = math.log(alpha) + float(zs.max())
                score = torch.where(zs >= cutoff, (1 + beta) * zs - beta * zw, torch.tensor(-math.inf, dtype=torch.float64))
                top2 = torch.topk(score, 2).values
                tok = int(score.argmax())
                gen.append(tok)
                s.append(tok)
                w.append(tok)
                zg = base(torch.tensor([g])).logits[0, -1]
                g.append(int(zg.argmax()))
                greedy.append(g[-1])
                assert float(top2[0] - top2[1]) > 1e-3, ("near tie", alpha, beta, rank, top2)
        for hk in hooks:
            hk.remove()
        case = {"alpha": alpha, "beta": beta, "rank": rank, "prompt": PROMPT, "ids": gen, "greedy": greedy}
        print(case)
        ref["scmoe"].append(case)
    z = load()
    with torch.no_grad():
        for l, e in ZERO:
            z.model.layers[l].mlp.experts.down_proj[e].zero_()
    rows = windows(z, z, ids)
    nll = -sum(float(la[t]) for _, la, t in rows)
    ref["zero"] = {"ids": IDS, "ctx": CTX, "stride": STRIDE, "zeroed": ZERO, "n_scored": len(rows), "ppl": math.exp(nll / len(rows)),
                   "base_ppl": ref["experts_k"]["base_ppl"]}
    print("zero", ref["zero"])
    E, L = base.config.num_experts, base.config.num_hidden_layers
    moe = [l for l, layer in enumerate(base.model.layers) if hasattr(layer.mlp, "gate")]
    kept = [[x for x in range(E) if (l, x) not in ZERO] if l in moe else None for l in range(L)]
    with open(ZERO_FILE, "w") as f:
        json.dump({"kept_experts": kept}, f)
        f.write("\n")
    with open(OUT, "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
