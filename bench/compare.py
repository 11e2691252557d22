#!/usr/bin/env python3
"""compare.py — mox against PyTorch on the same CPU: the driver of `make bench-compare`.

    python3 bench/compare.py --python PYTHON_WITH_TORCH [--reps 3] [--seconds 3] [--threads 2]
                             [--only NAME ...] [--results bench/RESULTS.md]

For each workload (bench/workloads.cpp and its twin bench/torch_workloads.py) it runs mox,
PyTorch, mox, PyTorch, ... (--reps each, every run a fresh process that warms up before it
measures), with the same thread count on both sides (OMP_NUM_THREADS and MKL_NUM_THREADS
set, --threads passed to each program, OPENBLAS_CORETYPE and MOX_CPU_GEMM removed
from the measured commands' environment so mox picks its own kernels and GEMM library), and prints a table: workload, mox
median, PyTorch median, ratio, the goal of the performance issue, and the peak RSS (max
resident set, os.wait4) of each side. With --results the table, the machine, the versions
and the exact commands replace the generated section of that file (between the
"compare:begin" and "compare:end" markers); the hand-written analysis around it stays.

Standard library only (the PyTorch side runs in the given interpreter). Not part of
`make test`: speed is shown by benchmarks, never by timed tests.
"""
import argparse
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOX = os.path.join(ROOT, "build", "bin", "mox-workloads")
TORCH = os.path.join(ROOT, "bench", "torch_workloads.py")

# (row label, mox workload, PyTorch workload or None, goal ratio mox/PyTorch or None)
ROWS = [
    ("FMA peak of the cores (GFLOP/s)", "peak", None, None),
    ("sgemm 1024×1024×1024 (GFLOP/s)", "sgemm_1024", "sgemm_1024", 0.9),
    ("sgemm 768×768×3072 (GFLOP/s)", "gemm_768x768x3072", "gemm_768x768x3072", 0.9),
    ("CIFAR-10 Net train step, batch 4 (images/s)", "cifar_b4", "cifar_b4", 2.0),
    ("CIFAR-10 Net train step, batch 64 (images/s)", "cifar_b64", "cifar_b64", 1.0),
    ("CIFAR-10 MoE Net (4 experts, top-1) step, batch 64 (images/s)", "cifar_moe_b64", "cifar_moe_b64", None),
    ("shakespeare-cpu train iteration, dense (tokens/s)", "gpt_dense", "gpt_dense", 1.0),
    ("shakespeare-cpu train iteration, MoE vs DeepSpeed-style einsum MoE (tokens/s)", "gpt_moe", "gpt_moe", 1.2),
    ("shakespeare-cpu train iteration, MoE vs PyTorch index-dispatch MoE (tokens/s)", "gpt_moe", "gpt_moe_index", None),
    ("MoE layer fwd+bwd S 8192, E 8, k 2 vs DeepSpeed-style einsum MoE (tokens/s)", "moe_layer", "moe_layer", 1.5),
    ("MoE layer fwd+bwd vs PyTorch index-dispatch MoE (tokens/s)", "moe_layer", "moe_layer_index", None),
    ("dense FFN of equal active FLOPs fwd+bwd (tokens/s)", "dense_ffn", "dense_ffn", None),
    ("generation with KV cache, 500 tokens (tokens/s)", "generate", "generate", None),
]


