"""Numerical edge cases of the head and the optimizers: nothing non-finite is ever written.

Zero, in-subspace and orthogonal features; zero, huge and non-finite
gradients under both momentum modes, every retraction and transport, both
non-finite policies and the hybrid optimizer; damaged optimizer states; and a
float32 head with ``n = 8192, k = 64``.
"""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn

from grassmann_cls import GrassmannHead, PaddedGrassmann, RiemannianSGD, hybrid_optimizer
from grassmann_cls.errors import CheckpointError, NonFiniteError
from manifolds import RETRACTIONS, TRANSPORTS, Grassmann
from tests.conftest import generator

# Style and retraction are independent: every retraction under both momentum styles.
MODES = [(style, name) for style in ("transport", "paper") for name in RETRACTIONS.names()]
MODE_IDS = [f"{mode}-{retraction}" for mode, retraction in MODES]
ORTHONORMAL = {torch.float32: 1e-5, torch.float64: 1e-12}


def orthonormality_error(bases: torch.Tensor) -> float:
    eye = torch.eye(bases.shape[-1], dtype=bases.dtype)
    return float((bases.mT @ bases - eye).abs().amax())


def head(n=8, classes=3, k=2, dtype=torch.float64, **kwargs) -> GrassmannHead:
    return GrassmannHead(n, classes, k, dtype=dtype, generator=generator(0), **kwargs)


# --- the head ----------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("logit", ["projection", "squared_projection", "neg_angle"])
def test_zero_features_give_finite_logits_and_gradients(logit, normalize):
    gcr = head(logit=logit, normalize=normalize)
    features = torch.zeros(4, 8, dtype=torch.float64, requires_grad=True)
    logits = gcr(features)
    assert bool(torch.isfinite(logits).all())
    (logits * torch.arange(3.0, dtype=torch.float64)).sum().backward()
    assert bool(torch.isfinite(features.grad).all()) and bool(torch.isfinite(gcr.bases.grad).all())


@pytest.mark.parametrize("where", ["inside", "orthogonal", "tiny"])
@pytest.mark.parametrize("logit", ["projection", "squared_projection", "neg_angle"])
def test_features_inside_or_orthogonal_to_the_subspaces_give_finite_gradients(logit, where):
    gcr = head(n=8, classes=2, k=2, logit=logit)
    bases = gcr.bases.detach()
    span = torch.cat([bases[0], bases[1]], dim=1)
    outside = torch.randn(8, dtype=torch.float64, generator=generator(1))
    outside = outside - span @ torch.linalg.lstsq(span, outside).solution
    features = {"inside": bases[0, :, 0], "orthogonal": outside, "tiny": 1e-30 * bases[1, :, 1]}[where]
    features = features[None].clone().requires_grad_()
    logits = gcr(features)
    logits.sum().backward()
    assert bool(torch.isfinite(logits).all())
    assert bool(torch.isfinite(features.grad).all()) and bool(torch.isfinite(gcr.bases.grad).all())


# --- the optimizer: zero, huge and non-finite gradients ------------------------------------------------------------


def optimizer_for(gcr: nn.Module, mode: str, **options) -> RiemannianSGD:
    options = {"lr": 0.1, "momentum": 0.9, "grassmann_momentum": mode, **options}
    return RiemannianSGD(gcr.parameters(), **options)


def state_snapshot(model: nn.Module, opt) -> dict:
    """Copies of the parameters and of every optimizer state (inner ones for a hybrid)."""
    inner = getattr(opt, "optimizers", [opt])
    state = {(i, key): value for i, o in enumerate(inner) for key, value in o.state_dict()["state"].items()}
    return {"params": copy.deepcopy(model.state_dict()), "state": copy.deepcopy(state)}


def assert_same_snapshot(before: dict, after: dict) -> None:
    for key, value in before["params"].items():
        assert torch.equal(value, after["params"][key]), key
    for index, entries in before["state"].items():
        for name, value in entries.items():
            other = after["state"][index][name]
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(other)), (index, name)


def good_step(gcr: GrassmannHead, opt, seed: int = 1) -> None:
    features = torch.randn(6, gcr.in_features, dtype=gcr.bases.dtype, generator=generator(seed))
    labels = torch.arange(6) % gcr.num_classes
    opt.zero_grad()
    nn.functional.cross_entropy(gcr(features), labels).backward()
    opt.step()


