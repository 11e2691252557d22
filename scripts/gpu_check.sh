#!/usr/bin/env bash
# gpu_check.sh — everything a session lent a GPU should check, in one run of under 8 minutes.
#
#   (a) build      make -j$JOBS all (the CUDA backend is built where nvcc is found)
#   (b) test       make test — with a GPU visible the CUDA tests run instead of skipping; the
#                  step fails if any test still skipped for want of CUDA
#   (c) cifar-dense, cifar-moe
#                  mox-cifar10 --device cuda, one epoch of the tutorial recipe on the real
#                  CIFAR-10 (dense, then MoE: 4 experts, top-1, RSample); images/s (mean of the
#                  logged windows after the first) and test accuracy, with a sanity floor well
#                  under what the CPU reaches (1 epoch: dense ~50 %, MoE ~28 %; chance 10 %)
#   (d) llm        mox-llm train --preset shakespeare-gpu --device cuda for $LLM_ITERS
#                  iterations; tokens/s (mean of the logged windows after the first) and MFU.
#                  Attention runs the automatic kernel (fused on CUDA); for the A/B against the
#                  materialised one: LLM_ARGS="--attention materialized" GPU_CHECK_STEPS=llm
#
# MFU follows nanoGPT's estimate_mfu: FLOPs per token = 6·N + 12·L·H·Q·T, N the parameter
# count without the position embedding (nanoGPT's get_num_params), L layers, H heads, Q the
# head size, T the block size. mox trains in fp32 and its GEMMs use plain fp32 arithmetic
# (no TF32 unless MOX_ALLOW_TF32=1), so the MFU that means something divides by the H200's
# dense fp32 peak, 67 TFLOPS; the ones against the dense tf32 (494.7) and bf16 (989.5) peaks are
# printed too, for comparison with runs that use tensor cores.
#
# Every step runs under `timeout`, within a deadline for the whole script ($GPU_CHECK_SECONDS,
# default 465 s) that keeps a minimum for each later step; a step that fails or times out is
# reported and the later steps still run (those that need a missing binary fail at once). Ends
# with a summary table; exit status 0 only if every step passed.
#
# Logs: $OUT/gpu_check/ when $OUT is set (the device tool brings $OUT back), else a new
# temporary directory; the path is printed first and last. Data: the first of $MOX_DATA,
# ../shared/data, shared/data, data that holds cifar10/ (resp. tinyshakespeare/input.txt).
#
# Environment: OUT, MOX_DATA, JOBS (16), GPU_CHECK_SECONDS (465), LLM_ITERS (300),
# GPU_CHECK_STEPS (default "build test cifar-dense cifar-moe llm": a subset reruns just those,
# e.g. on a warm machine whose build is already there), LLM_ARGS (more mox-llm flags; the
# last of a repeated flag wins), GPU_CHECK_DEVICE (cuda; cpu tries steps (c)-(d) on a machine
# without a GPU, to check the script itself — the MFU is then meaningless).
#
# What it is not: a benchmark (one short run each, no repeats), a multi-GPU or NCCL check.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

TOTAL=${GPU_CHECK_SECONDS:-465}
JOBS=${JOBS:-16}
LLM_ITERS=${LLM_ITERS:-300}
STEPS=${GPU_CHECK_STEPS:-build test cifar-dense cifar-moe llm}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
read -r -a LLM_EXTRA <<<"${LLM_ARGS:-}"
BIN=build/bin
THREADS=$(($(nproc) < 4 ? $(nproc) : 4))   # CPU threads of the training runs (data loading, host work)

# H200 dense peaks, TFLOPS.
PEAK_FP32=67
PEAK_TF32=494.7
PEAK_BF16=989.5

if [[ -n ${OUT:-} ]]; then
  LOG=$OUT/gpu_check
  mkdir -p "$LOG" || exit 1
else
  LOG=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 1
fi

