#!/usr/bin/env bash
# Stage, on the development machine, what benchmarks/gpu_check.sh needs on an offline GPU machine.
# That machine has no network and no data: its image lacks facenet-pytorch and pywavelets, so
# their wheels travel in .gpu/wheels, and the clips (DFSCAN_SHARED_VIDEOS, by default the
# developers' shared clips beside the checkout) travel in .gpu/videos. Then, on the GPU
# machine, with .gpu/ beside the checkout:
#     bash benchmarks/gpu_check.sh OUT_DIR
set -euo pipefail
shared=${DFSCAN_SHARED_VIDEOS:-../shared/data/videos}
rm -rf .gpu
mkdir -p .gpu/wheels .gpu/videos
# The GPU image's python3 is CPython 3.12 on x86-64.
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .gpu/wheels "facenet-pytorch==2.5.3" "pywavelets>=1.4"
cp -rp "$shared"/. .gpu/videos/
du -sh .gpu/wheels .gpu/videos
