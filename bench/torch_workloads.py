#!/usr/bin/env python3
"""torch_workloads.py — the PyTorch side of `make bench-compare` (bench/compare.py).

    PYTHON_WITH_TORCH bench/torch_workloads.py NAME [--seconds S] [--warmup N] [--threads N]

Each workload is the twin of the one of the same name in bench/workloads.cpp (same shapes,
initialisation scheme, optimizer and hyper-parameters; see there for what one step is) and
prints "result <value> <unit>" last. The MoE workloads are written the DeepSpeed way
(deepspeed/moe/sharded_moe.py): an fp32 router, top1gating/top2gating building the
(S, E, C) combine weights and dispatch mask, einsum dispatch "sec,sm->ecm", the experts on
their (C, M) chunks, einsum combine "sec,ecm->sm" — plain PyTorch, DeepSpeed not needed.
`moe_layer_index` and `gpt_moe_index` use the same routing with index dispatch instead
(index_select/index_add), the faster way a PyTorch user could write it. Needs torch; never used by `make test`.
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def measure(step, units, seconds, warmup):
    for _ in range(warmup):
        step()
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps * units / (time.perf_counter() - start)


# ---- 1. GEMM ------------------------------------------------------------------------------

def gemm(m, k, n):
    a, b = torch.randn(m, k), torch.randn(k, n)
    return (lambda: torch.mm(a, b)), 2.0 * m * k * n, "GFLOP/s", 1e-9


# ---- DeepSpeed-style MoE (sharded_moe.py semantics, one rank) -------------------------------

def gumbel(shape):
    return -torch.empty(shape).exponential_().log()


def capacity(num_tokens, num_experts, factor, min_capacity):
    return max(math.ceil(num_tokens / num_experts * factor), min_capacity)


def top1gating(logits, factor, min_capacity, rsample, use_rts):
    gates = F.softmax(logits, dim=1)                                  # (S, E)
    S, E = gates.shape
    C = capacity(S, E, factor, min_capacity)
    choice = logits + gumbel(logits.shape) if rsample else gates
    mask1 = F.one_hot(torch.argmax(choice, dim=1), E)                 # (S, E)
    l_aux = torch.sum(gates.mean(0) * mask1.float().mean(0)) * E
    ranked = mask1 * torch.rand(mask1.shape) if use_rts else mask1
    top_idx = torch.topk(ranked, k=min(C, S), dim=0)[1]               # kept tokens per expert
    mask1 = mask1 * torch.zeros_like(mask1).scatter_(0, top_idx, 1)
    locations1_s = torch.sum((torch.cumsum(mask1, dim=0) - 1) * mask1, dim=1)
    gates = gates * mask1.float()
    combine = torch.einsum("se,sc->sec", gates, F.one_hot(locations1_s, C).float())
    return l_aux, combine, combine.bool()


def top2gating(logits, factor, min_capacity, second_sampling):
    gates = F.softmax(logits, dim=1)
    S, E = gates.shape
    mask1 = F.one_hot(torch.argmax(gates, dim=1), E)
    if second_sampling:
        logits = logits + gumbel(logits.shape)
    mask2 = F.one_hot(torch.argmax(logits.masked_fill(mask1.bool(), float("-inf")), dim=1), E)
    locations1 = torch.cumsum(mask1, dim=0) - 1
    locations2 = torch.cumsum(mask2, dim=0) - 1 + torch.sum(mask1, dim=0, keepdim=True)
    l_aux = torch.mean(gates.mean(0) * mask1.float().mean(0)) * E * E
    C = capacity(S, E, 2 * factor, min_capacity)
    mask1 = mask1 * torch.lt(locations1, C)
    mask2 = mask2 * torch.lt(locations2, C)
    locations1_s = torch.sum(locations1 * mask1, dim=1)
    locations2_s = torch.sum(locations2 * mask2, dim=1)
    gates1_s = (gates * mask1.float()).sum(1)
    gates2_s = (gates * mask2.float()).sum(1)
    denom = torch.clamp(gates1_s + gates2_s, min=torch.finfo(gates.dtype).eps)
    gates1 = (gates1_s / denom)[:, None] * mask1.float()
    gates2 = (gates2_s / denom)[:, None] * mask2.float()
    combine = (torch.einsum("se,sc->sec", gates1, F.one_hot(locations1_s, C).float())
               + torch.einsum("se,sc->sec", gates2, F.one_hot(locations2_s, C).float()))
    return l_aux, combine, combine.bool()


class DeepSpeedMoE(nn.Module):
    """MOELayer(TopKGate, Experts) of DeepSpeed at ep_size 1: returns (output, l_aux)."""

    def __init__(self, hidden, make_expert, num_experts, k, factor=1.0, min_capacity=4,
                 rsample=False, use_rts=True, second_sampling=True, index_dispatch=False):
        super().__init__()
        self.wg = nn.Linear(hidden, num_experts, bias=False)
        self.experts = nn.ModuleList([make_expert() for _ in range(num_experts)])
        self.k, self.factor, self.min_capacity = k, factor, min_capacity
        self.rsample, self.use_rts, self.second_sampling = rsample, use_rts, second_sampling
        self.index_dispatch = index_dispatch

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])                                   # (S, M)
        logits = F.linear(x.float(), self.wg.weight.float())           # the router in fp32
        if self.k == 1:
            l_aux, combine, dispatch = top1gating(logits, self.factor, self.min_capacity, self.rsample, self.use_rts)
        else:
            l_aux, combine, dispatch = top2gating(logits, self.factor, self.min_capacity, self.second_sampling)
        if self.index_dispatch:
            return self.index_forward(x, combine).reshape(shape), l_aux
        dispatched = torch.einsum("sec,sm->ecm", dispatch.type_as(x), x)       # (E, C, M)
        expert_out = torch.stack([e(c) for e, c in zip(self.experts, dispatched.unbind(0))])
        y = torch.einsum("sec,ecm->sm", combine.type_as(x), expert_out)        # (S, M)
        return y.reshape(shape), l_aux

    def index_forward(self, x, combine):   # the same routing, gathered and scattered by index
        y = torch.zeros_like(x)
        weights = combine.sum(2)                                       # (S, E): 0 where not kept
        for e, expert in enumerate(self.experts):
            tokens = weights[:, e].nonzero().squeeze(1)
            if tokens.numel():
                y = y.index_add(0, tokens, weights[tokens, e, None] * expert(x.index_select(0, tokens)))
        return y


# ---- 2, 3. the CIFAR-10 tutorial Net -----------------------------------------------------

class CifarNet(nn.Module):
    def __init__(self, moe):
        super().__init__()
        self.conv1, self.pool, self.conv2 = nn.Conv2d(3, 6, 5), nn.MaxPool2d(2, 2), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2 = nn.Linear(16 * 5 * 5, 120), nn.Linear(120, 84)
        if moe:   # DeepSpeed's cifar10_deepspeed.py: fc3 = MoE(84, Linear(84, 84)), then fc4
            self.fc3 = DeepSpeedMoE(84, lambda: nn.Linear(84, 84), 4, k=1, rsample=True)
            self.fc4 = nn.Linear(84, 10)
        else:
            self.fc3 = nn.Linear(84, 10)
        self.moe = moe

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = F.relu(self.fc2(F.relu(self.fc1(torch.flatten(x, 1)))))
        if not self.moe:
            return self.fc3(x), torch.zeros(())
        x, l_aux = self.fc3(x)
        return self.fc4(x), l_aux


def cifar(batch, moe):
    torch.manual_seed(0)
    net = CifarNet(moe)
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    images, labels = torch.randn(batch, 3, 32, 32), torch.arange(batch) % 10

    def step():
        opt.zero_grad()
        logits, l_aux = net(images)
        loss = F.cross_entropy(logits, labels) + 0.01 * l_aux
        loss.backward()
        opt.step()
        loss.item()
    return step, batch, "images/s", 1.0


# ---- 4, 6. the shakespeare-cpu transformer (nanoGPT's model.py) ----------------------------

V, C, H, T, L = 65, 128, 4, 64, 4


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc, self.c_proj = nn.Linear(C, 4 * C, bias=False), nn.Linear(4 * C, C, bias=False)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, moe, index_dispatch=False):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(C, bias=False), nn.LayerNorm(C, bias=False)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C, bias=False), nn.Linear(C, C, bias=False)
        self.mlp = DeepSpeedMoE(C, Mlp, 4, k=2, index_dispatch=index_dispatch) if moe else Mlp()

    def forward(self, x, cache=None):   # cache: [k, v, length] with k, v (B, H, T, D)
        B, t, _ = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (z.view(B, t, H, C // H).transpose(1, 2) for z in (q, k, v))
        if cache is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            n = cache[2]
            cache[0][:, :, n:n + t], cache[1][:, :, n:n + t] = k, v
            cache[2] = n + t
            # the new queries see every cached position and the causal part of their own
            mask = torch.ones(t, n + t, dtype=torch.bool).tril(diagonal=n)
            a = F.scaled_dot_product_attention(q, cache[0][:, :, :n + t], cache[1][:, :, :n + t], attn_mask=mask)
        x = x + self.c_proj(a.transpose(1, 2).reshape(B, t, C))
        out = self.mlp(self.ln_2(x))
        return (x + out[0], out[1]) if isinstance(out, tuple) else (x + out, torch.zeros(()))


class Gpt(nn.Module):
    def __init__(self, moe, index_dispatch=False):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        self.h = nn.ModuleList([Block(moe and i % 2 == 1, index_dispatch) for i in range(L)])
        self.ln_f = nn.LayerNorm(C, bias=False)
        for name, p in self.named_parameters():   # nanoGPT's initialisation; routers keep the default
            if p.dim() >= 2 and ".wg." not in name:
                std = 0.02 / math.sqrt(2 * L) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, caches=None):
        t = idx.shape[1]
        start = caches[0][2] if caches else 0
        x = self.wte(idx) + self.wpe(torch.arange(start, start + t))
        aux = torch.zeros(())
        for i, b in enumerate(self.h):
            x, a = b(x, caches[i] if caches else None)
            aux = aux + a
        return F.linear(self.ln_f(x), self.wte.weight), aux


def gpt_train(moe, index_dispatch=False):
    torch.manual_seed(0)
    model = Gpt(moe, index_dispatch)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.99))
    B = 12

    def step():
        x, y = torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))
        logits, aux = model(x)
        loss = F.cross_entropy(logits.view(-1, V), y.view(-1)) + 0.01 * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()
    return step, B * T, "tokens/s", 1.0


def generate():
    torch.manual_seed(0)
    model = Gpt(False).eval()
    new_tokens = 500

    @torch.no_grad()
    def step():
        caches = [[torch.zeros(1, H, T, C // H), torch.zeros(1, H, T, C // H), 0] for _ in range(L)]
        context, feed = [0], 1
        for _ in range(new_tokens):
            if caches[0][2] + feed > T:   # mox-llm's context shift: refill with the last T/2 tokens
                feed = T - T // 2
                for c in caches:
                    c[2] = 0
            logits, _ = model(torch.tensor([context[-feed:]]), caches)
            context.append(int(logits[0, -1].argmax()))
            feed = 1
    return step, new_tokens, "tokens/s", 1.0


# ---- 5. the MoE layer alone ----------------------------------------------------------------

S, M, FFN, E, K = 8192, 512, 2048, 8, 2


def ffn(hidden):
    return nn.Sequential(nn.Linear(M, hidden), nn.GELU(), nn.Linear(hidden, M))


def layer_fwd_bwd(layer):
    x = torch.randn(S, M, requires_grad=True)

    def step():
        layer.zero_grad()
        x.grad = None
        out = layer(x)
        loss = (out[0] if isinstance(out, tuple) else out).sum()
        loss.backward()
        loss.item()
    return step, S, "tokens/s", 1.0


def moe_layer(index_dispatch):
    torch.manual_seed(0)
    return layer_fwd_bwd(DeepSpeedMoE(M, lambda: ffn(FFN), E, k=K, second_sampling=False,
                                      index_dispatch=index_dispatch))


WORKLOADS = {
    "sgemm_1024": lambda: gemm(1024, 1024, 1024),
    "gemm_768x768x3072": lambda: gemm(768, 768, 3072),
    "cifar_b4": lambda: cifar(4, False),
    "cifar_b64": lambda: cifar(64, False),
    "cifar_moe_b64": lambda: cifar(64, True),
    "gpt_dense": lambda: gpt_train(False),
    "gpt_moe": lambda: gpt_train(True),
    "gpt_moe_index": lambda: gpt_train(True, index_dispatch=True),
    "moe_layer": lambda: moe_layer(False),
    "moe_layer_index": lambda: moe_layer(True),
    "dense_ffn": lambda: layer_fwd_bwd(ffn(K * FFN)),
    "generate": generate,
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("name", choices=sorted(WORKLOADS))
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    step, units, unit, scale = WORKLOADS[a.name]()
    print(f"result {measure(step, units, a.seconds, a.warmup) * scale:.6g} {unit}")


if __name__ == "__main__":
    main()
