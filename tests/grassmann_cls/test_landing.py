"""LandingSGD: Ky Fan problem, basis equivariance, landing, safe step, state_dict, non-finite gradients."""

from __future__ import annotations

import copy

import geoopt
import pytest
import torch

from grassmann_cls import LandingSGD, PaddedGrassmann, RiemannianSGD
from grassmann_cls.errors import NonFiniteError, OptionError
from manifolds import Grassmann, principal_angles
from tests.conftest import generator

N, K, C = 12, 3, 2


def covariance(seed=0, n=N):
    """SPD matrices with a clear gap after the k-th eigenvalue, one per class: shape (C, n, n)."""
    gen = generator(seed)
    q, _ = torch.linalg.qr(torch.randn(C, n, n, dtype=torch.float64, generator=gen))
    values = torch.cat([torch.tensor([4.0, 3.5, 3.0]), torch.linspace(1.0, 0.1, n - K)]).to(torch.float64)
    return q @ torch.diag_embed(values.expand(C, n)) @ q.mT


def ky_fan_gradient(a, s):
    """Gradient of -tr(S^T A S) (minimised): -2 A S."""
    return -2 * a @ s


def bases(start):
    manifold = Grassmann()
    return geoopt.ManifoldParameter(start.clone(), manifold=manifold)


def run(opt_factory, start, a, steps, seed_noise=None):
    p = bases(start)
    opt = opt_factory([p])
    for t in range(steps):
        grad = ky_fan_gradient(a, p.detach())
        if seed_noise is not None:
            grad = grad + 0.01 * torch.randn(grad.shape, dtype=grad.dtype, generator=generator(seed_noise + t))
        p.grad = grad
        opt.step()
    return p.detach(), opt


def orthonormality(s):
    return float(torch.linalg.matrix_norm(s.mT @ s - torch.eye(s.shape[-1], dtype=s.dtype)).amax())


OPTIMIZERS = {
    "landing": lambda params: LandingSGD(params, lr=0.05, momentum=0.5),
    "landing_nesterov": lambda params: LandingSGD(params, lr=0.05, momentum=0.5, nesterov=True),
    "riemannian_sgd": lambda params: RiemannianSGD(params, lr=0.05, momentum=0.5),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_finds_the_top_eigenspace_from_a_random_start(name):
    a = covariance()
    start = Grassmann().random(C, N, K, dtype=torch.float64, generator=generator(1))
    s, _ = run(OPTIMIZERS[name], start, a, 400)
    top = torch.linalg.eigh(a).eigenvectors[..., -K:]
    q, _ = torch.linalg.qr(s)
    assert float(principal_angles(q, top).amax()) < 1e-6
    assert orthonormality(s) < 1e-10  # landed


def test_trajectory_from_a_rotated_start_is_the_rotated_trajectory():
    a = covariance()
    start = Grassmann().random(C, N, K, dtype=torch.float64, generator=generator(2))
    q, _ = torch.linalg.qr(torch.randn(C, K, K, dtype=torch.float64, generator=generator(3)))
    factory = lambda params: LandingSGD(params, lr=0.2, momentum=0.9, bound=0.3)  # noqa: E731
    s, _ = run(factory, start, a, 30)
    s_rotated, _ = run(factory, start @ q, a, 30)
    torch.testing.assert_close(s_rotated, s @ q, atol=1e-12, rtol=0)


def test_safe_step_keeps_orthonormality_error_below_the_bound():
    start = Grassmann().random(C, N, K, dtype=torch.float64, generator=generator(4))
    p = bases(start)
    opt = LandingSGD([p], lr=10.0, momentum=0.9, bound=0.2)
    worst = 0.0
    for t in range(60):
        p.grad = 5 * torch.randn(p.shape, dtype=torch.float64, generator=generator(10 + t))
        opt.step()
        worst = max(worst, orthonormality(p.detach()))
    assert 0.1 < worst <= 0.2 + 1e-12  # the bound is reached, never crossed


def test_bases_land_on_the_manifold_when_the_gradient_vanishes():
    start = Grassmann().random(C, N, K, dtype=torch.float64, generator=generator(5))
    p = bases(start + 0.05 * torch.randn(start.shape, dtype=torch.float64, generator=generator(6)))
    opt = LandingSGD([p], lr=0.2, bound=0.5)
    assert orthonormality(p.detach()) > 1e-2
    span = p.detach().clone()
    for _ in range(100):
        p.grad = torch.zeros_like(p)
        opt.step()
    assert orthonormality(p.detach()) < 1e-12
    q, _ = torch.linalg.qr(span)
    assert float(principal_angles(torch.linalg.qr(p.detach())[0], q).amax()) < 1e-12  # the normal term keeps the span


def test_state_dict_round_trip_mid_run_continues_the_same_trajectory():
    a = covariance()
    start = Grassmann().random(C, N, K, dtype=torch.float64, generator=generator(7))
    factory = lambda params: LandingSGD(params, lr=0.1, momentum=0.9)  # noqa: E731
    reference, _ = run(factory, start, a, 20)
    half, opt = run(factory, start, a, 10)
    saved = copy.deepcopy(opt.state_dict())
    p = bases(half)
    resumed = factory([p])
    resumed.load_state_dict(saved)
    for _ in range(10):
        p.grad = ky_fan_gradient(a, p.detach())
        resumed.step()
    torch.testing.assert_close(p.detach(), reference, atol=0, rtol=0)


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_non_finite_gradients_are_handled_as_riemannian_sgd_handles_them(policy):
    start = Grassmann().random(C, N, K, dtype=torch.float64, generator=generator(8))
    p = bases(start)
    weight = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = LandingSGD([p, weight], lr=0.1, momentum=0.9, nonfinite=policy)
    p.grad = torch.ones_like(p)
    weight.grad = torch.ones_like(weight)
    opt.step()
    before = (p.detach().clone(), weight.detach().clone(), opt.state[p]["momentum_buffer"].clone())
    p.grad[0, 0, 0] = float("nan")
    if policy == "raise":
        with pytest.raises(NonFiniteError, match="non-finite gradient"):
            opt.step()
    else:
        with pytest.warns(RuntimeWarning, match="step skipped"):
            opt.step()
    after = (p.detach(), weight.detach(), opt.state[p]["momentum_buffer"])
    for b, c in zip(before, after):
        torch.testing.assert_close(b, c, atol=0, rtol=0)


def test_plain_parameters_are_stepped_exactly_like_torch_sgd():
    weights = [torch.nn.Parameter(torch.randn(4, 3, generator=generator(9))) for _ in range(2)]
    ours = LandingSGD([weights[0]], lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True)
    theirs = torch.optim.SGD([weights[1]], lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True)
    for t in range(5):
        grad = torch.randn(4, 3, generator=generator(20 + t))
        for w, opt in zip(weights, (ours, theirs)):
            w.grad = grad.clone()
            opt.step()
    torch.testing.assert_close(weights[0], weights[1], atol=0, rtol=0)


def test_manifolds_without_landing_steps_are_refused_at_construction():
    padded = PaddedGrassmann((1, 2))
    p = geoopt.ManifoldParameter(padded.random(2, 5, 2, dtype=torch.float64), manifold=padded)
    with pytest.raises(OptionError, match="PaddedGrassmann cannot take landing steps"):
        LandingSGD([p], lr=0.1)


@pytest.mark.parametrize(("option", "value"), [("attraction", 0.0), ("bound", 1.0), ("bound", 0.0)])
def test_bad_landing_options_are_refused(option, value):
    with pytest.raises(OptionError, match=option):
        LandingSGD([torch.nn.Parameter(torch.ones(2))], lr=0.1, **{option: value})


def _plain_and_head_model():
    from grassmann_cls import GrassmannHead

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(5, N, dtype=torch.float64), GrassmannHead(N, C, K, dtype=torch.float64, generator=generator(0))
    )


