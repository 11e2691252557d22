#!/usr/bin/env python3
"""deepspeed_moe_cases.py — what DeepSpeed's own MoE code computes, written out as test data.

Two files in tests/data/moe/, replayed by tests/test_moe.cpp:
- deepspeed_gate_cases.json (MoeGate.MatchesDeepSpeedOnRandomLogits): the decisions of
  deepspeed.moe.sharded_moe's top1gating / top2gating / topkgating (the functions its TopKGate
  calls) on seeded random logits, for every deterministic setting mox reproduces: capacity,
  per-expert counts before dropping, l_aux and every kept route (token, expert, slot, combine
  weight).
- deepspeed_layer_cases.json (MoeLayer.MatchesDeepSpeedInOutputAndGradients): DeepSpeed's
  whole deepspeed.moe.layer.MoE (experts Linear(6, 6), with and without the PR-MoE residual)
  on a (3, 4, 6) input with given parameter values: the output, l_aux, exp_counts and the
  gradient of sum(output * w) + l_aux with respect to the input and every parameter, under
  mox's parameter names.

The committed files are the reference; this script is how they were made and is not needed
by `make test`:

    pip install torch deepspeed        # written with torch 2.15.0, deepspeed 0.19.8
    python bench/reference/deepspeed_moe_cases.py tests/data/moe

Settings left out, and why: random token selection (use_rts) and the noisy policies draw from
DeepSpeed's own generators, so no two frameworks can agree draw for draw (mox tests those by
their rules instead); top-2 second-expert sampling likewise; the layer cases at top-1 keep
every token (DeepSpeed's top-1 without RTS picks among tied tokens in torch.topk's order).
The gate cases' logits lean towards the low-numbered experts so that capacity drops tokens.
"""
import json
import os
import re
import sys

import torch

os.environ.setdefault("DS_ACCELERATOR", "cpu")
from deepspeed.moe import sharded_moe  # noqa: E402
import deepspeed  # noqa: E402

from cifar10_moe_torch import start_deepspeed_process_group  # noqa: E402  (this directory)

# name, k, experts, tokens, capacity factor, min capacity, drop tokens, drop policy
CASES = [
    ("top1 first-come, C from the factor", 1, 8, 64, 1.0, 4, True, "standard"),
    ("top1 first-come, factor 1.5", 1, 8, 64, 1.5, 4, True, "standard"),
    ("top1 first-come, min_capacity above the factor's C", 1, 4, 16, 1.0, 6, True, "standard"),
    ("top1 dropless", 1, 8, 64, 1.0, 4, False, "standard"),
    ("top2, second choices queue behind first choices", 2, 8, 64, 1.0, 4, True, "standard"),
    ("top2, factor 0.5", 2, 6, 48, 0.5, 2, True, "standard"),
    ("top2 dropless", 2, 8, 64, 1.0, 4, False, "standard"),
    ("top3 position", 3, 8, 64, 1.0, 4, True, "position"),
    ("top3 probs", 3, 8, 64, 1.0, 4, True, "probs"),
    ("top4 probs, factor 0.75", 4, 8, 40, 0.75, 4, True, "probs"),
    ("top3 dropless", 3, 8, 64, 1.0, 4, False, "position"),
]


def skewed_logits(gen, tokens, experts):
    skew = torch.linspace(1.5, -1.5, experts)   # expert 0 popular, the last one rarely chosen
    return (torch.randn(tokens, experts, generator=gen) + skew).float()


def decide(logits, k, capacity_factor, min_capacity, drop_tokens, drop_policy):
    if k == 1:
        l_aux, combine, dispatch, counts = sharded_moe.top1gating(
            logits, capacity_factor, min_capacity, noisy_gate_policy=None, drop_tokens=drop_tokens, use_rts=False)
    elif k == 2 and drop_policy == "standard":
        l_aux, combine, dispatch, counts = sharded_moe.top2gating(
            logits.clone(), capacity_factor, min_capacity, drop_tokens=drop_tokens, top2_2nd_expert_sampling=False)
    else:
        l_aux, combine, dispatch, counts = sharded_moe.topkgating(
            logits, k, capacity_factor, min_capacity, drop_tokens=drop_tokens, drop_policy=drop_policy)
    routes = [[int(s), int(e), int(c), float(combine[s, e, c])] for s, e, c in dispatch.nonzero().tolist()]
    return {"capacity": int(combine.shape[2]), "exp_counts": [int(n) for n in counts], "l_aux": float(l_aux),
            "routes": routes}


