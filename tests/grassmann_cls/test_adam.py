"""RiemannianAdam: torch's AdamW on plain tensors, basis-invariant Riemannian Adam on Grassmann bases."""

from __future__ import annotations

import copy
import io
import warnings

import geoopt
import pytest
import torch
from torch import nn

from grassmann_cls import GrassmannHead, RiemannianAdam
from grassmann_cls.errors import CheckpointError, GrassmannError, ManifoldTypeError, NonFiniteError, OptionError
from manifolds import Grassmann
from tests.conftest import generator

N, K, C = 9, 3, 4


def plain_and_head_model(seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(5, 7, dtype=torch.float64),
            nn.Tanh(),
            nn.Linear(7, N, dtype=torch.float64),
            GrassmannHead(N, C, K, dtype=torch.float64, generator=generator(seed)),
        )


def set_gradients(params, step):
    g = generator(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, dtype=p.dtype, generator=g)


def covariances(dtype=torch.float64, seed=0):
    """``C`` covariance matrices ``(C, N, N)`` with a clear top-``K`` gap."""
    g = generator(seed)
    basis = torch.linalg.qr(torch.randn(C, N, N, dtype=dtype, generator=g)).Q
    spectrum = torch.cat([torch.linspace(4.0, 3.0, K, dtype=dtype), torch.linspace(1.0, 0.1, N - K, dtype=dtype)])
    return (basis * spectrum) @ basis.mT


def ky_fan_step(optimizer, bases, a):
    """One step on ``-tr(S^T A S)`` (minimised by the top-``K`` eigenspaces of ``a``)."""
    optimizer.zero_grad()
    loss = -(bases * (a @ bases)).sum()
    loss.backward()
    optimizer.step()


def projector(x):
    return x @ x.mT


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("decoupled", [True, False])
@pytest.mark.parametrize("foreach", [None, False, True])
def test_plain_parameters_step_bitwise_like_torch_adam(amsgrad, weight_decay, decoupled, foreach):
    model = plain_and_head_model()
    reference = copy.deepcopy(model)
    plain = [p for p in reference.parameters() if not isinstance(p, geoopt.ManifoldParameter)]
    torch_class = torch.optim.AdamW if decoupled else torch.optim.Adam
    expected = torch_class(
        plain, lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=weight_decay, amsgrad=amsgrad, foreach=foreach
    )
    ours = RiemannianAdam(
        model.parameters(),
        lr=0.01,
        betas=(0.8, 0.95),
        eps=1e-6,
        weight_decay=weight_decay,
        amsgrad=amsgrad,
        decoupled_weight_decay=decoupled,
        foreach=foreach,
    )
    for step in range(6):
        set_gradients(model.parameters(), step)
        set_gradients(reference.parameters(), step)
        ours.step()
        expected.step()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        if not isinstance(p, geoopt.ManifoldParameter):
            assert torch.equal(p, q), name
            for key, value in expected.state[q].items():
                assert torch.equal(ours.state[p][key], value), (name, key)


def test_bases_get_no_weight_decay_and_stay_orthonormal():
    model = plain_and_head_model()
    bases = model[-1].bases
    before = bases.detach().clone()
    opt = RiemannianAdam(model.parameters(), lr=0.1, weight_decay=0.5)
    bases.grad = torch.zeros_like(bases)
    opt.step()
    assert float((bases.detach() - before).abs().max()) < 1e-14  # R(S, 0) = S up to rounding
    set_gradients([bases], 0)
    opt.step()
    eye = torch.eye(K, dtype=torch.float64)
    assert float((bases.detach().mT @ bases.detach() - eye).abs().max()) < 1e-13


@pytest.mark.parametrize("retraction", ["qr", "polar", "exp"])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_ky_fan_problem_finds_the_top_eigenspaces(retraction, amsgrad):
    a = covariances()
    manifold = Grassmann(retraction=retraction)
    bases = geoopt.ManifoldParameter(
        manifold.random(C, N, K, dtype=torch.float64, generator=generator(3)), manifold=manifold
    )
    opt = RiemannianAdam([bases], lr=0.05, amsgrad=amsgrad)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.97)
    for _ in range(150):
        ky_fan_step(opt, bases, a)
        scheduler.step()
    top = torch.linalg.eigh(a).eigenvectors[..., -K:]
    assert float((projector(bases.detach()) - projector(top)).abs().max()) < 1e-3  # from about 1


@pytest.mark.parametrize("retraction", ["exp", "polar"])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_subspaces_do_not_depend_on_the_starting_basis(retraction, amsgrad):
    a = covariances(seed=1)
    manifold = Grassmann(retraction=retraction)
    start = manifold.random(C, N, K, dtype=torch.float64, generator=generator(4))
    rotation = torch.linalg.qr(torch.randn(C, K, K, dtype=torch.float64, generator=generator(5))).Q
    runs = []
    for basis in (start, start @ rotation):
        bases = geoopt.ManifoldParameter(basis.clone(), manifold=manifold)
        opt = RiemannianAdam([bases], lr=0.05, amsgrad=amsgrad)
        for _ in range(30):
            ky_fan_step(opt, bases, a)
        runs.append(projector(bases.detach()))
    assert float((runs[0] - runs[1]).abs().max()) < 1e-12


