#!/usr/bin/env python3
"""deepspeed_gate_cases.py — routing decisions of DeepSpeed's own gating functions, as test data.

Runs deepspeed.moe.sharded_moe's top1gating / top2gating / topkgating (the functions its
TopKGate calls) on seeded random logits for every deterministic setting mox reproduces, and
writes what they decided to tests/data/moe/deepspeed_gate_cases.json: the capacity, the
per-expert counts before dropping, l_aux and every kept route (token, expert, slot, combine
weight). tests/test_moe.cpp (MoeGate.MatchesDeepSpeedOnRandomLogits) replays the logits
through mox's gate and compares. The committed file is the reference; this script is how it
was made and is not needed by `make test`:

    pip install torch deepspeed        # the file was written with torch 2.15.0, deepspeed 0.19.8
    python bench/reference/deepspeed_gate_cases.py > tests/data/moe/deepspeed_gate_cases.json

Settings left out, and why: random token selection (use_rts) and the noisy policies draw from
DeepSpeed's own generators, so no two frameworks can agree draw for draw (mox tests those by
their rules instead); top-2 second-expert sampling likewise. Each case's logits have a skew
towards the low-numbered experts so that capacity actually drops tokens.
"""
import json
import os

import torch

os.environ.setdefault("DS_ACCELERATOR", "cpu")
from deepspeed.moe import sharded_moe  # noqa: E402
import deepspeed  # noqa: E402

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


def main():
    gen = torch.Generator().manual_seed(20261129)
    cases = []
    for name, k, experts, tokens, factor, min_capacity, drop_tokens, policy in CASES:
        logits = skewed_logits(gen, tokens, experts)
        case = {"name": name, "k": k, "num_experts": experts, "capacity_factor": factor,
                "min_capacity": min_capacity, "drop_tokens": drop_tokens, "drop_policy": policy,
                "logits": [float(v) for v in logits.flatten()]}
        case.update(decide(logits, k, factor, min_capacity, drop_tokens, policy))
        cases.append(case)
    doc = {"made_by": "bench/reference/deepspeed_gate_cases.py",
           "deepspeed": deepspeed.__version__, "torch": torch.__version__, "cases": cases}
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
