#!/usr/bin/env bash
# The run that became the default model of 2026-11-29 (second of the day), on the 2-core CPU:
# the recipe of finetune-2026-11-29.sh (the same warm start, degradations and share of
# generated pseudo-fakes) with the generated pseudo-fakes drawn by four autoencoders instead of
# one (upsampling by transposed convolution, nearest interpolation or pixel shuffle, and one
# that redraws the face from a 3x smaller copy, as face restoration does), half of those pasted
# into a real frame covering only the lower face, as lip-sync generators paste their mouth.
#     bash training/results/finetune-2026-11-29-v2.sh OUT_DIR [--set KEY VALUE ...]
# RESUME=1 continues a cut run from its checkpoints. Further --set pairs change the recipe (the
# variants measured against it in dev-set-2026-11-28.md).
set -euo pipefail
out=${1:?usage: finetune-2026-11-29-v2.sh OUT_DIR [--set KEY VALUE ...]}
shift
exec bash "$(dirname "$0")/finetune-2026-11-29.sh" "$out" \
    --set generator_kinds transposed,nearest,restore-transposed,shuffle --set generated_lower 0.5 \
    "$@"
