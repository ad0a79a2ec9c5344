#!/usr/bin/env bash
# Train the two-stage recipe (training/recipes/two_stage_real.yaml) on a lent GPU machine in
# one run (prepare with training/gpu/prepare.sh; carry [".gpu-train"]):
#     bash training/gpu/train.sh OUT_DIR
# The same two-stage recipe as on the CPU, with the GPU's room spent on longer schedules and
# the whole backbone trained; it writes model.safetensors, two_stage.json, config.json and
# train.log into OUT_DIR. The wall-time budget is about 9 minutes.
# Overrides, for a dry run elsewhere: PYTHON (python3), DEVICE (cuda), WORKERS (14),
# and EXTRA: more "--set KEY VALUE" pairs (e.g. tiny schedules for a dry run).
set -uo pipefail
out=${1:?usage: train.sh OUT_DIR}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
stage=.gpu-train
work=$(mktemp -d)
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

step "unpacking the face-crop cache"
"$py" -m training.cache_pack unpack --pack $stage/cache.pack --cache "$work/cache" \
    2>&1 | tee -a "$out/train.log" || exit 1

step "training"
# data "" : the videos come from the cache's index (the machine has crops, not videos)
"$py" -m training.two_stage --config $stage/recipe.yaml --out "$work/run" \
    --set data '""' --set cache "$work/cache" --set cache_frames 32 \
    --set backbone_weights $stage/backbone.safetensors \
    --set device "$device" --set workers "${WORKERS:-14}" \
    --set trainable_stages -1 --set frame_epochs 12 --set frame_pairs 64 --set frame_lr 0.0005 \
    --set feature_variants 8 --set head_epochs 150 --set head_patience 40 \
    ${EXTRA:-} 2>&1 | tee -a "$out/train.log"
rc=${PIPESTATUS[0]}
cp "$work/run/model.safetensors" "$work/run/two_stage.json" "$work/run/config.json" "$out/" \
    2>/dev/null
step "done (exit $rc)"
exit "$rc"
