#!/usr/bin/env python3
"""cifar10_moe_torch.py — the seed's CIFAR-10 MoE Net in plain PyTorch, gated the DeepSpeed way.

An independent reference for mox-cifar10 --moe: what accuracy DeepSpeed-MoE semantics give on
the tutorial recipe, so that a gap between mox's MoE and dense runs can be told apart from a
mox defect. The gate follows deepspeed/moe/sharded_moe.py top1gating: fp32 router
Linear(84, E, bias=False); RSample = argmax(logits + Gumbel) in training; capacity
C = max(ceil(S/E * f), min_capacity); random token selection keeps per expert the C tokens
with the largest uniform draw; combine weight = the raw softmax probability; l_aux =
E * sum(me * ce), added to the loss with --aux-loss-coef. Experts are deep copies of one
Linear(84, 84); a list of MoE layers replaces fc3 and fc4 84->10 follows (no activation).

--gate deepspeed swaps that gate for DeepSpeed's own layer (deepspeed.moe.layer.MoE, top-1,
ep_size 1, on a one-process gloo group), so the figures can be checked against DeepSpeed
itself, not only against this reading of it (`pip install deepspeed`; run with 0.19.8).

    /work/venv-torch/bin/python bench/reference/cifar10_moe_torch.py --data ../shared/data/cifar10 \
        [--dense] [--gate mirror|deepspeed] [--min-capacity 0] [--test-batch-size 4] \
        [--optimizer sgd|adam|ds] [--seed 1]

--optimizer ds is DeepSpeed's examples/cifar10 ds_config.json recipe as DeepSpeed runs it (and
mox-cifar10 --config examples/cifar10/ds_config.json): AdamW (DeepSpeed's "Adam" with weight
decay), lr 0.001, betas 0.8/0.999, eps 1e-8, weight decay 3e-7, WarmupLR (log warm-up from 0
over 1000 steps: lr = 0.001 * log(step + 1) / log(1000)).

Reads the official CIFAR-10 binary files. Not needed by `make test`.
"""
import argparse
import copy
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load_cifar(folder, train):
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
    raw = np.concatenate([np.fromfile(os.path.join(folder, n), dtype=np.uint8).reshape(-1, 3073)
                          for n in names])
    labels = torch.from_numpy(raw[:, 0].astype(np.int64))
    images = torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    return (images - 0.5) / 0.5, labels


class Top1MoE(nn.Module):
    def __init__(self, hidden, expert, num_experts, min_capacity, capacity_factor, rsample):
        super().__init__()
        self.wg = nn.Linear(hidden, num_experts, bias=False).float()
        self.experts = nn.ModuleList([copy.deepcopy(expert) for _ in range(num_experts)])
        self.E, self.min_capacity, self.f, self.rsample = num_experts, min_capacity, capacity_factor, rsample

    def forward(self, x):                                        # x (S, M)
        logits = self.wg(x.float())                              # (S, E)
        gates = F.softmax(logits, dim=1)
        S = x.shape[0]
        capacity = max(math.ceil(S / self.E * self.f), self.min_capacity)
        noisy = logits + torch.distributions.Gumbel(0.0, 1.0).rsample(logits.shape) \
            if self.rsample and self.training else gates
        mask1 = F.one_hot(torch.argmax(noisy, dim=1), self.E)    # (S, E)
        exp_counts = mask1.sum(0)
        me, ce = gates.mean(0), mask1.float().mean(0)
        l_aux = torch.sum(me * ce) * self.E
        rand = mask1 * torch.rand(mask1.shape)                   # random token selection
        top_idx = torch.topk(rand, k=min(capacity, S), dim=0)[1]
        mask1 = mask1 * torch.zeros_like(mask1).scatter_(0, top_idx, 1)
        weight = (gates * mask1).sum(1, keepdim=True)            # (S, 1) raw probability
        expert_of = torch.argmax(mask1, dim=1)
        kept = mask1.sum(1) > 0
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            rows = torch.nonzero(kept & (expert_of == e)).flatten()
            if rows.numel():
                y = y.index_add(0, rows, weight[rows] * expert(x[rows]))
        return y, l_aux, exp_counts, int((~kept).sum())