START=$(date +%s)
DEADLINE=$((START + TOTAL))
echo "gpu_check: logs in $LOG; budget ${TOTAL} s; steps: $STEPS"

# ------------------------------------------------------------------ the machine
GPU=""
if command -v nvidia-smi >/dev/null 2>&1; then
  GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
fi
if [[ $DEVICE == cpu ]]; then
  GPU="none (GPU_CHECK_DEVICE=cpu: steps (c)-(d) on the CPU)"
  echo "gpu_check: $GPU"
elif [[ -n $GPU ]]; then
  echo "gpu_check: GPU $GPU"
else
  echo "gpu_check: no CUDA device visible (nvidia-smi missing or lists none): the GPU steps will fail"
fi
echo "gpu_check: $(nproc) CPUs, nvcc: $(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || echo none)"

# The first of the candidate data roots holding `what` (a path under the root).
find_data() {
  local what=$1 root
  for root in "${MOX_DATA:-}" ../shared/data shared/data data; do
    [[ -n $root && -e $root/$what ]] && { echo "$root"; return 0; }
  done
  return 1
}

# ------------------------------------------------------------------ steps
declare -a NAMES=() STATUS=() SECS=() NOTES=()
FAILED=0

budget_of() {   # seconds a step may take at most
  case $1 in build) echo 240 ;; test) echo 150 ;; cifar-*) echo 60 ;; llm) echo 120 ;; *) echo 60 ;; esac
}
minimum_of() {   # seconds kept for a step while earlier ones run
  case $1 in build) echo 60 ;; test) echo 60 ;; cifar-*) echo 25 ;; llm) echo 45 ;; *) echo 20 ;; esac
}
selected() { [[ " $STEPS " == *" $1 "* ]]; }

record() {   # name status seconds note
  NAMES+=("$1")
  STATUS+=("$2")
  SECS+=("$3")
  NOTES+=("$4")
  [[ $2 == PASS ]] || FAILED=1
  printf 'gpu_check: %-12s %-8s %4s s  %s\n' "$1" "$2" "$3" "$4"
}

# The seconds the step `name` may run: its budget, cut so that every later selected step keeps
# its minimum before the deadline.
time_for() {
  local name=$1 later=0 seen=0 s
  for s in build test cifar-dense cifar-moe llm; do
    if ((seen)) && selected "$s"; then later=$((later + $(minimum_of "$s"))); fi
    [[ $s == "$name" ]] && seen=1
  done
  local left=$((DEADLINE - $(date +%s) - later)) budget
  budget=$(budget_of "$name")
  ((left < budget)) && budget=$left
  echo "$budget"
}

# run_step NAME LOGFILE CMD...: runs CMD under timeout with its output in LOGFILE; sets RC and
# ELAPSED (RC 124: timed out; 125: no time left to start it).
run_step() {
  local name=$1 logfile=$2
  shift 2
  local limit
  limit=$(time_for "$name")
  echo "gpu_check: $name: $* (limit ${limit} s)" | tee "$logfile"
  if ((limit < 5)); then
    RC=125
    ELAPSED=0
    return
  fi
  local t0
  t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" >>"$logfile" 2>&1
  RC=$?
  ELAPSED=$(($(date +%s) - t0))
}

status_of() {   # RC → PASS / TIMEOUT / NO-TIME / FAIL
  case $1 in 0) echo PASS ;; 124 | 137) echo TIMEOUT ;; 125) echo NO-TIME ;; *) echo FAIL ;; esac
}

show_tail() {   # the end of a failed step's log, indented
  echo "---- last lines of $1"
  tail -n "${2:-15}" "$1" | sed 's/^/    /'
  echo "----"
}

mean_after_first() {   # mean of the values on stdin after the first (the first alone if only one)
  awk '{v[NR] = $1} END { if (NR == 0) exit; if (NR == 1) { printf "%.0f", v[1]; exit }
                          s = 0; for (i = 2; i <= NR; ++i) s += v[i]; printf "%.0f", s / (NR - 1) }'
}