# name, k, experts, capacity factor, min capacity, drop tokens, residual
LAYER_CASES = [
    ("top1, every token kept", 1, 4, 4.0, 1, True, False),
    ("top1 PR-MoE residual, every token kept", 1, 4, 4.0, 1, True, True),
    ("top2 dropping", 2, 4, 0.5, 1, True, False),
    ("top2 dropless", 2, 4, 1.0, 1, False, False),
    ("top2 PR-MoE residual dropping", 2, 4, 0.5, 1, True, True),
    ("top3 probs dropping", 3, 6, 0.5, 1, True, False),
]
HIDDEN = 6


def mox_name(name):
    """deepspeed.moe.layer.MoE's parameter names → mox::moe::MoE's."""
    return (name.replace("deepspeed_moe.gate.", "gate.")
            .replace("deepspeed_moe.experts.deepspeed_experts.", "experts."))


def layer_case(gen, name, k, experts, factor, min_capacity, drop_tokens, residual):
    from deepspeed.moe.layer import MoE
    moe = MoE(hidden_size=HIDDEN, expert=torch.nn.Linear(HIDDEN, HIDDEN), num_experts=experts, k=k,
              capacity_factor=factor, min_capacity=min_capacity, drop_tokens=drop_tokens, use_rts=False,
              use_residual=residual, top2_2nd_expert_sampling=False)
    moe.set_deepspeed_parallelism()
    params = {}
    with torch.no_grad():
        for pname, p in moe.named_parameters():
            p.copy_(torch.rand(p.shape, generator=gen) * 1.6 - 0.8)   # distinct experts: routing errors show
            if pname.endswith("gate.wg.weight"):
                p.mul_(3.0)                                              # decisive routing
            params[mox_name(pname)] = p
    x = torch.randn(3, 4, HIDDEN, generator=gen).requires_grad_()
    w = torch.randn(3, 4, HIDDEN, generator=gen)
    out, l_aux, exp_counts = moe(x)
    ((out * w).sum() + l_aux).backward()
    flat = lambda t: [float(v) for v in t.detach().flatten()]
    return {"name": name, "k": k, "num_experts": experts, "capacity_factor": factor,
            "min_capacity": min_capacity, "drop_tokens": drop_tokens, "use_residual": residual,
            "x": flat(x), "w": flat(w), "params": {n: flat(p) for n, p in params.items()},
            "output": flat(out), "l_aux": float(l_aux.detach()), "exp_counts": [int(n) for n in exp_counts],
            "grad_x": flat(x.grad), "grads": {n: flat(p.grad) for n, p in params.items()}}


def write(path, cases):
    doc = {"made_by": "bench/reference/deepspeed_moe_cases.py", "deepspeed": deepspeed.__version__,
           "torch": torch.__version__, "cases": cases}
    text = json.dumps(doc, indent=1)
    # One line per list of numbers (a route, a tensor's values), so the file stays short.
    text = re.sub(r"\[\s+([-0-9.eE+,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    with open(path, "w") as f:
        f.write(text + "\n")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/data/moe"
    gen = torch.Generator().manual_seed(20261129)
    cases = []
    for name, k, experts, tokens, factor, min_capacity, drop_tokens, policy in CASES:
        logits = skewed_logits(gen, tokens, experts)
        case = {"name": name, "k": k, "num_experts": experts, "capacity_factor": factor,
                "min_capacity": min_capacity, "drop_tokens": drop_tokens, "drop_policy": policy,
                "logits": [float(v) for v in logits.flatten()]}
        case.update(decide(logits, k, factor, min_capacity, drop_tokens, policy))
        cases.append(case)
    write(os.path.join(out_dir, "deepspeed_gate_cases.json"), cases)
    start_deepspeed_process_group()
    write(os.path.join(out_dir, "deepspeed_layer_cases.json"), [layer_case(gen, *c) for c in LAYER_CASES])


if __name__ == "__main__":
    main()
