#!/usr/bin/env bash
# One short device-tool run on a lent GPU machine (about 5 minutes): the GPU path's checks and
# speeds, GPU and CPU backends in the same run (docs/GPU.md). Everything lands in $OUT.
#   1. test vectors on every backend (iodfz selftest) and the engine/GPU-path tests;
#   2. engine MB/s, forward and inverse, one and eight 768x512 images per call;
#   3. Kodak and dev/imagenet64: containers from each GPU backend byte-identical to numpy's,
#      decoded crosswise, and end-to-end compress/decompress MB/s (scripts/check_backends.py).
# Prepare on the CPU machine, then run with carry [".whl", "build/gpu-data"]:
#   mkdir -p build/gpu-data && cp -r ../shared/data/kodak ../shared/data/dev/imagenet64 build/gpu-data/
#   .whl/: wheels the machine's Python lacks (zstandard; optionally onnxruntime, cuda-python)
set -u
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src
DATA=${DATA:-build/gpu-data}
GPU="torch-cuda-int8 torch-cuda onnxruntime-cuda tensorrt"
{
  nvidia-smi -L
  echo "cpu cores: $(nproc)"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} 2>&1 | tee "$OUT/device.txt"
timeout 120 python3 -m iodfz selftest 2>&1 | tee "$OUT/selftest.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_engine.py tests/test_gpu_path.py \
  2>&1 | tail -3 | tee "$OUT/tests.txt"
timeout 150 python3 scripts/bench_engine.py --json --batch 1 8 --backends numpy $GPU \
  > "$OUT/bench_engine.json"
cat "$OUT/bench_engine.json"
timeout 300 python3 scripts/check_backends.py "$DATA/kodak" "$DATA/imagenet64" \
  --backends numpy $GPU --json "$OUT/check_backends.json" 2>&1 | tee "$OUT/check_backends.txt"
