#!/usr/bin/env python3
"""Reference fixtures for tests/test_merge.c and tests/cli/test_merge.sh: the published merging
procedures (research/methods.md §2.1 M-SMoE, §2.2 Sub-MoE) written out from their formulas in
numpy/torch, independently of moekit, on the tiny fixture models; plus a check that the checkpoints
`moekit merge` writes load in HF transformers.

Calibration: ids (i*53+7) % vocab for i < 128, run as two sequences of 64 (as test_merge.sh does).
On every MoE layer the block input x is captured; router logits z = x W_r^T; usage f_e = top-k
selections / all selections; M-SMoE similarity = (cos + 1)/2 of router-logit columns; Sub-MoE
similarity = (cos + 1)/2 of the experts' outputs on all calibration tokens (every expert run on
every token).

M-SMoE (MC-SMoE grouping_mixtral.py, no permutation as in its Mixtral script): average keep = E-2
groups per layer with the global threshold; dominants by usage; others join the most similar
dominant; W = sum f_e W_e / (sum f + FP32 eps); router unchanged, members bound.
Sub-MoE: k-means (k = E-3) on rows of the output-similarity matrix, k-means++ seeded as merge.c
documents; joint SVD per projection, concatenated along the input axis, rank ceil(0.5 min(...)),
V blocks merged with usage shares; router unchanged, members bound.

The merged models are built by editing the transformers model in place (each member expert gets the
group's weights), and their logits on the fixture's input_ids are saved.

tests/fixtures/merge/<name>.safetensors:
  logits, freq             msmoe-slice written by moekit from a pseudo-random stats.json (keep E-2,
                           router rows, aligned) and loaded in transformers
  calib_freq (L,E)         usage on the calibration tokens (zeros for dense layers)
  msmoe_sim, submoe_sim    (L,E,E) float32 similarities (0.5 for dense layers)
  msmoe_groups, submoe_groups (L,E) int32: group of each expert, groups numbered by lowest member
                           (-1 for dense layers)
  msmoe_w.<l>.<g>, submoe_w.<l>.<g>  (3, F*H): gate (F,H), up (F,H), down (H,F) of each group of
                           two or more experts
  msmoe_logits, submoe_logits  (T, vocab) of the merged models in transformers
tests/fixtures/merge/<name>.groups.json: the same groups as lists, for the CLI test.
tests/fixtures/merge/deepseek_v3_slice.safetensors: logits, freq of msmoe-slice at half the experts on
                           DeepSeek-V3 (4 router groups): an equal share of each group kept, n_group unchanged.
Usage: python3 tools/gen_merge_reference.py [deepseek_v3] [qwen3_moe] [mixtral] [qwen3_moe_fused]  (default all)
Needs torch + transformers + numpy and a built ./build/moekit.
"""
import json, math, os, random, subprocess, sys, tempfile
import numpy as np
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM
from hf_ref import FIX, MOEKIT, fixture_logits, load_clean

NAMES = ["qwen3_moe", "mixtral", "qwen3_moe_fused"]
N_CALIB, CTX = 128, 64
FP32_EPS = float(np.finfo(np.float32).eps)
SEED, ITERS = 0x5EED, 100
M64 = (1 << 64) - 1


def load(src):
    m = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager")
    return m.eval()


def experts(block):
    """(gate (E,F,H), up (E,F,H), down (E,H,F)) float64 numpy views of a transformers MoE block."""
    gu = block.experts.gate_up_proj.detach().double().numpy()
    F = gu.shape[1] // 2
    return gu[:, :F], gu[:, F:], block.experts.down_proj.detach().double().numpy()


