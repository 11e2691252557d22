#!/bin/bash
# run_prmoe.sh — PR-MoE on CIFAR-10: run_moe.sh (top-1, RSample, the same CONFIG, the
# same NUM_GPUS / EP_SIZE handling) with a pyramid of MoE layers (2 then 4 experts) and the
# residual MLP (--mlp-type residual), as DeepSpeedExamples' run_ds_prmoe.sh.
#   EXPERTS  experts per MoE layer (default "2 4")
#   NUM_GPUS, EP_SIZE, CONFIG  as in run_moe.sh, e.g. NUM_GPUS=2 EP_SIZE=2 ./run_prmoe.sh
# Extra arguments go to mox-cifar10.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
EXPERTS=${EXPERTS:-"2 4"} exec "$here/run_moe.sh" --mlp-type residual "$@"
