#!/usr/bin/env python3
"""Generates tokenizer fixtures for tests/test_tokenizer.c with HF `tokenizers` (dev only).

Texts are cut from real text on this machine (shared corpora and eval data, gettext catalogues in
many languages and scripts, C headers, Python sources) plus hand-written edge cases (whitespace
runs, CRLF, digits, emoji, combining marks, special tokens, ...). Output in tests/fixtures/tokenizer/:

  texts.jsonl     one JSON string per line (the texts, indexed from 0)
  <name>.jsonl    one case per line: {"t": text index, "s": add_special 0/1, "ids": [...],
                  "d": HF decode(ids) if it differs from the text (or always when s=1),
                  "ds": HF decode(ids, skip_special_tokens=True) if it differs from "d" or the text}

The tokenizer files are not copied: tests read them from $MK_SHARED (see TOKENIZERS below).

usage: python3 tools/gen_tokenizer_fixtures.py [--shared ../shared] [--out tests/fixtures/tokenizer]
"""
import argparse
import gettext
import glob
import json
import os
import random
import unicodedata

from tokenizers import Tokenizer

TOKENIZERS = {
    "qwen3": "data/real/tokenizers/qwen3/tokenizer.json",
    "deepseek_v3": "data/real/tokenizers/deepseek_v3/tokenizer.json",
    "gptoss": "data/real/tokenizers/gptoss/tokenizer.json",
    "llama2": "data/real/tokenizers/llama2/tokenizer.json",
    "olmoe": "data/real/OLMoE-1B-7B.allenai_gpt-neox-olmo-dolma-v1_5.json",
}

# Variants: a real tokenizer.json with top-level keys replaced, to cover pipeline pieces the five
# files do not use (Metaspace pre-tokenizer and decoder with each prepend_scheme, Split behaviors,
# Digits, ByteLevel add_prefix_space, NFKC/NFD/Lowercase/Replace normalizers,
# added tokens with lstrip/rstrip/single_word/normalized). Written to
# variants.json, which the C test applies the same way (jansson) before loading.
MS = "\u2581"
VARIANTS = {
    "llama2_metaspace_first": {"base": "llama2", "set": {
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": MS, "prepend_scheme": "first", "split": False}}},
    "llama2_metaspace_always_split": {"base": "llama2", "set": {
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": MS, "prepend_scheme": "always", "split": True},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Metaspace", "replacement": MS, "prepend_scheme": "always", "split": True}]}}},
    "olmoe_nfkc_lower_digits": {"base": "olmoe", "set": {
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFKC"}, {"type": "Lowercase"},
            {"type": "Replace", "pattern": {"Regex": "[0-9]{4,}"}, "content": "#"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": False},
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}]}}},
    "qwen3_split_behaviors": {"base": "qwen3", "set": {
        "normalizer": {"type": "NFD"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False},
            {"type": "Split", "pattern": {"Regex": "\\p{P}+"}, "behavior": "MergedWithPrevious", "invert": False},
            {"type": "Split", "pattern": {"Regex": "[aeiou]"}, "behavior": "Contiguous", "invert": False},
            {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": False},
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}}},
}



def qwen3_added_flags(shared):
    """qwen3's added_tokens with lstrip/rstrip/single_word/normalized switched on for some."""
    with open(os.path.join(shared, TOKENIZERS["qwen3"]), encoding="utf-8") as f:
        added = json.load(f)["added_tokens"]
    flags = {"<|im_start|>": {"lstrip": True}, "<|im_end|>": {"rstrip": True}, "<think>": {"single_word": True},
             "</think>": {"normalized": True}, "<tool_call>": {"lstrip": True, "rstrip": True},
             "<|endoftext|>": {"single_word": True, "special": False}}
    for a in added:
        a.update(flags.get(a["content"], {}))
    return added


LOCALES = ["zh_CN", "zh_TW", "ja", "ko", "ru", "uk", "ar", "he", "fa", "hi", "bn", "ta", "th", "el", "tr", "vi",
           "pl", "cs", "ka", "hy", "am", "my", "km", "si", "ur", "gu", "ml", "te", "kn", "pa", "ne", "lo",
           "de", "fr", "es", "pt_BR", "it", "nl", "sv", "fi", "hu", "ro", "eo", "ga", "cy", "is", "lt", "lv"]


