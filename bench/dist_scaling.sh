#!/usr/bin/env bash
# Data + expert parallel scaling from 1 to 2 ranks on this machine (2 cores), through
# scripts/moxrun: 1 rank with 2 threads against 2 ranks with 1 thread each (same cores):
#   bench/dist_scaling.sh [REPEATS]
# 1. mox-cifar10, the tutorial Net with MoE (2 experts, top-1, RSample), global batch 8,
#    2000 steps; images/s of the last 1000-step window (global: all ranks together).
# 2. mox-llm, the shakespeare-cpu preset with MoE (4 experts, top-2, every other layer),
#    150 iterations; median tokens/s of the per-10-step records after step 50 (global).
# Expert parallel (ep = ranks) and pure data parallel (ep 1) at 2 ranks. Runs alternate
# 1-rank and 2-rank (A B A B), REPEATS (default 3) each; medians are printed.
# Needs `make` first and $MOX_DATA (default ../shared/data) with cifar10/ and tinyshakespeare/.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${1:-3}
DATA=${MOX_DATA:-$(cd ../shared/data && pwd)}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
median() { python3 -c "import sys,statistics as s; print(round(s.median(float(x) for x in sys.argv[1:])))" "$@"; }

cifar() {   # ranks ep → images/s of the last window
  scripts/moxrun --num_gpus "$1" --threads $((2 / $1)) build/bin/mox-cifar10 --data "$DATA/cifar10" --batch-size 8 \
    --max-steps 2000 --log-interval 1000 --moe --num-experts 2 --ep-world-size "$2" --top-k 1 \
    --noisy-gate-policy RSample --optimizer adam 2>/dev/null | grep images/s | tail -1 | sed -E 's/.* ([0-9]+) images\/s.*/\1/'
}
llm() {     # ranks ep → median tokens/s after step 50 (checkpoints into $work; none with EP > 1)
  scripts/moxrun --num_gpus "$1" --threads $((2 / $1)) build/bin/mox-llm train --preset shakespeare-cpu \
    --data "$DATA/tinyshakespeare/input.txt" --num-experts 4 --top-k 2 --expert-interval 2 --ep-size "$2" \
    --max-iters 150 --eval-interval 150 $([ "$2" = 1 ] && echo --out "$work/out") --metrics "$work/m.jsonl" >/dev/null 2>&1
  python3 -c "import json,sys,statistics as s
v=[r['tokens_per_s'] for r in map(json.loads,open(sys.argv[1])) if r.get('split')=='train' and r['step']>50]
print(round(s.median(v)))" "$work/m.jsonl"
}

for name in cifar llm; do
  one=() two_ep=() two_dp=()
  for ((r = 0; r < REPEATS; ++r)); do
    one+=("$($name 1 1)")
    two_ep+=("$($name 2 2)")
    two_dp+=("$($name 2 1)")
  done
  unit=$([ $name = cifar ] && echo images/s || echo tokens/s)
  a=$(median "${one[@]}") b=$(median "${two_ep[@]}") c=$(median "${two_dp[@]}")
  echo "$name MoE: 1 rank x 2 threads $a $unit | 2 ranks EP 2: $b ($(python3 -c "print(f'{$b/$a:.2f}')")x) | 2 ranks DP (ep 1): $c ($(python3 -c "print(f'{$c/$a:.2f}')")x)   runs: ${one[*]} / ${two_ep[*]} / ${two_dp[*]}"
done
