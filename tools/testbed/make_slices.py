#!/usr/bin/env python3
"""Small per-domain evaluation slices shipped in the repo: data/testbed/<domain>.{calib,test}.txt.

calib: from the held-out VALIDATION split; test: from the held-out TEST split (no training text in either).
Documents are taken in sha256(src) order until the slice holds >= --kb KB; documents are separated by one
blank line. A document longer than the remaining room is cut at a line boundary.
"""
import argparse, hashlib, json, os

DOMAINS = ["english", "german", "c", "python", "techdoc"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="/work/testbed-data/corpus")
    ap.add_argument("--out", default="data/testbed")
    ap.add_argument("--kb", type=int, default=256)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    limit = a.kb * 1024
    for d in DOMAINS:
        for split, name in (("validation", "calib"), ("test", "test")):
            docs = [json.loads(l) for l in open(os.path.join(a.corpus, "%s.%s.jsonl" % (d, split)), encoding="utf-8")]
            docs.sort(key=lambda r: hashlib.sha256(r["src"].encode()).hexdigest())
            parts, n = [], 0
            for r in docs:
                t = r["text"].strip("\n") + "\n"
                room = limit - n
                if len(t.encode()) > room:
                    lines, acc = [], 0
                    for line in t.split("\n"):
                        if acc + len(line.encode()) + 1 > room:
                            break
                        lines.append(line); acc += len(line.encode()) + 1
                    t = "\n".join(lines).strip("\n") + "\n"
                parts.append(t)
                n += len(t.encode()) + 1
                if n >= limit * 0.98:
                    break
            p = os.path.join(a.out, "%s.%s.txt" % (d, name))
            with open(p, "w", encoding="utf-8") as f:
                f.write("\n".join(parts))
            print(p, os.path.getsize(p), "bytes", len(parts), "docs")


if __name__ == "__main__":
    main()
