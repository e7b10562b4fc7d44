#!/usr/bin/env bash
# moekit profile: statistics against the transformers-hooks reference (tools/gen_profile_reference.py),
# streamed == sequential, bad input, atomic output, and (when chromium is installed) that the HTML
# report renders its heatmaps. Also runs under the ASan+UBSan build.
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib.sh
P=$FIX/profile
M=$P/qwen3_moe
DATA=(--data "$P/alpha.ids" --data "$P/beta.ids")

if expect_ok "profile (sequential) with HTML" $MK profile -m $M "${DATA[@]}" --ctx 48 -q -o "$TMPD/seq.json" --html "$TMPD/r.html"; then
  if out=$(python3 tests/cli/cmp_profile.py "$TMPD/seq.json" $P/reference.json); then ok "matches the transformers reference ($out)"
  else bad "matches the transformers reference" "$out"; fi
fi
# the same on main's fixtures: Qwen2-MoE (shared expert, no renormalisation), OLMoE
for a in qwen2_moe olmoe; do
  if $MK profile -m $FIX/$a "${DATA[@]}" --ctx 48 -q -o "$TMPD/$a.json" 2>"$TMPD/err" && \
     out=$(python3 tests/cli/cmp_profile.py "$TMPD/$a.json" $P/reference_$a.json); then ok "$a matches the transformers reference ($out)"
  else bad "$a matches the transformers reference" "$(cat "$TMPD/err") $out"; fi
done
if expect_ok "profile --stream" $MK profile -m $M "${DATA[@]}" --ctx 48 -q --stream -o "$TMPD/str.json"; then
  if out=$(python3 tests/cli/cmp_profile.py --same "$TMPD/seq.json" "$TMPD/str.json"); then ok "streamed and sequential stats.json are identical"
  else bad "streamed and sequential stats.json are identical" "$out"; fi
fi
# streamed == sequential on a block-quantized GGUF of every architecture (the streamed forward once
# located embedding rows with a per-element size, 0 for block types: every token read row 0)
python3 -c "
import random; r = random.Random(7)
for n in (40, 33): print(' '.join(str(r.randrange(272)) for _ in range(n)))" > "$TMPD/q.ids"
for a in mixtral qwen2_moe qwen3_moe olmoe; do
  if ! $MK quantize -m $FIX/$a --type q8_0 -o "$TMPD/$a.q8.gguf" >/dev/null 2>&1; then bad "quantize $a q8_0" "failed"; continue; fi
  if $MK profile -m "$TMPD/$a.q8.gguf" --data "$TMPD/q.ids" --ctx 48 -q -o "$TMPD/$a.q8.seq.json" && \
     $MK profile -m "$TMPD/$a.q8.gguf" --data "$TMPD/q.ids" --ctx 48 -q --stream -o "$TMPD/$a.q8.str.json" && \
     out=$(python3 tests/cli/cmp_profile.py --same "$TMPD/$a.q8.seq.json" "$TMPD/$a.q8.str.json"); then
    ok "$a Q8_0 GGUF: streamed and sequential stats.json are identical"
  else bad "$a Q8_0 GGUF: streamed and sequential stats.json are identical" "$out"; fi
done
# --stream drops each layer's pages once done: it must never touch tensors copied to the heap
# (misaligned in the file), which dropping would zero. A header padded to 4k+2 bytes misaligns every F32.
mkdir -p "$TMPD/mis" && cp $M/config.json "$TMPD/mis/" && python3 - $M/model.safetensors "$TMPD/mis/model.safetensors" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read(); (n,) = struct.unpack("<Q", d[:8]); h = d[8:8 + n].rstrip(b" ")
h += b" " * ((2 - len(h)) % 4)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(h)) + h + d[8 + n:])
PY
if $MK profile -m "$TMPD/mis" "${DATA[@]}" --ctx 48 -q --stream -o "$TMPD/mis.json" && \
   out=$(python3 tests/cli/cmp_profile.py "$TMPD/mis.json" $P/reference.json); then ok "--stream on a misaligned (heap-copied) checkpoint matches the reference"
else bad "--stream on a misaligned (heap-copied) checkpoint matches the reference" "$out"; fi

if [ -f "$TMPD/seq.json" ] && python3 - "$TMPD/seq.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["schema"] == "moekit.profile" and s["version"] == 1
assert [d["name"] for d in s["datasets"]] == ["alpha", "beta"]
L, E = len(s["model"]["moe_layers"]), s["model"]["n_expert"]
for row in s["overall"]["freq"]: assert abs(sum(row) - s["model"]["k"]) < 1e-9
assert len(s["top_tokens"]) == L and len(s["top_tokens"][0]) == E
assert s["max_down_proj"]["token"]["dataset"] in ("alpha", "beta")
PY
then ok "stats.json schema essentials"; else bad "stats.json schema essentials" "see above"; fi

