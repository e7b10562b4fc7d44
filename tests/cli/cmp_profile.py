#!/usr/bin/env python3
"""Compares moekit's stats.json with tools/gen_profile_reference.py's reference.json.
Counts must match exactly; scores within 1e-4 relative (absolute floor 1e-7 for values near 0).
Prints the largest relative difference and the first mismatch; exit 1 on a mismatch.
  cmp_profile.py stats.json reference.json          compare with the reference
  cmp_profile.py --same a.json b.json               two stats.json must hold identical numbers
                                                    (everything but the "run" object)"""
import json
import sys

RTOL, ATOL = 1e-4, 1e-7
worst = [0.0, ""]
bad = []


def close(a, b, where):
    if isinstance(a, list) or isinstance(b, list):
        if not (isinstance(a, list) and isinstance(b, list)) or len(a) != len(b):
            bad.append(f"{where}: shape differs")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{where}[{i}]")
        return
    d = abs(a - b)
    rel = d / max(abs(b), 1e-30)
    if d > ATOL and rel > worst[0]:
        worst[:] = [rel, where]
    if d > ATOL + RTOL * abs(b):
        bad.append(f"{where}: {a!r} vs reference {b!r}")


def exact(a, b, where):
    if a != b:
        bad.append(f"{where}: {str(a)[:200]} vs reference {str(b)[:200]}")


def main():
    if sys.argv[1] == "--same":
        a, b = (json.load(open(p)) for p in sys.argv[2:4])
        a.pop("run", None)
        b.pop("run", None)
        if a != b:
            for k in a:
                if a.get(k) != b.get(k):
                    print(f"FAIL: '{k}' differs between {sys.argv[2]} and {sys.argv[3]}")
                    return 1
            print("FAIL: the files differ")
            return 1
        return 0
    s, r = (json.load(open(p)) for p in sys.argv[1:3])
    exact(s["model"]["moe_layers"], r["moe_layers"], "moe_layers")
    slots = [("overall", s["overall"], r["overall"])] + [(n, s["per_dataset"][n], r["per_dataset"][n]) for n in r["per_dataset"]]
    for name, a, b in slots:
        exact(a["n_tokens"], b["n_tokens"], f"{name}.n_tokens")
        exact(a["count"], b["count"], f"{name}.count")
        for k in ("freq", "gate_sum", "gate_mean", "reap", "easyep", "tcess", "norm_mean", "norm_min", "norm_max",
                  "down_absmax", "entropy_mean"):
            close(a[k], b[k], f"{name}.{k}")
    exact(s["coactivation"], r["coactivation"], "coactivation")
    exact([t["counts"] for t in s["transitions"]], r["transitions"], "transitions")
    se, re_ = s["super_experts"], r["super_experts"]
    exact(se["include_layers"], re_["include_layers"], "super_experts.include_layers")
    close(se["percentile_99_5"], re_["percentile_99_5"], "super_experts.percentile_99_5")
    exact([(x["layer"], x["expert"]) for x in se["experts"]], [(x["layer"], x["expert"]) for x in re_["experts"]],
          "super_experts.experts")
    close([x["value"] for x in se["experts"]], [x["value"] for x in re_["experts"]], "super_experts.value")
    close(s["divergence"]["pairs"][0]["js"], r["js"], "divergence.js")
    print(f"max relative difference {worst[0]:.3g} at {worst[1]}")
    for m in bad[:5]:
        print("FAIL:", m)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
