#!/usr/bin/env python3
"""Checks `moekit eval --json` output (stdin) against tools/gen_eval_reference.py's numbers.

  eval_check.py ppl REF.json CTX STRIDE TOL      perplexity and n_scored equal the reference
  eval_check.py short REF.json TOL               the short-text reference (one window)
  eval_check.py mc REF.json TOL                  every choice's loglik equals the reference
  eval_check.py kld-zero                         KLD mean/max == 0, top-1 agreement == 1, delta ppl == 0
  eval_check.py kld-range LO HI MIN_TOP1         LO < mean KLD < HI, top-1 >= MIN_TOP1
  eval_check.py same FILE.json KEY...            the listed kld keys equal those in FILE.json (rel 1e-6)
Prints one line; exit 1 on mismatch."""
import json
import sys


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def main():
    mode, out = sys.argv[1], json.load(sys.stdin)
    if mode == "ppl":
        ref = json.load(open(sys.argv[2]))
        ctx, stride, tol = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        r = [p for p in ref["ppl"] if p["ctx"] == ctx and p["stride"] == stride][0]
        d = rel(out["ppl"], r["ppl"])
        ok = d <= tol and out["n_scored"] == r["n_scored"]
        print(f"ppl {out['ppl']:.8g} vs HF {r['ppl']:.8g}: rel diff {d:.2e}, scored {out['n_scored']}/{r['n_scored']}")
    elif mode == "short":
        ref = json.load(open(sys.argv[2]))["short"]
        d = rel(out["ppl"], ref["ppl"])
        ok = d <= float(sys.argv[3]) and out["n_scored"] == ref["n_scored"] and out["n_windows"] == 1
        print(f"short ppl {out['ppl']:.8g} vs HF {ref['ppl']:.8g}: rel diff {d:.2e}, windows {out['n_windows']}")
    elif mode == "mc":
        ref = json.load(open(sys.argv[2]))["mc"]
        tol = float(sys.argv[3])
        d = max(rel(a, b) for A, B in zip(out["loglik"], ref) for a, b in zip(A, B))
        ok = d <= tol and len(out["loglik"]) == len(ref) and all(len(A) == len(B) for A, B in zip(out["loglik"], ref))
        print(f"mc logliks: max rel diff {d:.2e} over {len(ref)} items")
    elif mode == "kld-zero":
        k = out["kld"]
        ok = k["kld_mean"] == 0 and k["kld_max"] == 0 and k["top1_agree"] == 1 and k["delta_ppl"] == 0
        print(f"self KLD mean {k['kld_mean']} max {k['kld_max']} top1 {k['top1_agree']}")
    elif mode == "kld-range":
        k = out["kld"]
        lo, hi, t1 = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
        ok = lo < k["kld_mean"] < hi and k["top1_agree"] >= t1
        print(f"KLD mean {k['kld_mean']:.3g} (want ({lo}, {hi})), top1 {k['top1_agree']:.4f} (want >= {t1})")
    elif mode == "same":
        other = json.load(open(sys.argv[2]))["kld"]
        k = out["kld"]
        ds = {key: rel(k[key], other[key]) if other[key] else abs(k[key]) for key in sys.argv[3:]}
        ok = all(v <= 1e-6 for v in ds.values())
        print("same as exact: " + ", ".join(f"{a} {d:.1e}" for a, d in ds.items()))
    else:
        print("unknown mode " + mode)
        ok = False
    sys.exit(0 if ok else 1)


main()
