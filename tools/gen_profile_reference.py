#!/usr/bin/env python3
"""Reference statistics for `moekit profile`, computed with HF transformers forward hooks.

Builds (with --make-model) a tiny random Qwen3-MoE checkpoint with one dense layer, writes two
token-id datasets, runs every sequence through transformers with hooks on each MoE block, and
computes the statistics of docs/stats-schema.md independently of moekit (float64 from the
float32 tensors the hooks see). The output, tests/fixtures/profile/reference.json, is what
tests/cli/test_profile.sh compares moekit's stats.json with (counts exactly, scores to 1e-4
relative). Dev-only: needs torch + transformers (pip); CI only reads the committed files.

  python3 tools/gen_profile_reference.py --make-model --out tests/fixtures/profile
  python3 tools/gen_profile_reference.py --model tests/fixtures/qwen2_moe --name qwen2_moe   # an existing fixture
"""
import argparse
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

CTX = 48  # tokens per sequence in the fixture run (documents are cut into chunks of this size)


def make_model(out):
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
    torch.manual_seed(7)
    cfg = Qwen3MoeConfig(vocab_size=96, hidden_size=32, intermediate_size=48, moe_intermediate_size=16,
                         num_hidden_layers=5, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                         num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, mlp_only_layers=[2],
                         decoder_sparse_step=1, max_position_embeddings=256, rope_theta=10000.0,
                         rms_norm_eps=1e-6, tie_word_embeddings=False, initializer_range=0.2)
    model = Qwen3MoeForCausalLM(cfg).float().eval()
    model.save_pretrained(os.path.join(out, "qwen3_moe"), safe_serialization=True)


def make_data(out):
    """Two datasets with different token distributions; documents of uneven lengths."""
    rng = np.random.default_rng(11)
    docs = {"alpha": [], "beta": []}
    for name, lo, hi in (("alpha", 0, 56), ("beta", 40, 96)):
        for n in (70, 23, 50, 9):
            docs[name].append(rng.integers(lo, hi, size=n).tolist())
    for name, ds in docs.items():
        with open(os.path.join(out, name + ".ids"), "w") as f:
            f.write("# token ids, one document per line (tools/gen_profile_reference.py)\n")
            for d in ds:
                f.write(" ".join(map(str, d)) + "\n")
    return docs


