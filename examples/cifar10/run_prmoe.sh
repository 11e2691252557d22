#!/bin/bash
# run_prmoe.sh — PR-MoE on CIFAR-10: a pyramid of MoE layers (2 then 4 experts) with the
# residual MLP (--mlp-type residual), top-1, RSample (as DeepSpeedExamples' run_ds_prmoe.sh),
# the same ds_config.json as run_moe.sh.
#   EXPERTS  experts per MoE layer (default "2 4")
#   EP_SIZE  expert-parallel world size (1 until distributed training lands)
# Extra arguments go to mox-cifar10.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
EXPERTS=${EXPERTS:-"2 4"}
EP_SIZE=${EP_SIZE:-1}
DATA=${DATA:-${MOX_DATA:-$root/data}/cifar10}
# shellcheck disable=SC2086
exec "$root/build/bin/mox-cifar10" --data "$DATA" --config "$here/ds_config.json" \
  --moe --ep-world-size "$EP_SIZE" --num-experts $EXPERTS --mlp-type residual --top-k 1 \
  --noisy-gate-policy RSample --aux-loss-coef 0.01 --moe-param-group "$@"