class DeepSpeedTop1MoE(nn.Module):
    """DeepSpeed's own deepspeed.moe.layer.MoE (top-1), for --gate deepspeed: no re-implementation."""

    def __init__(self, hidden, expert, num_experts, min_capacity, capacity_factor, rsample):
        super().__init__()
        from deepspeed.moe.layer import MoE
        self.moe = MoE(hidden_size=hidden, expert=expert, num_experts=num_experts, ep_size=1, k=1,
                       capacity_factor=capacity_factor, eval_capacity_factor=capacity_factor,
                       min_capacity=min_capacity,
                       noisy_gate_policy="RSample" if rsample else None)
        self.moe.set_deepspeed_parallelism()     # what deepspeed.initialize does for MoE layers
        self.E, self.min_capacity, self.f = num_experts, min_capacity, capacity_factor

    def forward(self, x):                                        # x (S, M)
        y, l_aux, exp_counts = self.moe(x)
        capacity = max(math.ceil(x.shape[0] / self.E * self.f), self.min_capacity)
        return y, l_aux, exp_counts, int((exp_counts - capacity).clamp(min=0).sum())


def start_deepspeed_process_group():
    """A one-process gloo group: DeepSpeed's MoE layer asks for its expert-parallel group."""
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    import deepspeed
    deepspeed.init_distributed(dist_backend="gloo")


class Net(nn.Module):
    def __init__(self, num_experts, min_capacity, capacity_factor, rsample, moe_class=Top1MoE):
        super().__init__()
        self.conv1, self.pool, self.conv2 = nn.Conv2d(3, 6, 5), nn.MaxPool2d(2, 2), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2 = nn.Linear(400, 120), nn.Linear(120, 84)
        if not num_experts:
            self.fc3 = nn.Linear(84, 10)
            self.moe = None
            return
        fc3 = nn.Linear(84, 84)
        self.moe = nn.ModuleList([moe_class(84, fc3, n, min_capacity, capacity_factor, rsample)
                                  for n in num_experts])
        self.fc4 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = F.relu(self.fc2(F.relu(self.fc1(torch.flatten(x, 1)))))
        if self.moe is None:
            return self.fc3(x), torch.zeros(()), 0
        l_aux, dropped = torch.zeros(()), 0
        for layer in self.moe:
            x, aux, _, d = layer(x)
            l_aux, dropped = l_aux + aux, dropped + d
        return self.fc4(x), l_aux, dropped


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--dense", action="store_true")
    p.add_argument("--num-experts", type=int, nargs="+", default=[4])
    p.add_argument("--min-capacity", type=int, default=0)
    p.add_argument("--capacity-factor", type=float, default=1.0)
    p.add_argument("--no-rsample", action="store_true")
    p.add_argument("--aux-loss-coef", type=float, default=0.01)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--test-batch-size", type=int, default=4)
    p.add_argument("--optimizer", choices=["sgd", "adam", "ds"], default="sgd")
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gate", choices=["mirror", "deepspeed"], default="mirror",
                   help="mirror: the gate written above; deepspeed: DeepSpeed's own MoE layer "
                        "(needs `pip install deepspeed`)")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    xtr, ytr = load_cifar(a.data, True)
    xte, yte = load_cifar(a.data, False)
    moe_class = Top1MoE
    if a.gate == "deepspeed" and not a.dense:
        start_deepspeed_process_group()
        moe_class = DeepSpeedTop1MoE
    net = Net(None if a.dense else a.num_experts, a.min_capacity, a.capacity_factor, not a.no_rsample,
              moe_class)
    if a.optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9)
    elif a.optimizer == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    else:
        opt = torch.optim.AdamW(net.parameters(), lr=0.0, betas=(0.8, 0.999), eps=1e-8, weight_decay=3e-7)
    warmup = 1000

    def set_lr(step):   # DeepSpeed WarmupLR, warmup_type "log", before each step
        if a.optimizer != "ds":
            return
        gamma = math.log(step + 1) / math.log(warmup) if step < warmup else 1.0
        for g in opt.param_groups:
            g["lr"] = 0.001 * gamma
    step, running, dropped, seen = 0, 0.0, 0, 0
    for epoch in range(a.epochs):
        net.train()
        order = torch.randperm(len(ytr))
        for i in range(0, len(order) - a.batch_size + 1, a.batch_size):
            idx = order[i:i + a.batch_size]
            out, l_aux, d = net(xtr[idx])
            loss = F.cross_entropy(out, ytr[idx])
            opt.zero_grad()
            (loss + a.aux_loss_coef * l_aux).backward()
            set_lr(step)
            opt.step()
            step, running, dropped, seen = step + 1, running + loss.item(), dropped + d, seen + len(idx)
            if step % 2000 == 0:
                print(f"epoch {epoch + 1} step {step} loss {running / 2000:.4f} dropped {dropped / seen:.3f}")
                running, dropped, seen = 0.0, 0, 0
        net.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(yte), a.test_batch_size):
                out, _, _ = net(xte[i:i + a.test_batch_size])
                correct += int((out.argmax(1) == yte[i:i + a.test_batch_size]).sum())
        print(f"epoch {epoch + 1} test accuracy {correct / len(yte):.4f}")


if __name__ == "__main__":
    main()
