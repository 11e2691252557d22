#!/bin/bash
# run_moe.sh — the seed's run_ds_moe.sh for mox: the CIFAR-10 Net with MoE layers, top-1,
# RSample, expert parameters in their own optimizer group, the DeepSpeed example's
# ds_config.json (Adam 0.001 — AdamW, as DeepSpeed runs it —, betas 0.8/0.999, weight decay
# 3e-7, WarmupLR over 1000 steps, batch 4).
#   EXPERTS  experts of the MoE layer (default 4; a list such as "2 4" gives a pyramid)
#   EP_SIZE  expert-parallel world size (1: one process until distributed training lands)
# Extra arguments go to mox-cifar10 (e.g. --epochs 2 --metrics moe.jsonl --seed 1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
EXPERTS=${EXPERTS:-4}
EP_SIZE=${EP_SIZE:-1}
DATA=${DATA:-${MOX_DATA:-$root/data}/cifar10}
# shellcheck disable=SC2086  # EXPERTS is a list on purpose
exec "$root/build/bin/mox-cifar10" --data "$DATA" --config "$here/ds_config.json" \
  --moe --ep-world-size "$EP_SIZE" --num-experts $EXPERTS --top-k 1 \
  --noisy-gate-policy RSample --aux-loss-coef 0.01 --moe-param-group "$@"
