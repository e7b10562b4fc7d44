#!/usr/bin/env bash
# moekit prune: the happy path, and bad input that must fail cleanly and leave nothing behind.
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib.sh
SRC=$FIX/qwen3_moe   # 8 experts, k = 4, MoE layers 0 and 2
# A minimal stats.json in the profile schema, and one from a different model.
mkstats() { python3 - "$1" "$2" <<'PY'
import json, sys
n_exp = int(sys.argv[2])
row = [float(n_exp - e) for e in range(n_exp)]
json.dump({"schema": "moekit.profile", "version": 1,
           "model": {"n_layer": 3, "n_expert": n_exp, "d_model": 64, "vocab": 304, "moe_layers": [0, 2]},
           "overall": {"freq": [row, row[::-1]], "reap": [row, row]},
           "per_dataset": {"code": {"freq": [row[::-1], row]}},
           "super_experts": {"experts": [{"layer": 0, "expert": 7}]}}, open(sys.argv[1], "w"))
PY
}
mkstats "$TMPD/stats.json" 8
mkstats "$TMPD/other.json" 16
python3 -c "print(' '.join(str((i * 53 + 7) % 304) for i in range(128)))" > "$TMPD/calib.ids"
python3 - "$TMPD/stats.json" "$TMPD/stats2.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
s["overall"]["reap"] = [[8, 7, 6, 5, 4, 3, 2, 1], [100, 1, 1, 1, 1, 1, 1, 1]]
json.dump(s, open(sys.argv[2], "w"))
PY

expect_ok "prune by frequency" $MK prune -m $SRC --stats "$TMPD/stats.json" --method frequency --keep 6 -o "$TMPD/p1"
kept=$(python3 -c "import json;print(json.load(open('$TMPD/p1/moekit_compression.json'))['kept_experts'])")
if [ "$kept" = "[[0, 1, 2, 3, 4, 5], None, [2, 3, 4, 5, 6, 7]]" ]; then ok "frequency keeps the most used"; else bad "frequency plan" "$kept"; fi
expect_ok "pruned model runs" $MK run -m "$TMPD/p1" --prompt-ids 1,2,3 -n 4
expect_ok "domain statistics" $MK prune -m $SRC --stats "$TMPD/stats.json" --method frequency --dataset code --keep 6 -o "$TMPD/p2"
kept=$(python3 -c "import json;print(json.load(open('$TMPD/p2/moekit_compression.json'))['kept_experts'][0])")
if [ "$kept" = "[2, 3, 4, 5, 6, 7]" ]; then ok "--dataset picks that dataset's statistics"; else bad "--dataset" "$kept"; fi
expect_ok "protect super experts" $MK prune -m $SRC --stats "$TMPD/stats.json" --method frequency --keep 4 --protect-super -o "$TMPD/p3"
kept=$(python3 -c "import json;print(json.load(open('$TMPD/p3/moekit_compression.json'))['kept_experts'][0])")
if [ "$kept" = "[0, 1, 2, 7]" ]; then ok "super expert 0/7 kept"; else bad "--protect-super" "$kept"; fi
# EASY-EP on two calibration domains of very different score scales: the paper's per-domain
# normalisation against tools/gen_methods_reference.py (numpy), and the pooled variant.
EZ=$FIX/methods/easyep_mixed.json
python3 -c "import json,sys;json.dump(json.load(open(sys.argv[1]))['stats'],open(sys.argv[2],'w'))" $EZ "$TMPD/ez.json"
for v in "easy-ep kept_experts" "easy-ep-pooled kept_experts_pooled"; do
  set -- $v
  expect_ok "$1 on mixed domains" $MK prune -m $SRC --stats "$TMPD/ez.json" --method $1 --keep 4 --plan-only "$TMPD/ez_$1.json"
  same=$(python3 -c "import json,sys;a=json.load(open(sys.argv[1]))['kept_experts'];b=json.load(open(sys.argv[2]))[sys.argv[3]];print(a==b, a, b)" "$TMPD/ez_$1.json" $EZ $2)
  [ "${same%% *}" = True ] && ok "$1 keeps the reference's experts (${same#* })" || bad "$1 plan vs reference" "$same"
done
expect_ok "global plan" $MK prune -m $SRC --stats "$TMPD/stats.json" --method reap --keep 5 --budget global --plan-only "$TMPD/plan.json"
expect_ok "virtual pruning with the plan" $MK run -m $SRC --prompt-ids 1,2,3 -n 4 --route "mask:$TMPD/plan.json"

expect_ok "naee" $MK prune -m $SRC --method naee --calib-ids "$TMPD/calib.ids" --ctx 64 --keep 6 -o "$TMPD/pn"
ev=$(python3 -c "import json;p=json.load(open('$TMPD/pn/moekit_compression.json'))['params'];print(p['subsets_evaluated'], p['search'])")
[ "$ev" = "56 exhaustive" ] && ok "naee searched C(8,6) subsets in each of 2 layers" || bad "naee record" "$ev"
expect_error "naee without calibration" "--method naee needs calibration data \\(--calib FILE or --calib-ids FILE\\)" $MK prune -m $SRC --method naee --keep 6 -o "$TMPD/x0"
echo "1 2 x" > "$TMPD/bad.ids"
expect_error "naee with a malformed ids file" "bad.ids: entry 3 is not a token id" $MK prune -m $SRC --method naee --calib-ids "$TMPD/bad.ids" --keep 6 -o "$TMPD/x0"
expect_error "stats of a different model" "other.json: field 'model.n_expert' = 16, but the model has 8 experts" \
  $MK prune -m $SRC --stats "$TMPD/other.json" --method reap --keep 6 -o "$TMPD/x1"
