#!/usr/bin/env python3
"""Turns bench_compress.sh's raw rows into bench/results-compress.md and the routing plot (.svg).

Standard library only. Input: JSON lines {"label", "domain", "result": moekit eval --json} and
{"label", "seconds"} for the prune/merge commands. Every number in the report is computed here from
those lines; nothing is typed in by hand.
"""
import argparse
import collections
import datetime
import json
import math
import os
import re
import subprocess


def load_rows(path):
    by = collections.OrderedDict()
    for line in open(path):
        r = json.loads(line)
        by.setdefault(r["label"], {})[r["domain"]] = r["result"]
    return by


def kld(res):
    k = res.get("kld") if isinstance(res, dict) else None
    return k if isinstance(k, dict) else {}


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def gmean(xs):
    xs = [x for x in xs if x is not None and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


class Row:
    """One configuration evaluated on one or more domains."""

    def __init__(self, label, res, base):
        self.label = label
        self.res = res
        self.ppl = {d: r.get("ppl") for d, r in res.items() if isinstance(r, dict)}
        self.ratio = {d: self.ppl[d] / base[d] for d in self.ppl if self.ppl[d] and d in base}
        self.kld = mean([kld(r).get("kld_mean") for r in res.values()])
        t1 = mean([kld(r).get("top1_agree") for r in res.values()])
        self.top1 = None if t1 is None else 100 * t1
        self.ept = mean([r.get("experts_per_token_mean") for r in res.values() if isinstance(r, dict)])
        self.gratio = gmean(self.ratio.values())
        self.error = any(not isinstance(r, dict) or r.get("error") for r in res.values())


def fmt(v, f="{:.2f}"):
    return "-" if v is None else f.format(v)


def table(rows, doms, first="row"):
    out = [f"| {first} | " + " | ".join(doms) + " | ppl / base | mean KLD | top-1 % | experts/token |",
           "|---|" + "---:|" * (len(doms) + 4)]
    for r in rows:
        cells = []
        for d in doms:
            p = r.ppl.get(d)
            cells.append("" if p is None else f"{p:.2f}")
        out.append(f"| {r.label} | " + " | ".join(cells) +
                   f" | {fmt(r.gratio, '{:.3f}')} | {fmt(r.kld, '{:.4f}')} | {fmt(r.top1, '{:.1f}')} | {fmt(r.ept)} |")
    return out


def svg_plot(points, path, base_ppl_note):
    """points: {series: [(x experts/token, mean KLD, ppl ratio, label)]} -> a two-panel SVG."""
    W, H, M = 460, 320, 56
    colors = {"top-k": "#1f77b4", "top-p": "#ff7f0e", "top-p capped at k": "#2ca02c",
              "skip (beta)": "#d62728", "skip:auto (NAEE)": "#9467bd", "top-p renormalised": "#8c564b"}
    xs = [p[0] for s in points.values() for p in s]
    lx0, lx1 = math.log2(min(0.8, min(xs))), math.log2(max(xs) * 1.15)   # log2 x axis: 1, 2, 4, ... experts
    panels = [("mean KLD vs base (nats)", 1), ("perplexity / base (geo. mean)", 2)]
    body = []
    for pi, (title, idx) in enumerate(panels):
        ox = pi * (W + 20)
        ys = [p[idx] for s in points.values() for p in s]
        ylo = 0.0 if idx == 1 else min(1.0, min(ys))
        yhi = max(ys) * 1.05 if idx == 1 else max(ys) + 0.05 * (max(ys) - ylo + 1e-9)
        sx = lambda x: ox + M + (W - M - 10) * (math.log2(x) - lx0) / (lx1 - lx0)
        sy = lambda y: H - M + 10 - (H - M - 10) * (y - ylo) / (yhi - ylo + 1e-12)
        body.append(f'<rect x="{ox + M}" y="10" width="{W - M - 10}" height="{H - M}" fill="none" stroke="#888"/>')
        body.append(f'<text x="{ox + W / 2}" y="{H - 12}" text-anchor="middle" font-size="12">experts per token (mean over layers, log scale)</text>')
        body.append(f'<text x="{ox + 14}" y="{(H - M) / 2 + 10}" text-anchor="middle" font-size="12" '
                    f'transform="rotate(-90 {ox + 14} {(H - M) / 2 + 10})">{title}</text>')
        xv = 1
        while math.log2(xv) <= lx1:
            body.append(f'<text x="{sx(xv):.1f}" y="{H - M + 26}" text-anchor="middle" font-size="10">{xv}</text>')
            body.append(f'<line x1="{sx(xv):.1f}" x2="{sx(xv):.1f}" y1="10" y2="{H - M + 10}" stroke="#eee"/>')
            xv *= 2
        for i in range(6):
            yv = ylo + (yhi - ylo) * i / 5
            body.append(f'<text x="{ox + M - 4}" y="{sy(yv) + 3:.1f}" text-anchor="end" font-size="10">{yv:.3g}</text>')
            body.append(f'<line x1="{ox + M}" x2="{ox + W - 10}" y1="{sy(yv):.1f}" y2="{sy(yv):.1f}" stroke="#eee"/>')
        for name, pts in points.items():
            c = colors.get(name, "#333")
            pts = sorted(pts)
            if len(pts) > 1:
                d = " ".join(f"{sx(p[0]):.1f},{sy(p[idx]):.1f}" for p in pts)
                body.append(f'<polyline points="{d}" fill="none" stroke="{c}" stroke-width="1.5"/>')
            for p in pts:
                body.append(f'<circle cx="{sx(p[0]):.1f}" cy="{sy(p[idx]):.1f}" r="3.5" fill="{c}"><title>{p[3]}</title></circle>')
    ly = 24
    for name in points:
        body.append(f'<rect x="{2 * W + 40}" y="{ly - 9}" width="10" height="10" fill="{colors.get(name, "#333")}"/>')
        body.append(f'<text x="{2 * W + 56}" y="{ly}" font-size="12">{name}</text>')
        ly += 18
    for i, part in enumerate(base_ppl_note):
        body.append(f'<text x="{2 * W + 40}" y="{ly + 10 + 14 * i}" font-size="10" fill="#555">{part}</text>')
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W + 200}" height="{H + 10}" '
           f'font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n")
    tmp = path + ".tmp"
    open(tmp, "w").write(svg)
    os.replace(tmp, path)