def sequences(docs):
    for d in docs:
        for i in range(0, len(d), CTX):
            yield d[i:i + CTX]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/profile")
    ap.add_argument("--make-model", action="store_true")
    ap.add_argument("--model", help="checkpoint to profile (default: OUT/qwen3_moe)")
    ap.add_argument("--name", help="writes OUT/reference_NAME.json (default: OUT/reference.json)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.make_model:
        make_model(a.out)
    docs = make_data(a.out)
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(a.model or os.path.join(a.out, "qwen3_moe"), dtype=torch.float32).eval()
    cfg = model.config
    L, K = cfg.num_hidden_layers, cfg.num_experts_per_tok
    E = getattr(cfg, "num_experts", None) or cfg.num_local_experts
    moe_layers = [l for l in range(L) if hasattr(model.model.layers[l].mlp, "gate")]
    M = len(moe_layers)
    names = list(docs)
    S = len(names) + 1  # slot len(names) = overall

    def z():
        return np.zeros((S, M, E))
    count, gate_sum, reap_sum, easy_sum, tcess_sum = z(), z(), z(), z(), z()
    norm_sum, norm_max = z(), z()
    norm_min = np.full((S, M, E), np.inf)
    absmax = np.full((S, M, E), -1.0)
    ent_sum, ntok = np.zeros((S, M)), np.zeros((S, M))
    coact = np.zeros((M, E, E), dtype=np.int64)
    trans = np.zeros((max(M - 1, 1), E, E), dtype=np.int64)
    cap = {}

    for l in moe_layers:
        layer = model.model.layers[l]
        layer.post_attention_layernorm.register_forward_hook(
            lambda mod, inp, out, l=l: cap.__setitem__(("h", l), inp[0][0].detach().clone()) or cap.__setitem__(("x", l), out[0].detach().clone()))
        layer.mlp.gate.register_forward_hook(lambda mod, inp, out, l=l: cap.__setitem__(("r", l), tuple(t.detach().clone() for t in out)))

    for si, name in enumerate(names):
        for seq in sequences(docs[name]):
            cap.clear()
            with torch.no_grad():
                model(torch.tensor([seq]), use_cache=False)
            prev = None
            for li, l in enumerate(moe_layers):
                h, x = cap[("h", l)], cap[("x", l)]
                logits, w, ids = cap[("r", l)]
                ex = model.model.layers[l].mlp.experts
                n = len(seq)
                r = torch.zeros_like(x, dtype=torch.float64)
                outs = {}
                for t in range(n):
                    for s in range(K):
                        e = int(ids[t, s])
                        gu = F.linear(x[t:t + 1], ex.gate_up_proj[e])
                        g, u = gu.chunk(2, dim=-1)
                        o = F.linear(F.silu(g) * u, ex.down_proj[e])[0]
                        outs[(t, s)] = o
                        r[t] += float(w[t, s]) * o.double()
                hd = h.double()
                cs = F.cosine_similarity(hd, hd + r, dim=-1)
                st = torch.clamp(1 - cs, min=0)
                zz = logits.double()
                p = torch.softmax(zz, dim=-1)
                ent = -(p * torch.log(p)).sum(-1)
                for t in range(n):
                    for slot in (si, S - 1):
                        ent_sum[slot, li] += float(ent[t])
                        ntok[slot, li] += 1
                        top1 = int(torch.argmax(zz[t]))
                        tcess_sum[slot, li, top1] += float(zz[t, top1])
                        for s in range(K):
                            e = int(ids[t, s])
                            o = outs[(t, s)].double()
                            nrm = float(torch.linalg.vector_norm(o.detach()))
                            gw = float(w[t, s])
                            count[slot, li, e] += 1
                            gate_sum[slot, li, e] += gw
                            reap_sum[slot, li, e] += gw * nrm
                            easy_sum[slot, li, e] += gw * nrm * float(st[t])
                            norm_sum[slot, li, e] += nrm
                            norm_min[slot, li, e] = min(norm_min[slot, li, e], nrm)
                            norm_max[slot, li, e] = max(norm_max[slot, li, e], nrm)
                            absmax[slot, li, e] = max(absmax[slot, li, e], float(o.abs().max()))
                    es = [int(ids[t, s]) for s in range(K)]
                    for e1 in es:
                        for e2 in es:
                            coact[li, e1, e2] += 1
                    if prev is not None:
                        for pe in prev[t]:
                            for e in es:
                                trans[li - 1, pe, e] += 1
                prev = [[int(ids[t, s]) for s in range(K)] for t in range(n)]

    def slot_stats(s):
        c = count[s]
        with np.errstate(invalid="ignore", divide="ignore"):
            T = ntok[s][:, None]
            return {
                "n_tokens": int(ntok[s, 0]),
                "entropy_mean": (ent_sum[s] / ntok[s]).tolist(),
                "count": c.astype(int).tolist(),
                "freq": (c / T).tolist(),
                "gate_sum": gate_sum[s].tolist(),
                "gate_mean": np.where(c > 0, gate_sum[s] / np.maximum(c, 1), 0).tolist(),
                "reap": np.where(c > 0, reap_sum[s] / np.maximum(c, 1), 0).tolist(),
                "easyep": easy_sum[s].tolist(),
                "tcess": (tcess_sum[s] / T).tolist(),
                "norm_mean": np.where(c > 0, norm_sum[s] / np.maximum(c, 1), 0).tolist(),
                "norm_min": np.where(c > 0, norm_min[s], 0).tolist(),
                "norm_max": np.where(c > 0, norm_max[s], 0).tolist(),
                "down_absmax": np.where(c > 0, absmax[s], 0).tolist(),
            }

    # super experts: Su et al.'s rule over the MoE layers < round(0.75 L), max over all tokens
    incl = round(0.75 * L)
    vals = [(absmax[S - 1, li, e], moe_layers[li], e) for li in range(M) for e in range(E)
            if moe_layers[li] < incl and count[S - 1, li, e] > 0]
    v = np.array([t[0] for t in vals])
    p995 = float(np.percentile(v, 99.5))
    fl = float(np.max(v) // 10)
    se = sorted([{"layer": l, "expert": e, "value": float(x)} for x, l, e in vals if x > p995 and x > fl],
                key=lambda d: -d["value"])

    def js(a, b, li):
        P, Q = count[a, li] / count[a, li].sum(), count[b, li] / count[b, li].sum()
        m = (P + Q) / 2
        f = lambda X: sum(x * math.log2(x / y) for x, y in zip(X, m) if x > 0)
        return 0.5 * f(P) + 0.5 * f(Q)

    ref = {
        "ctx": CTX,
        "moe_layers": moe_layers,
        "overall": slot_stats(S - 1),
        "per_dataset": {n: slot_stats(i) for i, n in enumerate(names)},
        "super_experts": {"include_layers": incl, "percentile_99_5": p995, "floor_max_over_10": fl, "experts": se},
        "coactivation": coact.tolist(),
        "transitions": [trans[i].tolist() for i in range(M - 1)],
        "js": [js(0, 1, li) for li in range(M)],
    }
    path = os.path.join(a.out, f"reference_{a.name}.json" if a.name else "reference.json")
    with open(path, "w") as f:
        json.dump(ref, f)
    print("wrote", path, "tokens", int(ntok[S - 1, 0]), "super experts", len(se))


if __name__ == "__main__":
    main()
