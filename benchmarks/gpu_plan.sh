#!/usr/bin/env bash
# The measurements of benchmarks/GPU_PLAN.md in one run on a GPU machine (about 15 minutes):
#   bash benchmarks/gpu_plan.sh [OUT_DIR]      (default: gpu_plan_out/)
# Each step's table and JSON line go to OUT_DIR/<step>.txt; a failed step does not stop the others.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_plan_out}"
mkdir -p "$out"
python -c "import jax; print(jax.devices())" | tee "$out/devices.txt"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>/dev/null | tee -a "$out/devices.txt"

# 1. the paper's model alone: inference and training, bfloat16 and float32, batch sweep
python benchmarks/throughput.py --batch-sizes 64,256,512,1024 --dtypes bfloat16,float32 \
    --repeats 3 --seconds 2 2>&1 | tee "$out/throughput.txt"
# 2. the input pipeline on this machine's cores, against the training rate of step 1
python benchmarks/input_pipeline.py --workers 0,4,8,16 --cache --batch 256 --batches 20 \
    --throughput-json "$out/throughput.txt" 2>&1 | tee "$out/input_pipeline.txt"
# 3. every other registered model's row
for m in r3d18 tdrag mfer lnlj; do
    python benchmarks/throughput.py --model "$m" --batch-sizes 256 --dtypes bfloat16 --repeats 3 --seconds 2
done 2>&1 | tee "$out/models.txt"
# 4. the training loop end to end at the paper's size on the synthetic set (drawn on first use)
python -m dferjax.train --config configs/demo.py:size=paper,train=8192,test=512,epochs=2 \
    --workdir "$out/run" --config.train.batch_size=256 --config.model.dtype=bfloat16 \
    --config.synthetic.workers="$(nproc)" 2>&1 | tee "$out/train.txt"
