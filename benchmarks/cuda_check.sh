#!/usr/bin/env bash
# One call on a lent GPU machine: every CUDA check of train_torch.py, timed (see benchmarks/cuda_bench.py).
#
# Here (once, a few seconds; the GPU machine has no network, so the data travels with the call):
#   echo /.devdata/ >> .git/info/exclude
#   AUTORESEARCH_CACHE=$PWD/.devdata .venv/bin/autoresearch prepare --dataset stdlib --vocab 8192
# Then, through the device tool's run, with carry [".devdata"]. A call may last 600 s and a session has about 15 min
# of device time including the machine's start, so plan two calls at a 60 s budget (tokens/s, MFU and the overhead
# around the budget do not depend on its length; the issue's 90-120 s fits when more time is lent):
#   BUDGET=60 bash benchmarks/cuda_check.sh --variants cold warm changed lr    (~4 x 60 s + ~155 s overhead)
#   BUDGET=60 bash benchmarks/cuda_check.sh --variants windows eager           (~2 x 60 s + ~120 s overhead)
# warm, changed and lr reuse the compile caches of the `cold` before them in the same call.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET="${BUDGET:-90}"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
DATA=$(ls -d .devdata/data/stdlib-v8192 2>/dev/null || true)
[ -n "$DATA" ] || { echo "no prepared data in .devdata/data/stdlib-v8192: see the header of this script"; exit 2; }
PYTHONUNBUFFERED=1 python3 benchmarks/cuda_bench.py --data "$DATA" --budget "$BUDGET" "$@"
