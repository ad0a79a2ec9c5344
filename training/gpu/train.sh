#!/usr/bin/env bash
# Train the two-stage recipe (training/recipes/two_stage_real.yaml) on a lent GPU machine in
# one run (prepare with training/gpu/prepare.sh; copy .gpu-train/ beside the checkout there):
#     bash training/gpu/train.sh OUT_DIR
# The same two-stage recipe as on the CPU, with the GPU's room spent on the whole backbone and
# a longer frame stage; it writes model.safetensors, two_stage.json, config.json and train.log
# into OUT_DIR. Real and pseudo-fake clips are degraded alike half the time (degrade_prob 0.5:
# the shipped default's setting). Measured on an H200 (two runs side by side, 6 loader workers each): unpacking
# 14 s, frame stage 8 passes over 1,620 frames 116 s (350-480 img/s, bound by the CPU's
# self-blending), feature cache 46 s, head stage 3.5 s an epoch: about 5 minutes in all.
# If it is cut short, run the same command with RESUME=1 on the same machine: the run
# continues from its last checkpoint (frame stage, features, head epoch) in WORK.
# Overrides, for a dry run elsewhere: PYTHON (python3), DEVICE (cuda), WORKERS (14),
# FRAMES (crops per video in the pack, 20: as prepare.sh), WORK (a folder kept for RESUME),
# and EXTRA: more "--set KEY VALUE" pairs (e.g. tiny schedules for a dry run).
set -uo pipefail
out=${1:?usage: train.sh OUT_DIR}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
stage=.gpu-train
work=${WORK:-$(mktemp -d)}
mkdir -p "$out"
started=$(date +%s)
step() { echo "[$(($(date +%s) - started)) s] $*" | tee -a "$out/train.log" >&2; }

if ! "$py" -c "import facenet_pytorch, pywt" 2>/dev/null; then
    step "installing $(ls $stage/wheels | tr '\n' ' ')"
    "$py" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/dfscan-site \
        $stage/wheels/*.whl || exit 1
    export PYTHONPATH=/tmp/dfscan-site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 | tee -a "$out/train.log" >&2 || true

if [ -z "${RESUME:-}" ]; then
    step "unpacking the face-crop cache"
    "$py" -m training.cache_pack unpack --pack $stage/cache.pack --cache "$work/cache" \
        2>&1 | tee -a "$out/train.log" || exit 1
fi

step "training"
# data "" : the videos come from the cache's index (the machine has crops, not videos)
"$py" -m training.two_stage --config $stage/recipe.yaml --out "$work/run" ${RESUME:+--resume} \
    --set data '""' --set cache "$work/cache" --set cache_frames "${FRAMES:-20}" \
    --set backbone_weights $stage/backbone.safetensors \
    --set device "$device" --set workers "${WORKERS:-14}" \
    --set trainable_stages -1 --set frame_epochs 8 --set frame_pairs 64 --set frame_lr 0.0005 \
    --set feature_variants 2 --set feature_frames 16 --set head_epochs 100 --set head_patience 8 \
    --set degrade_prob 0.5 \
    ${EXTRA:-} 2>&1 | tee -a "$out/train.log"
rc=${PIPESTATUS[0]}
cp "$work/run/model.safetensors" "$work/run/two_stage.json" "$work/run/config.json" "$out/" \
    2>/dev/null
step "done (exit $rc)"
exit "$rc"