def calibrate(model, moe, k, vocab):
    ids = [(i * 53 + 7) % vocab for i in range(N_CALIB)]
    xs = {l: [] for l in moe}
    hooks = [model.model.layers[l].mlp.register_forward_pre_hook(lambda mod, a, l=l: xs[l].append(a[0].reshape(-1, a[0].shape[-1]).detach().double()))
             for l in moe]
    with torch.no_grad():
        for s in range(0, N_CALIB, CTX):
            model(torch.tensor([ids[s:s + CTX]]))
    for h in hooks:
        h.remove()
    out = {}
    for l in moe:
        x = torch.cat(xs[l]).numpy()
        block = model.model.layers[l].mlp
        z = x @ block.gate.weight.detach().double().numpy().T                      # (T, E)
        E = z.shape[1]
        top = np.argsort(-z, axis=1, kind="stable")[:, :k]
        cnt = np.bincount(top.ravel(), minlength=E).astype(np.float64)
        g, u, d = experts(block)
        outs = []
        for e in range(E):
            a = x @ g[e].T
            a = a / (1 + np.exp(-a)) * (x @ u[e].T)
            outs.append((a @ d[e].T).ravel())
        out[l] = dict(freq=cnt / cnt.sum(), msmoe_sim=cos_sim(z.T), submoe_sim=cos_sim(np.stack(outs)))
    return out


def cos_sim(v):
    n = np.sqrt((v * v).sum(1))
    return ((v @ v.T / (np.outer(n, n) + 1e-30) + 1) / 2).astype(np.float32)


def canonical(label):
    m, out = {}, []
    for x in label:
        m.setdefault(x, len(m))
        out.append(m[x])
    return out


def global_counts(freqs, keep, E):
    """MC-SMoE _assign_num_groups_per_layer: each layer's top usage counts as 1.0; tau = the G-th
    (0-based) of all usages sorted descending; n_l = #{f > tau}."""
    if keep == E:
        return {l: E for l in freqs}
    fl = {}
    for l, f in freqs.items():
        f = f.copy()
        f[int(np.argmax(f))] = 1.0
        fl[l] = f
    allf = np.sort(np.concatenate(list(fl.values())))[::-1]
    tau = allf[keep * len(freqs)]
    assert tau < 1.0
    return {l: int((f > tau).sum()) for l, f in fl.items()}


def msmoe_groups(f, S, n):
    order = sorted(range(len(f)), key=lambda e: (-f[e], e))
    core = order[:n]
    label = [0] * len(f)
    for i, e in enumerate(core):
        label[e] = i
    for e in order[n:]:
        label[e] = int(np.argmax([S[e, c] for c in core]))   # first max: the most used on ties
    return canonical(label)


