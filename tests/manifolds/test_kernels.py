"""Every chunked kernel computes the map of the registry entry it serves (float64, tight tolerance)."""

from __future__ import annotations

import pytest
import torch

from manifolds import MOMENTUM_STYLES, RETRACTIONS, Grassmann, InPlaceManifold
from tests.conftest import generator, tolerance
from tests.manifolds.strategies import as_rows, point, tangent

C, N, K = 5, 11, 3


class GenericGrassmann(Grassmann):
    """``Grassmann`` stepped by the generic in-place methods: the registry entries, called and copied."""

    retr_ = InPlaceManifold.retr_
    retr_transp_ = InPlaceManifold.retr_transp_
    projx_ = InPlaceManifold.projx_
    momentum_step_ = InPlaceManifold.momentum_step_


def _inputs(seed=0):
    gen = generator(seed)
    x = as_rows(point((C,), N, K, torch.float64, gen))
    u = as_rows(tangent(x, gen, spectral_norm=0.8))
    grad = as_rows(torch.randn(x.shape, dtype=torch.float64, generator=gen))
    return x, u, grad


def _close(a, b):
    torch.testing.assert_close(a, b, atol=tolerance(torch.float64, N, factor=100), rtol=0)


@pytest.mark.parametrize("style", [*MOMENTUM_STYLES, "retr_", "retr_transp_", "projx_"])
@pytest.mark.parametrize("name", RETRACTIONS.names())
def test_each_kernel_computes_the_map_of_its_registry_entry(name, style):
    x, u, grad = _inputs()
    kernel, entry = Grassmann(name), GenericGrassmann(name)
    if style == "retr_":
        _close(kernel.retr_(x.clone(), u, alpha=-0.7), entry.retr(x, -0.7 * u))
    elif style == "retr_transp_":
        y, w = kernel.retr_transp_(x.clone(), u, u.clone(), alpha=-0.7)
        expected_y, expected_w = entry.retr_transp(x, -0.7 * u, u)
        _close(y, expected_y)
        _close(w, expected_w)
    elif style == "projx_":
        z = x + 0.3 * u
        _close(kernel.projx_(z.clone()), entry.projx(z))
    else:
        states = []
        for manifold in (kernel, entry):
            p, buf = x.clone(), None
            for step in range(4):
                buf = manifold.momentum_step_(
                    p, grad * (1 + step), buf, lr=0.3, momentum=0.9, style=style, reorthonormalize=step == 2
                )
            states.append(p)
        _close(*states)
