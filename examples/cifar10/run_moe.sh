#!/bin/bash
# run_moe.sh — the seed's run_ds_moe.sh for mox: the CIFAR-10 Net with MoE layers, top-1,
# RSample, expert parameters in their own optimizer group, the DeepSpeed example's
# ds_config.json (Adam 0.001 — AdamW, as DeepSpeed runs it —, betas 0.8/0.999, weight decay
# 3e-7, WarmupLR over 1000 steps, batch 4).
#   EXPERTS  experts of the MoE layer (default 4; a list such as "2 4" gives a pyramid)
#   NUM_GPUS ranks started by scripts/moxrun (default 1; CPU processes on a machine without GPUs)
#   EP_SIZE  expert-parallel world size (default 1; must divide NUM_GPUS and every expert count)
#   CONFIG   the DeepSpeed JSON (default ds_config.json, the original example's; ds_config_bs16.json
#            is the current example's get_ds_config — batch 16, gradient clipping 1.0 — which it
#            runs for 30 epochs and tests at batch 4: add --epochs 30 --test-batch-size 4)
# The seed's real-life setting: NUM_GPUS=2 EP_SIZE=2 EXPERTS=2 ./run_moe.sh
# With N ranks each keeps the config's images per step: the script hands mox-cifar10 a copy
# of it whose train_batch_size (global, as in DeepSpeed) is N times larger.
# Extra arguments go to mox-cifar10 (e.g. --epochs 2 --metrics moe.jsonl --seed 1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
EXPERTS=${EXPERTS:-4}
EP_SIZE=${EP_SIZE:-1}
NUM_GPUS=${NUM_GPUS:-1}
DATA=${DATA:-${MOX_DATA:-$root/data}/cifar10}
config=${CONFIG:-$here/ds_config.json}
[ -f "$config" ] || config="$here/$config"
[ -f "$config" ] || { echo "run_moe.sh: CONFIG '${CONFIG-}' not found (here or in $here)" >&2; exit 2; }
if [ "$NUM_GPUS" != 1 ]; then
  per_rank=$(sed -n 's/.*"train_batch_size": *\([0-9][0-9]*\).*/\1/p' "$config")
  [ -n "$per_rank" ] || { echo "run_moe.sh: no train_batch_size in $config" >&2; exit 2; }
  global=$(mktemp --suffix=.json)
  trap 'rm -f "$global"' EXIT
  sed "s/\"train_batch_size\": *$per_rank/\"train_batch_size\": $((per_rank * NUM_GPUS))/" "$config" >"$global"
  config=$global
fi
# shellcheck disable=SC2086  # EXPERTS is a list on purpose
"$root/scripts/moxrun" --num_gpus "$NUM_GPUS" "$root/build/bin/mox-cifar10" --data "$DATA" --config "$config" \
  --moe --ep-world-size "$EP_SIZE" --num-experts $EXPERTS --top-k 1 \
  --noisy-gate-policy RSample --aux-loss-coef 0.01 --moe-param-group "$@"
