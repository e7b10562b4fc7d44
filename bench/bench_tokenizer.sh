#!/usr/bin/env bash
# Tokenizer benchmark: moekit vs HF tokenizers, single thread both, on real text (>= 10 MB:
# the 233 State of the Union addresses and Moby Dick from $MK_SHARED/data/corpora; one encode
# call per line, then one per document), and load time of the qwen3 tokenizer.json (best of 5, 3 for HF). Times are
# process CPU time (the machine may be shared); HF runs with RAYON_NUM_THREADS=1.
# usage: bench/bench_tokenizer.sh [TOKENIZER_JSON]   (default: qwen3)   Results: bench/README-tokenizer.md
set -eu
cd "$(dirname "$0")/.."
SH=${MK_SHARED:-$(cd .. && pwd)/shared}
TOK=${1:-$SH/data/real/tokenizers/qwen3/tokenizer.json}
make -s build/libmoekit.a
mkdir -p build/bench
PKG_LIBS=$(pkg-config --libs jansson libpcre2-8 libutf8proc 2>/dev/null || echo -ljansson -lpcre2-8 -lutf8proc)
cc -std=c11 -O2 -march=native -Iinclude bench/bench_tokenizer.c build/libmoekit.a -o build/bench/bench_tokenizer $PKG_LIBS -lpthread -lm -fopenmp
FILES=("$SH"/data/corpora/sotu/*.txt "$SH"/data/corpora/moby-dick.txt)
echo "tokenizer: $TOK"
echo "text: ${#FILES[@]} documents, $(cat "${FILES[@]}" | wc -c) bytes; cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for mode in line doc; do
  build/bench/bench_tokenizer "$TOK" 5 $mode "${FILES[@]}"
done
if python3 -c 'import tokenizers' 2>/dev/null; then
  for mode in line doc; do
    python3 bench/bench_tokenizer_hf.py "$TOK" 3 $mode "${FILES[@]}"
  done
else
  echo "hf: python package 'tokenizers' not installed; skipped"
fi

# Optional second corpus (MULTI=1): the translations of this machine's gettext catalogues in 16
# languages (zh_CN ja ko ru ar hi th el de fr es vi he uk fa ta), one message per line.
if [ "${MULTI:-0}" = 1 ]; then
  python3 bench/bench_tokenizer_hf.py --make-multi build/bench/multi.txt
  echo "text: multilingual gettext corpus, $(wc -c < build/bench/multi.txt) bytes"
  build/bench/bench_tokenizer "$TOK" 1 line build/bench/multi.txt
  if python3 -c 'import tokenizers' 2>/dev/null; then
    python3 bench/bench_tokenizer_hf.py "$TOK" 1 line build/bench/multi.txt
  fi
fi
