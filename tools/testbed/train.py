#!/usr/bin/env python3
"""Train the testbed MoE from scratch: a transformers Qwen3MoeForCausalLM on the five-domain corpus.

The model IS the HF class (no re-implementation); its experts run with transformers' own
`experts_implementation` ("grouped_mm" by default; "eager" is the per-expert Python loop), so the trained
weights are a real HF checkpoint by construction.

Data: per-domain token streams (documents joined by <|endoftext|>) cached as uint16 .npy in the scratch dir.
Every batch holds the same number of random 256-token windows from each of the five domains.
Schedule: linear warmup, then cosine decay to lr_min, driven by progress = max(step/max_steps,
train_seconds/time_budget), so a CPU run ends with an annealed model at a fixed wall-clock time.
Resumable: an atomic checkpoint (tmp + rename) is written every --ckpt-minutes to the scratch dir.
Log: CSV with train loss (LM and aux) and per-domain validation loss every --eval-every steps.
"""
import argparse, csv, datetime as dt, json, math, os, sys, time
import numpy as np
import torch

DOMAINS = ["english", "german", "c", "python", "techdoc"]


def model_config(a, vocab_size, eos_id):
    from transformers import Qwen3MoeConfig
    return Qwen3MoeConfig(
        vocab_size=vocab_size, hidden_size=a.hidden, num_hidden_layers=a.layers,
        num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, head_dim=a.head_dim,
        intermediate_size=a.moe_ff * 4,  # unused: every layer is sparse (decoder_sparse_step=1)
        moe_intermediate_size=a.moe_ff, num_experts=a.experts, num_experts_per_tok=a.k,
        norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        max_position_embeddings=a.max_pos, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        rms_norm_eps=1e-6, hidden_act="silu", attention_bias=False, attention_dropout=0.0,
        tie_word_embeddings=a.tie, output_router_logits=True, router_aux_loss_coef=a.aux_coef,
        bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id, initializer_range=0.02,
        use_cache=True)


