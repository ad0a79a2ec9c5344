#!/usr/bin/env bash
# The command that packaged the third default model of 2026-11-29 again, its card's table
# with the later candidates (run folder of training/results/imagenet-2026-11-29.sh; the
# development-set reports are training.evaluate --json outputs).
set -euo pipefail
run=${1:?usage: package-2026-11-29-v4.sh RUN_DIR [DEST]}
e=${DEV_EVAL:-training/results/dev-eval}  # the folder of the development-set reports
python -m training.package_default --run "$run" ${2:+--dest "$2"} \
    --notes training/results/imagenet-2026-11-29.md \
    --dev-eval "this model: ImageNet start, last two stages trained, 1.5 passes (ships)=$e/two-stage-lite0-imagenet-stages2.json" \
    --dev-eval "the same recipe, seed 1 (same people split)=$e/two-stage-lite0-imagenet-stages2-seed1.json" \
    --dev-eval "the same recipe, seed 2 (same people split)=$e/two-stage-lite0-imagenet-stages2-seed2.json" \
    --dev-eval "the same recipe, seed 3 (same people split)=$e/two-stage-lite0-imagenet-stages2-seed3.json" \
    --dev-eval "the same recipe, seed 4 (same people split)=$e/two-stage-lite0-imagenet-stages2-seed4.json" \
    --dev-eval "three frame stages averaged (frame_soup 3), run as written (not shipped)=$e/two-stage-lite0-imagenet-stages2-soup3.json" \
    --dev-eval "the frame stages of seeds 0-2 above averaged, head seed 0=$e/two-stage-lite0-imagenet-stages2-soup-of-seeds012.json" \
    --dev-eval "the same, head seed 1=$e/two-stage-lite0-imagenet-stages2-soup-of-seeds012-head1.json" \
    --dev-eval "the same, head seed 2=$e/two-stage-lite0-imagenet-stages2-soup-of-seeds012-head2.json" \
    --dev-eval "the same recipe, seed 0, its script run into an empty folder (own autoencoders)=$e/two-stage-lite0-imagenet-stages2-reproduced.json" \
    --dev-eval "the same recipe on Lite2=$e/two-stage-lite2-imagenet-stages2.json" \
    --dev-eval "ImageNet start, last three stages trained, 1.5 passes=$e/two-stage-lite0-imagenet-stages3-longer.json" \
    --dev-eval "ImageNet start, last stage trained, one pass=$e/two-stage-lite0-imagenet-last-block.json" \
    --dev-eval "ImageNet start, last stage trained, two passes=$e/two-stage-lite0-imagenet-last-block-2passes.json" \
    --dev-eval "ImageNet start, backbone blocks frozen=$e/two-stage-lite0-imagenet-frozen-blocks.json" \
    --dev-eval "the same, seed 1 (same people split)=$e/two-stage-lite0-imagenet-frozen-blocks-seed1.json" \
    --dev-eval "the same, seed 1 (its own split: 8 held-out real clips trained on)=$e/two-stage-lite0-imagenet-frozen-blocks-seed1-own-split.json" \
    --dev-eval "ImageNet start, backbone blocks frozen, Lite2=$e/two-stage-lite2-imagenet-frozen-blocks.json" \
    --dev-eval "ImageNet start, last three stages, half a pass=$e/two-stage-lite0-imagenet-four-generators-lower.json" \
    --dev-eval "previous default (second of 2026-11-29): warm start, four decoders, half of the pasted generated faces over the lower face=$e/two-stage-lite0-finetune-four-generators-lower.json" \
    --dev-eval "the same, 0.8 of them over the lower face=$e/two-stage-lite0-finetune-four-generators-lower08.json" \
    --dev-eval "the same, 0.8 of all pseudo-fakes generated=$e/two-stage-lite0-finetune-four-generators-lower-generated08.json" \
    --dev-eval "the same, frame stage twice as long=$e/two-stage-lite0-finetune-four-generators-lower-frame1.json" \
    --dev-eval "the same, frame stage half as long=$e/two-stage-lite0-finetune-four-generators-lower-frame025.json" \
    --dev-eval "previous default, its head stage trained again=$e/two-stage-lite0-finetune-four-generators-lower-head-again.json" \
    --dev-eval "previous default, head stage again with flickering generated texture=$e/two-stage-lite0-finetune-four-generators-lower-flicker.json" \
    --dev-eval "previous default + a latent-diffusion-like fifth decoder=$e/two-stage-lite0-finetune-four-generators-lower-latent.json" \
    --dev-eval "previous default, generated faces drawn at 1-2x and reduced=$e/two-stage-lite0-finetune-four-generators-lower-scale2.json" \
    --dev-eval "previous default + beauty filter among the degradations=$e/two-stage-lite0-finetune-four-generators-lower-smooth.json" \
    --dev-eval "previous default + H.264 among the degradations=$e/two-stage-lite0-finetune-four-generators-lower-h264.json" \
    --dev-eval "previous default, half of the degraded clips degraded before the fake is made=$e/two-stage-lite0-finetune-four-generators-lower-degrade-before.json" \
    --dev-eval "previous default, every pseudo-fake generated (no self-blends)=$e/two-stage-lite0-finetune-four-generators-lower-generated1.json" \
    --dev-eval "previous default, every clip degraded alike=$e/two-stage-lite0-finetune-four-generators-lower-degrade1.json" \
    --dev-eval "previous default, whole backbone trained=$e/two-stage-lite0-finetune-four-generators-lower-whole-backbone.json" \
    --dev-eval "the previous recipe without whole-crop generated redraws=$e/two-stage-lite0-finetune-four-generators-lower-no-whole.json" \
    --dev-eval "the same, head on 32 frames per video=$e/two-stage-lite0-finetune-four-generators-lower-no-whole-frames32.json" \
    --dev-eval "the same, reframed and recoloured alike=$e/two-stage-lite0-finetune-four-generators-lower-no-whole-jitter.json" \
    --dev-eval "the same, every pseudo-fake generated=$e/two-stage-lite0-finetune-four-generators-lower-no-whole-generated1.json" \
    --dev-eval "the same, two backbone stages trained=$e/two-stage-lite0-finetune-four-generators-lower-no-whole-stages2.json" \
    --dev-eval "previous default + warp-reenacted pseudo-fakes=$e/two-stage-lite0-finetune-four-generators-lower-reenact.json" \
    --dev-eval "previous default, head on three versions of each real clip=$e/two-stage-lite0-finetune-four-generators-lower-real-variants3.json" \
    --dev-eval "previous default + whole-crop redraws paired with their real clip blurred alike=$e/two-stage-lite0-finetune-four-generators-lower-match.json" \
    --dev-eval "previous default, head on runs of consecutive frames (subsequence sampling)=$e/two-stage-lite0-finetune-four-generators-lower-subsequence.json" \
    --dev-eval "the same, half of the generated clips flickering=$e/two-stage-lite0-finetune-four-generators-lower-subsequence-flicker.json" \
    --dev-eval "the same, frame stage trained again on runs of consecutive frames too=$e/two-stage-lite0-finetune-four-generators-lower-subsequence-flicker-full.json" \
    --dev-eval "four decoders alone=$e/two-stage-lite0-finetune-four-generators.json" \
    --dev-eval "first default of 2026-11-29: one decoder, generated faces 0.6=$e/two-stage-lite0-finetune-lowres-generated06.json" \
    --dev-eval "the same with generated faces 0.3=$e/two-stage-lite0-finetune-lowres-generated.json" \
    --dev-eval "the same without generated faces=$e/two-stage-lite0-gpu-degrade-cpu-finetune-lowres.json" \
    --dev-eval "default of 2026-11-28: two-stage, Lite0, GPU, degraded alike=$e/two-stage-lite0-gpu-degrade.json" \
    --dev-eval "two-stage, Lite0, GPU, no degradation=$e/two-stage-lite0-gpu.json" \
    --dev-eval "default of 2026-11-27: end to end, Lite2, 25 clips, five-point blends=$e/shipped-lite2-2026-11-27.json" \
    --dev-eval "two-stage, Lite0, CPU (1.5 frame passes, last 3 stages)=$e/two-stage-lite0-cpu.json" \
    --dev-eval "the same + re-rendered faces=$e/two-stage-lite0-cpu-rerender.json" \
    --dev-eval "the same + warp-reenacted faces=$e/two-stage-lite0-cpu-reenact.json" \
    --dev-eval "the same, degraded alike=$e/two-stage-lite0-cpu-degrade.json" \
    --dev-eval "end to end, Lite0, CPU, 68-point blends=$e/end-to-end-lite0-cpu.json"
