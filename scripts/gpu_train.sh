#!/usr/bin/env bash
# Continue a training lineage on a lent GPU machine for a time budget; the slim checkpoint and
# the log come back in $OUT/run (then go on from it on the CPU with --init, or commit it).
# Prepare on the CPU machine (the tracked checkpoints travel with the working tree; the pack
# is carried, and must leave room in the 64 MiB carry):
#   python scripts/pack_data.py --from runs/pack4 --out build/gpu-pack --max-regions 6000 \
#       --max-smooth 1500 --max-whole 1500
# Device tool: carry ["build/gpu-pack"], timeout_s a minute or two above the budget, command
#   bash scripts/gpu_train.sh MINUTES CHECKPOINT [train.py options]
# e.g. a finished lineage fine-tuned with smooth regions, stages as fractions of the budget:
#   bash scripts/gpu_train.sh 8 models/checkpoints/iodf-pyramid5.pt --batch 128 \
#       --sizes 32 64 --lr 3e-4 --gates-from 1e9 --decay-from 0.3 --qat-from 0.85 \
#       --smooth-share 0.33
# A step at --batch 128 draws 8× the pixels of the CPU runs' --batch 16 (batch × 64² each);
# train.py prints the steps and pixels per second it measured.
# No dev sets travel, so the log has no dev columns: score the checkpoint back on the CPU.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src
MINUTES=$1
INIT=$2
shift 2
{
  nvidia-smi -L
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} 2>&1 | tee "$OUT/device.txt"
timeout $((MINUTES * 60 + 90)) python3 scripts/train.py --run "$OUT/run" --init "$INIT" \
  --pack build/gpu-pack --device cuda --minutes "$MINUTES" --slim "$@" 2>&1 | tee "$OUT/train.txt"
