#!/usr/bin/env bash
# CIFAR-10 speed and memory of mox (and PyTorch, when a Python with torch is given):
#   bench/cifar10_speed.sh [PYTHON_WITH_TORCH]
# 1. training-step images/s at batch 4 and 64, 2 threads, interleaved mox/PyTorch
#    (A B A B A B), medians reported;
# 2. one full epoch of mox-cifar10 at batch 4 (wall time, real data, eval included);
# 3. peak RSS (max resident set) of a one-epoch batch-64 run.
# Needs `make` first, GNU time (/usr/bin/time, Debian package `time`) and the data at
# $MOX_DATA/cifar10 (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-}
DATA=${MOX_DATA:-$(cd ../shared/data && pwd)}/cifar10
export OMP_NUM_THREADS=2
reps=3
declare -A mox torch
for r in $(seq $reps); do
  out=$(build/bin/mox-cifar10_step --benchmark_filter='BM_Cifar10TrainStep/(4|64)/' --benchmark_min_time=3 2>/dev/null)
  mox[4]+="$(echo "$out" | awk '/TrainStep\/4\//{for(i=1;i<=NF;i++) if($i~/images_per_s=/){sub("images_per_s=","",$i); print $i}}') "
  mox[64]+="$(echo "$out" | awk '/TrainStep\/64\//{for(i=1;i<=NF;i++) if($i~/images_per_s=/){sub("images_per_s=","",$i); print $i}}') "
  if [ -n "$PY" ]; then
    tout=$("$PY" bench/torch_cifar10_step.py --threads 2 --seconds 3)
    torch[4]+="$(echo "$tout" | awk '/^batch 4:/{print $3}') "
    torch[64]+="$(echo "$tout" | awk '/^batch 64:/{print $3}') "
  fi
done
median() { python3 -c "import sys,statistics as s; v=[float(x.rstrip('k/s'))*(1000 if x.endswith('k/s') else 1) for x in sys.argv[1:]]; print(round(s.median(v)))" "$@"; }
for b in 4 64; do
  m=$(median ${mox[$b]})
  if [ -n "$PY" ]; then t=$(median ${torch[$b]}); echo "step batch $b: mox $m images/s, PyTorch $t images/s, ratio $(python3 -c "print(round($m/$t,2))")  (runs: mox ${mox[$b]}| torch ${torch[$b]})";
  else echo "step batch $b: mox $m images/s (runs: ${mox[$b]})"; fi
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
/usr/bin/time -f "%e %M" -o "$tmp/t4" build/bin/mox-cifar10 --data "$DATA" --epochs 1 --batch-size 4 --log-interval 100000 > "$tmp/log4"
read -r secs rss4 < "$tmp/t4"
echo "one epoch at batch 4 (50,000 images + 10,000 test): ${secs} s wall, peak RSS $((rss4 / 1024)) MiB"
/usr/bin/time -f "%e %M" -o "$tmp/t64" build/bin/mox-cifar10 --data "$DATA" --epochs 1 --batch-size 64 --log-interval 100000 > "$tmp/log64"
read -r secs64 rss64 < "$tmp/t64"
echo "one epoch at batch 64: ${secs64} s wall, peak RSS $((rss64 / 1024)) MiB"
