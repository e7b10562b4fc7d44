#!/usr/bin/env python3
"""Independent re-implementation (plain torch, NO transformers) of the forward
pass of every fixture, straight from config.json + *.safetensors, compared
against reference.safetensors.  It checks that the fixtures mean what
formats.md / tests/fixtures/README.md say (layouts, head_dim, qk-norm kinds,
routing normalisation, shared expert, tied embeddings, sharding, bf16).

Usage: python3 tools/check_fixtures.py [tests/fixtures]
"""
import glob
import json
import math
import os
import sys

import torch
from safetensors.torch import load_file

torch.set_grad_enabled(False)


def load_weights(d):
    w = {}
    for fn in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        if fn.endswith("reference.safetensors"):
            continue
        for k, v in load_file(fn).items():
            assert k not in w
            w[k] = v.float()  # bf16 -> f32 is exact
    return w


def rmsnorm(x, g, eps):
    return g * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope(x, pos, theta):  # x [T, n, d], half rotation
    d = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    f = pos[:, None].float() * inv[None]
    cos = torch.cat([f, f], -1).cos()[:, None]
    sin = torch.cat([f, f], -1).sin()[:, None]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def experts_of(w, p, l, e, mt):
    """(gate [I,H], up [I,H], down [H,I]) for expert e of layer l, any layout."""
    if p + "mlp.experts.gate_up_proj" in w:
        gu = w[p + "mlp.experts.gate_up_proj"][e]
        I = gu.shape[0] // 2
        return gu[:I], gu[I:], w[p + "mlp.experts.down_proj"][e]
    if mt == "mixtral":
        q = p + "block_sparse_moe.experts.%d." % e
        return w[q + "w1.weight"], w[q + "w3.weight"], w[q + "w2.weight"]
    q = p + "mlp.experts.%d." % e
    return w[q + "gate_proj.weight"], w[q + "up_proj.weight"], w[q + "down_proj.weight"]


def swiglu(x, g, u, dn):
    return torch.nn.functional.silu(x @ g.T) * (x @ u.T) @ dn.T


