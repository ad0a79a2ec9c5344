#!/usr/bin/env bash
# The checks a session with a lent GPU machine runs, in one go (see ../shared/docs/gpu-notes.md).
# Usage, from the repository root on the GPU machine:  bash benchmarks/gpu_check.sh OUT_DIR
# Needs torch with CUDA, timm, onnx, onnxruntime, and the wheels of facenet-pytorch (--no-deps)
# and pywavelets installed; writes everything under OUT_DIR.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR}
mkdir -p "$out"
python -m pip install --quiet --no-deps -e . 2>&1 | tail -1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1
# 1. GPU tests: CUDA graphs against eager, fp16 parity.
python -m pytest -q -m gpu tests 2>&1 | tail -15 > "$out/pytest_gpu.txt"
# 2. Benchmarks on the GPU: paper configuration and default model, every backend found.
dfscan bench --device cuda --batches 1,8,32,128 --runs 20 --warmup 5 \
    --videos ../shared/data/videos --out "$out/bench_gpu" > "$out/bench_gpu.txt" 2>&1
# 3. The same scan on CPU and GPU: scores must agree within fp16 tolerance.
dfscan -q scan ../shared/data/videos --device cpu --out "$out/scan_cpu.csv" --no-progress
dfscan -q scan ../shared/data/videos --device cuda --out "$out/scan_cuda.csv" --no-progress \
    2> "$out/scan_cuda.log"
python - "$out" <<'PY' > "$out/scan_compare.txt"
import csv, sys
out = sys.argv[1]
rows = {n: {r["path"]: r for r in csv.DictReader(open(f"{out}/scan_{n}.csv"))} for n in ("cpu", "cuda")}
diffs = [abs(float(rows["cpu"][p]["score"]) - float(r["score"]))
         for p, r in rows["cuda"].items() if r["score"] and rows["cpu"][p]["score"]]
print(f"{len(diffs)} videos scored on both; max |score cpu - cuda| = {max(diffs):.2e}")
PY
cat "$out"/gpu.txt "$out"/pytest_gpu.txt "$out"/scan_compare.txt
