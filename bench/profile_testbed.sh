#!/usr/bin/env bash
# The example profile of the testbed model over its five domains: docs/profile-testbed/
# {stats.json, report.html, report.png, js.md}. Run once models/testbed and data/testbed/ exist:
#   bash bench/profile_testbed.sh
# Needs headless Chromium for the screenshot (apt-get install chromium, or MK_SETUP_CHROMIUM=1
# bash scripts/setup.sh); without it the screenshot is skipped, saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
MK=${MK:-build/moekit}
M=${MODEL:-models/testbed}
OUT=${OUT:-docs/profile-testbed}
TOKENS=${TOKENS:-16384}   # per domain
[ -f "$M/model.safetensors" ] || [ -f "$M/model.safetensors.index.json" ] || { echo "profile_testbed: no model in $M" >&2; exit 1; }
mkdir -p "$OUT"
data=()
DATA_DIR=${DATA_DIR:-data/testbed}
for f in "$DATA_DIR"/*.calib.txt; do data+=(--data "$f"); done
[ ${#data[@]} -gt 0 ] || { echo "profile_testbed: no $DATA_DIR/*.calib.txt" >&2; exit 1; }
$MK profile -m "$M" "${data[@]}" --tokens "$TOKENS" --ctx 512 -o "$OUT/stats.json" --html "$OUT/report.html"
# the Jensen-Shannon table, as markdown
python3 - "$OUT/stats.json" > "$OUT/js.md" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
L = s["model"]["moe_layers"]
print("# Testbed: Jensen–Shannon divergence between domains' expert usage (bits, 0–1)\n")
print("| pair | mean | " + " | ".join(f"L{l}" for l in L) + " |")
print("|---|---|" + "---|" * len(L))
for p in sorted(s["divergence"]["pairs"], key=lambda p: -p["js_mean"]):
    print(f"| {p['a']} / {p['b']} | {p['js_mean']:.4f} | " + " | ".join(f"{v:.3f}" for v in p["js"]) + " |")
print("\nMost domain-specific experts (share of the domain's routing minus the other domains'):\n")
for d, lst in s["divergence"]["specific_experts"].items():
    print(f"- {d}: " + ", ".join(f"L{x['layer']}/E{x['expert']} ({x['share']:.3f} vs {x['share_others']:.3f})" for x in lst[:5]))
se = s["super_experts"]["experts"]
print(f"\nSuper experts: {len(se)}" + "".join(f"\n- layer {x['layer']} expert {x['expert']} channel {x['channel']}: {x['value']:.4g} at {x['token']}" for x in se))
PY
CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$CHROME" ]; then
  "$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1366,3000 \
    --screenshot="$(realpath "$OUT")/report.png" "file://$(realpath "$OUT/report.html")" 2>/dev/null
  echo "screenshot: $OUT/report.png"
else
  echo "profile_testbed: chromium not installed: no screenshot" >&2
fi
echo "wrote $OUT/{stats.json,report.html,js.md}"
