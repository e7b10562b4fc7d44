#!/usr/bin/env python3
"""Reference values for methods implemented as published (issue 21, item 4), from numpy
re-statements of the papers' formulas (research/methods.md), written to tests/fixtures/methods/:

  topp.json          Top-p routing (Huang et al. 2024, §4.1): sort the softmax descending, keep the
                     smallest prefix whose cumulative sum first exceeds p (the crossing expert
                     included); weights are the raw probabilities. Also the moekit variants: a
                     KMAX cap and :renorm (kept weights rescaled to sum to 1). Read by tests/test_route.c.
  easyep_mixed.json  EASY-EP mixed-domain selection (Dong et al. 2025, §1.2): per domain d and
                     layer l, I^d_{l,e} / sum_j I^d_{l,j}, summed over domains, top-N per layer;
                     plus the pooled variant (raw sums added over domains). A stats.json in the
                     profile schema for tests/fixtures/qwen3_moe, read by tests/cli/test_prune.sh.

  super_rule.json    Super Experts (Su et al. 2025, §1.4; the code's _identify_super_experts):
                     per-expert max |down_proj output| of layers < round(0.75 L), super when
                     > np.percentile(values, 99.5) and > np.max(values) // 10. Grids with planted
                     massive values, and one like the testbed (no massive values). Read by
                     tests/test_super.c.

Dev-only (numpy); CI only reads the committed files.
  /work/venv/bin/python tools/gen_methods_reference.py
"""
import json
import os

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "methods")


def softmax32(z):
    z = np.asarray(z, dtype=np.float32)
    e = np.exp(z - z.max(), dtype=np.float32)
    return (e / e.sum(dtype=np.float32)).astype(np.float32)


def topp_paper(p, thr, kmax=0, renorm=False):
    """Dynamic_MoE top_p_sampling: descending sort, cumsum, first index where cumsum > thr."""
    order = np.argsort(-p, kind="stable")  # ties: lower index first
    cum = np.cumsum(p[order], dtype=np.float32)
    n = int(np.argmax(cum > thr)) + 1 if (cum > thr).any() else len(p)
    if kmax:
        n = min(n, kmax)
    ids = order[:n]
    w = p[ids].astype(np.float64)
    if renorm:
        w = w / w.sum()
    return ids.tolist(), w.tolist(), float(cum[n - 1] - thr)


def gen_topp():
    rng = np.random.default_rng(21)
    E = 16
    cases = []
    while len(cases) < 40:
        z = np.round(rng.normal(0, 1.5, size=E), 3).astype(np.float32)
        p = softmax32(z)
        thr = float(rng.choice([0.1, 0.2, 0.4, 0.6, 0.9]))
        kmax = int(rng.choice([0, 0, 3]))
        cum = np.cumsum(np.sort(p)[::-1], dtype=np.float32)
        if np.min(np.abs(cum - thr)) < 1e-4:  # keep clear of float-rounding ties at the threshold
            continue
        ids, w, _ = topp_paper(p, thr, kmax)
        _, wr, _ = topp_paper(p, thr, kmax, renorm=True)
        cases.append({"logits": [float(x) for x in z], "p": thr, "kmax": kmax, "ids": ids, "weights": w,
                      "weights_renorm": wr})
    json.dump({"method": "top-p routing, Huang et al. 2024 (methods.md 4.1)", "n_expert": E, "cases": cases},
              open(os.path.join(OUT, "topp.json"), "w"), indent=1)
    print(f"topp.json: {len(cases)} cases, experts used {[len(c['ids']) for c in cases]}")


def topn_sorted(row, n):
    return sorted(np.argsort(-row, kind="stable")[:n].tolist())


