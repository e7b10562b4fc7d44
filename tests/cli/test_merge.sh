#!/usr/bin/env bash
# moekit merge: the published methods (router unchanged, all experts kept) and moekit's slicing
# variants write loadable models; on the reference's calibration tokens the CLI's own statistics give
# the reference's groups (tests/fixtures/merge/NAME.groups.json, tools/gen_merge_reference.py); bad
# requests fail with one clear line.
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib.sh
SRC=$FIX/qwen3_moe   # 8 experts, k = 4
python3 -c "print(' '.join(str((i * 53 + 7) % 304) for i in range(128)))" > "$TMPD/calib.ids"
nexp() { python3 -c "import json;print(json.load(open('$1/config.json'))['num_local_experts'])"; }
same_groups() { # DIR METHOD: the record's groups equal the reference's
  python3 -c "import json,sys;r=json.load(open('$1/moekit_compression.json'))['groups'];w=json.load(open('$FIX/merge/qwen3_moe.groups.json'))['$2'];sys.exit(0 if r==w else 'got %s want %s' % (r, w))"
}
expect_ok "msmoe with calibration" $MK merge -m $SRC --method msmoe --keep 6 --calib-ids "$TMPD/calib.ids" --ctx 64 -o "$TMPD/a"
expect_ok "msmoe model runs" $MK run -m "$TMPD/a" --prompt-ids 1,2,3 -n 4
n=$(nexp "$TMPD/a"); [ "$n" = 8 ] && ok "msmoe keeps all 8 experts (router unchanged)" || bad "msmoe config" "num_local_experts $n"
out=$(same_groups "$TMPD/a" msmoe 2>&1) && ok "msmoe groups from the CLI's router logits equal the reference's" || bad "msmoe groups" "$out"
expect_ok "submoe at rank 1/2" $MK merge -m $SRC --method submoe --keep 5 --rank-frac 0.5 --calib-ids "$TMPD/calib.ids" --ctx 64 -o "$TMPD/b"
sim=$(python3 -c "import json;print(json.load(open('$TMPD/b/moekit_compression.json'))['params']['similarity'])")
[ "$sim" = expert-outputs ] && ok "submoe groups by expert outputs" || bad "submoe similarity" "$sim"
out=$(same_groups "$TMPD/b" submoe 2>&1) && ok "submoe k-means clusters from the CLI's expert outputs equal the reference's" || bad "submoe groups" "$out"
expect_ok "submoe model runs" $MK run -m "$TMPD/b" --prompt-ids 1,2,3 -n 4
expect_ok "msmoe-slice" $MK merge -m $SRC --method msmoe-slice --keep 6 --calib-ids "$TMPD/calib.ids" --ctx 64 -o "$TMPD/c"
n=$(nexp "$TMPD/c"); [ "$n" = 6 ] && ok "msmoe-slice config has 6 experts" || bad "msmoe-slice config" "num_local_experts $n"
expect_ok "msmoe-slice model runs" $MK run -m "$TMPD/c" --prompt-ids 1,2,3 -n 4
expect_ok "submoe-slice" $MK merge -m $SRC --method submoe-slice --keep 5 --calib-ids "$TMPD/calib.ids" --ctx 64 -o "$TMPD/d"
n=$(nexp "$TMPD/d"); [ "$n" = 5 ] && ok "submoe-slice config has 5 experts" || bad "submoe-slice config" "num_local_experts $n"
expect_ok "msmoe below k groups (router unchanged)" $MK merge -m $SRC --method msmoe --keep 2 --budget layer --calib-ids "$TMPD/calib.ids" --ctx 64 -o "$TMPD/e"
expect_error "unknown method" "--method must be msmoe, submoe, msmoe-slice or submoe-slice \(got 'avg'\)" $MK merge -m $SRC --method avg --keep 6 --calib-ids "$TMPD/calib.ids" -o "$TMPD/x"
expect_error "slice keep below k" "--keep 3 must be between the model's k \(4\) and its 8 experts \(msmoe-slice writes that many\)" $MK merge -m $SRC --method msmoe-slice --keep 3 --calib-ids "$TMPD/calib.ids" -o "$TMPD/x"
expect_error "keep above E" "--keep 9 must be between 1 and the model's 8 experts" $MK merge -m $SRC --method msmoe --keep 9 --calib-ids "$TMPD/calib.ids" -o "$TMPD/x"
expect_error "submoe needs calibration" "--method submoe clusters experts by their outputs on calibration tokens" $MK merge -m $SRC --method submoe --keep 6 --stats /dev/null -o "$TMPD/x"
expect_error "budget only for msmoe" "--budget is for --method msmoe" $MK merge -m $SRC --method submoe --budget global --keep 6 --calib-ids "$TMPD/calib.ids" -o "$TMPD/x"
expect_error "bad budget" "--budget must be layer or global \(got 'all'\)" $MK merge -m $SRC --method msmoe --budget all --keep 6 --calib-ids "$TMPD/calib.ids" -o "$TMPD/x"
expect_error "no usage source" "give --stats stats.json or --calib FILE / --calib-ids FILE" $MK merge -m $SRC --method msmoe --keep 6 -o "$TMPD/x"
expect_error "bad rank fraction" "--rank-frac: '0' is not a number in" $MK merge -m $SRC --method submoe --keep 6 --rank-frac 0 --calib-ids "$TMPD/calib.ids" -o "$TMPD/x"
expect_error "existing output" "a: already exists" $MK merge -m $SRC --method msmoe --keep 6 --calib-ids "$TMPD/calib.ids" -o "$TMPD/a"
[ ! -e "$TMPD/x" ] && ok "nothing written for refused requests" || bad "refused" "$TMPD/x exists"
summary