# -- (a) build
if selected build; then
  run_step build "$LOG/build.log" make -j"$JOBS" all
  st=$(status_of $RC)
  note=$(grep -m1 -E '^  CUDA ' "$LOG/build.log" | tr -s ' ' | sed 's/^ //')
  [[ $st == PASS ]] || show_tail "$LOG/build.log" 25
  record build "$st" "$ELAPSED" "$note"
fi

# -- (b) the test suite
if selected test; then
  if [[ -z $GPU || $DEVICE == cpu ]]; then
    echo "gpu_check: test: no CUDA device visible" >"$LOG/test.log"
    record test FAIL 0 "no CUDA device visible: the CUDA tests would skip"
  elif [[ ! -x $BIN/mox-tests ]]; then
    record test FAIL 0 "$BIN/mox-tests not built"
  else
    run_step test "$LOG/test.log" make test
    st=$(status_of $RC)
    summary=$(grep -E '^mox-tests: [0-9]+ passed|^mox-dist-tests \([0-9] ranks\): ' "$LOG/test.log" | paste -sd ';' -)
    cuda_skips=$(grep -c -E 'CUDA unavailable: |built without the CUDA backend' "$LOG/test.log")
    if [[ $st == PASS && $cuda_skips -gt 0 ]]; then
      st=FAIL
      summary="$cuda_skips CUDA skip messages (the CUDA tests did not run); $summary"
    fi
    [[ $st == PASS ]] || { grep -E '^\[  FAILED  \]' "$LOG/test.log" | sort -u | head -20; show_tail "$LOG/test.log"; }
    record test "$st" "$ELAPSED" "${summary:-no summary line}"
  fi
fi

# -- (c) CIFAR-10, one epoch on the GPU
cifar_step() {   # name floor extra-args...
  local name=$1 floor=$2
  shift 2
  local root
  if [[ -z $GPU ]]; then
    record "$name" FAIL 0 "no CUDA device visible"
    return
  fi
  if [[ ! -x $BIN/mox-cifar10 ]]; then
    record "$name" FAIL 0 "$BIN/mox-cifar10 not built"
    return
  fi
  if ! root=$(find_data cifar10/test_batch.bin); then
    record "$name" FAIL 0 "no CIFAR-10 (set MOX_DATA to a folder holding cifar10/)"
    return
  fi
  local metrics=$LOG/$name.jsonl
  rm -f "$metrics"
  run_step "$name" "$LOG/$name.log" "$BIN/mox-cifar10" --device "$DEVICE" --data "$root/cifar10" --epochs 1 \
    --log-interval 1000 --threads "$THREADS" --metrics "$metrics" "$@"
  local st ips acc
  st=$(status_of $RC)
  ips=$(grep -o '"images_per_s":[0-9.eE+-]*' "$metrics" 2>/dev/null | cut -d: -f2 | mean_after_first)
  acc=$(sed -n 's/^Accuracy of the network on the [0-9]* test images: \([0-9.]*\) %.*/\1/p' "$LOG/$name.log" | tail -1)
  if [[ $st == PASS ]] && ! awk -v a="${acc:-0}" -v f="$floor" 'BEGIN { exit !(a >= f) }'; then
    st=FAIL
    acc="${acc:-?} (below the sanity floor of $floor %)"
  fi
  [[ $st == PASS ]] || show_tail "$LOG/$name.log"
  record "$name" "$st" "$ELAPSED" "${ips:-?} images/s, test accuracy ${acc:-?} %"
}
selected cifar-dense && cifar_step cifar-dense 35
selected cifar-moe && cifar_step cifar-moe 18 --moe --num-experts 4 --top-k 1 --noisy-gate-policy RSample --moe-param-group