@pytest.mark.parametrize(("mode", "retraction"), MODES, ids=MODE_IDS)
def test_zero_gradient_leaves_the_bases_in_place(mode, retraction):
    gcr = head(manifold=Grassmann(retraction=retraction))
    opt = optimizer_for(gcr, mode, momentum=0.0, reorth_every=0)
    before = gcr.bases.detach().clone()
    gcr.bases.grad = torch.zeros_like(gcr.bases)
    opt.step()
    torch.testing.assert_close(gcr.bases.detach(), before, atol=1e-14, rtol=0)


# The paper style never transports, so it is refused with other transports (tested in test_optim.py).
STEPPERS = [
    (mode, retraction, transport)
    for mode, retraction in MODES
    for transport in TRANSPORTS.names()
    if mode == "transport" or transport == "projection"
]


@pytest.mark.parametrize(("mode", "retraction", "transport"), STEPPERS, ids="-".join)
def test_huge_rank_deficient_gradients_below_the_bound_keep_bases_orthonormal(mode, retraction, transport, dtype):
    gcr = head(n=10, classes=3, k=3, dtype=dtype, manifold=Grassmann(retraction=retraction, transport=transport))
    opt = optimizer_for(gcr, mode, lr=1.0)
    scale = 0.5 / (torch.finfo(dtype).eps * 1.0 * math.sqrt(30) / 0.1)  # half the bound of first_bad_gradient
    for t in range(3):
        grad = torch.zeros_like(gcr.bases)
        grad[:, :, 0] = scale * torch.randn(3, 10, dtype=dtype, generator=generator(t)).clamp(-1, 1)
        gcr.bases.grad = grad
        opt.step()
    buffer = opt.state[gcr.bases]["momentum_buffer"]
    assert bool(torch.isfinite(gcr.bases).all()) and bool(torch.isfinite(buffer).all())
    assert orthonormality_error(gcr.bases.detach()) <= ORTHONORMAL[dtype]


@pytest.mark.parametrize("policy", ["raise", "skip"])
@pytest.mark.parametrize(("mode", "retraction"), MODES, ids=MODE_IDS)
def test_gradient_beyond_what_the_dtype_resolves_is_refused(mode, retraction, policy):
    gcr = head(dtype=torch.float32, manifold=Grassmann(retraction=retraction))
    opt = optimizer_for(gcr, mode, lr=1.0, nonfinite=policy)
    good_step(gcr, opt)
    before = state_snapshot(gcr, opt)
    gcr.bases.grad = torch.full_like(gcr.bases, 1e12)
    if policy == "raise":
        with pytest.raises(NonFiniteError, match=r"too large.*max \|grad\| = 1e\+12.*float32"):
            opt.step()
    else:
        with pytest.warns(RuntimeWarning, match="too large"):
            opt.step()
    assert_same_snapshot(before, state_snapshot(gcr, opt))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("policy", ["raise", "skip"])
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("mode", ["transport", "paper"])
def test_nonfinite_gradient_never_reaches_bases_or_momentum(mode, nesterov, policy, bad):
    model = nn.Sequential(nn.Linear(4, 8, dtype=torch.float64), head())
    opt = RiemannianSGD(
        model.named_parameters(), lr=0.1, momentum=0.9, nesterov=nesterov, grassmann_momentum=mode, nonfinite=policy
    )
    features = torch.randn(6, 4, dtype=torch.float64, generator=generator(2))
    nn.functional.cross_entropy(model(features), torch.arange(6) % 3).backward()
    opt.step()
    before = state_snapshot(model, opt)
    model[1].bases.grad[1, 3, 0] = bad
    if policy == "raise":
        with pytest.raises(NonFiniteError, match=r"'1\.bases'.*shape \(3, 8, 2\)"):
            opt.step()
    else:
        with pytest.warns(RuntimeWarning, match="step skipped"):
            opt.step()
    assert_same_snapshot(before, state_snapshot(model, opt))


# --- the hybrid optimizer ------------------------------------------------------------------------------------------


def hybrid_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8, dtype=torch.float64), nn.ReLU(), head())


def hybrid_step(model, opt, poison: str | None) -> None:
    features = torch.randn(6, 4, dtype=torch.float64, generator=generator(3))
    opt.zero_grad()
    nn.functional.cross_entropy(model(features), torch.arange(6) % 3).backward()
    if poison == "backbone":
        model[0].weight.grad[0, 0] = math.nan
    elif poison == "bases":
        model[2].bases.grad[0, 0, 0] = math.inf
    opt.step()