def gen_easyep():
    # qwen3_moe fixture: 3 layers, MoE layers 0 and 2, 8 experts, k = 4.
    rng = np.random.default_rng(5)
    E, keep = 8, 4
    # Domain "code" has large scores (long, high-norm tokens) favouring experts 0-3; domain "prose"
    # small ones favouring experts 4-7 strongly. Pooled sums follow "code" only.
    code = rng.uniform(50, 100, size=(2, E)) * np.array([1, 1, 1, 1, 0.6, 0.6, 0.6, 0.6])
    prose = rng.uniform(0.01, 0.05, size=(2, E))
    prose[:, 4:] += rng.uniform(0.5, 1.0, size=(2, 4))
    code, prose = np.round(code, 6), np.round(prose, 6)
    norm = code / code.sum(axis=1, keepdims=True) + prose / prose.sum(axis=1, keepdims=True)
    pooled = code + prose
    kept = [topn_sorted(norm[0], keep), None, topn_sorted(norm[1], keep)]
    kept_pooled = [topn_sorted(pooled[0], keep), None, topn_sorted(pooled[1], keep)]
    assert kept != kept_pooled
    stats = {"schema": "moekit.profile", "version": 1,
             "model": {"n_layer": 3, "n_expert": E, "d_model": 64, "vocab": 304, "moe_layers": [0, 2]},
             "datasets": [{"name": "code", "path": "code.ids", "n_tokens": 100, "n_sequences": 2},
                          {"name": "prose", "path": "prose.ids", "n_tokens": 100, "n_sequences": 2}],
             "overall": {"easyep": pooled.tolist()},
             "per_dataset": {"code": {"easyep": code.tolist()}, "prose": {"easyep": prose.tolist()}}}
    json.dump({"method": "EASY-EP mixed domains, Dong et al. 2025 (methods.md 1.2)", "keep": keep,
               "kept_experts": kept, "kept_experts_pooled": kept_pooled, "stats": stats},
              open(os.path.join(OUT, "easyep_mixed.json"), "w"), indent=1)
    print(f"easyep_mixed.json: per-domain normalised {kept}, pooled {kept_pooled}")


def se_rule(vals, count, moe_layers, n_layer):
    incl = round(0.75 * n_layer)
    pop = [(li, e, vals[li][e]) for li, l in enumerate(moe_layers) if l < incl
           for e in range(len(vals[li])) if count[li][e] > 0]
    values = np.array([v for _, _, v in pop])
    pct = np.percentile(values, 99.5)
    fl = np.max(values) // 10
    se = [(li, e, v) for li, e, v in pop if v > pct and v > fl]
    se.sort(key=lambda x: (-x[2], x[0], x[1]))
    return incl, float(pct), float(fl), [[li, e] for li, e, _ in se]


def gen_super():
    rng = np.random.default_rng(3)
    cases = []
    # name, n_layer, moe_layers, E, planted {(moe row, expert): value}
    for name, n_layer, moe, E, planted in (
            ("planted", 8, list(range(8)), 128, {(1, 5): 900.0, (4, 40): 1200.0, (7, 3): 5000.0}),
            ("planted_dense_layer", 5, [0, 1, 3, 4], 64, {(2, 9): 400.0}),
            ("testbed_like", 6, list(range(6)), 32, {})):
        vals = np.round(rng.lognormal(0.3, 0.35, size=(len(moe), E)), 6)
        count = rng.integers(1, 50, size=(len(moe), E))
        count[0, 7] = 0
        vals[0, 7] = 0.0
        for (li, e), v in planted.items():
            vals[li, e] = v
        incl, pct, fl, se = se_rule(vals.tolist(), count.tolist(), moe, n_layer)
        cases.append({"name": name, "n_layer": n_layer, "moe_layers": moe, "n_expert": E, "values": vals.tolist(),
                      "count": count.tolist(), "n_incl": incl, "percentile_99_5": pct, "floor_max_10": fl,
                      "super_experts": se})
        print(f"super_rule.json {name}: incl {incl}, P99.5 {pct:.4f}, floor {fl}, super {se}")
    json.dump({"method": "Super Experts, Su et al. 2025 (methods.md 1.4)", "cases": cases},
              open(os.path.join(OUT, "super_rule.json"), "w"))


def main():
    os.makedirs(OUT, exist_ok=True)
    gen_topp()
    gen_easyep()
    gen_super()


if __name__ == "__main__":
    main()
