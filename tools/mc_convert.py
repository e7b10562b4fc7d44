#!/usr/bin/env python3
"""Convert the benchmark files in ../shared/data/eval into `moekit eval --mc` JSONL.

Usage:
  python3 tools/mc_convert.py TASK [--data DIR] [--split SPLIT] [--limit N] [--tokenizer tokenizer.json] > out.jsonl
  TASK: arc_easy arc_challenge hellaswag piqa winogrande boolq openbookqa mmlu

Output, one item a line (text form):
  {"context": str, "choices": [str, ...], "gold": int}
    scored as lm-eval scores a multiple_choice task: loglik(context, " " + choice) -- the " " is
    lm-eval's default target_delimiter; acc_norm divides by len(choice) (characters, without the
    delimiter), as lm-eval's ConfigurableTask.process_results does.
  {"contexts": [str, ...], "continuation": str, "gold": int}
    WinoGrande's partial scoring: loglik(contexts[i], " " + continuation).
With --tokenizer (an HF tokenizer.json, read with the `tokenizers` package) the items carry token
ids instead, split as lm-eval's HFLM._encode_pair does (trailing spaces of the context move to the
continuation; whole = encode(context + continuation); context_ids = encode(context);
choice_ids = whole[len(context_ids):]; no special tokens), plus "choices" for acc_norm lengths:
  {"context_ids": [int...] | [[int...] per choice], "choice_ids": [[int...]...], "choices": [...], "gold": int}
This lets `moekit eval --mc` run on real models before moekit's own tokenizer is wired in.

Prompt formats: lm-evaluation-harness (EleutherAI, v0.4 task configs, lm_eval/tasks/):
  arc_easy / arc_challenge  arc/arc_easy.yaml: doc_to_text "Question: {{question}}\\nAnswer:",
                            doc_to_choice "{{choices.text}}", target choices.label.index(answerKey)
  hellaswag                 hellaswag/hellaswag.yaml + utils.py: query = preprocess(activity_label
                            + ": " + ctx_a + " " + ctx_b.capitalize()); choices = preprocess(endings)
                            (preprocess: strip, " [title]" -> ". ", drop "[...]", "  " -> " ").
                            DEVIATION: the shipped file (llama.cpp's format, klosax/hellaswag_text_data)
                            joins ctx_a and ctx_b into one line, so ctx_b.capitalize() is replayed as
                            upper-casing the first letter of the trailing fragment after the last
                            sentence end when it starts lower-case (capitalize() would also lower-case
                            the rest of ctx_b; rarely different).
  piqa                      piqa/piqa.yaml: "Question: {{goal}}\\nAnswer:", choices [sol1, sol2]
  winogrande                winogrande/default.yaml + preprocess_winogrande.py: contexts =
                            sentence[:idx("_")] + option_i, continuation = sentence after "_", stripped
                            (metric: acc only)
  boolq                     super_glue/boolq/default.yaml: "{{passage}}\\nQuestion: {{question}}?\\nAnswer:",
                            choices ["no", "yes"]
  openbookqa                openbookqa/openbookqa.yaml: doc_to_text question_stem, choices choices.text,
                            target choices.label.index(answerKey.lstrip())
  mmlu                      mmlu/default/_default_template_yaml (zero-shot): description "The following
                            are multiple choice questions (with answers) about {subject}.\\n\\n" + 
                            "{{question.strip()}}\\nA. {{choices[0]}}\\nB. ...\\nD. {{choices[3]}}\\nAnswer:",
                            choices ["A", "B", "C", "D"]  (subject = file name with "_" -> " ")

Licences of the data (see ../shared/data/eval/SOURCES.md): ARC CC BY-SA 4.0, HellaSwag MIT, PIQA AFL 3.0,
WinoGrande CC-BY, BoolQ CC BY-SA 3.0, OpenBookQA Apache-2.0, MMLU MIT. A converted file is a derived work:
ShareAlike licences (ARC, BoolQ) carry over to it.
"""
import argparse
import bz2
import csv
import glob
import json
import os
import re
import sys

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "eval")


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def labels(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def arc(data, split, which):
    name = {"easy": "ARC-Easy", "challenge": "ARC-Challenge"}[which]
    for d in jsonl(os.path.join(data, "arc", f"{name}-{split.capitalize()}.jsonl")):
        ch = d["question"]["choices"]
        lab = [c["label"] for c in ch]
        yield {"context": "Question: " + d["question"]["stem"] + "\nAnswer:", "choices": [c["text"] for c in ch],
               "gold": lab.index(d["answerKey"])}


def hs_preprocess(text):
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def hellaswag(data, split, _):
    with bz2.open(os.path.join(data, "hellaswag", "hellaswag_val_full.txt.bz2"), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    for i in range(0, len(lines) - 5, 6):
        ctx = lines[i]
        # replay ctx_b.capitalize(): the fragment after the last sentence end
        m = re.search(r"^(.*[.!?]\s+)([a-z])([^.!?]*)$", ctx)
        if m:
            ctx = m.group(1) + m.group(2).upper() + m.group(3)
        yield {"context": hs_preprocess(ctx), "choices": [hs_preprocess(e) for e in lines[i + 2:i + 6]],
               "gold": int(lines[i + 1])}


def piqa(data, split, _):
    for d, lab in zip(jsonl(os.path.join(data, "piqa", "valid.jsonl")), labels(os.path.join(data, "piqa", "valid-labels.lst"))):
        yield {"context": "Question: " + d["goal"] + "\nAnswer:", "choices": [d["sol1"], d["sol2"]], "gold": int(lab)}


def winogrande(data, split, _):
    docs = jsonl(os.path.join(data, "winogrande", "dev.jsonl"))
    labs = labels(os.path.join(data, "winogrande", "dev-labels.lst"))
    for d, lab in zip(docs, labs):
        idx = d["sentence"].index("_")
        yield {"contexts": [d["sentence"][:idx] + d["option1"], d["sentence"][:idx] + d["option2"]],
               "continuation": d["sentence"][idx + 1:].strip(), "gold": int(lab) - 1}


def boolq(data, split, _):
    for d in jsonl(os.path.join(data, "boolq", "dev.jsonl")):
        yield {"context": d["passage"] + "\nQuestion: " + d["question"] + "?\nAnswer:", "choices": ["no", "yes"],
               "gold": 1 if d["answer"] else 0}


def openbookqa(data, split, _):
    with open(os.path.join(data, "openbookqa", f"{split}.tsv"), encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    for r in rows[1:]:
        parts = re.split(r"\(([A-D])\) ", r[2])
        # parts = ["", "A", text, "B", text, ...]
        labs, texts = parts[1::2], [t.strip() for t in parts[2::2]]
        yield {"context": r[1], "choices": texts, "gold": labs.index(r[4].strip())}


def mmlu(data, split, _):
    for path in sorted(glob.glob(os.path.join(data, "mmlu", split, f"*_{split}.csv"))):
        subject = os.path.basename(path)[: -len(f"_{split}.csv")]
        desc = "The following are multiple choice questions (with answers) about " + " ".join(subject.split("_")) + ".\n\n"
        with open(path, encoding="utf-8") as f:
            for row in csv.reader(f):
                q, a, b, c, d, ans = row
                text = desc + q.strip() + "\nA. " + a + "\nB. " + b + "\nC. " + c + "\nD. " + d + "\nAnswer:"
                yield {"context": text, "choices": ["A", "B", "C", "D"], "gold": "ABCD".index(ans.strip())}


TASKS = {
    "arc_easy": (lambda d, s: arc(d, s, "easy"), "test"),
    "arc_challenge": (lambda d, s: arc(d, s, "challenge"), "test"),
    "hellaswag": (lambda d, s: hellaswag(d, s, None), "validation"),
    "piqa": (lambda d, s: piqa(d, s, None), "validation"),
    "winogrande": (lambda d, s: winogrande(d, s, None), "dev"),
    "boolq": (lambda d, s: boolq(d, s, None), "dev"),
    "openbookqa": (lambda d, s: openbookqa(d, s, None), "test"),
    "mmlu": (lambda d, s: mmlu(d, s, None), "test"),
}


class Encoder:
    """lm-eval's HFLM._encode_pair with an HF tokenizer.json (no special tokens)."""

    def __init__(self, path):
        from tokenizers import Tokenizer
        self.tok = Tokenizer.from_file(path)

    def enc(self, s):
        return self.tok.encode(s, add_special_tokens=False).ids

    def pair(self, context, continuation):
        n = len(context) - len(context.rstrip())
        if n > 0:
            continuation = context[-n:] + continuation
            context = context[:-n]
        whole = self.enc(context + continuation)
        ctx = self.enc(context)
        return ctx, whole[len(ctx):]

    def item(self, it, delim):
        if "contexts" in it:
            pairs = [self.pair(c, delim + it["continuation"]) for c in it["contexts"]]
            return {"context_ids": [p[0] for p in pairs], "choice_ids": [p[1] for p in pairs],
                    "choices": it["contexts"], "gold": it["gold"]}
        pairs = [self.pair(it["context"], delim + c) for c in it["choices"]]
        return {"context_ids": pairs[0][0], "choice_ids": [p[1] for p in pairs], "choices": it["choices"],
                "gold": it["gold"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("task", choices=sorted(TASKS))
    ap.add_argument("--data", default=DEFAULT_DATA, help="the data/eval folder (default ../shared/data/eval)")
    ap.add_argument("--split", help="arc: test|dev; openbookqa: test|dev; mmlu: test|dev|val")
    ap.add_argument("--limit", type=int, default=0, help="first N items only")
    ap.add_argument("--tokenizer", help="tokenizer.json: write token ids (lm-eval's context/continuation split)")
    a = ap.parse_args()
    fn, split = TASKS[a.task]
    enc = Encoder(a.tokenizer) if a.tokenizer else None
    n = 0
    for it in fn(a.data, a.split or split):
        if enc:
            it = enc.item(it, " ")
        sys.stdout.write(json.dumps(it, ensure_ascii=False) + "\n")
        n += 1
        if a.limit and n >= a.limit:
            break
    print(f"{a.task}: {n} items", file=sys.stderr)


if __name__ == "__main__":
    main()