def tokenize_corpus(corpus, tokdir, cache):
    """Token streams per domain and split, cached as uint16 .npy (vocab < 65536)."""
    from tokenizers import Tokenizer
    os.makedirs(cache, exist_ok=True)
    tok = Tokenizer.from_file(os.path.join(tokdir, "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    # the cache is only valid for the tokenizer it was made with
    import hashlib
    tsha = hashlib.sha256(open(os.path.join(tokdir, "tokenizer.json"), "rb").read()).hexdigest()
    stamp = os.path.join(cache, "tokenizer.sha256")
    if not os.path.exists(stamp) or open(stamp).read().strip() != tsha:
        for f in os.listdir(cache):
            if f.endswith(".npy"):
                os.remove(os.path.join(cache, f))
        with open(stamp, "w") as f:
            f.write(tsha + "\n")
    out = {}
    for d in DOMAINS:
        for split in ("train", "validation"):
            p = os.path.join(cache, "%s.%s.npy" % (d, split))
            if not os.path.exists(p):
                texts = [json.loads(l)["text"] for l in open(os.path.join(corpus, "%s.%s.jsonl" % (d, split)), encoding="utf-8")]
                ids = []
                for enc in tok.encode_batch(texts, add_special_tokens=False):
                    ids.extend(enc.ids)
                    ids.append(eos)
                arr = np.asarray(ids, dtype=np.uint16)
                np.save(p + ".tmp.npy", arr)
                os.replace(p + ".tmp.npy", p)
            out[(d, split)] = np.load(p, mmap_mode="r")
            print("tokens %-8s %-10s %d" % (d, split, len(out[(d, split)])), flush=True)
    return out, eos, tok.get_vocab_size()


def windows(arr, rng, n, seq):
    starts = rng.integers(0, len(arr) - seq - 1, size=n)
    return np.stack([np.asarray(arr[s:s + seq + 1], dtype=np.int64) for s in starts])


def lr_at(a, step, progress):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    p = min(1.0, progress)
    return a.lr_min + 0.5 * (a.lr - a.lr_min) * (1 + math.cos(math.pi * p))


@torch.no_grad()
def evaluate(model, val, a):
    model.eval()
    res = {}
    for i, d in enumerate(DOMAINS):
        rng = np.random.default_rng(1000 + i)  # fixed windows for every evaluation
        xb = torch.from_numpy(windows(val[d], rng, a.val_windows, a.seq))
        tot = 0.0
        for j in range(0, len(xb), a.per_domain * 2):
            b = xb[j:j + a.per_domain * 2]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(a.bf16)):
                out = model(input_ids=b[:, :-1], output_router_logits=False)
            logits = out.logits.float()
            tot += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), b[:, 1:].reshape(-1),
                                                     reduction="sum").item()
        res[d] = tot / (len(xb) * a.seq)
    model.train()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="/work/testbed-data/corpus")
    ap.add_argument("--tokenizer", default="models/testbed")
    ap.add_argument("--scratch", default="/work/testbed-data/run")
    ap.add_argument("--log", default="tools/testbed/training_log.csv")
    ap.add_argument("--cache", default=None, help="token cache dir (default: <scratch>/../tokens)")
    # architecture
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--experts", type=int, default=32)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--moe-ff", type=int, default=128)
    ap.add_argument("--tie", action="store_true")
    ap.add_argument("--max-pos", type=int, default=2048)
    ap.add_argument("--aux-coef", type=float, default=0.01)
    ap.add_argument("--experts-impl", default="grouped_mm")
    # optimisation
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--per-domain", type=int, default=4, help="windows per domain per batch")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--lr-min", type=float, default=1.5e-4)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--max-steps", type=int, default=10**9)
    ap.add_argument("--stop-at", default=None, help="UTC wall-clock time HH:MM at which training must end")
    ap.add_argument("--time-budget-min", type=float, default=None, help="train this many more minutes (on resume too)")
    ap.add_argument("--bf16", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--val-windows", type=int, default=32)
    ap.add_argument("--ckpt-minutes", type=float, default=4.0)
    ap.add_argument("--bench", type=int, default=0, help="time N steps and exit (no checkpoint, no log)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    from transformers import Qwen3MoeForCausalLM
    data, eos, vocab = tokenize_corpus(a.corpus, a.tokenizer, a.cache or os.path.join(os.path.dirname(a.scratch.rstrip("/")), "tokens"))
    cfg = model_config(a, vocab, eos)
    model = Qwen3MoeForCausalLM(cfg)
    model.set_experts_implementation(a.experts_impl) if hasattr(model, "set_experts_implementation") else None
    cfg._experts_implementation = a.experts_impl
    n_params = sum(p.numel() for p in model.parameters())
    per_expert = 3 * a.hidden * a.moe_ff
    n_active = n_params - a.layers * (a.experts - a.k) * per_expert
    print("params total %.2fM active/token %.2fM experts_impl=%s" % (n_params / 1e6, n_active / 1e6, a.experts_impl), flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "gate.weight" not in n]
    nodecay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "gate.weight" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)

    os.makedirs(a.scratch, exist_ok=True)
    ck = os.path.join(a.scratch, "ckpt.pt")
    state = {"step": 0, "tokens": 0, "train_seconds": 0.0, "budget": None}
    if os.path.exists(ck) and not a.bench:
        s = torch.load(ck, map_location="cpu", weights_only=False)
        model.load_state_dict(s["model"])
        opt.load_state_dict(s["opt"])
        state = s["state"]
        print("resumed", state, flush=True)
    if state["budget"] is None or a.stop_at or a.time_budget_min:
        if a.stop_at:  # (re)computed on every start: a crash or restart does not move the end time
            now = dt.datetime.now(dt.timezone.utc)
            hh, mm = map(int, a.stop_at.split(":"))
            end = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
            state["budget"] = state["train_seconds"] + (end - now).total_seconds()
        elif a.time_budget_min:
            state["budget"] = state["train_seconds"] + a.time_budget_min * 60  # minutes from now
        else:
            state["budget"] = float("inf")
        print("time budget %.0f s" % state["budget"], flush=True)

    train = {d: data[(d, "train")] for d in DOMAINS}
    val = {d: data[(d, "validation")] for d in DOMAINS}
    fields = ["step", "tokens", "train_seconds", "lr", "train_loss", "aux_loss"] + ["val_" + d for d in DOMAINS] + ["val_mean"]
    if not a.bench and not os.path.exists(a.log):
        with open(a.log, "w", newline="") as f:
            csv.writer(f).writerow(fields)

    model.train()
    last_ck = time.time()
    acc_loss = acc_aux = 0.0
    acc_n = 0
    t_bench = None
    while True:
        step = state["step"]
        progress = max(step / a.max_steps, state["train_seconds"] / state["budget"])
        if progress >= 1.0 or (a.bench and step >= a.bench):
            break
        t0 = time.time()
        rng = np.random.default_rng([a.seed, step])  # batch is a function of the step: exact resume
        xb = torch.from_numpy(np.concatenate([windows(train[d], rng, a.per_domain, a.seq) for d in DOMAINS]))
        lr = lr_at(a, step, progress)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(a.bf16)):
            out = model(input_ids=xb[:, :-1], output_router_logits=True)
        logits = out.logits.float()
        lm = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), xb[:, 1:].reshape(-1))
        aux = out.aux_loss.float() if out.aux_loss is not None else torch.zeros(())
        loss = lm + a.aux_coef * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dtime = time.time() - t0
        state["step"] += 1
        state["tokens"] += xb.shape[0] * a.seq
        state["train_seconds"] += dtime  # step time; evaluation/checkpoint time is added below
        acc_loss += lm.item(); acc_aux += aux.item(); acc_n += 1
        if a.bench:
            print("step %d loss %.3f aux %.3f %.2fs %.0f tok/s" % (step, lm.item(), aux.item(), dtime, xb.shape[0] * a.seq / dtime), flush=True)
            if step == 1:
                t_bench = time.time()
            continue
        if state["step"] % 10 == 0:
            print("step %d tok %d lr %.2e loss %.4f aux %.3f %.0f tok/s t=%.0fs/%.0fs" % (
                state["step"], state["tokens"], lr, lm.item(), aux.item(), xb.shape[0] * a.seq / dtime,
                state["train_seconds"], state["budget"]), flush=True)
        done = max(state["step"] / a.max_steps, state["train_seconds"] / state["budget"]) >= 1.0
        t1 = time.time()
        if state["step"] % a.eval_every == 0 or done:
            v = evaluate(model, val, a)
            row = [state["step"], state["tokens"], round(state["train_seconds"], 1), "%.3e" % lr,
                   "%.4f" % (acc_loss / acc_n), "%.4f" % (acc_aux / acc_n)] + ["%.4f" % v[d] for d in DOMAINS] + \
                  ["%.4f" % (sum(v.values()) / len(v))]
            with open(a.log, "a", newline="") as f:
                csv.writer(f).writerow(row)
            print("EVAL", dict(zip(fields, row)), flush=True)
            acc_loss = acc_aux = 0.0
            acc_n = 0
        if time.time() - last_ck > a.ckpt_minutes * 60 or done:
            tmp = ck + ".tmp"
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state, "args": vars(a),
                        "config": cfg.to_dict()}, tmp)
            os.replace(tmp, ck)
            last_ck = time.time()
            print("checkpoint", state, flush=True)
        state["train_seconds"] += time.time() - t1  # wall time, so --stop-at holds
    if a.bench and t_bench:
        n = a.bench - 2
        print("BENCH mean over %d steps: %.0f tok/s" % (n, n * xb.shape[0] * a.seq / (time.time() - t_bench)), flush=True)
        return
    # final weights for export (fp32 state dict + config) in the scratch dir
    final = os.path.join(a.scratch, "final")
    model.save_pretrained(final)
    with open(os.path.join(final, "train_state.json"), "w") as f:
        json.dump({"state": state, "args": vars(a), "params_total": n_params, "params_active": n_active}, f, indent=1)
    print("DONE", state, flush=True)


if __name__ == "__main__":
    main()