@pytest.mark.parametrize("poison", ["backbone", "bases"])
@pytest.mark.parametrize("mode", ["transport", "paper"])
def test_hybrid_skip_policy_checks_every_gradient_before_any_step(mode, poison):
    model = hybrid_model()
    opt = hybrid_optimizer(model, lr=1e-3, bases_lr_factor=100.0, grassmann_momentum=mode, nonfinite="skip")
    hybrid_step(model, opt, None)
    before = state_snapshot(model, opt)
    with pytest.warns(RuntimeWarning, match="step skipped"):
        hybrid_step(model, opt, poison)
    assert_same_snapshot(before, state_snapshot(model, opt))


@pytest.mark.parametrize("poison", ["backbone", "bases"])
def test_hybrid_raise_policy_names_the_parameter_and_writes_nothing(poison):
    model = hybrid_model()
    opt = hybrid_optimizer(model, lr=1e-3, bases_lr_factor=100.0)
    hybrid_step(model, opt, None)
    before = state_snapshot(model, opt)
    name = "'0.weight'" if poison == "backbone" else "'2.bases'"
    with pytest.raises(NonFiniteError, match=name):
        hybrid_step(model, opt, poison)
    assert_same_snapshot(before, state_snapshot(model, opt))


def test_hybrid_policy_defaults_to_the_bases_optimizers():
    model = hybrid_model()
    assert hybrid_optimizer(model, lr=1e-3, bases_lr_factor=10.0, nonfinite="skip").nonfinite == "skip"
    assert hybrid_optimizer(model, lr=1e-3, bases_lr_factor=10.0).nonfinite == "raise"


# --- damaged optimizer states ---------------------------------------------------------------------------------------


def _damage(state: dict, how: str) -> dict:
    state = copy.deepcopy(state)
    if how == "nan_buffer":
        next(iter(state["state"].values()))["momentum_buffer"].fill_(math.nan)
    elif how == "wrong_buffer_shape":
        entry = next(iter(state["state"].values()))
        entry["momentum_buffer"] = entry["momentum_buffer"][..., :1].clone()
    elif how == "negative_lr":
        state["param_groups"][0]["lr"] = -0.1
    elif how == "unknown_momentum_mode":
        state["param_groups"][0]["grassmann_momentum"] = "nope"
    elif how == "extra_group":
        state["param_groups"].append(copy.deepcopy(state["param_groups"][0]))
    return state


@pytest.mark.parametrize(
    "how", ["nan_buffer", "wrong_buffer_shape", "negative_lr", "unknown_momentum_mode", "extra_group"]
)
def test_damaged_optimizer_state_is_refused_and_changes_nothing(how):
    gcr = head()
    opt = optimizer_for(gcr, "transport")
    good_step(gcr, opt)
    saved = opt.state_dict()
    good_step(gcr, opt, seed=2)
    before = state_snapshot(gcr, opt)
    with pytest.raises(CheckpointError, match="does not match RiemannianSGD"):
        opt.load_state_dict(_damage(saved, how))
    assert_same_snapshot(before, state_snapshot(gcr, opt))
    assert opt.param_groups[0]["lr"] == 0.1


# --- variable k and large float32 heads ------------------------------------------------------------------------------


@pytest.mark.parametrize("retraction", RETRACTIONS.names())
def test_padded_bases_stay_valid_after_huge_rank_deficient_steps(retraction):
    manifold = PaddedGrassmann((1, 3, 2), retraction=retraction)
    gcr = GrassmannHead(8, 3, (1, 3, 2), manifold=manifold, dtype=torch.float64, generator=generator(0))
    opt = optimizer_for(gcr, "transport", lr=1.0)
    grad = torch.zeros_like(gcr.bases)
    grad[:, :, 0] = 1e3 * torch.randn(3, 8, dtype=torch.float64, generator=generator(4))
    gcr.bases.grad = grad
    opt.step()
    assert bool(torch.isfinite(gcr.bases).all())
    assert manifold.check_point_on_manifold(gcr.bases.detach(), atol=1e-10)


@pytest.mark.parametrize(("mode", "retraction"), MODES, ids=MODE_IDS)
def test_large_float32_head_trains_one_step_on_the_manifold(mode, retraction):
    gcr = GrassmannHead(
        8192, 2, 64, dtype=torch.float32, generator=generator(0), manifold=Grassmann(retraction=retraction)
    )
    opt = optimizer_for(gcr, mode, lr=0.5)
    features = torch.randn(2, 8192, generator=generator(1))
    features[1] = 0.0  # a zero feature vector in the batch
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.functional.cross_entropy(gcr(features), torch.tensor([0, 1])).backward()
        opt.step()
    assert bool(torch.isfinite(gcr.bases).all())
    assert orthonormality_error(gcr.bases.detach()) <= ORTHONORMAL[torch.float32]