def test_state_dict_round_trip_continues_the_same_trajectory():
    a = covariances(seed=2)
    model = plain_and_head_model()
    opt = RiemannianAdam(model.parameters(), lr=0.02, amsgrad=True)

    def run(model, opt, steps):
        for step in steps:
            set_gradients([p for p in model.parameters() if p.dim() < 3], step)
            bases = model[-1].bases
            bases.grad = -2 * a @ bases.detach()
            opt.step()

    run(model, opt, range(5))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    run(model, opt, range(5, 10))
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    resumed = plain_and_head_model(seed=7)
    resumed.load_state_dict(saved["model"])
    resumed_opt = RiemannianAdam(resumed.parameters(), lr=0.02, amsgrad=True)
    resumed_opt.load_state_dict(saved["opt"])
    run(resumed, resumed_opt, range(5, 10))
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_load_state_dict_refuses_a_mismatching_one_and_keeps_its_state():
    model = plain_and_head_model()
    opt = RiemannianAdam(model.parameters(), lr=0.02)
    set_gradients(model.parameters(), 0)
    opt.step()
    broken = copy.deepcopy(opt.state_dict())
    bases_index = len(list(model.parameters())) - 1
    broken["state"][bases_index]["exp_avg_sq"] = torch.full((C, 1, 1), float("nan"), dtype=torch.float64)
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(CheckpointError, match="exp_avg_sq"):
        opt.load_state_dict(broken)
    assert torch.equal(opt.state_dict()["state"][bases_index]["exp_avg_sq"], before["state"][bases_index]["exp_avg_sq"])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradient_raises_or_skips_and_writes_nothing(bad):
    model = plain_and_head_model()
    opt = RiemannianAdam(model.parameters(), lr=0.02)
    set_gradients(model.parameters(), 0)
    opt.step()
    set_gradients(model.parameters(), 1)
    model[-1].bases.grad[0, 0, 0] = bad
    snapshot = copy.deepcopy((model.state_dict(), opt.state_dict()))
    with pytest.raises(NonFiniteError, match="non-finite"):
        opt.step()
    opt.nonfinite = "skip"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt.step()
    assert any(issubclass(w.category, RuntimeWarning) for w in caught)
    for key, value in snapshot[0].items():
        assert torch.equal(model.state_dict()[key], value)
    assert opt.state_dict()["state"][0]["step"] == snapshot[1]["state"][0]["step"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"lr": -1.0}, "lr"),
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"betas": 0.9}, "betas"),
        ({"eps": -1e-8}, "eps"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"amsgrad": "yes"}, "amsgrad"),
        ({"nonfinite": "zero"}, "nonfinite"),
        ({"decoupled_weight_decay": 1}, "decoupled_weight_decay"),
    ],
)
def test_bad_options_are_refused_by_name(options, message):
    with pytest.raises(GrassmannError, match=message):
        RiemannianAdam(plain_and_head_model().parameters(), **options)


def test_foreign_manifolds_and_sparse_gradients_are_refused():
    stiefel = geoopt.ManifoldParameter(torch.eye(4, 2), manifold=geoopt.Stiefel())
    with pytest.raises(ManifoldTypeError, match="geoopt.optim.RiemannianAdam"):
        RiemannianAdam([stiefel])
    embedding = nn.Embedding(4, 3, sparse=True)
    opt = RiemannianAdam(embedding.parameters())
    embedding(torch.tensor([1])).sum().backward()
    with pytest.raises(OptionError, match="sparse"):
        opt.step()


def test_hybrid_optimizer_offers_riemannian_adam_for_the_bases():
    from grassmann_cls import HybridOptimizer, hybrid_optimizer

    model = plain_and_head_model()
    hybrid = hybrid_optimizer(model, lr=1e-3, bases_lr_factor=100.0, bases_optimizer="adam")
    assert isinstance(hybrid, HybridOptimizer) and isinstance(hybrid.optimizers[-1], RiemannianAdam)
    assert hybrid.optimizers[-1].param_groups[0]["lr"] == pytest.approx(0.1)
    assert hybrid.optimizers[-1].param_groups[0]["weight_decay"] == 0.0
    set_gradients(model.parameters(), 0)
    model[-1].bases.grad[0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError):
        hybrid.step()


@pytest.mark.parametrize("option", [{"momentum": 0.5}, {"grassmann_momentum": "transport"}, {"reorth_every": 5}])
def test_hybrid_optimizer_refuses_sgd_options_for_adam_bases_by_name(option):
    from grassmann_cls import hybrid_optimizer

    with pytest.raises(OptionError, match=next(iter(option))):
        hybrid_optimizer(plain_and_head_model(), lr=1e-3, bases_lr_factor=100.0, bases_optimizer="adam", **option)
