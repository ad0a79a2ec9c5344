#!/usr/bin/env bash
# The card of the third default model of 2026-11-29 again, after the identity correction of
# 2026-11-30: every development-set report summarised again without the four real clips of
# people that model's split had trained on (training.evaluate --rescore against the corrected
# training/recipes/dev_eval.csv, into training/results/dev-eval/identity-corrected/), with the
# notes of imagenet-2026-11-29.md, which say what changed.
#     bash training/results/package-2026-11-30.sh RUN_DIR [DEST]
set -euo pipefail
for report in training/results/dev-eval/*.json; do
    python -m training.evaluate --rescore "$report" --data training/recipes/dev_eval.csv \
        --json "training/results/dev-eval/identity-corrected/$(basename "$report")" >/dev/null
done
DEV_EVAL=training/results/dev-eval/identity-corrected \
    bash training/results/package-2026-11-29-v4.sh "$@"
