#!/usr/bin/env python3
"""plot_metrics.py — turn mox JSON-lines metrics files into PNGs: loss curves and expert load.

Reads the files written by `--metrics` (mox-cifar10, mox-llm): records with "split" train
(step, loss; loss null for an fp16 window whose steps were all skipped, left out here), val
(step, loss), test (epoch, accuracy) and routing (step, layer, tokens_per_expert,
dropped_fraction, l_aux, entropy). Writes into OUT_DIR:

  loss.png                 training loss (and validation loss, test accuracy when present)
                           against the step, one line per input file
  routing_<run>_layer<i>.png  for each file and MoE layer: a heat map of the share of routed
                           tokens per expert over training (rows = experts, columns = logging
                           windows; 1/E everywhere is a balanced router), and below it the
                           dropped fraction, l_aux and router entropy (ln E = uniform router)

    python3 bench/plot_metrics.py OUT_DIR run1.jsonl [run2.jsonl ...]

Needs matplotlib (and numpy), as a user plotting results would expect; not needed by
`make test`. A file label is its name without the extension.
"""
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def read_records(path):
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"plot_metrics: {path}:{number}: not a JSON object ({e})")
    return records


def plot_losses(runs, out_dir):
    has_val = any(r.get("split") == "val" for _, recs in runs for r in recs)
    has_test = any(r.get("split") == "test" for _, recs in runs for r in recs)
    panels = 1 + has_test
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.2), squeeze=False)
    ax = axes[0][0]
    for label, recs in runs:
        train = [(r["step"], r["loss"]) for r in recs if r.get("split") == "train" and r["loss"] is not None]
        if train:
            line, = ax.plot(*zip(*train), label=f"{label} train")
            val = [(r["step"], r["loss"]) for r in recs if r.get("split") == "val"]
            if val:
                ax.plot(*zip(*val), "--", color=line.get_color(), label=f"{label} val")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training loss" + (" (dashed: validation)" if has_val else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if has_test:
        ax = axes[0][1]
        for label, recs in runs:
            test = [(r["epoch"], 100 * r["accuracy"]) for r in recs if r.get("split") == "test"]
            if test:
                ax.plot(*zip(*test), "o-", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out_dir, "loss.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_routing(label, recs, out_dir):
    paths = []
    routing = [r for r in recs if r.get("split") == "routing"]
    for layer in sorted({r["layer"] for r in routing}):
        rows = [r for r in routing if r["layer"] == layer]
        steps = [r["step"] for r in rows]
        counts = np.array([r["tokens_per_expert"] for r in rows], dtype=float)   # (windows, E)
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        E = share.shape[1]
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=False,
                                          gridspec_kw={"height_ratios": [max(E, 2), 3]})
        im = top.imshow(share.T, aspect="auto", cmap="viridis", vmin=0, vmax=max(2.0 / E, share.max()),
                        interpolation="nearest")
        top.set_yticks(range(E))
        top.set_ylabel("expert")
        ticks = np.linspace(0, len(steps) - 1, min(len(steps), 8)).astype(int)
        top.set_xticks(ticks)
        top.set_xticklabels([str(steps[i]) for i in ticks])
        top.set_xlabel("step (end of logging window)")
        top.set_title(f"{label}: MoE layer {layer}, share of routed tokens per expert (balanced = {1 / E:.3f})")
        fig.colorbar(im, ax=top, fraction=0.03)
        bottom.plot(steps, [r["dropped_fraction"] for r in rows], label="dropped fraction")
        bottom.plot(steps, [r["l_aux"] for r in rows], label="l_aux (1 = balanced)")
        if all("entropy" in r for r in rows):
            bottom.plot(steps, [r["entropy"] / math.log(E) if E > 1 else 0 for r in rows],
                        label="router entropy / ln E")
        bottom.set_xlabel("step")
        bottom.grid(alpha=0.3)
        bottom.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, f"routing_{label}_layer{layer}.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv):
    if len(argv) < 3 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) > 1 and argv[1] in ("-h", "--help") else 2
    out_dir, files = argv[1], argv[2:]
    for f in files:
        if not os.path.isfile(f):
            print(f"plot_metrics: metrics file '{f}' not found", file=sys.stderr)
            return 2
    os.makedirs(out_dir, exist_ok=True)
    runs = [(os.path.splitext(os.path.basename(f))[0], read_records(f)) for f in files]
    written = [plot_losses(runs, out_dir)]
    for label, recs in runs:
        written += plot_routing(label, recs, out_dir)
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
