#!/usr/bin/env bash
# The CIFAR-10 MoE-vs-dense accuracy gap over seeds: the seed's MoE net (4 experts, top-1,
# RSample, l_aux coefficient 0.01, --moe-param-group) against the dense Net on the same
# recipe and seed, one metrics file per run, then a table (dense, MoE, gap per seed; mean).
#   bench/cifar10_moe_gap.sh RECIPE OUT_DIR SEED...
# RECIPE
#   ds2   DeepSpeedExamples' original CIFAR-10 example: examples/cifar10/ds_config.json
#         (batch 4), 2 epochs, test batch 4;
#   ds30  its current one (cifar10_deepspeed.py's get_ds_config): ds_config_bs16.json
#         (batch 16, gradient clipping 1.0), its default 30 epochs, test batch 4.
# Runs go two at a time with one thread each (a run's result does not depend on what else
# the machine does; it does depend on --threads, so keep it at 1 to reproduce a table).
# Needs `make` first and the data at $MOX_DATA/cifar10 (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
recipe=$1 out=$2; shift 2
case $recipe in
  ds2)  common=(--config examples/cifar10/ds_config.json --epochs 2 --test-batch-size 4) ;;
  ds30) common=(--config examples/cifar10/ds_config_bs16.json --epochs 30 --test-batch-size 4) ;;
  *) echo "unknown recipe '$recipe' (expected ds2 or ds30)" >&2; exit 2 ;;
esac
DATA=${MOX_DATA:-$(cd ../shared/data && pwd)}/cifar10
moe=(--moe --num-experts 4 --top-k 1 --noisy-gate-policy RSample --aux-loss-coef 0.01 --moe-param-group)
mkdir -p "$out"
for seed in "$@"; do
  for net in dense moe; do
    extra=(); [ $net = moe ] && extra=("${moe[@]}")
    # one quoted command line per run (paths may hold spaces), two run at a time
    printf '%q ' build/bin/mox-cifar10 --data "$DATA" --threads 1 "${common[@]}" \
      --seed "$seed" "${extra[@]}" --metrics "$out/${recipe}_${net}_s$seed.jsonl"
    echo
  done
done | xargs -d '\n' -P 2 -I{} bash -c '{} > /dev/null'
accuracy() { grep '"split":"test"' "$1" | tail -1 | sed 's/.*"accuracy":\([0-9.]*\).*/\1/'; }
echo "| seed | dense | MoE | gap |"; echo "|---|---|---|---|"
for seed in "$@"; do
  d=$(accuracy "$out/${recipe}_dense_s$seed.jsonl"); m=$(accuracy "$out/${recipe}_moe_s$seed.jsonl")
  echo "$seed $d $m"
done | awk '{ g = 100 * ($2 - $3); sd += $2; sm += $3; sg += g; n++
             printf "| %s | %.1f %% | %.1f %% | %.1f |\n", $1, 100 * $2, 100 * $3, g }
            END { printf "| mean | %.1f %% | %.1f %% | %.2f |\n", 100 * sd / n, 100 * sm / n, sg / n }'
