#!/usr/bin/env python3
"""Tokenizer benchmark (HF side): load time and single-thread encode throughput, same measures
(CPU time of the process) and checksum as bench_tokenizer.c.
usage: bench_tokenizer_hf.py TOKENIZER_JSON LOAD_REPEATS doc|line FILE...
       bench_tokenizer_hf.py --make-multi OUT.txt   (writes the multilingual gettext corpus)"""
import os
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
from tokenizers import Tokenizer  # noqa: E402


def split_lines(d):
    """Cuts after each \\n (newline kept), as the C side does."""
    parts = d.split("\n")
    out = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def make_multi(out_path):
    import gettext
    import glob
    out = []
    for loc in ["zh_CN", "ja", "ko", "ru", "ar", "hi", "th", "el", "de", "fr", "es", "vi", "he", "uk", "fa", "ta"]:
        for p in sorted(glob.glob(f"/usr/share/locale/{loc}/LC_MESSAGES/*.mo")):
            try:
                with open(p, "rb") as f:
                    cat = gettext.GNUTranslations(f)._catalog
            except Exception:
                continue
            out += [v for k, v in cat.items() if k and isinstance(v, str)]
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n".join(out))


def main():
    if sys.argv[1] == "--make-multi":
        return make_multi(sys.argv[2])
    path, reps, mode, files = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    best = 1e9
    for _ in range(reps):
        t0 = time.process_time()
        tok = Tokenizer.from_file(path)
        best = min(best, time.process_time() - t0)
    print(f"hf load_s {best:.3f}")
    docs = [open(f, "rb").read().decode("utf-8") for f in files]
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    if mode == "line":
        docs = [ln for d in docs for ln in split_lines(d)]
    for name in ["cold", "warm"]:
        h = 1469598103934665603
        ntok = 0
        t0 = time.process_time()
        encs = [tok.encode(d, add_special_tokens=False).ids for d in docs]
        t = time.process_time() - t0
        for ids in encs:  # checksum outside the timed part
            ntok += len(ids)
            for v in ids:
                for b in range(4):
                    h ^= (v >> (8 * b)) & 0xFF
                    h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
        print(f"hf encode_{mode}_{name} bytes {nbytes} tokens {ntok} seconds {t:.3f} MB/s {nbytes / t / 1e6:.2f} checksum {h:016x}")


if __name__ == "__main__":
    main()
