#!/usr/bin/env bash
# Unpacks tests/data into DEST (default build/testdata): *.xz decompressed, other files copied.
# A file is rewritten only when its source is newer; each write goes to a temporary file first,
# so an interrupted run never leaves a truncated file behind.
set -euo pipefail
cd "$(dirname "$0")"
DEST=${1:-../../build/testdata}
command -v xz >/dev/null || { echo "unpack.sh: xz is not installed (bash scripts/setup.sh)" >&2; exit 1; }
find . -type f ! -name '*.md' ! -name '*.sh' | while read -r f; do
  f=${f#./}
  out=$DEST/${f%.xz}
  [ -f "$out" ] && [ ! "$f" -nt "$out" ] && continue
  mkdir -p "$(dirname "$out")"
  if [[ $f == *.xz ]]; then xz -dc "$f" > "$out.tmp"; else cp "$f" "$out.tmp"; fi
  mv "$out.tmp" "$out"
done
