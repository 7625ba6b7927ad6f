"""manifolds.landing: the landing field against its n x n definition, the safe step's guarantee, Grassmann's opt-in."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from manifolds import Grassmann, PaddedGrassmann
from manifolds.errors import OptionError
from manifolds.landing import landing_field, safe_step_size
from tests.conftest import generator
from tests.manifolds.strategies import point, seeds


def _near_basis(seed, n=9, k=3, batch=(4,), spread=0.05):
    gen = generator(seed)
    x = point(batch, n, k, torch.float64, gen)
    return x + spread * torch.randn(x.shape, dtype=torch.float64, generator=gen), gen


@given(seed=seeds, attraction=st.floats(0.1, 5.0))
def test_landing_field_is_psi_s_plus_the_normal_term_with_the_n_by_n_psi(seed, attraction):
    s, gen = _near_basis(seed)
    d = torch.randn(s.shape, dtype=torch.float64, generator=gen)
    field, distance = landing_field(s, d, attraction)
    psi = d @ s.mT - s @ d.mT
    error = s.mT @ s - torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(field, psi @ s + attraction * s @ error, atol=1e-12, rtol=0)
    torch.testing.assert_close(distance, torch.linalg.matrix_norm(error), atol=1e-14, rtol=0)


@given(seed=seeds, attraction=st.floats(0.1, 5.0), bound=st.floats(0.05, 0.9), scale=st.floats(0.01, 100.0))
def test_a_safe_step_from_within_the_bound_stays_within_it(seed, attraction, bound, scale):
    s, gen = _near_basis(seed, spread=0.0)
    s = s + (bound / 4) * torch.randn(s.shape, dtype=torch.float64, generator=gen) / s.shape[-2] ** 0.5
    d = scale * torch.randn(s.shape, dtype=torch.float64, generator=gen)
    field, distance = landing_field(s, d, attraction)
    step = safe_step_size(distance, field, attraction, bound)
    moved = s - step[..., None, None] * field
    after = torch.linalg.matrix_norm(moved.mT @ moved - torch.eye(3, dtype=torch.float64))
    assert bool((after <= torch.maximum(distance, torch.full_like(distance, bound)) + 1e-12).all())


def test_grassmann_takes_landing_steps_and_padded_grassmann_refuses_them():
    Grassmann().check_landing()
    with pytest.raises(OptionError, match="PaddedGrassmann cannot take landing steps"):
        PaddedGrassmann((1, 2)).check_landing()


def test_landing_step_without_momentum_returns_no_buffer_and_keeps_dtype_and_layout():
    s, gen = _near_basis(0, spread=0.0)
    s = s.mT.contiguous().mT
    grad = torch.randn(s.shape, dtype=torch.float64, generator=gen)
    assert Grassmann().landing_step_(s, grad, None, lr=0.1, momentum=0.0) is None
    assert s.dtype == torch.float64 and s.mT.is_contiguous()
