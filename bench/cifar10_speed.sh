#!/usr/bin/env bash
# CIFAR-10 end to end with real data: wall time and peak RSS of one mox-cifar10 epoch:
#   bench/cifar10_speed.sh
# 1. one full epoch at batch 4 (50,000 training images, then the 10,000-image test pass);
# 2. the same at batch 64.
# The training step alone, against PyTorch, is `make bench-compare` (bench/compare.py).
# Needs `make` first, GNU time (/usr/bin/time, Debian package `time`) and the data at
# $MOX_DATA/cifar10 (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${MOX_DATA:-$(cd ../shared/data && pwd)}/cifar10
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for b in 4 64; do
  /usr/bin/time -f "%e %M" -o "$tmp/t$b" build/bin/mox-cifar10 --data "$DATA" --epochs 1 --batch-size "$b" \
    --threads 2 --log-interval 100000 > "$tmp/log$b"
  read -r secs rss < "$tmp/t$b"
  echo "one epoch at batch $b (50,000 images + 10,000 test): ${secs} s wall, peak RSS $((rss / 1024)) MiB"
done
