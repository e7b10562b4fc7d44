#!/usr/bin/env python3
"""Renders chat-template fixtures for tests/test_chat_template.c with HF transformers (dev only).

For each template directory it renders a set of conversations with add_generation_prompt False and
True and writes tests/fixtures/chat/<name>.jsonl, one case per line:
    {"messages": [...], "add_generation_prompt": bool, "kwargs": {...}, "expected": "..."}
or, where transformers raises (e.g. raise_exception in the template), "error": "<message>" instead of
"expected".

Real templates (../shared/data/real/tokenizers/{qwen3,deepseek_v3}) are rendered with
AutoTokenizer.apply_chat_template(..., tokenize=False), the reference itself. moekit's own test
templates (tests/fixtures/chat/{llama2_style,features}: a chat_template.jinja beside a
tokenizer_config.json without tokenizer.json) are rendered with transformers' render_jinja_template
in the same environment, with the special tokens of that tokenizer_config.json and the message
preparation apply_chat_template does (null fields dropped).

Usage: python3 tools/gen_chat_fixtures.py [--shared ../shared]
"""
import argparse
import copy
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXDIR = os.path.join(ROOT, "tests", "fixtures", "chat")

SPECIAL = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]


def M(role, content, **kw):
    d = {"role": role, "content": content}
    d.update(kw)
    return d


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name, e.g. Zürich"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Adds two numbers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    },
]

# Conversations shared by every template: (messages, kwargs)
COMMON = [
    ([M("user", "Hello!")], {}),
    ([M("system", "You are a helpful assistant."), M("user", "What is 2+2?")], {}),
    ([M("user", "hi"), M("assistant", "Hello! How can I help?"), M("user", "Tell me a joke.")], {}),
    (
        [
            M("system", "Answer briefly."),
            M("user", "Capital of France?"),
            M("assistant", "Paris."),
            M("user", "And of Germany?"),
            M("assistant", "Berlin."),
            M("user", "Thanks"),
        ],
        {},
    ),
    ([M("user", "Ünïcödé: 日本語のテキスト, emoji 🤖🎉, Ελληνικά, العربية, कुछ हिन्दी")], {}),
    (
        [
            M("user", "Quotes ' and \" and \\backslash\\, braces {{ x }} {% if %} {# c #}, tabs\tand\nnew\nlines\n"),
            M("assistant", "  leading and trailing spaces  \n"),
            M("user", "<|im_start|> <s> [INST] literal tokens </s>"),
        ],
        {},
    ),
    ([M("user", "")], {}),
    ([M("user", "Write a haiku"), M("assistant", "Old pond / frog jumps in / splash")], {}),
    ([M("system", "Sys one."), M("user", "q1?"), M("assistant", "a1"), M("user", "q2? more text")], {}),
    ([M("user", "a" * 300 + "\n\n" + "b" * 50)], {}),
]

QWEN3_EXTRA = [
    ([M("user", "Think first."), M("assistant", "<think>\nLet me see.\n</think>\n\nThe answer is 4."),
      M("user", "Again?")], {}),
    ([M("user", "2+2?"), M("assistant", "4", reasoning_content="Simple arithmetic.")], {}),
    ([M("user", "Hi")], {"enable_thinking": False}),
    ([M("user", "Weather in Zürich?")], {"tools": TOOLS}),
    (
        [
            M("system", "Use tools."),
            M("user", "Weather in Paris and 1+2?"),
            M("assistant", "", tool_calls=[
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"type": "function", "function": {"name": "add", "arguments": "{\"a\": 1, \"b\": 2}"}},
            ]),
            M("tool", "{\"temp\": 21}"),
            M("tool", "3"),
            M("assistant", "It is 21 degrees; 1+2=3."),
        ],
        {"tools": TOOLS},
    ),
    ([M("system", "first"), M("user", "u"), M("system", "second system later")], {}),
]

