"""Habits from geoopt and torch schedulers that RiemannianSGD and the hybrid optimizer honour."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from grassmann_cls import GrassmannHead, RiemannianSGD, hybrid_optimizer
from grassmann_cls.errors import OptionError


def model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), GrassmannHead(16, 3, 2, generator=torch.Generator().manual_seed(seed)))


def train(net: nn.Module, opt, steps: int, scheduler=None) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        opt.zero_grad()
        net(torch.randn(6, 8, generator=g)).logsumexp(-1).mean().backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


def test_geoopt_stabilize_means_reorth_every():
    a, b = model(), model()
    train(a, RiemannianSGD(a.parameters(), lr=0.1, momentum=0.9, stabilize=3), 7)
    train(b, RiemannianSGD(b.parameters(), lr=0.1, momentum=0.9, reorth_every=3), 7)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, atol=0, rtol=0)


def test_stabilize_with_reorth_every_is_refused_by_name():
    with pytest.raises(OptionError, match=r"stabilize is geoopt's name for reorth_every.*stabilize=5, reorth_every=2"):
        RiemannianSGD(model().parameters(), lr=0.1, stabilize=5, reorth_every=2)


@pytest.mark.parametrize("stabilize", [0, -1])
def test_stabilize_must_be_positive(stabilize):
    with pytest.raises(OptionError, match="stabilize must be >= 1"):
        RiemannianSGD(model().parameters(), lr=0.1, stabilize=stabilize)


@pytest.mark.parametrize("backbone", [torch.optim.AdamW, torch.optim.SGD], ids=["adamw", "sgd"])
def test_one_cycle_lr_with_default_momentum_cycling_drives_every_group(backbone):
    net = model()
    kwargs = {"momentum": 0.9} if backbone is torch.optim.SGD else {}
    opt = hybrid_optimizer(net, backbone, lr=1e-3, bases_lr_factor=100, **kwargs)
    peaks = [g["lr"] for g in opt.param_groups]
    scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peaks, total_steps=10)
    train(net, opt, 4, scheduler)
    backbone_group, bases_group = opt.param_groups
    assert backbone_group["momentum"] == bases_group["momentum"] < scheduler.optimizer.param_groups[0]["max_momentum"]
    if "betas" in backbone_group:  # the cycled momentum reached Adam's beta1 at the last step
        assert backbone_group["betas"][0] == pytest.approx(opt.param_groups[0]["momentum"], abs=0.05)
    assert bases_group["lr"] / backbone_group["lr"] == pytest.approx(100)
    bases = net[1].bases.detach()
    torch.testing.assert_close(bases.mT @ bases, torch.eye(2).expand(3, 2, 2), atol=1e-5, rtol=0)


def test_one_cycle_lr_beta1_follows_the_momentum_it_writes():
    net = model()
    opt = hybrid_optimizer(net, lr=1e-3, bases_lr_factor=100)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=10)
    seen = []
    for _ in range(4):
        written = opt.param_groups[0]["momentum"]
        train(net, opt, 1)
        seen.append((written, opt.param_groups[0]["betas"][0]))
        scheduler.step()
    assert all(momentum == beta1 for momentum, beta1 in seen)


def test_one_cycle_lr_without_a_momentum_anywhere_asks_for_cycle_momentum_false():
    net = model()
    opt = hybrid_optimizer(net, torch.optim.Adagrad, lr=1e-3, bases_lr_factor=100)
    with pytest.raises(ValueError, match="cycle_momentum"):
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=10)
    torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=10, cycle_momentum=False)
