#!/usr/bin/env bash
# One device-tool session on a lent GPU machine: trains a model for TRAIN_MINUTES on the carried
# pack (scripts/pack_data.py) while, beside it, checking that the torch-cuda backend is
# bit-exact, that files cross backends, and timing the engine. Output lands in $OUT.
#   carry: runs/pack .whl (the zstandard wheel for the machine's Python); build the pack with
#   `scripts/pack_data.py --max-regions 8000` so that pack, wheel and repo fit the 64 MiB a call
set -u
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src
nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__)"
minutes=${TRAIN_MINUTES:-7}
timeout $(( minutes * 60 + 90 )) python3 scripts/train.py --run "$OUT/run" --device cuda \
  --minutes "$minutes" --batch 256 --sizes 32 64 64 --ckpt-minutes 1.5 --slim \
  --eval-every 500 --threads 8 --config '{"levels": 5, "prior_width": 64}' \
  --gates-from 0.3 --decay-from 0.55 --qat-from 0.85 > "$OUT/train.log" 2>&1 &
timeout 60 python3 -m iodfz selftest
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_engine.py 2>&1 | tail -3
sample=samples/synthetic-photo.png
for b in numpy torch-cuda; do
  IODFZ_BACKEND=$b timeout 60 python3 -m iodfz compress -c "$sample" > /tmp/$b.iodf
done
cmp /tmp/numpy.iodf /tmp/torch-cuda.iodf && echo "numpy and torch-cuda containers: identical"
IODFZ_BACKEND=numpy timeout 60 python3 -m iodfz decompress -c /tmp/torch-cuda.iodf \
  | cmp - "$sample" && echo "torch-cuda file decoded by numpy: byte-exact"
IODFZ_BACKEND=torch-cuda timeout 60 python3 -m iodfz decompress -c /tmp/numpy.iodf \
  | cmp - "$sample" && echo "numpy file decoded by torch-cuda: byte-exact"
timeout 120 python3 scripts/bench_engine.py --json > "$OUT/bench_engine.json"
cat "$OUT/bench_engine.json"
wait
tail -25 "$OUT/train.log"