def cut(rng, text, lo=20, hi=400):
    if len(text) <= lo:
        return text
    n = rng.randint(lo, min(hi, len(text)))
    a = rng.randint(0, len(text) - n)
    return text[a:a + n]


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def mo_strings(locale, rng, k):
    out = []
    files = sorted(glob.glob(f"/usr/share/locale/{locale}/LC_MESSAGES/*.mo"))
    rng.shuffle(files)
    for path in files[:6]:
        try:
            with open(path, "rb") as f:
                cat = gettext.GNUTranslations(f)._catalog
        except Exception:
            continue
        vals = [v for kk, v in sorted(cat.items(), key=lambda kv: str(kv[0])) if kk and isinstance(v, str) and len(v) > 8]
        rng.shuffle(vals)
        out += vals[:3]
    rng.shuffle(out)
    return out[:k]


def edge_cases(specials):
    e = [
        "", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "a\r\nb\r\n\r\nc", "line1\nline2\n", "trailing   ",
        "   leading", "a  b   c    d     e", " " * 30 + "x", "x" + " " * 25, "\t\tindented\n\t\t\tmore", "\n \n  \n",
        "12345678901234567890", "3.14159 2,718 1e-10 0x1F 1_000_000", "٠١٢٣٤٥٦٧٨٩ ①②③ ½ ¾ Ⅻ", "１２３ ＡＢＣ",
        "I'm you're they've we'll she'd it's I'M YOU'RE IT'S 'S 'll", "don't ſ'ſ K", "a'b 'tis rock'n'roll",
        "Hello, world!", "HELLO WORLD", "hello.world@example.com https://example.org/a?b=c&d=e#f",
        "😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇩🇪 ❤️ ✨🔥", "emoji at end 🤖", "🤖start", "a😀b😀c",
        "e\u0301 n\u0303 a\u0308 o\u0302\u0323", "Ame\u0301lie cafe\u0301 re\u0301sume\u0301", "\u1100\u1161\u11a8 한국어",
        "ﬁ ﬂ ﬀ Å Ω K ẛ̣", "İSTANBUL ΣΑΣ ẞ Ǆ ǅ", "\u00a0nbsp\u00a0here\u202fnarrow\u3000ideographic", "zero\u200bwidth\u200cjoin\u200d!",
        "a\u180eb", "tab\tsep\tvalues\t1\t2", "\x00nul\x01ctl\x7fdel", "\u2028line\u2029para", "\u0085nel",
        "<0x41> <0xFF> <unk> ▁ ▁▁x ▁hello", "Ġ Ċ ĠĠ", "<|", "|>", "<|im_start", "<s", "</", "<<>>", "<think>",
        "日本語のテキストです。漢字、ひらがな、カタカナ。", "中文文本，包含标点符号！以及数字123。", "混合English和中文",
        "Русский текст, ёлки-палки.", "العربية: مرحبا بالعالم", "עברית שלום", "हिन्दी पाठ नमस्ते", "ภาษาไทย สวัสดี",
        "Ελληνικά κείμενο", "ქართული", "Հայերեն", "ᚠᚢᚦᚨᚱᚲ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝟙𝟚𝟛", "𐍈𐌰𐌹 Gothic", "\U0001F600" * 5,
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "!!!!!!!!!!????????......,,,,,",
        "x = (a[i] + b->c) * *p; // comment", "if (x) {\n    return -1;\n}\n", "def f(x):\n\treturn x ** 2  # sq\n",
        "    ```python\n    print('hi')\n    ```", "$$\\frac{a}{b}$$ \\alpha_{i}^{2}", "--flag=value -v -- rest",
        "\"quoted\" 'single' `back` «guillemets» „low“ ‘curly’", "~!@#$%^&*()_+-={}[]|\\:;\"'<>,.?/",
    ]
    for t in ["<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "<|endoftext|>", "<s>", "</s>"]:
        e += [f"a  {t}  b", f"word{t}word", f"{t}word", f"word {t} word", f"\t{t}\n", f"é{t}1", f"{t}", f" \u3000{t}\u00a0 "]
    for s in specials:
        e += [s, f"Hello{s}world", f" {s} ", f"{s}{s}", f"text before {s}\nafter", f"a{s[:-1]}", f"{s}\n\n"]
    return e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "tokenizer"))
    args = ap.parse_args()
    rng = random.Random(20261123)
    sh = args.shared
    texts = []
    # English prose, eval data
    sotu = sorted(glob.glob(os.path.join(sh, "data/corpora/sotu/*.txt")))
    for p in rng.sample(sotu, 20):
        texts.append(cut(rng, read(p)))
    moby = read(os.path.join(sh, "data/corpora/moby-dick.txt"))
    texts += [cut(rng, moby, 50, 600) for _ in range(20)]
    wiki = read(os.path.join(sh, "data/eval/wikitext-2-raw/wiki.test.raw"))
    texts += [cut(rng, wiki, 50, 600) for _ in range(30)]
    for lang in ["eng_Latn", "deu_Latn", "fra_Latn", "spa_Latn"]:
        lines = read(os.path.join(sh, f"data/eval/flores200/{lang}.devtest")).splitlines()
        texts += rng.sample(lines, 20)
    for sub in ["mmlu", "hellaswag", "arc", "boolq", "piqa", "lambada"]:
        files = sorted(f for f in glob.glob(os.path.join(sh, "data/eval", sub, "**/*"), recursive=True)
                       if os.path.isfile(f) and not f.endswith(".md"))
        if files:
            data = read(rng.choice(files))
            texts += [cut(rng, data, 30, 300) for _ in range(8)]
    # many languages and scripts: gettext catalogues
    for loc in LOCALES:
        texts += mo_strings(loc, rng, 8)
    # C and Python sources
    heads = sorted(glob.glob("/usr/include/*.h"))
    for p in rng.sample(heads, 30):
        texts.append(cut(rng, read(p), 40, 500))
    pys = sorted(glob.glob("/usr/lib/python3.11/*.py"))
    for p in rng.sample(pys, 30):
        texts.append(cut(rng, read(p), 40, 500))
    # NFD forms and CRLF variants of some real strings
    for s in rng.sample(texts, 20):
        texts.append(unicodedata.normalize("NFD", s))
    for s in rng.sample(texts, 10):
        texts.append(s.replace("\n", "\r\n"))
    toks = {name: Tokenizer.from_file(os.path.join(sh, path)) for name, path in TOKENIZERS.items()}
    specials = sorted({a.content for t in toks.values() for a in t.get_added_tokens_decoder().values()
                       if a.special and "reserved" not in a.content and "place▁holder" not in a.content})
    specials = [s for s in specials if s.strip()][:60]
    edge_start = len(texts)
    texts += edge_cases(specials)
    # mixtures of special tokens and text, as in chat prompts
    for _ in range(20):
        a, b = rng.sample(texts[:300], 2)
        texts.append(rng.choice(specials) + cut(rng, a, 5, 80) + rng.choice(specials) + "\n" + cut(rng, b, 5, 80))
    texts = [t for t in texts if isinstance(t, str)]
    os.makedirs(args.out, exist_ok=True)
    VARIANTS["qwen3_added_flags"] = {"base": "qwen3", "set": {"added_tokens": qwen3_added_flags(sh)}}
    with open(os.path.join(args.out, "variants.json"), "w", encoding="utf-8") as f:
        json.dump(VARIANTS, f, ensure_ascii=False, indent=1)
    for vname, v in VARIANTS.items():
        with open(os.path.join(sh, TOKENIZERS[v["base"]]), encoding="utf-8") as f:
            j = json.load(f)
        j.update(v["set"])
        toks[vname] = Tokenizer.from_str(json.dumps(j))
    with open(os.path.join(args.out, "texts.jsonl"), "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    for name, tok in toks.items():
        n = 0
        with open(os.path.join(args.out, f"{name}.jsonl"), "w", encoding="utf-8") as f:
            for i, t in enumerate(texts):
                if name in VARIANTS and i % 2 and i < edge_start:
                    continue
                for s in ([0, 1] if i % 4 == 0 else [0]):
                    ids = tok.encode(t, add_special_tokens=bool(s)).ids
                    rec = {"t": i, "s": s, "ids": ids}
                    d = tok.decode(ids, skip_special_tokens=False)
                    ds = tok.decode(ids, skip_special_tokens=True)
                    if d != t or s:
                        rec["d"] = d
                    if ds != d:
                        rec["ds"] = ds
                    f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
                    n += 1
        print(f"{name}: {n} cases over {len(texts)} texts")


if __name__ == "__main__":
    main()
