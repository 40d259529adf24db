#!/usr/bin/env bash
# One device session: CUDA tests (no host sync inside recorder hooks), the recorder's overhead on CUDA, and a
# short AMP training run. Run from the repository root on a machine with a GPU; writes logs to $OUT (or /tmp).
set -uo pipefail
out=${OUT:-/tmp}
export PYTHONPATH=.
python -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
python -m pytest -q -p no:cacheprovider tests/instrument/test_cuda.py tests/instrument/test_recorder.py \
  tests/layers/test_unrolled.py 2>&1 | tail -4 | tee "$out/cuda_tests.txt"
python -m benchmarks.recorder_overhead --device cuda --rounds 8 --threads 8 2>&1 | tee "$out/overhead_tiny.txt"
python -m benchmarks.recorder_overhead --device cuda --rounds 6 --steps 8 --threads 8 --backbone resnet50 \
  --channels 512 --bases 64 --iterations 6 --size 257 --batch 8 2>&1 | tee "$out/overhead_resnet50.txt"
cp benchmarks/results/recorder_overhead_cuda_*.json "$out/" 2>/dev/null
python -m gradlab train demo --out /tmp/gpu-run --quiet --set train.device=cuda --set train.amp=true \
  --set train.steps=100 --set train.eval_every=100 --set train.checkpoint_every=100 2>&1 | tail -3 | tee "$out/train_cuda.txt"
python -c "import json; m=json.load(open('/tmp/gpu-run/meta.json')); print(m['status'], m['device'])" | tee -a "$out/train_cuda.txt"
python -m benchmarks.hem_vs_em --device cuda --threads 8 2>&1 | tee "$out/hem_vs_em_cuda.txt"
python -m benchmarks.em_layer_speed --device cuda --threads 8 2>&1 | tee "$out/em_layer_speed_cuda.txt"
cp benchmarks/results/hem_vs_em_cuda*.json benchmarks/results/em_layer_speed_cuda*.json "$out/" 2>/dev/null
