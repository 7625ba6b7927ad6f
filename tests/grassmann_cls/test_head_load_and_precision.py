"""GrassmannHead under half-precision casts, its checked load_state_dict, and its repr."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grassmann_cls import GrassmannHead, RiemannianSGD
from grassmann_cls.errors import CheckpointError
from manifolds import Grassmann


def model(seed: int = 0, **head) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), GrassmannHead(16, 4, 3, **head))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("momentum", ["transport", "paper"])
def test_a_model_cast_to_half_precision_trains_and_keeps_orthonormal_bases(dtype, momentum):
    net = model().to(dtype)
    head = net[2]
    assert net[0].weight.dtype == dtype and head.bases.dtype == torch.float32
    opt = RiemannianSGD(net.parameters(), lr=0.1, momentum=0.9, grassmann_momentum=momentum)
    g = torch.Generator().manual_seed(1)
    start = head.bases.detach().clone()
    for _ in range(6):
        opt.zero_grad()
        x, y = torch.randn(8, 8, generator=g).to(dtype), torch.randint(0, 4, (8,), generator=g)
        loss = F.cross_entropy(net(x), y)
        assert math.isfinite(float(loss.detach()))
        loss.backward()
        opt.step()
    bases = head.bases.detach()
    assert not torch.equal(bases, start)
    torch.testing.assert_close(bases.mT @ bases, torch.eye(3).expand(4, 3, 3), atol=1e-5, rtol=0)


def test_half_cast_keeps_the_bases_a_manifold_parameter_and_full_casts_still_apply():
    head = model()[2]
    head.half()
    assert head.bases.dtype == torch.float32 and head.bases.manifold is head.manifold
    head.double()
    assert head.bases.dtype == torch.float64
    assert head(torch.randn(2, 16, dtype=torch.bfloat16)).dtype == torch.float64


def _stretched(state: dict, key: str) -> dict:
    state = {k: v.clone() for k, v in state.items()}
    state[key][0, :, 0] *= 1.5
    return state


def test_nested_load_state_dict_refuses_bases_off_the_manifold():
    net = model()
    state = _stretched(net.state_dict(), "2.bases")
    before = net[2].bases.detach().clone()
    with pytest.raises(CheckpointError, match=r"parameter 2\.bases is not on its manifold.*reproject_on_load"):
        net.load_state_dict(state)
    torch.testing.assert_close(net[2].bases.detach(), before, atol=0, rtol=0)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_load_state_dict_refuses_nonfinite_bases_even_when_reprojecting(value):
    head = model()[2]
    state = head.state_dict()
    state["bases"] = state["bases"].clone().index_fill(0, torch.tensor([1]), value)
    head.reproject_on_load = True
    with pytest.raises(CheckpointError, match=r"parameter bases holds NaN or Inf"):
        head.load_state_dict(state)


def test_reproject_on_load_repairs_bases_with_a_warning():
    source, target = model(0), model(1)
    state = _stretched(source.state_dict(), "2.bases")
    target[2].reproject_on_load = True
    with pytest.warns(RuntimeWarning, match=r"2\.bases was not on its manifold.*re-projected"):
        target.load_state_dict(state)
    bases = target[2].bases.detach()
    torch.testing.assert_close(bases.mT @ bases, torch.eye(3).expand(4, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(bases, source[2].bases.detach(), atol=1e-6, rtol=0)  # a stretched column keeps its QR


def test_load_state_dict_accepts_its_own_state_and_padded_bases():
    head = GrassmannHead(6, 3, (1, 3, 2), generator=torch.Generator().manual_seed(0))
    other = GrassmannHead(6, 3, (1, 3, 2), generator=torch.Generator().manual_seed(1))
    other.load_state_dict(head.state_dict())
    torch.testing.assert_close(other.bases, head.bases, atol=0, rtol=0)


def test_repr_shows_retraction_and_transport():
    head = GrassmannHead(8, 2, 2, manifold=Grassmann(retraction="exp", transport="projection"))
    assert "retraction=exp, transport=projection" in repr(head)
