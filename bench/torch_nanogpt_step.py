#!/usr/bin/env python3
"""torch_nanogpt_step.py — PyTorch side of the shakespeare-cpu training-iteration comparison.

The model of mox-llm's `--preset shakespeare-cpu` written the nanoGPT way (4 layers, 4 heads,
128 embd, block 64, vocabulary 65, no biases, LayerNorm, tanh GELU MLP of 4·C, tied head,
F.scaled_dot_product_attention with is_causal), AdamW(lr 1e-3, betas 0.9/0.99, weight decay
0.1 on 2-D parameters), gradient clipping 1.0, batch 12. Random token batches (data loading
is not what is compared). With --moe, every other block's MLP is a DeepSpeed-style top-2 MoE
of 4 such MLPs (gate Linear, softmax, top-2 with capacity factor 1 and min capacity 4,
index dispatch, combine by renormalised weights, l_aux added with 0.01).

    /work/venv-torch/bin/python bench/torch_nanogpt_step.py [--moe] [--iters 100] [--threads 2]

Prints "tokens/s: N" (median of 5 windows of iters/5 iterations after 10 warm-up ones).
Not needed by `make test`.
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

V, C, H, T, L, B = 65, 128, 4, 64, 4, 12


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc, self.c_proj = nn.Linear(C, 4 * C, bias=False), nn.Linear(4 * C, C, bias=False)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Top2MoE(nn.Module):
    def __init__(self, experts=4):
        super().__init__()
        self.wg = nn.Linear(C, experts, bias=False)
        self.experts = nn.ModuleList([Mlp() for _ in range(experts)])
        self.E = experts

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, C)
        S = x.shape[0]
        probs = F.softmax(self.wg(x).float(), dim=-1)                  # (S, E)
        capacity = max(math.ceil(2 * S / self.E), 4)
        top_p, top_e = probs.topk(2, dim=-1)                           # (S, 2)
        me = probs.mean(0)
        ce = F.one_hot(top_e[:, 0], self.E).float().mean(0)
        l_aux = (me * ce).sum() * self.E
        # queue: first choices of all tokens, then second choices (GShard / DeepSpeed top-2)
        flat_e = torch.cat([top_e[:, 0], top_e[:, 1]])
        flat_t = torch.cat([torch.arange(S), torch.arange(S)])
        flat_p = torch.cat([top_p[:, 0], top_p[:, 1]])
        onehot = F.one_hot(flat_e, self.E)
        position = (onehot.cumsum(0) - 1).gather(1, flat_e[:, None]).squeeze(1)
        keep = position < capacity
        denom = torch.zeros(S).index_add(0, flat_t[keep], flat_p[keep]).clamp_min(1e-9)
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            sel = keep & (flat_e == e)
            tok = flat_t[sel]
            if tok.numel():
                w = (flat_p[sel] / denom[tok])[:, None]
                y = y.index_add(0, tok, w * expert(x[tok]))
        return y.reshape(shape), l_aux


class Block(nn.Module):
    def __init__(self, moe):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(C, bias=False), nn.LayerNorm(C, bias=False)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C, bias=False), nn.Linear(C, C, bias=False)
        self.mlp = Top2MoE() if moe else Mlp()

    def forward(self, x):
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.c_proj(a)
        out = self.mlp(self.ln_2(x))
        if isinstance(out, tuple):
            return x + out[0], out[1]
        return x + out, torch.zeros(())


class Gpt(nn.Module):
    def __init__(self, moe):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        self.h = nn.ModuleList([Block(moe and i % 2 == 1) for i in range(L)])
        self.ln_f = nn.LayerNorm(C, bias=False)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(T))
        aux = torch.zeros(())
        for b in self.h:
            x, a = b(x)
            aux = aux + a
        return F.linear(self.ln_f(x), self.wte.weight), aux


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--moe", action="store_true")
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Gpt(a.moe)
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.99))

    def step():
        x = torch.randint(0, V, (B, T))
        y = torch.randint(0, V, (B, T))
        logits, aux = model(x)
        loss = F.cross_entropy(logits.view(-1, V), y.view(-1)) + 0.01 * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(10):
        step()
    window = max(a.iters // 5, 1)
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(window):
            step()
        rates.append(window * B * T / (time.perf_counter() - t0))
    print(f"tokens/s: {statistics.median(rates):.0f}")


if __name__ == "__main__":
    main()
