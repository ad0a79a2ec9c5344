#!/usr/bin/env bash
# The run that became the default model of 2026-11-29, on the 2-core CPU: the default of
# 2026-11-28 (two-stage, Lite0, trained on an H200 by training/gpu/train.sh) fine-tuned with
# low-resolution compressed degradations and generated pseudo-fakes (training.fingerprint).
#     bash training/results/finetune-2026-11-29.sh OUT_DIR [--set KEY VALUE ...]
# Needs the team's shared data beside the checkout (the two-stage recipe's clips) and the
# crop cache that recipe makes (runs/cache_real64, built on the first run). RESUME=1 continues
# a cut run from its checkpoints. Further --set pairs change the recipe (as later runs do).
set -euo pipefail
out=${1:?usage: finetune-2026-11-29.sh OUT_DIR [--set KEY VALUE ...]}
shift
previous=$(mktemp --suffix=.safetensors)
# its backbone is the warm start: the shipped model of commit cdb2f1c
git show cdb2f1c:scanner/models/default.safetensors > "$previous"
python -m training.two_stage --config training/recipes/two_stage_real.yaml --out "$out" \
    ${RESUME:+--resume} \
    --set backbone_weights "$previous" --set frame_epochs 0.5 --set frame_lr 0.0001 \
    --set degrade_prob 0.6 --set degrade_kinds rescale,palette,noise,blur,lowres_codec,lowres_codec \
    --set feature_variants 2 --set feature_frames 16 --set head_patience 8 \
    --set generated_prob 0.6 --set generator_steps 1500 "$@"