class SplitMix64:
    def __init__(self, seed):
        self.s = seed & M64

    def unit(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & M64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        return (z >> 11) * 2.0 ** -53


def kmeans(S, k, seed):
    """k-means on the rows of S: k-means++ init drawn from SplitMix64(seed), Lloyd, empty clusters
    refilled with the farthest expert of a cluster of two or more."""
    X = S.astype(np.float64)
    E = len(X)
    rng = SplitMix64(seed)
    first = min(int(rng.unit() * E), E - 1)
    cent = [X[first].copy()]
    while len(cent) < k:
        d2 = np.array([min(((X[e] - c) ** 2).sum() for c in cent) for e in range(E)])
        tot = d2.sum()
        pick = None
        if tot > 0:
            r, acc = rng.unit() * tot, 0.0
            for e in range(E):
                if d2[e] <= 0:
                    continue
                acc += d2[e]
                if acc > r:
                    pick = e
                    break
            if pick is None:
                pick = max(e for e in range(E) if d2[e] > 0)
        else:
            pick = next((e for e in range(E) if e != first), 0)
        cent.append(X[pick].copy())
    cent = np.array(cent)
    label = [0] * E
    for it in range(ITERS):
        prev = list(label)
        d2 = [0.0] * E
        for e in range(E):
            ds = [((X[e] - cent[c]) ** 2).sum() for c in range(k)]
            label[e] = int(np.argmin(ds))
            d2[e] = ds[label[e]]
        for c in range(k):
            if c in label:
                continue
            cand = [e for e in range(E) if label.count(label[e]) > 1]
            far = max(cand, key=lambda e: (d2[e], -e))
            label[far], d2[far] = c, 0.0
        cent = np.array([X[[e for e in range(E) if label[e] == c]].mean(0) for c in range(k)])
        if it > 0 and prev == label:
            break
    return canonical(label)


def union_merge(ws, w, rank_frac):
    """Sub-MoE for one projection: [W_1 .. W_m] = U S [V_1 .. V_m]^T, W = U_r S_r (sum w_i V_i,r)^T."""
    cols = ws[0].shape[1]
    U, s, Vt = np.linalg.svd(np.concatenate(ws, axis=1), full_matrices=False)
    r = max(1, min(len(s), math.ceil(rank_frac * len(s))))
    vm = sum(wi * Vt[:r, i * cols:(i + 1) * cols] for i, wi in enumerate(w))
    return (U[:, :r] * s[:r]) @ vm


def merge(model, cal, groups, how, tensors, prefix):
    """Binds every member of each group of two or more to the group's merged weights (in place) and
    saves those weights as <prefix>.<l>.<g>."""
    for l, label in groups.items():
        block = model.model.layers[l].mlp
        g, u, d = experts(block)
        f = cal[l]["freq"]
        for grp in range(max(label) + 1):
            mem = [e for e in range(len(label)) if label[e] == grp]
            if len(mem) == 1:
                continue
            if how == "msmoe":
                fs = sum(f[e] for e in mem)
                w = [f[e] / (fs + FP32_EPS) if fs > 0 else 1 / len(mem) for e in mem]
                mg, mu, md = (sum(wi * P[e] for wi, e in zip(w, mem)) for P in (g, u, d))
            else:
                fs = sum(f[e] for e in mem)
                w = [f[e] / fs if fs > 0 else 1 / len(mem) for e in mem]
                mg, mu, md = (union_merge([P[e] for e in mem], w, 0.5) for P in (g, u, d))
            F = mg.shape[0]
            with torch.no_grad():
                for e in mem:
                    block.experts.gate_up_proj[e, :F] = torch.from_numpy(mg).float()
                    block.experts.gate_up_proj[e, F:] = torch.from_numpy(mu).float()
                    block.experts.down_proj[e] = torch.from_numpy(md).float()
            tensors[f"{prefix}.{l}.{grp}"] = torch.from_numpy(np.stack([mg.ravel(), mu.ravel(), md.ravel()])).float()


def written_slice(name, src, fx, cfg, n_exp, keep):
    """msmoe-slice written by moekit (keep experts per layer, usage from a pseudo-random stats.json,
    router rows, aligned), loaded in transformers: returns its logits on the fixture's input_ids and
    the usage it was given."""
    n_layer, moe = fx["n_layer"], fx["moe_layers"]
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
        subprocess.run([MOEKIT, "merge", "-m", src, "--method", "msmoe-slice",
                        "--keep", str(keep), "--stats", sp, "-o", dst], check=True)
        rec = json.load(open(os.path.join(dst, "moekit_compression.json")))
        out = json.load(open(os.path.join(dst, "config.json")))
        logits = fixture_logits(load_clean(dst, f"{name} merged"), name)
    return logits, torch.tensor(freq, dtype=torch.float32), rec, out


def main():
    """Fixtures to make (default all): deepseek_v3 and the names in NAMES."""
    want = set(sys.argv[1:]) or {"deepseek_v3"} | set(NAMES)
    out_dir = os.path.join(FIX, "merge")
    os.makedirs(out_dir, exist_ok=True)
    # DeepSeek-V3 (4 router groups, 2 searched): msmoe-slice at half the experts keeps an equal share
    # of each group and merges only within a group, so transformers' group-limited routing (n_group
    # unchanged) picks what moekit picks.
    for name in ["deepseek_v3"] if "deepseek_v3" in want else []:
        src = os.path.join(FIX, name)
        fx = json.load(open(os.path.join(src, "fixture.json")))
        cfg = json.load(open(os.path.join(src, "config.json")))
        n_exp, G = cfg["n_routed_experts"], cfg["n_group"]
        logits, freq, rec, out = written_slice(name, src, fx, cfg, n_exp, n_exp // 2)
        assert out["n_routed_experts"] == n_exp // 2 and out["n_group"] == G, out
        for row in rec["kept_experts"]:
            assert row is None or [e // (n_exp // G) for e in row] == [g for g in range(G) for _ in range(n_exp // 2 // G)], row
        save_file({"logits": logits, "freq": freq}, os.path.join(out_dir, name + "_slice.safetensors"))
        print(f"{name} msmoe-slice keep {n_exp // 2}: kept {rec['kept_experts']}; transformers loaded it (n_group {G})")
    for name in [n for n in NAMES if n in want]:
        src = os.path.join(FIX, name)
        fx = json.load(open(os.path.join(src, "fixture.json")))
        cfg = json.load(open(os.path.join(src, "config.json")))
        n_layer, n_exp, k = fx["n_layer"], fx["n_expert"], fx["k"]
        moe = fx["moe_layers"]
        tensors = {}
        # msmoe-slice, written by moekit and loaded in transformers
        tensors["logits"], tensors["freq"], _, _ = written_slice(name, src, fx, cfg, n_exp, n_exp - 2)
        # the published procedures
        model = load(src)
        cal = calibrate(model, moe, k, cfg["vocab_size"])
        cf = np.zeros((n_layer, n_exp), np.float32)
        sims = {s: np.full((n_layer, n_exp, n_exp), 0.5, np.float32) for s in ("msmoe_sim", "submoe_sim")}
        for l in moe:
            cf[l] = cal[l]["freq"]
            for s in sims:
                sims[s][l] = cal[l][s]
            cal[l]["freq"] = cf[l].astype(np.float64)   # what moekit's test reads back
        tensors["calib_freq"] = torch.from_numpy(cf)
        for s in sims:
            tensors[s] = torch.from_numpy(sims[s])
        counts = global_counts({l: cal[l]["freq"] for l in moe}, n_exp - 2, n_exp)
        gm = {l: msmoe_groups(cal[l]["freq"], sims["msmoe_sim"][l], counts[l]) for l in moe}
        gs = {l: kmeans(sims["submoe_sim"][l], n_exp - 3, SEED + l) for l in moe}
        js = {}
        for key, groups in (("msmoe", gm), ("submoe", gs)):
            lab = np.full((n_layer, n_exp), -1, np.int32)
            for l, g in groups.items():
                lab[l] = g
            tensors[key + "_groups"] = torch.from_numpy(lab)
            m2 = load(src)
            merge(m2, cal, groups, key, tensors, key + "_w")
            tensors[key + "_logits"] = fixture_logits(m2, name)
            js[key] = [None if l not in groups else [[e for e in range(n_exp) if groups[l][e] == j] for j in range(max(groups[l]) + 1)]
                       for l in range(n_layer)]
            print(f"{name} {key}: groups {js[key]}")
        # moekit's published merges load in transformers and agree with the reference
        for key, extra in (("msmoe", ["--keep", str(n_exp - 2)]), ("submoe", ["--keep", str(n_exp - 3), "--rank-frac", "0.5"])):
            with tempfile.TemporaryDirectory() as tmp:
                ids = os.path.join(tmp, "calib.ids")
                open(ids, "w").write(" ".join(str((i * 53 + 7) % cfg["vocab_size"]) for i in range(N_CALIB)))
                dst = os.path.join(tmp, "m")
                subprocess.run([MOEKIT, "merge", "-m", src, "--method", key, "--calib-ids", ids, "--ctx", str(CTX), "-o", dst] + extra, check=True)
                rec = json.load(open(os.path.join(dst, "moekit_compression.json")))
                lg = fixture_logits(load_clean(dst, f"{name} {key}"), name)
                dl = (lg - tensors[key + "_logits"]).abs().max().item()
                print(f"{name} {key}: moekit's checkpoint in transformers vs the reference: max |dlogit| {dl:.2e}; groups {'equal' if rec['groups'] == js[key] else 'DIFFER'}")
        save_file(tensors, os.path.join(out_dir, name + ".safetensors"))
        json.dump(js, open(os.path.join(out_dir, name + ".groups.json"), "w"))


if __name__ == "__main__":
    sys.exit(main())