# -- (d) mox-llm shakespeare-gpu
if selected llm; then
  if [[ -z $GPU ]]; then
    record llm FAIL 0 "no CUDA device visible"
  elif [[ ! -x $BIN/mox-llm ]]; then
    record llm FAIL 0 "$BIN/mox-llm not built"
  elif ! root=$(find_data tinyshakespeare/input.txt); then
    record llm FAIL 0 "no tinyshakespeare/input.txt (set MOX_DATA)"
  else
    metrics=$LOG/llm.jsonl
    rm -rf "$metrics" "$LOG/llm-out"
    run_step llm "$LOG/llm.log" "$BIN/mox-llm" train --preset shakespeare-gpu --device "$DEVICE" \
      --data "$root/tinyshakespeare/input.txt" --max-iters "$LLM_ITERS" --eval-interval "$LLM_ITERS" --eval-iters 20 \
      --log-interval 10 --threads "$THREADS" --out "$LOG/llm-out" --metrics "$metrics" "${LLM_EXTRA[@]}"
    st=$(status_of $RC)
    # The banner: "mox-llm train: Transformer(gpt, layers=6, heads=6, embd=384, block=256, vocab=65), N params, ..."
    banner=$(grep -m1 '^mox-llm train: Transformer(' "$LOG/llm.log")
    tps=$(grep -o '"tokens_per_s":[0-9.eE+-]*' "$metrics" 2>/dev/null | cut -d: -f2 | mean_after_first)
    val=$(sed -n 's/^step \([0-9]*\): train loss \([0-9.]*\), val loss \([0-9.]*\).*/step \1 val loss \3/p' "$LOG/llm.log" | tail -1)
    note="${tps:-?} tokens/s"
    if [[ -n $banner && -n $tps ]]; then
      mfu=$(awk -v b="$banner" -v tps="$tps" -v p32="$PEAK_FP32" -v ptf="$PEAK_TF32" -v pbf="$PEAK_BF16" 'BEGIN {
        n = b; sub(/ params.*/, "", n); sub(/.*, /, "", n)
        L = b; sub(/.*layers=/, "", L); sub(/,.*/, "", L)
        H = b; sub(/.*heads=/, "", H); sub(/,.*/, "", H)
        C = b; sub(/.*embd=/, "", C); sub(/,.*/, "", C)
        T = b; sub(/.*block=/, "", T); sub(/,.*/, "", T)
        N = n - (b ~ /Transformer\(gpt/ ? T * C : 0)      # without the position embedding, as nanoGPT
        f = 6 * N + 12 * L * H * (C / H) * T                # FLOPs per token
        a = tps * f
        printf "N %.2fM (non-embedding), %.1f MFLOPs/token, %.2f TFLOPS achieved; MFU %.2f %% of fp32 %g TFLOPS (the run is fp32) | %.3f %% of tf32 %g | %.3f %% of bf16 %g",
               N / 1e6, f / 1e6, a / 1e12, 100 * a / (p32 * 1e12), p32, 100 * a / (ptf * 1e12), ptf, 100 * a / (pbf * 1e12), pbf
      }')
      note="$note; $mfu"
    fi
    [[ -n $val ]] && note="$note; $val"
    [[ $st == PASS ]] || show_tail "$LOG/llm.log"
    record llm "$st" "$ELAPSED" "$note"
  fi
fi

# ------------------------------------------------------------------ summary
echo
echo "gpu_check summary ($(($(date +%s) - START)) s of ${TOTAL} s; GPU: ${GPU:-none}; logs: $LOG)"
printf '%-12s  %-8s  %6s  %s\n' step status seconds result
for i in "${!NAMES[@]}"; do
  printf '%-12s  %-8s  %6s  %s\n' "${NAMES[$i]}" "${STATUS[$i]}" "${SECS[$i]}" "${NOTES[$i]}"
done | tee "$LOG/summary.txt"
if ((FAILED)); then
  echo "gpu_check: FAILED"
  exit 1
fi
echo "gpu_check: all steps passed"
exit 0
