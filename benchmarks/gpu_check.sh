#!/usr/bin/env bash
# The checks to run, in one go, whenever a GPU machine is available. Prepare here with
# `bash benchmarks/gpu_prepare.sh`, then on the GPU machine, with .gpu/ beside the checkout:
#     bash benchmarks/gpu_check.sh OUT_DIR
# It runs the source tree as it is (no pip install: the machine has no network) and writes a
# few summaries plus gpu_check.tar.gz (every log, CSV and bench file) into the folder given.
# Overrides, for a dry run elsewhere: PYTHON, DEVICE (cuda), BATCHES (1,8,32,128), RUNS (20),
# WARMUP (5), VIDEOS (.gpu/videos); for the end-to-end run on 1080p talking heads (step 4): SECONDS_PER_CLIP (10),
# COPIES (4), WORKERS (the scan's default: the cores less two), E2E_BATCHES (32,128), HEADS (a folder of talking heads made
# beforehand: step 4 then scans those instead of making them). SKIP (e.g. "1 2 3") skips those
# steps. OUT_DIR receives at most eight files (all that the GPU machine returns): the summaries and
# gpu_check.tar.gz, which holds every log, CSV and bench result file.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
videos=${VIDEOS:-$PWD/.gpu/videos}
work=$(mktemp -d)
mkdir -p "$out"
started=$(date +%s)
skip() { [[ " ${SKIP:-} " == *" $1 "* ]]; }
step() { echo "[$(($(date +%s) - started)) s] $*" | tee -a "$work/steps.txt" >&2; }

