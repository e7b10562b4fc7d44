#!/usr/bin/env bash
# Benchmark (not a test): `moekit profile --stream` on a `moekit synth` model whose weights are
# larger than the memory it is allowed, and the profiler's overhead over a plain forward pass.
#
#   bash bench/profile_stream.sh            # defaults below; results appended to bench/profile_stream.md
#
# Memory limit: a cgroup (v1 memory controller: memory.limit_in_bytes; v2: memory.max), made by
# this script under /sys/fs/cgroup (needs root). The limit counts the page cache the process
# faults in as well as its anonymous memory, so the weights cannot simply stay cached.
# (systemd-run -p MemoryMax= needs systemd as PID 1, which these machines lack; prlimit -v limits
# address space, which a memory-mapped model exceeds by design.)
# Peak RSS is the process's ru_maxrss (printed by moekit profile); the cgroup's peak usage
# (anonymous + page cache) is printed beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${BENCH_DIR:-/tmp/moekit-profile-bench}
mkdir -p "$W"
cp "${MK:-build/moekit}" "$W/moekit"   # a private copy: rebuilding the tree mid-run changes nothing
MK=$W/moekit
CONFIG=${CONFIG:-bench/OLMoE-1B-7B.config.json}
LAYERS=${LAYERS:-4}          # OLMoE-1B-7B geometry, first 4 layers, bf16: ~3.8 GB of weights
LIMIT_MB=${LIMIT_MB:-1536}   # memory allowed to the streamed run
TOKENS=${TOKENS:-1024}       # calibration tokens for the streamed run (documents of 128)
OV_TOKENS=${OV_TOKENS:-512}  # tokens for the overhead comparison
REPS=${REPS:-3}
THREADS=${THREADS:-$(nproc)}
OUT=${OUT:-bench/profile_stream.md}
mkdir -p "$W"

if [ ! -f "$W/model/model.safetensors" ]; then
  echo "synth: $CONFIG, $LAYERS layers, bf16 -> $W/model"
  $MK synth --config "$CONFIG" --layers "$LAYERS" --dtype bf16 --std 0.02 -o "$W/model"
fi
python3 - "$W/calib.ids" "$TOKENS" <<'PY'
import random, sys
random.seed(1)
n = int(sys.argv[2]); doc = 128
with open(sys.argv[1], "w") as f:
    for i in range(0, n, doc):
        f.write(" ".join(str(random.randrange(50000)) for _ in range(min(doc, n - i))) + "\n")
PY
WBYTES=$(stat -c %s "$W/model/model.safetensors")
echo "weights: $((WBYTES / 1048576)) MiB; limit: $LIMIT_MB MiB ($(python3 -c "print(f'{$WBYTES/($LIMIT_MB*1048576):.2f}')")x)"

# run_limited CMD...: runs CMD in a fresh memory cgroup of LIMIT_MB; prints the cgroup's peak.
run_limited() {
  local cg
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    cg=/sys/fs/cgroup/moekit-bench-$$; mkdir "$cg"
    echo $((LIMIT_MB * 1048576)) > "$cg/memory.max"; echo 0 > "$cg/memory.swap.max" 2>/dev/null || true
    bash -c 'echo $$ > '"$cg"'/cgroup.procs; exec "$@"' _ "$@"; local rc=$?
    echo "cgroup peak: $(( $(cat "$cg/memory.peak" 2>/dev/null || echo 0) / 1048576 )) MiB"
  else
    cg=/sys/fs/cgroup/memory/moekit-bench-$$; mkdir "$cg"
    echo $((LIMIT_MB * 1048576)) > "$cg/memory.limit_in_bytes"
    bash -c 'echo $$ > '"$cg"'/cgroup.procs; exec "$@"' _ "$@"; local rc=$?
    echo "cgroup peak: $(( $(cat "$cg/memory.max_usage_in_bytes") / 1048576 )) MiB (limit $LIMIT_MB MiB)"
  fi
  rmdir "$cg" 2>/dev/null || true
  return $rc
}

sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
echo "== streamed, limited to $LIMIT_MB MiB"
R1=$(run_limited $MK profile -m "$W/model" --data "$W/calib.ids" --ctx 128 -t "$THREADS" --stream -o "$W/stream.json" 2>&1)
echo "$R1"
S1=$(grep -E '^profile|cgroup' <<<"$R1" | tr '\n' ' ')

echo "== streamed == sequential on the same data (no limit)"
$MK profile -m "$W/model" --data "$W/calib.ids" --ctx 128 -t "$THREADS" -o "$W/seq.json"
echo "== overhead (no limit, page cache warm): plain forward vs profiling, sequential, first $OV_TOKENS tokens"
O=(-m "$W/model" --data "$W/calib.ids" --tokens "$OV_TOKENS" --ctx 128 -t "$THREADS" -o "$W/ov.json")
: > "$W/ov.txt"
for r in $(seq "$REPS"); do
  /usr/bin/time -f "fwd %e %U %S" -a -o "$W/ov.txt" $MK profile "${O[@]}" --forward-only -q
  /usr/bin/time -f "prof %e %U %S" -a -o "$W/ov.txt" $MK profile "${O[@]}" 2>> "$W/ov.log"
done
cat "$W/ov.txt"
# wall time is noisy on shared cores; CPU time (user+sys) less so; the observer's own time is
# measured inside the run (the only extra work a profiling run does)
OV=$(python3 - "$W/ov.txt" "$W/ov.log" <<'PY'
import re, statistics as st, sys
rows = [l.split() for l in open(sys.argv[1]) if l[:3] in ("fwd", "pro")]
f = [(float(r[1]), float(r[2]) + float(r[3])) for r in rows if r[0] == "fwd"]
p = [(float(r[1]), float(r[2]) + float(r[3])) for r in rows if r[0] == "prof"]
obs = [float(m.group(1)) for m in re.finditer(r"\(([0-9.]+)% over the forward\)", open(sys.argv[2]).read())]
w = 100 * (st.median(x[0] for x in p) / st.median(x[0] for x in f) - 1)
c = 100 * (st.median(x[1] for x in p) / st.median(x[1] for x in f) - 1)
print(f"overhead over a plain forward ({len(f)} runs each): wall {w:+.1f}% (median {st.median(x[0] for x in f):.1f} s vs {st.median(x[0] for x in p):.1f} s), "
      f"CPU {c:+.1f}% (median {st.median(x[1] for x in f):.1f} s vs {st.median(x[1] for x in p):.1f} s), "
      f"time inside the observer {st.median(obs):.2f}% of the forward (median; runs: {', '.join(f'{o:.2f}' for o in obs)})")
PY
)
echo "$OV"
SAME=$(python3 tests/cli/cmp_profile.py --same "$W/stream.json" "$W/seq.json" && echo "streamed == sequential stats.json: yes" || echo "streamed == sequential: NO")

{
  echo
  echo "## $(date -u +%Y-%m-%dT%H:%MZ) — $(basename "$CONFIG") first $LAYERS layers, bf16, $TOKENS tokens, $THREADS threads, $(nproc) cores"
  echo
  echo "- weights $((WBYTES / 1048576)) MiB, memory limit $LIMIT_MB MiB (cgroup), streamed: $S1"
  echo "- $OV"
  echo "- $SAME"
} >> "$OUT"
echo "appended to $OUT"
