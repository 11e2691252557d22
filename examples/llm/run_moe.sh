#!/bin/bash
# run_moe.sh — the shakespeare-cpu MoE recipe of README.md (nanoGPT's CPU config with 4 experts,
# top-2, in every second block), started on NUM_GPUS ranks by scripts/moxrun.
#   NUM_GPUS ranks (default 1; CPU processes on a machine without GPUs). Data parallel over all
#            of them: --batch-size stays the GLOBAL batch, the preset's 12 sequences, split
#            evenly — so NUM_GPUS must divide 12, or pass --batch-size B with B divisible by it.
#   EP_SIZE  expert-parallel size (default 1; must divide NUM_GPUS and the 4 experts)
#   OUT      checkpoint directory (default out-moe), with EP_SIZE 1 only: expert-parallel
#            checkpoints are not supported yet, so with EP_SIZE > 1 none is written
#   DATA     the corpus (default $MOX_DATA/tinyshakespeare/input.txt, else data/...)
# Extra arguments go to mox-llm train and win over the recipe's (e.g. --max-iters 200
# --metrics moe.jsonl --seed 1). Example: NUM_GPUS=2 EP_SIZE=2 examples/llm/run_moe.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
NUM_GPUS=${NUM_GPUS:-1}
EP_SIZE=${EP_SIZE:-1}
DATA=${DATA:-${MOX_DATA:-$root/data}/tinyshakespeare/input.txt}
out=()
if [ "$EP_SIZE" = 1 ]; then out=(--out "${OUT:-out-moe}"); fi
exec "$root/scripts/moxrun" --num_gpus "$NUM_GPUS" "$root/build/bin/mox-llm" train --preset shakespeare-cpu \
  --data "$DATA" --num-experts 4 --top-k 2 --expert-interval 2 --ep-size "$EP_SIZE" ${out[@]+"${out[@]}"} "$@"
