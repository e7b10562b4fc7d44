#!/usr/bin/env python3
"""Train the testbed MoE from scratch: a transformers Qwen3MoeForCausalLM on the five-domain corpus.

The model IS the HF class (no re-implementation); its experts run with transformers' own
`experts_implementation` ("grouped_mm" by default; "eager" is the per-expert Python loop), so the trained
weights are a real HF checkpoint by construction.

Data: per-domain token streams (documents joined by <|endoftext|>) cached as uint16 .npy in the scratch dir.
Every batch holds the same number of random --seq-token windows from each of the five domains.
Schedule: linear warmup, then cosine decay to lr_min over --total-tokens (a token budget, not a wall-clock
one, so a run stopped and resumed follows the same schedule on any machine). --stop-at / --time-budget-min
only pause the run (checkpoint and exit); rerunning the same command resumes it.
Router losses, computed here per layer (transformers' load_balancing_loss_func pools the router logits of
all layers before balancing, so one layer can starve an expert another layer over-uses without cost):
  aux = mean over layers of E * sum_i f_li * P_li   (Switch: f = share of top-k slots, P = mean probability)
  z   = mean over layers and tokens of logsumexp(router logits)^2   (ST-MoE router z-loss)
Resumable: an atomic checkpoint (tmp + rename) is written every --ckpt-minutes to the scratch dir.
Runs on CUDA when a GPU is present (--device auto), else on the CPU; bf16 autocast either way.
Log: CSV with train loss (LM, aux, z), throughput and per-domain validation loss every --eval-every steps.
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


def lr_at(a, step, tokens):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    warm_tokens = a.warmup * a.per_domain * len(DOMAINS) * a.seq
    p = min(1.0, max(0.0, (tokens - warm_tokens) / max(1, a.total_tokens - warm_tokens)))
    return a.lr_min + 0.5 * (a.lr - a.lr_min) * (1 + math.cos(math.pi * p))


class LinearCrossEntropy(torch.autograd.Function):
    """mean cross-entropy of softmax(h Wᵀ) against targets, the lm_head product and the loss fused over
    chunks of rows. The same numbers as autocast's bf16 lm_head followed by an fp32 cross_entropy (logits
    rounded to bf16, log-softmax in fp32, the logit gradient rounded to bf16 for the matmul backward), without
    the fp32 copies of the whole (tokens, vocab) logits and their gradient, which cost a third of a CPU step."""

    @staticmethod
    def forward(ctx, h, w, tgt, chunk):
        hb, wb = h.detach().to(torch.bfloat16), w.detach().to(torch.bfloat16)
        n = hb.shape[0]
        logits = torch.empty(n, wb.shape[0], dtype=torch.bfloat16, device=h.device)
        lse = torch.empty(n, dtype=torch.float32, device=h.device)
        total = torch.zeros((), dtype=torch.float64, device=h.device)
        for i in range(0, n, chunk):
            lg = torch.matmul(hb[i:i + chunk], wb.t())
            logits[i:i + chunk] = lg
            lf = lg.float()
            lse[i:i + chunk] = torch.logsumexp(lf, dim=-1)
            total += (lse[i:i + chunk] - lf.gather(1, tgt[i:i + chunk, None]).squeeze(1)).double().sum()
        ctx.save_for_backward(hb, wb, tgt, logits)
        ctx.chunk, ctx.h_dtype, ctx.w_dtype = chunk, h.dtype, w.dtype
        return (total / n).float()

    @staticmethod
    def backward(ctx, g):
        hb, wb, tgt, logits = ctx.saved_tensors
        n, chunk = hb.shape[0], ctx.chunk
        dh = torch.empty(hb.shape, dtype=ctx.h_dtype, device=hb.device)
        dw = torch.zeros(wb.shape, dtype=torch.float32, device=hb.device)
        for i in range(0, n, chunk):
            p = torch.softmax(logits[i:i + chunk], dim=-1, dtype=torch.float32)  # one fused pass
            p.scatter_add_(1, tgt[i:i + chunk, None], torch.full((p.shape[0], 1), -1.0, device=p.device))
            pb = p.to(torch.bfloat16)
            dh[i:i + chunk] = torch.matmul(pb, wb)
            dw += torch.matmul(pb.t(), hb[i:i + chunk]).float()
        scale = g.float() / n  # applied to the small products, not to every logit
        return dh * scale.to(dh.dtype), (dw * scale).to(ctx.w_dtype), None, None


def lm_loss(model, xb, a):
    """(mean next-token cross-entropy, router logits) of a batch of windows."""
    with torch.autocast(a.dev.type, dtype=torch.bfloat16, enabled=bool(a.bf16)):
        out = model.model(input_ids=xb[:, :-1], output_router_logits=True)
    h = out.last_hidden_state
    h = h.reshape(-1, h.shape[-1])
    tgt = xb[:, 1:].reshape(-1)
    if a.bf16 and a.fused_ce:
        lm = LinearCrossEntropy.apply(h, model.lm_head.weight, tgt, 512)
    else:
        with torch.autocast(a.dev.type, dtype=torch.bfloat16, enabled=bool(a.bf16)):
            logits = model.lm_head(h)
        lm = torch.nn.functional.cross_entropy(logits.float(), tgt)
    return lm, out.router_logits


def router_losses(router_logits, k):
    """Per-layer Switch load-balancing loss and ST-MoE z-loss, each averaged over layers; also the
    per-layer slot counts (layers, E) for monitoring starvation."""
    aux = z = 0.0
    counts = []
    for lg in router_logits:
        lg = lg.float()
        E = lg.shape[-1]
        p = torch.softmax(lg, dim=-1)
        sel = torch.topk(p, k, dim=-1).indices
        cnt = torch.zeros(E, device=lg.device).scatter_add_(0, sel.reshape(-1), torch.ones(sel.numel(), device=lg.device))
        f = cnt / sel.numel()
        aux = aux + E * (f * p.mean(0)).sum()
        z = z + (torch.logsumexp(lg, dim=-1) ** 2).mean()
        counts.append(cnt)
    n = len(router_logits)
    return aux / n, z / n, torch.stack(counts)


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
            with torch.autocast(a.dev.type, dtype=torch.bfloat16, enabled=bool(a.bf16)):
                out = model(input_ids=b[:, :-1].to(a.dev), output_router_logits=False)
            logits = out.logits.float()
            tot += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), b[:, 1:].reshape(-1).to(a.dev),
                                                     reduction="sum").item()
        res[d] = tot / (len(xb) * a.seq)
    model.train()
    return res


def cpu_has_native_bf16():
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_name():
    """The CPU's model name and its widest vector extension, for the session record and the model card."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown"
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "unknown")
    flags = info.split()
    isa = ("AVX-512 BF16" if "avx512_bf16" in flags else "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2")
    return "%s, %d cores, %s" % (name, os.cpu_count() or 0, isa)


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
    ap.add_argument("--aux-coef", type=float, default=0.05, help="weight of the load-balancing loss (mean over layers; Switch's 0.01 per layer summed over 6 layers is 0.06)")
    ap.add_argument("--z-coef", type=float, default=1e-3, help="router z-loss weight")
    ap.add_argument("--experts-impl", default="grouped_mm")
    # optimisation
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--per-domain", type=int, default=2, help="windows per domain per batch")
    ap.add_argument("--total-tokens", type=float, default=36e6, help="token budget the cosine schedule spans")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--lr-min", type=float, default=1.5e-4)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--max-steps", type=int, default=10**9)
    ap.add_argument("--stop-at", default=None, help="UTC wall-clock time HH:MM at which to pause (checkpoint and exit)")
    ap.add_argument("--time-budget-min", type=float, default=None, help="pause after this many more minutes")
    ap.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")
    ap.add_argument("--bf16", default="auto", help="bf16 autocast: 1, 0, or auto = on for CUDA and for CPUs with native bf16 "
                    "(avx512_bf16 or amx_bf16); an AVX2-only CPU emulates bf16 at 1/13 of fp32's speed (120 vs 1,600 tok/s measured)")
    ap.add_argument("--fused-ce", type=int, default=1, help="lm_head and cross-entropy fused over row chunks (bf16 only)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--val-windows", type=int, default=32)
    ap.add_argument("--ckpt-minutes", type=float, default=4.0)
    ap.add_argument("--bench", type=int, default=0, help="time N steps and exit (no checkpoint, no log)")
    ap.add_argument("--init-from", default=None, help="continue training an exported model (e.g. models/testbed) with a new warmup and "
                    "cosine over --total-tokens more tokens and a fresh optimizer; its training state is read from --init-state")
    ap.add_argument("--init-state", default="tools/testbed/train_state.json", help="the exported model's train_state.json (export.py)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    a.dev = torch.device("cuda" if (a.device == "auto" and torch.cuda.is_available()) or a.device == "cuda" else "cpu")
    a.bf16 = int(a.bf16) if a.bf16 != "auto" else int(a.dev.type == "cuda" or cpu_has_native_bf16())
    from transformers import Qwen3MoeForCausalLM
    data, eos, vocab = tokenize_corpus(a.corpus, a.tokenizer, a.cache or os.path.join(os.path.dirname(a.scratch.rstrip("/")), "tokens"))
    cfg = model_config(a, vocab, eos)
    model = Qwen3MoeForCausalLM(cfg)
    model.set_experts_implementation(a.experts_impl) if hasattr(model, "set_experts_implementation") else None
    cfg._experts_implementation = a.experts_impl
    model.to(a.dev)
    n_params = sum(p.numel() for p in model.parameters())
    per_expert = 3 * a.hidden * a.moe_ff
    n_active = n_params - a.layers * (a.experts - a.k) * per_expert
    print("params total %.2fM active/token %.2fM experts_impl=%s device=%s" % (n_params / 1e6, n_active / 1e6, a.experts_impl, a.dev),
          flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "gate.weight" not in n]
    nodecay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "gate.weight" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)

    os.makedirs(a.scratch, exist_ok=True)
    ck = os.path.join(a.scratch, "ckpt.pt")
    state = {"step": 0, "tokens": 0, "train_seconds": 0.0, "sessions": []}
    if a.init_from:
        # A continuation phase: the exported weights (BF16 on disk -> FP32 master weights), a fresh AdamW
        # (its moments were not exported) and a new warmup + cosine; the earlier phases' counts are kept in
        # state["prior"] so the log and the model card report the whole run.
        prev = json.load(open(a.init_state))
        pa = prev["args"]
        for key in ("seq", "hidden", "layers", "experts", "moe_ff", "k", "heads", "kv_heads", "head_dim"):
            if pa.get(key) != getattr(a, key):
                sys.exit("train.py: --init-from %s: its run had %s = %r, this one %r" % (a.init_from, key, pa.get(key), getattr(a, key)))
        src = Qwen3MoeForCausalLM.from_pretrained(a.init_from, dtype=torch.float32)
        model.load_state_dict(src.state_dict())
        del src
        ps = prev["state"]
        prior = list(ps.get("prior", []))
        prior.append({k: ps[k] for k in ("step", "tokens", "train_seconds")} | {"total_tokens": pa.get("total_tokens", ps["tokens"]), "lr": pa["lr"],
                                                                                   "sessions": ps.get("sessions", [])})
        state["prior"] = prior
        print("init from %s: %d earlier phase(s), %.1fM tokens" % (a.init_from, len(prior), sum(x["tokens"] for x in prior) / 1e6), flush=True)
    prior_tokens = sum(x["tokens"] for x in state.get("prior", []))
    if os.path.exists(ck) and not a.bench:
        s = torch.load(ck, map_location="cpu", weights_only=False)
        for key in ("seq", "per_domain", "total_tokens", "hidden", "layers", "experts", "moe_ff", "lr", "warmup", "init_from"):
            if s["args"].get(key) != getattr(a, key):
                sys.exit("train.py: %s: checkpoint has %s = %r, this run %r (use a new --scratch for another recipe)"
                         % (ck, key, s["args"].get(key), getattr(a, key)))
        model.load_state_dict(s["model"])
        opt.load_state_dict(s["opt"])
        state = s["state"]
        prior_tokens = sum(x["tokens"] for x in state.get("prior", []))
        state.setdefault("sessions", [])
        print("resumed", {k: v for k, v in state.items() if k != "sessions"}, flush=True)
    pause_at = float("inf")  # seconds of this session's wall clock
    if a.stop_at:
        now = dt.datetime.now(dt.timezone.utc)
        hh, mm = map(int, a.stop_at.split(":"))
        end = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
        if end < now:
            end += dt.timedelta(days=1)
        pause_at = (end - now).total_seconds()
    elif a.time_budget_min:
        pause_at = a.time_budget_min * 60
    session = {"start_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"), "start_step": state["step"],
               "device": str(a.dev), "threads": a.threads, "bf16": a.bf16,
               "cpu": cpu_name() if a.dev.type == "cpu" else torch.cuda.get_device_name(a.dev)}
    state["sessions"].append(session)
    t_session = time.time()

    train = {d: data[(d, "train")] for d in DOMAINS}
    val = {d: data[(d, "validation")] for d in DOMAINS}
    fields = ["step", "tokens", "train_seconds", "lr", "train_loss", "aux_loss", "z_loss", "tok_per_s", "min_slot_share"] + \
             ["val_" + d for d in DOMAINS] + ["val_mean"]
    if not a.bench and not os.path.exists(a.log):
        with open(a.log, "w", newline="") as f:
            csv.writer(f).writerow(fields)

    def save():
        session.update(end_step=state["step"], seconds=round(time.time() - t_session, 1))
        tmp = ck + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state, "args": {k: v for k, v in vars(a).items() if k != "dev"},
                    "config": cfg.to_dict()}, tmp)
        os.replace(tmp, ck)
        print("checkpoint", {k: v for k, v in state.items() if k != "sessions"}, flush=True)

    model.train()
    last_ck = time.time()
    acc = {"lm": 0.0, "aux": 0.0, "z": 0.0, "n": 0, "tok": 0, "sec": 0.0}
    slots = None
    t_bench = None
    tokens_per_step = a.per_domain * len(DOMAINS) * a.seq
    while True:
        step = state["step"]
        if state["tokens"] >= a.total_tokens or step >= a.max_steps or (a.bench and step >= a.bench):
            break
        if time.time() - t_session >= pause_at:
            save()
            print("PAUSED at step %d (%.1fM tokens); rerun the same command to resume" % (step, state["tokens"] / 1e6), flush=True)
            return
        t0 = time.time()
        # the batch is a function of the step (exact resume); a continuation phase draws other windows
        rng = np.random.default_rng([a.seed, step] if not state.get("prior") else [a.seed, len(state["prior"]), step])
        xb = torch.from_numpy(np.concatenate([windows(train[d], rng, a.per_domain, a.seq) for d in DOMAINS])).to(a.dev)
        lr = lr_at(a, step, state["tokens"])
        for g in opt.param_groups:
            g["lr"] = lr
        lm, router_logits = lm_loss(model, xb, a)
        aux, z, cnt = router_losses(router_logits, a.k)
        loss = lm + a.aux_coef * aux + a.z_coef * z
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lmv, auxv, zv = lm.item(), aux.item(), z.item()  # (synchronises a GPU, so dtime is real)
        dtime = time.time() - t0
        slots = cnt.detach() if slots is None else slots + cnt.detach()
        state["step"] += 1
        state["tokens"] += tokens_per_step
        state["train_seconds"] += dtime
        acc["lm"] += lmv; acc["aux"] += auxv; acc["z"] += zv; acc["n"] += 1; acc["tok"] += tokens_per_step; acc["sec"] += dtime
        if a.bench:
            print("step %d loss %.3f aux %.3f z %.2f %.2fs %.0f tok/s" % (step, lmv, auxv, zv, dtime, tokens_per_step / dtime), flush=True)
            if step == 1:
                t_bench = time.time()
            continue
        if state["step"] % 10 == 0:
            print("step %d tok %.2fM lr %.2e loss %.4f aux %.3f z %.2f %.0f tok/s" % (
                state["step"], state["tokens"] / 1e6, lr, lmv, auxv, zv, tokens_per_step / dtime), flush=True)
        done = state["tokens"] >= a.total_tokens
        if state["step"] % a.eval_every == 0 or done:
            v = evaluate(model, val, a)
            share = slots / slots.sum(dim=1, keepdim=True)  # per layer, since the last evaluation
            row = [sum(x["step"] for x in state.get("prior", [])) + state["step"], prior_tokens + state["tokens"],
                   round(sum(x["train_seconds"] for x in state.get("prior", [])) + state["train_seconds"], 1), "%.3e" % lr,
                   "%.4f" % (acc["lm"] / acc["n"]), "%.4f" % (acc["aux"] / acc["n"]), "%.3f" % (acc["z"] / acc["n"]),
                   "%.0f" % (acc["tok"] / acc["sec"]), "%.5f" % share.min().item()] + ["%.4f" % v[d] for d in DOMAINS] + \
                  ["%.4f" % (sum(v.values()) / len(v))]
            with open(a.log, "a", newline="") as f:
                csv.writer(f).writerow(row)
            print("EVAL", dict(zip(fields, row)), flush=True)
            acc = {"lm": 0.0, "aux": 0.0, "z": 0.0, "n": 0, "tok": 0, "sec": 0.0}
            slots = None
        if time.time() - last_ck > a.ckpt_minutes * 60 or done:
            save()
            last_ck = time.time()
    if a.bench and t_bench:
        n = a.bench - 2
        print("BENCH mean over %d steps: %.0f tok/s" % (n, n * tokens_per_step / (time.time() - t_bench)), flush=True)
        return
    save()
    # final weights for export (fp32 state dict + config) in the scratch dir
    final = os.path.join(a.scratch, "final")
    model.save_pretrained(final)
    with open(os.path.join(final, "train_state.json"), "w") as f:
        json.dump({"state": state, "args": {k: v for k, v in vars(a).items() if k != "dev"}, "params_total": n_params,
                   "params_active": n_active, "tokens_per_s": state["tokens"] / state["train_seconds"]}, f, indent=1)
    print("DONE", {k: v for k, v in state.items() if k != "sessions"}, flush=True)


if __name__ == "__main__":
    main()
