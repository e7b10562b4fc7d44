#!/usr/bin/env python3
"""Reference perplexity and multiple-choice log-likelihoods from HF transformers, for moekit eval.

Usage:  python3 tools/gen_eval_reference.py [--fixtures tests/fixtures] [--out tests/fixtures/eval]

For each F32 fixture checkpoint (mixtral, qwen2_moe, qwen3_moe, olmoe) this writes, under --out:

  <name>.ids          token ids (whitespace-separated) of a fixed pseudo-random text (seeded; the
                      fixtures have no tokenizer, so inputs are token ids)
  <name>.mc.jsonl     a few multiple-choice items as {context_ids, choice_ids, choices, gold}, the
                      last with one context per choice (WinoGrande-style)
  <name>.ref.json     reference numbers:
      ppl:    for each (ctx, stride) setting: nll_sum, n_scored, ppl -- HF's "Perplexity of
              fixed-length models" sliding window (windows of ctx tokens starting every stride
              tokens; a window scores the labels after the previous window's end), but with the
              NLL summed per token (log_softmax in float64 of the float32 logits) instead of the
              guide's `loss * (trg_len - 1)` weighting; `ppl_guide` is the guide's literal number,
              for comparison.
      mc:     per item, per choice: loglik of the continuation tokens given the context,
              computed as lm-evaluation-harness's HFLM._loglikelihood_tokens does (one forward of
              (context + continuation)[:-1], log_softmax, sum over the continuation positions).

Model: float32, attn_implementation="eager", CPU, deterministic.  Versions: see
tools/requirements-dev.txt (the same as tools/gen_fixtures.py).
"""
import argparse
import json
import math
import os

import numpy as np
import torch
import transformers

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

FIXTURES = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe"]
N_TOKENS = 150
SETTINGS = [(64, 32), (64, 64), (48, 20)]   # (ctx, stride)


def load(path):
    m = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    return m


@torch.no_grad()
def logprobs(model, ids):
    out = model(torch.tensor([ids], dtype=torch.long))
    return torch.log_softmax(out.logits[0].double(), dim=-1)


@torch.no_grad()
def ppl_exact(model, ids, ctx, stride):
    nll, count, prev_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + ctx, len(ids))
        first = max(prev_end, begin + 1)       # first scored target
        lp = logprobs(model, ids[begin:end])
        for t in range(first, end):
            nll -= lp[t - 1 - begin, ids[t]].item()
            count += 1
        prev_end = end
        if end == len(ids):
            break
    return nll, count


@torch.no_grad()
def ppl_guide(model, ids, ctx, stride):
    """The guide's code, verbatim in substance (loss mean weighted by num_valid_tokens - 1)."""
    enc = torch.tensor([ids], dtype=torch.long)
    seq_len = enc.size(1)
    nll_sum, n_tokens, prev_end_loc = 0.0, 0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + ctx, seq_len)
        trg_len = end_loc - prev_end_loc
        input_ids = enc[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        outputs = model(input_ids, labels=target_ids)
        num_valid_tokens = (target_ids != -100).sum().item()
        num_loss_tokens = num_valid_tokens - 1
        nll_sum += outputs.loss.item() * num_loss_tokens
        n_tokens += num_loss_tokens
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    return math.exp(nll_sum / n_tokens)


@torch.no_grad()
def loglik(model, ctx, cont):
    inp = (ctx + cont)[:-1]
    lp = logprobs(model, inp)
    n = len(cont)
    sel = lp[len(inp) - n:]
    return float(sum(sel[i, cont[i]].item() for i in range(n)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default="tests/fixtures")
    ap.add_argument("--out", default="tests/fixtures/eval")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name in FIXTURES:
        path = os.path.join(args.fixtures, name)
        model = load(path)
        V = model.config.vocab_size
        rng = np.random.default_rng(1234 + len(name))
        # a "text" with some structure: a random walk over a small band of ids mixed with repeats
        ids = [int(x) for x in rng.integers(0, V, N_TOKENS)]
        for i in range(10, N_TOKENS, 7):
            ids[i] = ids[i - 10]
        with open(os.path.join(args.out, name + ".ids"), "w") as f:
            for i in range(0, len(ids), 20):
                f.write(" ".join(str(x) for x in ids[i:i + 20]) + "\n")
        ref = {"fixture": name, "vocab": V, "n_tokens": len(ids), "ppl": [], "mc": [],
               "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}
        for ctx, stride in SETTINGS:
            nll, cnt = ppl_exact(model, ids, ctx, stride)
            ref["ppl"].append({"ctx": ctx, "stride": stride, "nll_sum": nll, "n_scored": cnt,
                               "ppl": math.exp(nll / cnt), "ppl_guide": ppl_guide(model, ids, ctx, stride)})
        # short text (fewer tokens than ctx): one window of its own length
        short = ids[:20]
        nll, cnt = ppl_exact(model, short, 20, 20)
        ref["short"] = {"n_tokens": 20, "nll_sum": nll, "n_scored": cnt, "ppl": math.exp(nll / cnt)}
        with open(os.path.join(args.out, name + ".short.ids"), "w") as f:
            f.write(" ".join(str(x) for x in short) + "\n")
        # multiple choice items
        items = []
        for k in range(6):
            nctx = int(rng.integers(0, 12)) + 1
            c = [int(x) for x in rng.integers(0, V, nctx)]
            nch = 2 + k % 3
            choices = [[int(x) for x in rng.integers(0, V, int(rng.integers(1, 6)))] for _ in range(nch)]
            texts = ["x" * int(rng.integers(1, 30)) for _ in range(nch)]
            items.append({"context_ids": c, "choice_ids": choices, "choices": texts, "gold": int(rng.integers(0, nch))})
        # WinoGrande-style: one context per choice, the same continuation
        cont = [int(x) for x in rng.integers(0, V, 4)]
        items.append({"context_ids": [[int(x) for x in rng.integers(0, V, 6)] for _ in range(2)],
                      "choice_ids": [cont, cont], "gold": 1})
        with open(os.path.join(args.out, name + ".mc.jsonl"), "w") as f:
            for it in items:
                f.write(json.dumps(it) + "\n")
        for it in items:
            cs = it["context_ids"] if it["context_ids"] and isinstance(it["context_ids"][0], list) \
                else [it["context_ids"]] * len(it["choice_ids"])
            ref["mc"].append([loglik(model, c, ch) for c, ch in zip(cs, it["choice_ids"])])
        with open(os.path.join(args.out, name + ".ref.json"), "w") as f:
            json.dump(ref, f, indent=1)
        print(name, [(p["ctx"], p["stride"], round(p["ppl"], 4), round(p["ppl_guide"], 4)) for p in ref["ppl"]])


if __name__ == "__main__":
    main()
