#!/usr/bin/env bash
# moekit tokenize: output formats, input sources, and one-line errors.
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib.sh
Q=$(data tokenizers/qwen3)
L=$(data tokenizers/llama2/tokenizer.json)

if [ -f "$Q/tokenizer.json" ] && [ -f "$L" ]; then
  out=$("$MK" tokenize -m "$Q" --ids "Hello world 12345 中文字符 <|im_end|>  x y" 2>&1)
  want="9707 1879 220 16 17 18 19 20 72858 16744 48391 220 151645 220 856 379"
  [ "$out" = "$want" ] && ok "qwen3 --ids" || bad "qwen3 --ids" "got '$out'"
  out=$("$MK" tokenize -m "$Q" "Hello world" 2>&1)
  want=$(printf '9707\tHello\n1879\tĠworld')
  [ "$out" = "$want" ] && ok "qwen3 ids and tokens" || bad "qwen3 ids and tokens" "got '$out'"
  out=$(printf 'Hello world' | "$MK" tokenize -m "$Q/tokenizer.json" --ids - 2>&1)
  [ "$out" = "9707 1879" ] && ok "stdin with -" || bad "stdin with -" "got '$out'"
  printf 'line one\r\nline two\n' > "$TMPD/in.txt"
  out=$("$MK" tokenize -m "$Q" --ids -f "$TMPD/in.txt" 2>&1)
  [ "$out" = "1056 825 319 1056 1378 198" ] && ok "-f FILE with CRLF" || bad "-f FILE with CRLF" "got '$out'"
  out=$("$MK" tokenize -m "$Q" "$(printf 'a\tb')" 2>&1)
  [ "$out" = "$(printf '64\ta\n2233\tĉb')" ] && ok "tab in text" || bad "tab in text" "got '$out'"
  out=$("$MK" tokenize -m "$L" --ids "Hello" 2>&1)
  [ "$out" = "1 22557" ] && ok "llama2 adds BOS" || bad "llama2 adds BOS" "got '$out'"
  out=$("$MK" tokenize -m "$L" --ids --no-special "Hello" 2>&1)
  [ "$out" = "22557" ] && ok "--no-special" || bad "--no-special" "got '$out'"
  printf 'ab\xffcd' > "$TMPD/bad.txt"
  expect_error "invalid UTF-8 input" "not valid UTF-8.*offset 2" "$MK" tokenize -m "$Q" -f "$TMPD/bad.txt"
else
  bad "tokenizer test data" "no $Q/tokenizer.json or $L (tests/data/unpack.sh unpacks them)"
fi
expect_error "missing -m" "-m DIR is required" "$MK" tokenize "text"
expect_error "no text" "give TEXT" "$MK" tokenize -m "$TMPD"
expect_error "model dir without tokenizer.json" "no tokenizer.json" "$MK" tokenize -m "$TMPD" "x"
expect_error "missing model" "no such file" "$MK" tokenize -m "$TMPD/nope" "x"
printf '{"model": {"type": "WordPiece", "vocab": {}}}' > "$TMPD/tokenizer.json"
expect_error "unsupported model type" "tokenizer.json: model.type: 'WordPiece' is not supported" "$MK" tokenize -m "$TMPD" "x"
printf '{"model": {"type": "BPE", "vocab": {' > "$TMPD/tokenizer.json"
expect_error "malformed tokenizer.json" "tokenizer.json: line 1: malformed JSON" "$MK" tokenize -m "$TMPD" "x"
expect_error "missing input file" "cannot open" "$MK" tokenize -m "$TMPD" -f "$TMPD/none.txt"
summary
