#!/usr/bin/env bash
# One call on a lent GPU machine: every CUDA check of train_torch.py, timed (see benchmarks/cuda_bench.py).
#
# Here (once, a few seconds; the GPU machine has no network, so the data travels with the call):
#   echo /.devdata/ >> .git/info/exclude
#   AUTORESEARCH_CACHE=$PWD/.devdata .venv/bin/autoresearch prepare --dataset stdlib --vocab 8192
# Then, through the device tool's run, with carry [".devdata"]:
#   bash benchmarks/cuda_check.sh            (about 3 x (budget + overhead) seconds; budget 90 s by default)
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET="${BUDGET:-90}"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
DATA=$(ls -d .devdata/data/stdlib-v8192 2>/dev/null || true)
[ -n "$DATA" ] || { echo "no prepared data in .devdata/data/stdlib-v8192: see the header of this script"; exit 2; }
PYTHONUNBUFFERED=1 python3 benchmarks/cuda_bench.py --data "$DATA" --budget "$BUDGET" "$@"
