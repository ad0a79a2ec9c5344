#!/usr/bin/env bash
# Train the two-stage recipe (training/recipes/two_stage_real.yaml) on an offline GPU machine in
# one run (prepare with training/gpu/prepare.sh; copy .gpu-train/ beside the checkout there):
#     bash training/gpu/train.sh OUT_DIR
# The same two-stage recipe as on the CPU, with the GPU's room spent on the whole backbone and
# a longer frame stage; it writes model.safetensors, two_stage.json, config.json and train.log
# into OUT_DIR. Real and pseudo-fake clips are degraded alike (degrade_prob 0.6, low-resolution
# compressed video twice as often as each other kind), and with generators staged by
# prepare.sh (GENERATORS=RUN_DIR) 0.6 of the pseudo-fakes are drawn by them (GENERATED; the
# generator kinds follow the staged files), half of those pasted into a real frame covering
# only the lower face (GENERATED_LOWER): the settings the CPU fine-tuning measured best.
# Before those settings, measured on an H200 (two runs side by side, 6 loader workers each):
# unpacking 14 s, frame stage 8 passes over 1,620 frames 116 s (350-480 img/s, bound by the CPU's
# self-blending), feature cache 46 s, head stage 3.5 s an epoch: about 5 minutes in all.
# If it is cut short, run the same command with RESUME=1 on the same machine: the run
# continues from its last checkpoint (frame stage, features, head epoch) in WORK
# (/tmp/dfscan-gpu-train-HASH of OUT_DIR unless set; a fresh run without WORK set empties it first).
# Overrides: GENERATED, GENERATED_LOWER (above); for a dry run elsewhere: PYTHON (python3),
# DEVICE (cuda), WORKERS (14), FRAMES (crops per video in the pack, 20: as prepare.sh), WORK,
# and EXTRA: more "--set KEY VALUE" pairs (e.g. tiny schedules for a dry run).
set -uo pipefail
out=${1:?usage: train.sh OUT_DIR}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
stage=.gpu-train
# One folder per OUT_DIR, so that RESUME=1 finds the cut run and two runs side by side do not
# share one.
work=${WORK:-/tmp/dfscan-gpu-train-$(realpath -m "$out" | md5sum | cut -c1-8)}
if [ -z "${RESUME:-}" ] && [ -z "${WORK:-}" ]; then rm -rf "$work"; fi
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

generated=()
if compgen -G "$stage/generators/fingerprint*.safetensors" >/dev/null; then
    mkdir -p "$work/run"
    cp $stage/generators/fingerprint*.safetensors "$work/run/"
    kinds=$(for f in $stage/generators/fingerprint*.safetensors; do
        k=$(basename "$f" .safetensors); k=${k#fingerprint}; echo "${k#-}"; done |
        sed 's/^$/transposed/' | paste -sd, -)
    step "generated pseudo-fakes drawn by the staged autoencoders: $kinds"
    generated=(--set generated_prob "${GENERATED:-0.6}" --set generator_kinds "$kinds"
        --set generated_lower "${GENERATED_LOWER:-0.5}")
fi

step "training"
# data "" : the videos come from the cache's index (the machine has crops, not videos)
"$py" -m training.two_stage --config $stage/recipe.yaml --out "$work/run" ${RESUME:+--resume} \
    --set data '""' --set cache "$work/cache" --set cache_frames "${FRAMES:-20}" \
    --set backbone_weights $stage/backbone.safetensors \
    --set device "$device" --set workers "${WORKERS:-14}" \
    --set trainable_stages -1 --set frame_epochs 8 --set frame_pairs 64 --set frame_lr 0.0005 \
    --set feature_variants 2 --set feature_frames 16 --set head_epochs 100 --set head_patience 8 \
    --set degrade_prob 0.6 --set degrade_kinds rescale,palette,noise,blur,lowres_codec,lowres_codec \
    "${generated[@]}" ${EXTRA:-} 2>&1 | tee -a "$out/train.log"
rc=${PIPESTATUS[0]}
cp "$work/run/model.safetensors" "$work/run/two_stage.json" "$work/run/config.json" "$out/" \
    2>/dev/null
step "done (exit $rc)"
exit "$rc"
