"""PyTorch side of bench/cifar10_step.cpp: the same Net, the same training step
(zero_grad, forward, cross-entropy, backward, SGD momentum 0.9), on a fixed synthetic
batch, 2 threads. Prints images/s per batch size. Needs torch (bench only, never tests):
    /path/to/venv/bin/python bench/torch_cifar10_step.py [--threads 2] [--seconds 3]
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def bench(batch, seconds):
    torch.manual_seed(0)
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    images = torch.randn(batch, 3, 32, 32)
    labels = torch.arange(batch) % 10
    def step():
        opt.zero_grad()
        loss = F.cross_entropy(net(images), labels)
        loss.backward()
        opt.step()
        return loss.item()
    for _ in range(20):
        step()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        n += 1
    return batch * n / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=3.0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} threads")
    for batch in (4, 64):
        print(f"batch {batch}: {bench(batch, a.seconds):.0f} images/s")


if __name__ == "__main__":
    main()