def forward(cfg, w, ids, rec=None):
    mt = cfg["model_type"]
    H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or H // nh
    eps = cfg["rms_norm_eps"]
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta"))
    E = cfg.get("num_experts") or cfg.get("num_local_experts")
    k = cfg["num_experts_per_tok"]
    norm_topk = True if mt == "mixtral" else cfg.get("norm_topk_prob", False)
    T = len(ids)
    pos = torch.arange(T)
    x = w["model.embed_tokens.weight"][ids.long()]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        h = rmsnorm(x, w[p + "input_layernorm.weight"], eps)
        a = p + "self_attn."
        q = h @ w[a + "q_proj.weight"].T + w.get(a + "q_proj.bias", 0)
        kk = h @ w[a + "k_proj.weight"].T + w.get(a + "k_proj.bias", 0)
        v = h @ w[a + "v_proj.weight"].T + w.get(a + "v_proj.bias", 0)
        if mt == "olmoe":  # norm over the full projection
            q = rmsnorm(q, w[a + "q_norm.weight"], eps)
            kk = rmsnorm(kk, w[a + "k_norm.weight"], eps)
        q, kk, v = q.view(T, nh, hd), kk.view(T, nkv, hd), v.view(T, nkv, hd)
        if mt == "qwen3_moe":  # per-head norm
            q = rmsnorm(q, w[a + "q_norm.weight"], eps)
            kk = rmsnorm(kk, w[a + "k_norm.weight"], eps)
        q, kk = rope(q, pos, theta), rope(kk, pos, theta)
        g = nh // nkv
        kk, v = kk.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
        s = torch.einsum("thd,shd->hts", q, kk) / math.sqrt(hd) + mask
        o = torch.einsum("hts,shd->thd", s.softmax(-1), v).reshape(T, nh * hd)
        x = x + o @ w[a + "o_proj.weight"].T
        h = rmsnorm(x, w[p + "post_attention_layernorm.weight"], eps)
        rk = p + ("block_sparse_moe.gate.weight" if mt == "mixtral" and p + "block_sparse_moe.gate.weight" in w
                  else "mlp.gate.weight")
        if rk in w:
            logits = h @ w[rk].T
            pr = logits.softmax(-1)
            tv, ti = torch.topk(pr, k, -1)
            if norm_topk:
                tv = tv / tv.sum(-1, keepdim=True)
            y = torch.zeros_like(h)
            for t in range(T):
                for j in range(k):
                    y[t] += tv[t, j] * swiglu(h[t:t + 1], *experts_of(w, p, l, int(ti[t, j]), mt))[0]
            if p + "mlp.shared_expert.gate_proj.weight" in w:
                se = p + "mlp.shared_expert."
                sh = swiglu(h, w[se + "gate_proj.weight"], w[se + "up_proj.weight"], w[se + "down_proj.weight"])
                y = y + torch.sigmoid(h @ w[p + "mlp.shared_expert_gate.weight"].T) * sh
            if rec is not None:
                rec["router_logits.%d" % l], rec["topk_ids.%d" % l], rec["topk_weights.%d" % l] = logits, ti, tv
        else:
            m = p + "mlp."
            y = swiglu(h, w[m + "gate_proj.weight"], w[m + "up_proj.weight"], w[m + "down_proj.weight"])
        x = x + y
        if rec is not None:
            rec["hidden.%d" % l] = x
    x = rmsnorm(x, w["model.norm.weight"], eps)
    head = w["lm_head.weight"] if "lm_head.weight" in w else w["model.embed_tokens.weight"]
    if cfg.get("tie_word_embeddings"):
        assert "lm_head.weight" not in w
    return x @ head.T


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
    bad = 0
    for d in sorted(glob.glob(os.path.join(root, "*", "fixture.json"))):
        d = os.path.dirname(d)
        cfg = json.load(open(os.path.join(d, "config.json")))
        fx = json.load(open(os.path.join(d, "fixture.json")))
        ref = load_file(os.path.join(d, "reference.safetensors"))
        w = load_weights(d)
        rec = {}
        ids = ref["input_ids"]
        logits = forward(cfg, w, ids, rec)
        worst = rel(logits, ref["logits"])
        for l in range(cfg["num_hidden_layers"]):
            worst = max(worst, rel(rec["hidden.%d" % l], ref["hidden.%d" % l]))
        for l in fx["moe_layers"]:
            assert torch.equal(rec["topk_ids.%d" % l].int(), ref["topk_ids.%d" % l]), (d, l)
            worst = max(worst, rel(rec["topk_weights.%d" % l], ref["topk_weights.%d" % l]),
                        rel(rec["router_logits.%d" % l], ref["router_logits.%d" % l]))
        assert sorted(fx["moe_layers"] + fx["dense_layers"]) == list(range(cfg["num_hidden_layers"]))
        # greedy (argmax loop, full recompute)
        seq = ids.clone()
        for _ in range(len(ref["greedy_ids"])):
            nxt = int(forward(cfg, w, seq)[-1].argmax())
            seq = torch.cat([seq, torch.tensor([nxt], dtype=seq.dtype)])
        greedy_ok = torch.equal(seq[len(ids):], ref["greedy_ids"])
        ptot = sum(v.numel() for v in w.values())
        ok = worst < 1e-4 and greedy_ok and ptot == fx["params_total"]
        bad += not ok
        extra = ""
        if "logits_f32model" in ref:
            extra = " (vs f32 model: %.1e)" % rel(logits, ref["logits_f32model"])
        print("%-16s %s max rel err %.1e%s greedy %s params %s" % (
            os.path.basename(d), "OK  " if ok else "FAIL", worst, extra,
            "ok" if greedy_ok else "MISMATCH", "ok" if ptot == fx["params_total"] else "MISMATCH"))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
