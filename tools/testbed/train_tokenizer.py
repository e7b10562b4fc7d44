#!/usr/bin/env python3
"""Byte-level BPE tokenizer (vocab 8192) for the testbed MoE, trained on a balanced five-domain mix.

Pre-tokenizer: a GPT-4 / Qwen-like split regex (isolated), then GPT-2 ByteLevel byte->unicode mapping
(no prefix space, no second regex). Special tokens: <|endoftext|> (id 0, bos = eos = pad),
<|im_start|>, <|im_end|> (for the simple ChatML chat template).
Writes tokenizer.json + tokenizer_config.json into --out.
"""
import argparse, hashlib, json, os
from tokenizers import Tokenizer, Regex, decoders, models, pre_tokenizers, trainers

DOMAINS = ["english", "german", "c", "python", "techdoc"]
SPLIT_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def balanced_texts(corpus, per_domain_bytes):
    for d in DOMAINS:
        docs = [json.loads(l) for l in open(os.path.join(corpus, d + ".train.jsonl"), encoding="utf-8")]
        docs.sort(key=lambda r: hashlib.sha256(r["src"].encode()).hexdigest())
        n = 0
        for r in docs:
            if n >= per_domain_bytes:
                break
            n += len(r["text"].encode())
            yield r["text"]


def build(vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    return tok, trainer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="/work/testbed-data/corpus")
    ap.add_argument("--out", default="models/testbed")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--per-domain-mb", type=float, default=4.0)
    a = ap.parse_args()
    tok, trainer = build(a.vocab)
    tok.train_from_iterator(balanced_texts(a.corpus, int(a.per_domain_mb * 2**20)), trainer=trainer)
    os.makedirs(a.out, exist_ok=True)
    tok.save(os.path.join(a.out, "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "unk_token": None, "add_bos_token": False, "add_eos_token": False,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "model_max_length": 2048, "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    print("vocab", tok.get_vocab_size(), "ids", {s: tok.token_to_id(s) for s in SPECIALS})


if __name__ == "__main__":
    main()