def kld_kind(a):
    """What the stored base logits make of the KLD: exact with the whole vocabulary, else a lower bound."""
    try:
        vocab = json.load(open(os.path.join(a.model, "config.json")))["vocab_size"]
    except (OSError, KeyError, ValueError):
        vocab = None
    k = int(a.top_k) if a.top_k else 32  # runs before TOP_K existed stored the top 32
    if vocab and k >= vocab:
        return f"all {vocab} logits per position: the exact KLD"
    return f"top-{k} + tail bucket: a lower bound of the exact KLD"


def main():
    ap = argparse.ArgumentParser()
    for a in ("rows", "times", "out", "model", "n-super", "ctx", "stride", "eval-bytes", "quick", "auto-beta", "calib-bytes", "super-info",
              "global-counts", "top-k"):
        ap.add_argument("--" + a, default="")
    a = ap.parse_args()
    by = load_rows(a.rows)
    times = collections.defaultdict(list)
    if a.times and os.path.exists(a.times):
        for line in open(a.times):
            t = json.loads(line)
            times[re.sub(r" (mixed|domain).*$", "", t["label"])].append(t["seconds"])
    base_res = by["base"]
    doms = sorted(base_res)
    base = {d: base_res[d]["ppl"] for d in doms}
    rows = {label: Row(label, res, base) for label, res in by.items()}
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    L = []
    L.append(f"# Compression quality on {a.model}")
    L.append("")
    L.append(f"Produced by `{'QUICK=1 ' if a.quick == '1' else ''}bash bench/bench_compress.sh` on "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}. Test text: the first {a.eval_bytes} bytes of "
             f"each domain's test split, windows of {a.ctx} tokens every {a.stride}. Calibration: the domains' calib splits "
             f"(the first {a.calib_bytes} bytes of each, the same text for every calibrated method, NAEE included; "
             f"`mixed` = all five; `domain` = only the domain evaluated in that column). KLD and top-1 agreement are against "
             f"the base model's stored logits ({kld_kind(a)}), averaged over the "
             "domains evaluated. `ppl / base` is the geometric mean over those domains of perplexity divided by the base "
             "model's. Raw rows: the .jsonl beside this file.")
    carried = collections.OrderedDict()
    for line in open(a.rows):
        r = json.loads(line)
        if r.get("carried_from"):
            carried.setdefault(r["carried_from"], []).append(r["label"])
    for src, labels in carried.items():
        names = sorted(set(labels))
        L.append("")
        L.append(f"Rows of methods this run did not change were carried over from the run at commit {src} (same model, "
                 f"text, calibration and settings; marked `carried_from` in the .jsonl): {len(names)} rows "
                 f"({', '.join(names)}); results-compress-reading.md says how recomputed rows compare with that run.")
    L.append("")
    L += table([rows["base"]], doms)
    L.append("")

    # 1. pruning
    prune_labels = [l for l in by if re.match(r"^[\w-]+ -\d+% (mixed|domain)$", l) and not l.startswith(("msmoe", "submoe"))]
    pcts = sorted({int(re.search(r"-(\d+)%", l).group(1)) for l in prune_labels})
    methods = []
    for l in prune_labels:
        m = l.split(" ")[0]
        if m not in methods:
            methods.append(m)
    L.append("## 1. Expert pruning (issue 7): every criterion × experts removed × calibration")
    L.append("")
    L.append("Each layer keeps the same number of experts (a standard HF checkpoint written by `moekit prune`, "
             "evaluated as written). `random` has no calibration.")
    best = {}
    for pct in pcts:
        L.append("")
        L.append(f"### {pct}% of experts removed")
        L.append("")
        rs = [rows[l] for l in prune_labels if f"-{pct}% " in l]
        L += table(rs, doms, "method, calibration")
        cand = [r for r in rs if "random" not in r.label and r.kld is not None]
        for cal in ("mixed", "domain"):
            c = [r for r in cand if r.label.endswith(cal)]
            if c:
                best[(pct, cal)] = min(c, key=lambda r: r.kld)
    L.append("")
    L.append("### Summary")
    L.append("")
    L.append("Methods ranked by mean KLD (lower is better), averaged over the budgets; and the best method per budget.")
    L.append("")
    L.append("| method | " + " | ".join(f"KLD -{p}% mixed | KLD -{p}% domain" for p in pcts) + " | mean rank |")
    L.append("|---|" + "---:|" * (2 * len(pcts) + 1))
    ranks = collections.defaultdict(list)
    for pct in pcts:
        for cal in ("mixed", "domain"):
            rs = sorted([rows[l] for l in prune_labels if f"-{pct}% {cal}" in l and rows[l].kld is not None], key=lambda r: r.kld)
            for i, r in enumerate(rs):
                ranks[r.label.split(" ")[0]].append(i + 1)
    for m in sorted(methods, key=lambda m: mean(ranks[m]) or 99):
        cells = []
        for pct in pcts:
            for cal in ("mixed", "domain"):
                r = rows.get(f"{m} -{pct}% {cal}")
                cells.append(fmt(r.kld if r else None, "{:.4f}"))
        L.append(f"| {m} | " + " | ".join(cells) + f" | {fmt(mean(ranks[m]), '{:.1f}')} |")
    L.append("")
    for pct in pcts:
        bm, bd = best.get((pct, "mixed")), best.get((pct, "domain"))
        if bd:
            worst = max(bd.ratio.values()) if bd.ratio else None
            L.append(f"- {pct}% removed: best with mixed calibration **{bm.label if bm else '-'}** "
                     f"(KLD {fmt(bm.kld if bm else None, '{:.4f}')}, ppl/base {fmt(bm.gratio if bm else None, '{:.3f}')}); best with "
                     f"domain calibration **{bd.label}** (KLD {bd.kld:.4f}, ppl/base {fmt(bd.gratio, '{:.3f}')}, worst domain "
                     f"{fmt(worst, '{:.3f}')}× base: {'within' if worst is not None and worst <= 1.10 else 'outside'} the 10% goal).")
    # domain vs mixed calibration on the own domain
    L.append("")
    L.append("Domain calibration against mixed calibration, on the calibrated domain (perplexity, mean over budgets "
             "and domains of domain/mixed; below 1 = the domain's own statistics help):")
    L.append("")
    L.append("| method | " + " | ".join(f"-{p}%" for p in pcts) + " |")
    L.append("|---|" + "---:|" * len(pcts))
    for m in methods:
        if m == "random":
            continue
        cells = []
        for pct in pcts:
            rd, rm = rows.get(f"{m} -{pct}% domain"), rows.get(f"{m} -{pct}% mixed")
            if rd and rm:
                cells.append(fmt(gmean([rd.ppl[d] / rm.ppl[d] for d in rd.ppl if rm.ppl.get(d) and rd.ppl.get(d)]), "{:.3f}"))
            else:
                cells.append("-")
        L.append(f"| {m} | " + " | ".join(cells) + " |")

    # 1b. global budget
    glabels = [l for l in by if re.match(r"^[\w-]+ -\d+% global (mixed|domain)$", l)]
    if glabels:
        counts = collections.defaultdict(list)
        if a.global_counts and os.path.exists(a.global_counts):
            for line in open(a.global_counts):
                g = json.loads(line)
                if g.get("counts"):
                    counts[g["label"]].append([c for c in g["counts"] if c])
        L.append("")
        L.append("### Global budget: layers of different sizes")
        L.append("")
        L.append("`--budget global` keeps the same total number of experts as the layer budget, ranked across layers by each "
                 "expert's share of its layer's score (every layer keeps at least k), and writes a per-layer model "
                 "(config.json `moekit_experts_per_layer`; moekit-only), evaluated as written. `experts per layer` is the "
                 "range over layers (over the five domains' models for domain calibration).")
        L.append("")
        gpcts = sorted({int(re.search(r"-(\d+)%", l).group(1)) for l in glabels})
        L.append("| method, calibration | removed | experts per layer | KLD layer budget | KLD global budget | ppl/base layer | ppl/base global |")
        L.append("|---|---:|---|---:|---:|---:|---:|")
        for pct in gpcts:
            for l in glabels:
                if f"-{pct}% " not in l:
                    continue
                m, cal = l.split(" ")[0], l.split(" ")[-1]
                rg, rl = rows[l], rows.get(f"{m} -{pct}% {cal}")
                cs = [c for cc in counts.get(l, []) for c in cc]
                rng = f"{min(cs)}–{max(cs)}" if cs else "uniform"
                L.append(f"| {m}, {cal} | {pct}% | {rng} | {fmt(rl.kld if rl else None, '{:.4f}')} | {fmt(rg.kld, '{:.4f}')} | "
                         f"{fmt(rl.gratio if rl else None, '{:.3f}')} | {fmt(rg.gratio, '{:.3f}')} |")

    # 2. super experts
    L.append("")
    L.append("## 2. Super experts")
    L.append("")
    info = json.load(open(a.super_info)) if a.super_info and os.path.exists(a.super_info) else {}
    L.append(f"`moekit profile` applies Su et al. 2025's rule to the mixed calibration text: an expert is super when its "
             f"max |down_proj output| is above the 99.5th percentile of all experts' maxima in layers < "
             f"round(0.75 · layers) = {info.get('include_layers', '?')} AND above floor(max / 10). It found {a.n_super}: "
             f"{info.get('super', '?')}.")
    if info.get("max") is not None:
        mx, md = info["max"], info["median"]
        L.append("")
        L.append(f"What the rule saw: {info['n_values']} expert maxima, largest {mx:.3g}, median {md:.3g} "
                 f"(largest / median {mx / md:.3g}); P99.5 = {info['percentile_99_5']:.4g}, floor(max / 10) = "
                 f"{info['floor_max_over_10']:g}.")
        if info["floor_max_over_10"] == 0:
            L.append(f"The second threshold is in activation units and is 0 here, so it rejects nothing, and with fewer than "
                     f"201 values the 99.5th percentile lies between the two largest: the rule flags the single largest "
                     f"expert by construction. **No massive activation here: the largest maximum is {mx / md:.3g}× the "
                     f"median, not a rare extreme outlier; the expert removed below is the rule's output, not a super "
                     f"expert in the paper's sense.**")
    def spread(xs, f):
        xs = [x for x in xs if x is not None]
        if not xs:
            return "-"
        m = sum(xs) / len(xs)
        sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
        return f"{f.format(m)} ± {f.format(sd)} [{f.format(min(xs))}, {f.format(max(xs))}]"

    # two removals: the paper's (router unchanged, the expert's down_proj zeroed) and moekit's masking
    kinds = [("zero", "The paper's removal (`--route zero:`): the router is unchanged and the experts' down_proj is "
                      "zeroed, so a token routed to one gets nothing from it."),
             ("remove", "Masking (`--route mask:`, moekit's variant): the experts leave the routing and tokens go "
                        "to the next-ranked experts.")]
    for kind, what in kinds:
        sup_label = f"{kind} super experts"
        rnd_k = [rows[l] for l in by if l.startswith(f"{kind} as many random")]
        if sup_label not in rows and not rnd_k:
            continue
        L.append("")
        L.append(f"{what} The first row removes the flagged experts; the next removes as many random other experts "
                 f"in each of {len(rnd_k)} draws (seeds 0..{len(rnd_k) - 1}), summarised as mean ± standard deviation "
                 "[min, max] over the draws.")
        L.append("")
        L += table([rows[l] for l in (sup_label,) if l in rows], doms)
        if rnd_k:
            L.append("")
            L.append("| row | draws | ppl / base | mean KLD | top-1 % |")
            L.append("|---|---:|---:|---:|---:|")
            if sup_label in rows:
                r = rows[sup_label]
                L.append(f"| {sup_label} | 1 | {fmt(r.gratio, '{:.3f}')} | {fmt(r.kld, '{:.4f}')} | {fmt(r.top1, '{:.1f}')} |")
            L.append(f"| {kind} as many random | {len(rnd_k)} | {spread([r.gratio for r in rnd_k], '{:.3f}')} | "
                     f"{spread([r.kld for r in rnd_k], '{:.4f}')} | {spread([r.top1 for r in rnd_k], '{:.1f}')} |")

    # 3. merging vs pruning
    merge_labels = [l for l in by if l.startswith(("msmoe", "submoe"))]
    if merge_labels:
        L.append("")
        L.append("## 3. Expert merging (issue 8a), next to the best pruning at the same budget")
        L.append("")
        L.append("Merged checkpoints as written by `moekit merge` (mixed calibration). `msmoe` and `submoe` are the "
                 "published methods: the router is unchanged and every expert is kept, bound to its group's merged "
                 "weights (the percentage is the share of distinct experts removed; msmoe spreads the groups over "
                 "layers by MC-SMoE's global usage threshold). `msmoe-slice` and `submoe-slice` are moekit's "
                 "variants: fewer experts written, each merged expert with its dominant's router row.")
        L.append("")
        rs = []
        for pct in sorted({int(re.search(r"-(\d+)%", l).group(1)) for l in merge_labels}):
            rs += [rows[l] for l in merge_labels if f"-{pct}%" in l]
            if (pct, "mixed") in best:
                b = best[(pct, "mixed")]
                rs.append(Row(f"best pruning: {b.label}", b.res, base))
        L += table(rs, doms)

    # 4. camera
    cam = [l for l in by if l.startswith("camera neurons")]
    if cam:
        L.append("")
        L.append("## 4. Neuron-level pruning, CAMERA-P (issue 8b)")
        L.append("")
        L.append("The same number of micro-experts (neurons) dropped in every expert: `moe_intermediate_size` shrinks.")
        L.append("")
        L += table([rows[l] for l in cam], doms)

    # 5. routing
    rl = [l for l in by if l.startswith("route ")]
    if rl:
        L.append("")
        L.append("## 5. Routing policies at inference (issue 8c)")
        L.append("")
        beta = f" (per-layer β from the stats: {a.auto_beta})" if a.auto_beta else ""
        L.append(f"No weight changes; `experts/token` is the mean over layers and tokens of the experts actually "
                 f"computed, the compute the policy spends. `skip:auto` is NAEE's median p2/p1{beta}. "
                 f"Plot: [{os.path.basename(a.out)[:-3]}-routing.svg]({os.path.basename(a.out)[:-3]}-routing.svg).")
        L.append("")
        L += table([rows[l] for l in rl], doms, "policy")
        pts = collections.OrderedDict()
        for l in rl:
            r = rows[l]
            spec = l.split(" ", 1)[1]
            if spec.startswith("topk"):
                s = "top-k"
            elif spec.startswith("topp") and spec.endswith(":renorm"):
                s = "top-p renormalised"
            elif spec.startswith("topp") and spec.count(":") == 2:
                s = "top-p capped at k"
            elif spec.startswith("topp"):
                s = "top-p"
            elif spec == "skip:auto":
                s = "skip:auto (NAEE)"
            else:
                s = "skip (beta)"
            if r.ept is not None and r.kld is not None and r.gratio is not None:
                pts.setdefault(s, []).append((r.ept, max(r.kld, 0.0), r.gratio, spec))
        svg = a.out[:-3] + "-routing.svg"
        note = ["base perplexity:"] + [f"{d} {base[d]:.1f}" for d in doms]
        svg_plot(pts, svg, note)

    # 6. timings
    if times:
        L.append("")
        L.append("## 6. Time to compress (wall seconds per command, median; includes loading the model)")
        L.append("")
        L.append("| command | runs | median s | max s |")
        L.append("|---|---:|---:|---:|")
        for k, v in times.items():
            v = sorted(v)
            L.append(f"| {k} | {len(v)} | {v[len(v) // 2]:.2f} | {v[-1]:.2f} |")
    reading = os.path.splitext(a.out)[0] + "-reading.md"  # the hand-written interpretation, kept across reruns
    if os.path.exists(reading):
        L.append("")
        L += open(reading).read().rstrip("\n").split("\n")
    text = "\n".join(L) + "\n"
    tmp = a.out + ".tmp"
    open(tmp, "w").write(text)
    os.replace(tmp, a.out)
    print(text)


if __name__ == "__main__":
    main()
