#!/usr/bin/env bash
# The card of the third default model of 2026-11-29 again, after the identity correction of
# 2026-11-30: every development-set report summarised again without the four real clips of
# people that model's split had trained on (training.evaluate --rescore against the corrected
# training/recipes/dev_eval.csv, into training/results/dev-eval/identity-corrected/), with the
# notes of imagenet-2026-11-29.md, which say what changed; its table's rows, those of
# package-2026-11-29-v4.sh and the backbones at their own resolution, are listed in
# card-rows-2026-11-30.txt.
#     bash training/results/package-2026-11-30.sh RUN_DIR [DEST]
set -euo pipefail
run=${1:?usage: package-2026-11-30.sh RUN_DIR [DEST]}
for report in training/results/dev-eval/*.json; do
    python -m training.evaluate --rescore "$report" --data training/recipes/dev_eval.csv \
        --json "training/results/dev-eval/identity-corrected/$(basename "$report")" >/dev/null
done
e=training/results/dev-eval/identity-corrected
rows=()
while IFS= read -r line; do
    [[ -z $line || $line == \#* ]] || rows+=(--dev-eval "${line//\$e/$e}")
done <training/results/card-rows-2026-11-30.txt
python -m training.package_default --run "$run" ${2:+--dest "$2"} \
    --notes training/results/imagenet-2026-11-29.md "${rows[@]}"