DEEPSEEK_EXTRA = [
    ([M("system", "A"), M("system", "B"), M("user", "two system prompts")], {}),
    (
        [
            M("user", "Weather?"),
            M("assistant", None, tool_calls=[
                {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
            ]),
            M("tool", "{\"temp\": 21}"),
            M("assistant", "21 degrees."),
        ],
        {},
    ),
    ([M("user", "Q"), M("assistant", "A"), M("tool", "out1"), M("tool", "out2")], {}),
]

LLAMA_EXTRA = [
    ([M("user", "one"), M("user", "two in a row")], {}),  # raise_exception
    ([M("assistant", "starts with assistant")], {}),  # raise_exception
]

FEATURES_EXTRA = [
    ([M("system", "S <b>&\"'"), M("user", "Hello world? yes"), M("assistant", "hi there")], {"tools": TOOLS}),
    ([M("system", "only system")], {}),
    ([M("user", "hi?"), M("assistant", "x", tool_calls=[
        {"type": "function", "function": {"name": "add", "arguments": {"a": 1.5, "b": -2}}}])], {}),
]


# gpt-oss's harmony template (tests/data/tokenizers/gptoss/chat_template.jinja): reasoning in
# "thinking", tool calls answered by "tool" messages, developer instructions, reasoning effort, the
# built-in browser/python tools.
GPTOSS_EXTRA = [
    ([M("user", "2+2?"), M("assistant", "4", thinking="Simple arithmetic.")], {}),
    ([M("user", "2+2?"), M("assistant", "4", thinking="Simple arithmetic."), M("user", "And 3+3?")], {}),
    ([M("developer", "Always answer in French."), M("user", "Hi")], {}),
    ([M("system", "Be terse."), M("developer", "No emoji."), M("user", "Hi")], {"reasoning_effort": "high"}),
    ([M("user", "Hi")], {"reasoning_effort": "low"}),
    ([M("user", "Weather in Zürich?")], {"tools": TOOLS}),
    (
        [
            M("user", "Weather in Paris?"),
            M("assistant", None, thinking="I should call the weather tool.", tool_calls=[
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]),
            M("tool", "{\"temp\": 21}"),
        ],
        {"tools": TOOLS},
    ),
    (
        [
            M("user", "Weather in Paris?"),
            M("assistant", None, tool_calls=[
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]),
            M("tool", "{\"temp\": 21}"),
            M("assistant", "It is 21 degrees."),
            M("user", "Thanks"),
        ],
        {"tools": TOOLS},
    ),
    ([M("user", "Search the web for moekit.")], {"builtin_tools": ["browser", "python"]}),
    ([M("user", "Who are you?")], {"model_identity": "You are moekit's test model."}),
    ([M("user", "x"), M("assistant", "<|channel|>final<|message|>y")], {}),  # raise_exception
    ([M("tool", "orphan result")], {}),  # raise_exception: no earlier tool call
]

# strftime_now() renders the date into gpt-oss's system message: fixtures and tests both take the
# time from SOURCE_DATE_EPOCH (moekit's jinja honours it, as reproducible builds do).
FIXED_EPOCH = 1767225600  # 2026-01-01 00:00:00 UTC


def drop_none(messages):
    return [{k: v for k, v in m.items() if v is not None} for m in messages]


def special_tokens(cfg):
    out = {}
    for k in SPECIAL:
        v = cfg.get(k)
        if isinstance(v, dict):
            v = v.get("content")
        if v is not None:
            out[k] = str(v)
    return out


def gptoss_dir(real):
    """The real gpt-oss tokenizer with the chat template the project ships beside it (the HF repo
    keeps it in chat_template.jinja, which the tokenizer package lacks), in a temporary directory."""
    import tempfile
    d = tempfile.mkdtemp(prefix="gptoss-tok-")
    os.symlink(os.path.join(real, "gptoss", "tokenizer.json"), os.path.join(d, "tokenizer.json"))
    os.symlink(os.path.join(real, "gptoss", "tokenizer_config.json"), os.path.join(d, "tokenizer_config.json"))
    os.symlink(os.path.join(ROOT, "tests", "data", "tokenizers", "gptoss", "chat_template.jinja"), os.path.join(d, "chat_template.jinja"))
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(ROOT), "shared"))
    args = ap.parse_args()
    from datetime import datetime, timezone

    import transformers.utils.chat_template_utils as ctu
    from transformers import AutoTokenizer
    from transformers.utils.chat_template_utils import render_jinja_template

    class FixedClock:
        @staticmethod
        def now(tz=None):
            return datetime.fromtimestamp(FIXED_EPOCH, timezone.utc)

    ctu.datetime = FixedClock  # what strftime_now() reads

    real = os.path.join(args.shared, "data", "real", "tokenizers")
    jobs = [
        ("qwen3", os.path.join(real, "qwen3"), QWEN3_EXTRA, True),
        ("deepseek_v3", os.path.join(real, "deepseek_v3"), DEEPSEEK_EXTRA, True),
        ("gptoss", gptoss_dir(real), GPTOSS_EXTRA, True),
        ("llama2_style", os.path.join(FIXDIR, "llama2_style"), LLAMA_EXTRA, False),
        ("features", os.path.join(FIXDIR, "features"), FEATURES_EXTRA, False),
    ]
    for name, d, extra, use_tokenizer in jobs:
        if use_tokenizer:
            tok = AutoTokenizer.from_pretrained(d)

            def render(msgs, agp, kw, tok=tok):
                return tok.apply_chat_template(copy.deepcopy(msgs), tokenize=False, add_generation_prompt=agp, **kw)
        else:
            with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
                cfg = json.load(f)
            with open(os.path.join(d, "chat_template.jinja"), encoding="utf-8") as f:
                src = f.read()
            sp = special_tokens(cfg)

            def render(msgs, agp, kw, src=src, sp=sp):
                kw = dict(kw)
                tools = kw.pop("tools", None)
                out, _ = render_jinja_template(conversations=[drop_none(copy.deepcopy(msgs))], tools=tools,
                                               chat_template=src, add_generation_prompt=agp, **{**sp, **kw})
                return out[0]

        n_ok = n_err = 0
        path = os.path.join(FIXDIR, name + ".jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for msgs, kw in COMMON + extra:
                for agp in (False, True):
                    case = {"messages": msgs, "add_generation_prompt": agp, "kwargs": kw}
                    try:
                        case["expected"] = render(msgs, agp, kw)
                        n_ok += 1
                    except Exception as e:  # the template raised: moekit must fail too
                        case["error"] = f"{type(e).__name__}: {e}"
                        n_err += 1
                    f.write(json.dumps(case, ensure_ascii=False) + "\n")
        print(f"{name}: {n_ok} rendered, {n_err} expected errors -> {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