def run(cmd, env):
    """Runs one measurement; returns (value, unit, peak RSS in MiB, output)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    m = re.search(r"^result (\S+) (\S+)$", out, re.M)
    if proc.returncode != 0 or not m:
        sys.exit(f"compare: {shlex.join(cmd)} failed (exit {proc.returncode}):\n{out}")
    return float(m.group(1)), m.group(2), usage.ru_maxrss / 1024.0, out


def fmt(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def machine(python):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    torch_v = subprocess.run([python, "-c", "import torch; print(torch.__version__, torch.backends.mkldnn.is_available())"],
                             capture_output=True, text=True).stdout.split()
    blas = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libopenblas0-openmp"], capture_output=True, text=True).stdout
    dnnl = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libdnnl2"], capture_output=True, text=True).stdout
    gxx = subprocess.run(["g++", "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return [f"CPU: {cpu}, {os.cpu_count()} logical cores; {platform.system()} {platform.release()}",
            f"mox {commit or '?'} (g++ {gxx}, OpenBLAS {blas or '?'} OpenMP build, oneDNN {dnnl or '?'}); "
            f"PyTorch {torch_v[0] if torch_v else '?'} (oneDNN {'on' if torch_v[1:] == ['True'] else 'off'})",
            f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--python", required=True, help="a Python interpreter with torch")
    p.add_argument("--reps", type=int, default=3, help="runs of each side per workload (interleaved)")
    p.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run, after warm-up")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", nargs="+", metavar="NAME", help="mox workload names to run (default: all)")
    p.add_argument("--results", help="markdown file whose generated section gets the table")
    a = p.parse_args()
    if not os.access(MOX, os.X_OK):
        sys.exit(f"compare: {MOX} not found — run `make build/bin/mox-workloads` (or `make bench-compare`)")
    names = {r[1] for r in ROWS}
    for n in a.only or []:
        if n not in names:
            sys.exit(f"compare: unknown workload '{n}' (one of {', '.join(sorted(names))})")

    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("MOX_CPU_GEMM", None)   # mox's default GEMM library choice is what is compared
    common = ["--seconds", str(a.seconds), "--threads", str(a.threads)]
    commands = []
    lines = ["| workload | mox | PyTorch | mox / PyTorch | goal | peak RSS mox / PyTorch (MiB) |",
             "|---|---|---|---|---|---|"]
    medians = {}
    for label, mox_name, torch_name, goal in ROWS:
        if a.only and mox_name not in a.only:
            continue
        mox_cmd = [MOX, mox_name] + common
        torch_cmd = [a.python, TORCH, torch_name] + common if torch_name else None
        commands += [shlex.join(mox_cmd)] + ([shlex.join(torch_cmd)] if torch_cmd else [])
        mv, tv, mr, tr = [], [], [], []
        for _ in range(a.reps):   # A B A B ...
            v, unit, rss, _ = run(mox_cmd, env)
            mv.append(v)
            mr.append(rss)
            if torch_cmd:
                v, _, rss, _ = run(torch_cmd, env)
                tv.append(v)
                tr.append(rss)
        m = statistics.median(mv)
        medians[mox_name] = m
        runs = f"runs {' / '.join(fmt(v) for v in mv)}"
        if torch_cmd:
            t = statistics.median(tv)
            ratio = m / t
            verdict = "" if goal is None else f"≥ {goal}×: {'met' if ratio >= goal else 'MISSED'}"
            rss = f"{max(mr):,.0f} / {max(tr):,.0f}"
            row = f"| {label} | {fmt(m)} ({runs}) | {fmt(t)} (runs {' / '.join(fmt(v) for v in tv)}) | **{ratio:.2f}×** | {verdict} | {rss} |"
        else:
            row = f"| {label} | {fmt(m)} ({runs}) | — | — | — | {max(mr):,.0f} / — |"
        lines.append(row)
        print(row, flush=True)
    notes = []
    if "peak" in medians:
        for n in ("sgemm_1024", "gemm_768x768x3072"):
            if n in medians:
                notes.append(f"- mox {n}: {100 * medians[n] / medians['peak']:.0f} % of the measured FMA peak")
    if "moe_layer" in medians and "dense_ffn" in medians:
        r = medians["moe_layer"] / medians["dense_ffn"]
        notes.append(f"- mox MoE layer / mox dense FFN of equal active FLOPs: **{r:.2f}×** (goal ≥ 0.7×: {'met' if r >= 0.7 else 'MISSED'})")
    for n in notes:
        print(n)

    if a.results:
        section = (["<!-- compare:begin (generated by bench/compare.py; edits here are overwritten) -->", ""]
                   + [f"- {l}" for l in machine(a.python)]
                   + [f"- {a.reps} interleaved runs per side, {a.seconds:g} s measured each after warm-up, "
                      f"{a.threads} threads; medians", ""]
                   + lines + [""] + notes + ["", "Commands (each run of each side):", "", "```"] + commands
                   + ["```", "", "<!-- compare:end -->"])
        text = open(a.results).read() if os.path.exists(a.results) else "# Benchmark results\n\n<!-- compare:begin -->\n<!-- compare:end -->\n"
        begin, end = text.find("<!-- compare:begin"), text.find("<!-- compare:end -->")
        if begin < 0 or end < 0:
            sys.exit(f"compare: {a.results} has no <!-- compare:begin --> ... <!-- compare:end --> section")
        text = text[:begin] + "\n".join(section) + text[end + len("<!-- compare:end -->"):]
        with open(a.results, "w") as f:
            f.write(text)
        print(f"compare: wrote {a.results}")


if __name__ == "__main__":
    main()
