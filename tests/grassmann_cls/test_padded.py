"""PaddedGrassmann: every operation equals Gr(n, k_c) applied class by class."""

from __future__ import annotations

import pytest
import torch

from grassmann_cls import PaddedGrassmann
from grassmann_cls.errors import ShapeError
from manifolds import RETRACTIONS, TRANSPORTS, Grassmann
from tests.conftest import generator, tolerance

DIMS = (1, 3, 2, 3)
N = 7


def padded_pair(seed=0, scale=0.5, retraction="qr", transport="projection"):
    manifold = PaddedGrassmann(DIMS, retraction=retraction, transport=transport)
    x = manifold.random(len(DIMS), N, max(DIMS), dtype=torch.float64, generator=generator(seed))
    u = scale * manifold.random_tangent(x, generator=generator(seed + 1))
    return manifold, x, u


def per_class(fn, *tensors):
    """``fn`` on each class's active columns with the plain Grassmann geometry."""
    return [fn(*(t[c, :, :k] for t in tensors)) for c, k in enumerate(DIMS)]


def assert_matches(padded, expected):
    for c, k in enumerate(DIMS):
        torch.testing.assert_close(padded[c, :, :k], expected[c], atol=tolerance(torch.float64, 1000), rtol=0)
        assert torch.count_nonzero(padded[c, :, k:]) == 0


@pytest.mark.parametrize("retraction", RETRACTIONS.names())
def test_retraction_acts_class_by_class(retraction):
    manifold, x, u = padded_pair(retraction=retraction)
    plain = Grassmann(retraction=retraction)
    assert_matches(manifold.retr(x, u), per_class(plain.retr, x, u))


@pytest.mark.parametrize("transport", TRANSPORTS.names())
def test_retraction_and_transport_act_class_by_class(transport):
    manifold, x, u = padded_pair(transport=transport)
    plain = Grassmann(transport=transport)
    y, w = manifold.retr_transp(x, u, u)
    assert_matches(y, per_class(plain.retr, x, u))
    assert_matches(w, per_class(lambda a, b: plain.retr_transp(a, b, b)[1], x, u))


def test_in_place_retraction_and_transport_match_out_of_place():
    manifold, x, u = padded_pair()
    y, w = manifold.retr_transp(x, -0.3 * u, u)
    x2, v2 = x.clone(), u.clone()
    manifold.retr_transp_(x2, v2, v2, alpha=-0.3)
    torch.testing.assert_close(x2, y)
    torch.testing.assert_close(v2, w)


def test_exp_log_and_distance_act_class_by_class():
    manifold, x, u = padded_pair(scale=0.1)  # inside the injectivity radius
    plain = Grassmann()
    y = manifold.expmap(x, u)
    assert_matches(y, per_class(plain.expmap, x, u))
    assert_matches(manifold.logmap(x, y), per_class(plain.logmap, x, y))
    expected = torch.stack([d for d in per_class(plain.dist, x, y)])
    torch.testing.assert_close(manifold.dist(x, y), expected)
    torch.testing.assert_close(manifold.dist(x, y), manifold.norm(x, u))


def test_projections_zero_the_padding_and_keep_active_columns():
    manifold, x, _ = padded_pair()
    noise = torch.randn(x.shape, dtype=torch.float64, generator=generator(5))
    assert_matches(manifold.proju(x, noise), per_class(Grassmann().proju, x, noise))
    assert_matches(manifold.projx(x + 0.1 * noise), per_class(Grassmann().projx, x + 0.1 * noise))
    ok, reason = manifold.check_point_on_manifold(manifold.projx(x + 0.1 * noise), explain=True)
    assert ok, reason
    assert not manifold.check_point_on_manifold(x + 0.1 * noise)


def test_points_keep_row_storage():
    manifold, x, u = padded_pair()
    for result in (x, manifold.retr(x, u), manifold.expmap(x, u), manifold.proju(x, u), manifold.projx(x)):
        assert result.mT.is_contiguous()


def test_rejects_shapes_that_do_not_match_the_dimensions():
    manifold = PaddedGrassmann(DIMS)
    with pytest.raises(ShapeError, match=r"C=4, k_max=3; got \(4, 7, 2\)"):
        manifold.random(4, 7, 2)