# stats.json feeds prune as written: REAP pruning with super experts protected, and the pruned model runs
if [ -f "$TMPD/seq.json" ] && expect_ok "prune --method reap from this stats.json" $MK prune -m $M --stats "$TMPD/seq.json" --method reap --keep 6 --protect-super -o "$TMPD/pruned"; then
  expect_ok "the pruned model runs" $MK run -m "$TMPD/pruned" --prompt-ids 1,2,3 -n 3 --quiet-stats
fi

# --tokens keeps the first N tokens of each dataset
if expect_ok "--tokens 30" $MK profile -m $M "${DATA[@]}" --tokens 30 -q -o "$TMPD/t30.json"; then
  n=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['overall']['n_tokens'])" "$TMPD/t30.json")
  [ "$n" = 60 ] && ok "--tokens 30 uses 30 tokens per dataset" || bad "--tokens 30 uses 30 tokens per dataset" "n_tokens = $n"
fi

# routing overrides apply as in run: --experts 3 routes every token to 3 experts
if expect_ok "--experts 3" $MK profile -m $M --data $P/alpha.ids -q --experts 3 -o "$TMPD/k3.json"; then
  python3 -c "import json,sys; s=json.load(open(sys.argv[1])); assert all(abs(sum(r)-3)<1e-9 for r in s['overall']['freq'])" "$TMPD/k3.json" \
    && ok "--experts 3: each layer's frequencies sum to 3" || bad "--experts 3: each layer's frequencies sum to 3" "see above"
fi

# progress bar: on a terminal only (util-linux `script` gives the command a pty)
err=$($MK profile -m $M --data $P/alpha.ids -o "$TMPD/pb.json" 2>&1 >/dev/null)
if grep -q "tok/s  ETA" <<<"$err"; then bad "no progress bar off a terminal" "$err"; else ok "no progress bar off a terminal"; fi
if command -v script >/dev/null; then
  tty_out=$(script -qec "$MK profile -m $M --data $P/alpha.ids --ctx 16 -o $TMPD/pb.json" /dev/null 2>&1 | tr '\r' '\n')
  grep -q -E "profile \[#+\] 100%  152/152 tok  [0-9.]+ tok/s  ETA" <<<"$tty_out" && ok "progress bar on a terminal" || bad "progress bar on a terminal" "$tty_out"
else
  skip "progress bar on a terminal" "util-linux script is not installed"
fi

# bad input
expect_error "missing data file" "nope\.ids: cannot open: No such file" $MK profile -m $M --data "$TMPD/nope.ids" -o "$TMPD/x.json"
: > "$TMPD/empty.ids"
expect_error "empty data file" "empty\.ids: no tokens \(empty data file\)" $MK profile -m $M --data "$TMPD/empty.ids" -o "$TMPD/x.json"
printf '# only a comment\n\n' > "$TMPD/comment.ids"
expect_error "data file with no ids" "comment\.ids: no tokens" $MK profile -m $M --data "$TMPD/comment.ids" -o "$TMPD/x.json"
expect_error "--tokens larger than the data" "--tokens 100000 is more than the [0-9]+ tokens in .*alpha\.ids" $MK profile -m $M --data $P/alpha.ids --tokens 100000 -o "$TMPD/x.json"
expect_error "unwritable output path" "no/such/dir/stats\.json: cannot write" $MK profile -m $M --data $P/alpha.ids -o "$TMPD/no/such/dir/stats.json"
mkdir -p "$TMPD/adir"
expect_error "output path is a directory" "adir: cannot write: is a directory" $MK profile -m $M --data $P/alpha.ids -o "$TMPD/adir"
expect_error "unwritable HTML path" "nodir/r\.html: cannot write" $MK profile -m $M --data $P/alpha.ids -o "$TMPD/x.json" --html "$TMPD/nodir/r.html"
echo "1 2 99999" > "$TMPD/big.ids"
expect_error "token id beyond the vocabulary" "big\.ids: token id 99999 .*out of range" $MK profile -m $M --data "$TMPD/big.ids" -o "$TMPD/x.json"
echo "the quick brown fox" > "$TMPD/text.txt"
expect_error "text data without a tokenizer" "text\.txt is text, but .* has no tokenizer\.json" $MK profile -m $M --data "$TMPD/text.txt" -o "$TMPD/x.json"
printf '  \n\n' > "$TMPD/blank.txt"
expect_error "blank text file" "blank\.txt: no tokens \(empty data file\)" $MK profile -m $M --data "$TMPD/blank.txt" -o "$TMPD/x.json"

