#!/usr/bin/env bash
# The run that became the default model of 2026-11-29 (fourth of the day), on the 2-core CPU:
# the recipe of imagenet-2026-11-29.sh with three frame stages (seeds 0, 1, 2, each from the
# ImageNet weights) whose weights are averaged before the head stage (frame_soup 3).
#     bash training/results/soup-2026-11-29.sh OUT_DIR [--set KEY VALUE ...]
# RESUME=1 continues a cut run from its checkpoints (each frame stage's, the soup's, the head's).
set -euo pipefail
out=${1:?usage: soup-2026-11-29.sh OUT_DIR [--set KEY VALUE ...]}
shift
bash "$(dirname "$0")/imagenet-2026-11-29.sh" "$out" --set frame_soup 3 "$@"
