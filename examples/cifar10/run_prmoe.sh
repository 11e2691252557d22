#!/bin/bash
# run_prmoe.sh — PR-MoE on CIFAR-10: a pyramid of MoE layers (2 then 4 experts) with the
# residual MLP (--mlp-type residual), top-1, RSample (as DeepSpeedExamples' run_ds_prmoe.sh),
# the same ds_config.json as run_moe.sh.
#   EXPERTS  experts per MoE layer (default "2 4")
#   NUM_GPUS ranks started by scripts/moxrun (default 1; CPU processes on a machine without GPUs)
#   EP_SIZE  expert-parallel world size (default 1; must divide NUM_GPUS and every expert count)
# Distributed, e.g.: NUM_GPUS=2 EP_SIZE=2 ./run_prmoe.sh — each rank keeps 4 images per step
# (the script passes a copy of ds_config.json with the global train_batch_size 4·N).
# Extra arguments go to mox-cifar10.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
EXPERTS=${EXPERTS:-"2 4"}
EP_SIZE=${EP_SIZE:-1}
NUM_GPUS=${NUM_GPUS:-1}
DATA=${DATA:-${MOX_DATA:-$root/data}/cifar10}
config="$here/ds_config.json"
if [ "$NUM_GPUS" != 1 ]; then
  config=$(mktemp --suffix=.json)
  trap 'rm -f "$config"' EXIT
  sed "s/\"train_batch_size\": *4,/\"train_batch_size\": $((4 * NUM_GPUS)),/" "$here/ds_config.json" >"$config"
fi
# shellcheck disable=SC2086
"$root/scripts/moxrun" --num_gpus "$NUM_GPUS" "$root/build/bin/mox-cifar10" --data "$DATA" --config "$config" \
  --moe --ep-world-size "$EP_SIZE" --num-experts $EXPERTS --mlp-type residual --top-k 1 \
  --noisy-gate-policy RSample --aux-loss-coef 0.01 --moe-param-group "$@"