# text data through the model's tokenizer (a random model with llama2's tokenizer from tests/data);
# tokens in the output are decoded
python3 -c "
import json; c = json.load(open('$FIX/qwen3_moe/config.json')); c['vocab_size'] = 32000
json.dump(c, open('$TMPD/cfg.json', 'w'))"
if $MK synth --config "$TMPD/cfg.json" --std 0.1 -o "$TMPD/syn" >/dev/null 2>&1 && cp "$(data tokenizers/llama2)/"tokenizer*.json "$TMPD/syn/" 2>/dev/null; then
  printf 'The capital of France is Paris. The capital of Germany is Berlin.\nRivers: the Seine, the Rhine.\n' > "$TMPD/geo.txt"
  printf 'def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n' > "$TMPD/code.txt"
  if expect_ok "profile text data" $MK profile -m "$TMPD/syn" --data "$TMPD/geo.txt" --data "$TMPD/code.txt" --ctx 16 -q -o "$TMPD/txt.json" --html "$TMPD/txt.html"; then
    n_tok=$($MK tokenize -m "$TMPD/syn" --ids --no-special -f "$TMPD/geo.txt" | wc -w)
    python3 - "$TMPD/txt.json" "$n_tok" <<'PY' && ok "text encoded as moekit tokenize does; tokens decoded" || bad "text encoded as moekit tokenize does; tokens decoded" "see above"
import json, sys
s = json.load(open(sys.argv[1]))
d = {x["name"]: x for x in s["datasets"]}
assert d["geo"]["n_tokens"] == int(sys.argv[2]), (d["geo"]["n_tokens"], sys.argv[2])
assert all("token" in t for row in s["top_tokens"] for lst in row for t in lst)
assert "token" in s["max_down_proj"]["token"]
PY
  fi
else
  bad "text data" "could not make a model with llama2's tokenizer ($(data tokenizers/llama2))"
fi
expect_error "two datasets with one name" "two datasets are named 'alpha'" $MK profile -m $M --data $P/alpha.ids --data $P/alpha.ids -o "$TMPD/x.json"
expect_error "report layer that is not MoE" "--report-layer 2 is not a MoE layer" $MK profile -m $M --data $P/alpha.ids -q -o "$TMPD/y.json" --html "$TMPD/y.html" --report-layer 2

# an existing stats.json is replaced whole or left alone, with no temp files left behind
echo '{"old": true}' > "$TMPD/keep.json"
$MK profile -m $M --data "$TMPD/empty.ids" -o "$TMPD/keep.json" 2>/dev/null
[ "$(cat "$TMPD/keep.json")" = '{"old": true}' ] && ok "failed run leaves the old stats.json" || bad "failed run leaves the old stats.json" "changed"
if $MK profile -m $M --data $P/alpha.ids -q -o "$TMPD/keep.json" && python3 -c "import json,sys; json.load(open(sys.argv[1]))['overall']" "$TMPD/keep.json" \
   && [ -z "$(ls "$TMPD" | grep -E '\.tmp\.|moekit-probe')" ]; then ok "stats.json replaced whole, no temp files left"
else bad "stats.json replaced whole, no temp files left" "$(ls "$TMPD")"; fi

# the HTML report renders: count its heatmap cells in the DOM of headless Chromium
if [ -f "$TMPD/r.html" ]; then
  grep -q -E '<script|https?://[^"]*\.(js|css)' "$TMPD/r.html" && bad "report is self-contained" "script or external resource" || ok "report is self-contained"
  CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
  if [ -z "$CHROME" ] && [ "${MK_SETUP_CHROMIUM:-0}" = 1 ]; then
    bad "report renders in Chromium" "MK_SETUP_CHROMIUM=1 (as in CI) but chromium is not installed"
  elif [ -z "$CHROME" ]; then
    skip "report renders in Chromium" "chromium is not installed (MK_SETUP_CHROMIUM=1 bash scripts/setup.sh)"
  else
    # 4 MoE layers × 8 experts: frequency + REAP + 2 datasets = 4·32 cells, co-activation + transition = 2·64
    dom=$(timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --dump-dom "file://$(realpath "$TMPD/r.html")" 2>/dev/null)
    n=$(grep -o 'class="cell"' <<<"$dom" | wc -l)
    [ "$n" -eq 256 ] && ok "report renders 256 heatmap cells in Chromium" || bad "report renders 256 heatmap cells in Chromium" "found $n"
  fi
fi
summary
