#!/usr/bin/env bash
# mox-llm speed on the shakespeare-cpu preset (4 layers, 4 heads, 128 embd, block 64,
# batch 12), 2 threads:
#   bench/llm_speed.sh [ITERS]
# 1. training tokens/s, dense and MoE (4 experts, top-2, every other layer): ITERS
#    iterations (default 300) of `mox-llm train`, the median of its per-10-step tokens/s
#    records after the first 50 steps (evaluation excluded);
# 2. generation tokens/s of a model trained for those iterations, 500 new tokens from
#    "ROMEO:", with the KV cache and with --no-kv-cache (full recompute of the cropped
#    context per token, nanoGPT's way), median of 3 runs each.
# Needs `make` first and tiny-Shakespeare at $MOX_DATA/tinyshakespeare (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${1:-300}
DATA=${MOX_DATA:-$(cd ../shared/data && pwd)}/tinyshakespeare/input.txt
BIN=build/bin/mox-llm
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
median() { python3 -c "import sys,statistics as s; print(round(s.median(float(x) for x in sys.argv[1:]), 1))" "$@"; }
train_tps() {   # metrics file → median tokens/s after step 50
  python3 -c "import json,sys,statistics as s
v=[r['tokens_per_s'] for r in map(json.loads,open(sys.argv[1])) if r.get('split')=='train' and r['step']>50]
print(round(s.median(v)))" "$1"
}
common="--preset shakespeare-cpu --data $DATA --seed 1 --max-iters $ITERS --eval-interval $ITERS --threads 2"
$BIN train $common --out "$work/dense" --metrics "$work/dense.jsonl" >/dev/null
$BIN train $common --num-experts 4 --top-k 2 --expert-interval 2 --out "$work/moe" --metrics "$work/moe.jsonl" >/dev/null
echo "train shakespeare-cpu dense: $(train_tps "$work/dense.jsonl") tokens/s"
echo "train shakespeare-cpu MoE (4 experts, top-2, every other layer): $(train_tps "$work/moe.jsonl") tokens/s"
for mode in "" "--no-kv-cache"; do
  runs=""
  for r in 1 2 3; do
    line=$($BIN generate --checkpoint "$work/dense" --prompt "ROMEO:" --max-new-tokens 500 --seed $r --threads 2 $mode 2>&1 >/dev/null | grep 'tokens/s')
    runs+="$(echo "$line" | sed -E 's/.* ([0-9.]+) tokens\/s.*/\1/') "
  done
  echo "generate 500 tokens ${mode:-with the KV cache}: $(median $runs) tokens/s (runs: $runs)"
done