def test_hybrid_optimizer_offers_landing_for_the_bases_and_checks_its_gradients_first():
    from grassmann_cls import HybridOptimizer, hybrid_optimizer

    model = _plain_and_head_model()
    hybrid = hybrid_optimizer(model, lr=1e-3, bases_lr_factor=100.0, bases_optimizer="landing", momentum=0.5)
    bases_opt = hybrid.optimizers[-1]
    assert isinstance(hybrid, HybridOptimizer) and isinstance(bases_opt, LandingSGD)
    assert bases_opt.param_groups[0]["lr"] == pytest.approx(0.1) and bases_opt.param_groups[0]["momentum"] == 0.5
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    hybrid.step()
    before = [p.detach().clone() for p in model.parameters()]
    model[-1].bases.grad[0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError):
        hybrid.step()
    for b, p in zip(before, model.parameters()):  # neither the backbone nor the bases moved
        torch.testing.assert_close(b, p.detach(), atol=0, rtol=0)


@pytest.mark.parametrize("option", [{"grassmann_momentum": "transport"}, {"reorth_every": 5}])
def test_hybrid_optimizer_refuses_riemannian_sgd_options_for_landing_bases_by_name(option):
    from grassmann_cls import hybrid_optimizer

    with pytest.raises(OptionError, match=f"bases_optimizer='landing' has no {next(iter(option))}"):
        hybrid_optimizer(_plain_and_head_model(), lr=1e-3, bases_lr_factor=100.0, bases_optimizer="landing", **option)


def test_the_sgd_recipe_steps_landing_bases_beside_sgd_at_the_backbone_lr():
    from grassmann_cls import HybridOptimizer
    from grassmann_cls.training.config import TrainConfig
    from grassmann_cls.training.models import build_model
    from grassmann_cls.training.recipe import OPTIMIZERS

    config = TrainConfig(bases_optimizer="landing", subspace_dim=2, lr=0.05, momentum=0.8)
    model = build_model(config, (1, 8, 8), 3)
    opt = OPTIMIZERS.resolve("sgd")(model, config)
    assert isinstance(opt, HybridOptimizer) and isinstance(opt.optimizers[-1], LandingSGD)
    assert opt.optimizers[-1].param_groups[0]["params"] == [model.fc.bases]
    assert (opt.optimizers[-1].param_groups[0]["lr"], opt.optimizers[-1].param_groups[0]["momentum"]) == (0.05, 0.8)
