#!/usr/bin/env python3
"""perf_profile.py — where a mox workload spends its time, by kind of work, from a perf profile.

    python3 bench/perf_profile.py NAME [--seconds 5] [--threads 2] [--top 15]

Runs `perf record` on `build/bin/mox-workloads NAME` (bench/workloads.cpp), then sums the
samples by category (GEMM — oneDNN's JIT code and OpenBLAS —, optimizer update, norms,
bias+GELU, attention, convolution, elementwise/copy, reductions, malloc/free, the kernel,
the OpenMP runtime) and lists the hottest symbols. Needs `perf` (Debian: linux-perf) with
permission to sample (root, or kernel.perf_event_paranoid ≤ 1). Standard library only;
not part of `make test`. The breakdowns in bench/RESULTS.md come from it.
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOX = os.path.join(ROOT, "build", "bin", "mox-workloads")

# (category, regex on "dso symbol"); the first match wins.
CATEGORIES = [
    ("GEMM (oneDNN JIT, OpenBLAS)", r"^\[JIT\]|sgemm|dgemm|libdnnl|libopenblas"),
    ("optimizer update", r"adam_kernel|sgd_kernel"),
    ("layer/RMS norm", r"norm_backward|CpuBackend::norm\("),
    ("bias + GELU", r"bias_gelu"),
    ("attention (softmax, masking; its GEMMs above)", r"attention"),
    ("convolution (im2col/col2im) and pooling", r"im2col|col2im|conv2d|max_pool"),
    ("elementwise, copy, fill", r"StridedLoop|memmove|memset|memcpy|axpy|unary|binary"),
    ("reductions, softmax, cross-entropy", r"reduce|softmax|cross_entropy|lane_sum|log_softmax"),
    ("index ops (gather/scatter/topk)", r"gather|scatter|index_|topk|argsort|cumsum"),
    ("malloc / free", r"malloc|_int_free|cfree|consolidate|operator new|operator delete"),
    ("kernel (scheduling, page faults)", r"\[kernel"),
    ("OpenMP runtime", r"libgomp|GOMP_"),
]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("name")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--top", type=int, default=15, help="hottest symbols to list")
    a = p.parse_args()
    if not os.access(MOX, os.X_OK):
        sys.exit(f"perf_profile: {MOX} not found — run `make build/bin/mox-workloads`")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
        rec = subprocess.run(["perf", "record", "-o", data, "--", MOX, a.name, "--seconds", str(a.seconds),
                              "--threads", str(a.threads)], env=env, capture_output=True, text=True)
        if rec.returncode != 0:
            sys.exit(f"perf_profile: perf record failed (exit {rec.returncode}):\n{rec.stderr}{rec.stdout}")
        print(next((l for l in rec.stdout.splitlines() if l.startswith("result")), "result ?"))
        report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,symbol", "--stdio"],
                                capture_output=True, text=True).stdout
    totals, symbols = collections.Counter(), []
    for line in report.splitlines():
        m = re.match(r"\s+([0-9.]+)%\s+(\[JIT\] tid \d+|\S+)\s+\[(.)\]\s+(.*?)\s*$", line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(4)
        key = f"{dso} {'[kernel] ' if m.group(3) == 'k' else ''}{sym}"
        totals[next((c for c, rx in CATEGORIES if re.search(rx, key)), "other")] += pct
        symbols.append((pct, dso, sym))
    print(f"\n{a.name}: share of samples by kind of work ({a.threads} threads)")
    for cat, pct in totals.most_common():
        print(f"  {pct:5.1f} %  {cat}")
    print(f"\nhottest {a.top} symbols")
    for pct, dso, sym in sorted(symbols, reverse=True)[:a.top]:
        print(f"  {pct:5.1f} %  {os.path.basename(dso)}  {sym[:110]}")


if __name__ == "__main__":
    main()