if ! "$py" -c "import facenet_pytorch, pywt" 2>/dev/null; then
    step "installing $(ls .gpu/wheels | tr '\n' ' ')"
    "$py" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/dfscan-site \
        .gpu/wheels/*.whl || exit 1
    export PYTHONPATH=/tmp/dfscan-site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export DFSCAN_SHARED_VIDEOS=$videos
dfscan=("$py" -m scanner)  # the dfscan command, from the source tree

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
    "$py" - <<'PY'
import importlib.metadata as md
import torch
for pkg in ("torch", "timm", "onnx", "onnxruntime", "facenet-pytorch", "opencv-python-headless"):
    try:
        print(pkg, md.version(pkg))
    except md.PackageNotFoundError:
        print(pkg, "not installed")
print("cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
PY
} > "$work/env.txt" 2>&1
step "environment: $(tail -1 "$work/env.txt")"

# 1. GPU tests: CUDA graphs against eager, fp16 CUDA parity of the shipped model and of the
#    paper configuration, ONNX/TensorRT where installed (they skip with the reason otherwise).
if ! skip 1; then
step "pytest -m gpu"
timeout "${PYTEST_TIMEOUT:-300}" "$py" -m pytest -q -rs -m gpu -p no:cacheprovider tests > "$work/pytest_gpu.txt" 2>&1
step "pytest -m gpu: $(tail -1 "$work/pytest_gpu.txt")"
fi

# 2. Bench: paper configuration and shipped model on the torch backend (fp16, channels_last,
#    CUDA graphs), end to end on the shared clips. onnxruntime there has only the CPU provider.
if ! skip 2; then
step "bench"
timeout "${BENCH_TIMEOUT:-300}" "${dfscan[@]}" bench --device "$device" --backends torch --batches "${BATCHES:-1,8,32,128}" \
    --runs "${RUNS:-20}" --warmup "${WARMUP:-5}" --videos "$videos" --out "$work/bench" \
    > "$work/bench.txt" 2> "$work/bench.log"
step "bench: exit $?"
fi

# 3. The same scan on the CPU and on the device: scores must agree within the fp16 tolerance
#    wherever both found the same face track.
if ! skip 3; then
for where in cpu "$device"; do
    step "scan --device $where"
    timeout 300 "${dfscan[@]}" scan "$videos" --device "$where" --out "$work/scan_$where.csv" \
        --details "$work/scan_$where.jsonl" --no-progress --overwrite 2> "$work/scan_$where.log"
    step "scan --device $where: exit $?"
done
"$py" - "$work" "$device" > "$work/scan_compare.txt" 2>&1 <<'PY'
import csv
import sys

work, device = sys.argv[1:]
rows = {}
for name in ("cpu", device):
    with open(f"{work}/scan_{name}.csv", newline="") as f:
        rows[name] = {r["path"]: r for r in csv.DictReader(f)}
cpu, dev = rows["cpu"], rows[device]
both = [p for p in cpu if p in dev and cpu[p]["score"] and dev[p]["score"]]
status = [p for p in cpu if p in dev and cpu[p]["status"] != dev[p]["status"]]
print(f"{len(cpu)} videos on cpu, {len(dev)} on {device}; scored on both: {len(both)}")
print(f"status differs on {len(status)}: {status}")
diffs = sorted(((abs(float(cpu[p]["score"]) - float(dev[p]["score"])), p) for p in both), reverse=True)
if diffs:
    print(f"max |score cpu - {device}| = {diffs[0][0]:.2e} ({diffs[0][1]})")
    print(f"median = {diffs[len(diffs) // 2][0]:.2e}")
    for d, p in diffs[:5]:
        print(f"  {d:.2e}  {p}  backend {dev[p]['backend']} {dev[p]['device']}")
verdicts = [p for p in both if cpu[p]["label"] != dev[p]["label"]]
print(f"label (verdict) differs on {len(verdicts)}: {verdicts}")
PY
step "compared"
fi

# 4. End to end on 10-second 1080p talking heads (the shared talking-head clips upscaled and
#    looped; COPIES files of each): videos/s through the scan pipeline with WORKERS workers,
#    the stage split, and the model stage's clips/s at large batches. The result files are
#    named after the GPU and land in benchmarks/results/ inside gpu_check.tar.gz, to be
#    committed as they are.
if ! skip 4; then
workers=(); [ -n "${WORKERS:-}" ] && workers=(--workers "$WORKERS")  # default: the scan's
gpu=$("$py" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" 2>/dev/null)
stem=$(echo "${gpu:-unknown}" | tr 'A-Z' 'a-z' | tr -cs 'a-z0-9' '_' | sed 's/^_//; s/_$//')_e2e_1080p_$(date +%Y-%m-%d)
heads=${HEADS:-$work/talking_heads}
if [ -z "${HEADS:-}" ]; then
    step "making 1080p talking heads (${SECONDS_PER_CLIP:-10} s, ${COPIES:-4} copies each)"
    timeout 300 "$py" -m benchmarks.talking_heads "$videos" "$heads" --seconds "${SECONDS_PER_CLIP:-10}" \
        --copies "${COPIES:-4}" > "$work/talking_heads.log" 2>&1
    step "talking heads: exit $?, $(ls "$heads" 2>/dev/null | wc -l) clips"
fi
results=$work/benchmarks/results
mkdir -p "$results"
step "bench end to end on $gpu ($(ls "$heads" 2>/dev/null | wc -l) clips)"
timeout "${E2E_TIMEOUT:-420}" "${dfscan[@]}" bench --device "$device" --no-paper --backends torch \
    --batches "${E2E_BATCHES:-32,128}" --runs "${RUNS:-20}" --warmup "${WARMUP:-5}" \
    ${workers[@]+"${workers[@]}"} --videos "$heads" --out "$results/$stem" \
    > "$results/$stem.txt" 2> "$work/bench_e2e.log"
step "bench end to end: exit $?"
{
    echo "GPU: $gpu"
    echo "command: dfscan bench --device $device --no-paper --backends torch --batches ${E2E_BATCHES:-32,128} ${WORKERS:+--workers $WORKERS }--videos <talking heads: $(ls "$heads" | wc -l) clips, ${SECONDS_PER_CLIP:-10} s, 1920x1080>"
    grep -E "videos/s|clips/s|\] torch" "$results/$stem.txt"
} > "$work/e2e_summary.txt" 2>&1
fi

for f in env.txt pytest_gpu.txt bench.txt scan_compare.txt e2e_summary.txt steps.txt; do
    [ -f "$work/$f" ] && cp "$work/$f" "$out/"
done
tar czf "$out/gpu_check.tar.gz" -C "$work" .
cat "$out/env.txt"
[ -f "$out/e2e_summary.txt" ] && cat "$out/e2e_summary.txt"
[ -f "$out/scan_compare.txt" ] && cat "$out/scan_compare.txt"
[ -f "$out/pytest_gpu.txt" ] && tail -25 "$out/pytest_gpu.txt"
exit 0  # each step's exit status is in steps.txt
