#!/usr/bin/env bash
# moekit merge: both methods write loadable models; bad requests fail with one clear line.
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib.sh
SRC=$FIX/qwen3_moe   # 8 experts, k = 4
python3 -c "print(' '.join(str((i * 53 + 7) % 304) for i in range(128)))" > "$TMPD/calib.ids"
expect_ok "msmoe with calibration" $MK merge -m $SRC --method msmoe --keep 6 --calib-ids "$TMPD/calib.ids" --ctx 64 -o "$TMPD/a"
expect_ok "msmoe model runs" $MK run -m "$TMPD/a" --prompt-ids 1,2,3 -n 4
n=$(python3 -c "import json;print(json.load(open('$TMPD/a/config.json'))['num_local_experts'])")
[ "$n" = 6 ] && ok "merged config has 6 experts" || bad "merged config" "num_local_experts $n"
expect_ok "submoe at rank 1/2" $MK merge -m $SRC --method submoe --keep 5 --rank-frac 0.5 --calib-ids "$TMPD/calib.ids" --ctx 64 -o "$TMPD/b"
sim=$(python3 -c "import json;print(json.load(open('$TMPD/b/moekit_compression.json'))['params']['similarity'])")
[ "$sim" = expert-outputs ] && ok "submoe groups by expert outputs" || bad "submoe similarity" "$sim"
expect_ok "submoe model runs" $MK run -m "$TMPD/b" --prompt-ids 1,2,3 -n 4
expect_error "unknown method" "--method must be msmoe or submoe \(got 'avg'\)" $MK merge -m $SRC --method avg --keep 6 --calib-ids "$TMPD/calib.ids" -o "$TMPD/x"
expect_error "keep below k" "--keep 3 must be between the model's k \(4\) and its 8 experts" $MK merge -m $SRC --method msmoe --keep 3 --calib-ids "$TMPD/calib.ids" -o "$TMPD/x"
expect_error "no usage source" "give --stats stats.json or --calib FILE / --calib-ids FILE" $MK merge -m $SRC --method msmoe --keep 6 -o "$TMPD/x"
expect_error "bad rank fraction" "--rank-frac: '0' is not a number in" $MK merge -m $SRC --method submoe --keep 6 --rank-frac 0 --calib-ids "$TMPD/calib.ids" -o "$TMPD/x"
expect_error "existing output" "a: already exists" $MK merge -m $SRC --method msmoe --keep 6 --calib-ids "$TMPD/calib.ids" -o "$TMPD/a"
[ ! -e "$TMPD/x" ] && ok "nothing written for refused requests" || bad "refused" "$TMPD/x exists"
summary