[ ! -e "$TMPD/x1" ] && ok "nothing written for a refused plan" || bad "refused plan" "$TMPD/x1 exists"
expect_error "keep above the expert count" "--keep 9 is more than the model's 8 experts" $MK prune -m $SRC --method random --keep 9 -o "$TMPD/x2"
expect_error "keep below k" "--keep 3 is fewer than the 4 experts each token is routed to" $MK prune -m $SRC --method random --keep 3 -o "$TMPD/x3"
expect_error "existing output" "p1: already exists \(use --force" $MK prune -m $SRC --method random --keep 6 -o "$TMPD/p1"
expect_error "unknown method" "--method must be one of" $MK prune -m $SRC --method magic --keep 6 -o "$TMPD/x4"
# A global budget written as a per-layer model (moekit-only): reap's layer 2 has all its mass on
# expert 0, so layer 0 takes the spare slots: 6 + 4 experts.
expect_ok "global budget written" $MK prune -m $SRC --stats "$TMPD/stats2.json" --method reap --keep 5 --budget global -o "$TMPD/g"
cnt=$(python3 -c "import json;c=json.load(open('$TMPD/g/config.json'));print(c.get('num_experts', c.get('num_local_experts')), c['num_experts_per_tok'], c['moekit_experts_per_layer'])")
[ "$cnt" = "6 4 [6, 0, 4]" ] && ok "config.json: 6 experts, k 4, per layer [6, 0, 4]" || bad "per-layer config" "$cnt"
grep -q "experts/layer:   6 0 4 (a per-layer model: moekit-only)" <($MK info -m "$TMPD/g") && ok "info shows the per-layer counts" || bad "info" "$($MK info -m "$TMPD/g")"
a=$($MK run -m "$TMPD/g" --prompt-ids 1,2,3 -n 8 --temp 0 2>/dev/null)
b=$($MK run -m $SRC --route "mask:$TMPD/g/moekit_compression.json" --prompt-ids 1,2,3 -n 8 --temp 0 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] && ok "per-layer model generates as the masked base ($a)" || bad "per-layer generation" "'$a' vs '$b'"
expect_ok "profile a per-layer model" $MK profile -m "$TMPD/g" --data "$TMPD/calib.ids" -o "$TMPD/gs.json"
epl=$(python3 -c "import json;print(json.load(open('$TMPD/gs.json'))['model']['experts_per_layer'])")
[ "$epl" = "[6, 4]" ] && ok "stats.json records experts_per_layer" || bad "stats experts_per_layer" "$epl"
expect_ok "profile a per-layer model, layer-streamed" $MK profile -m "$TMPD/g" --data "$TMPD/calib.ids" --stream -o "$TMPD/gs2.json"
same=$(python3 -c "import json;a,b=(json.load(open('$TMPD/'+f))['overall'] for f in ('gs.json','gs2.json'));print(a['freq']==b['freq'] and a['freq'][1][4:]==[0,0])")
[ "$same" = True ] && ok "streamed statistics equal, padding experts never routed" || bad "streamed per-layer profile" "$same"
expect_error "quantize a per-layer model" "g: its layers have different expert counts \(moekit_experts_per_layer\), which GGUF" $MK quantize -m "$TMPD/g" --type q8_0 -o "$TMPD/g.gguf"
[ ! -e "$TMPD/g.gguf" ] && ok "no GGUF left behind" || bad "quantize refusal" "g.gguf exists"
expect_error "prune a per-layer model" "g: prune: the model's layers have different expert counts" $MK prune -m "$TMPD/g" --method random --keep 4 -o "$TMPD/x5"
expect_error "merge a per-layer model" "g: merge: the model's layers have different expert counts" $MK merge -m "$TMPD/g" --method msmoe --calib-ids "$TMPD/calib.ids" --keep 4 -o "$TMPD/x5"
[ ! -e "$TMPD/x5" ] && ok "nothing written for a refused per-layer model" || bad "refusal" "x5 exists"
expect_error "unknown dataset" "no dataset 'poetry'" $MK prune -m $SRC --stats "$TMPD/stats.json" --method frequency --dataset poetry --keep 6 -o "$TMPD/x6"
# A full disk: a file-size limit smaller than the weights.
before=$(ls "$TMPD")
expect_error "file-size limit (full disk)" "write failed: File too large" bash -c "ulimit -f 200; exec $MK prune -m $SRC --method random --keep 6 -o $TMPD/x7"
[ "$(ls "$TMPD")" = "$before" ] && ok "no partial output after a failed write" || bad "partial output" "$(ls "$TMPD")"
expect_ok "force replaces" $MK prune -m $SRC --method random --keep 7 --force -o "$TMPD/p1"
n=$(python3 -c "import json;print(json.load(open('$TMPD/p1/config.json'))['num_local_experts'])")
[ "$n" = 7 ] && ok "replaced directory has 7 experts" || bad "force" "num_local_experts $n"
summary
