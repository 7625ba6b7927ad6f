"""RiemannianSGD's re-orthonormalisation options: the GCR reference's unsigned QR and step count."""

from __future__ import annotations

import geoopt
import pytest
import torch

from grassmann_cls import RiemannianSGD
from grassmann_cls.errors import GrassmannError
from manifolds import Grassmann, PaddedGrassmann
from tests.conftest import generator

C, N, K = 3, 10, 4
LR, MOMENTUM = 0.05, 0.9


def covariances():
    a = torch.randn(C, N, N, dtype=torch.float64, generator=generator(11))
    return a @ a.mT / N


def ky_fan_gradient(s, a):
    """Euclidean gradient of ``-tr(S^T A S)``; it turns with the basis: ``D(SQ) = D(S) Q``."""
    return -2 * a @ s


def reference_steps(start, a, steps, every=5):
    """A float64 re-derivation of the reference's paper step (momentum on the raw gradient, exp map, unsigned QR).

    The reference keeps one count from 0 and re-orthonormalises with
    ``torch.linalg.qr(S).Q`` after the step whose count is a multiple of ``every``.
    """
    s, buf, out = start.clone(), None, []
    for count in range(steps):
        d = ky_fan_gradient(s, a)
        buf = d.clone() if buf is None else buf.mul(MOMENTUM).add(d)
        g = buf - s @ (s.mT @ buf)
        u, sigma, vt = torch.linalg.svd(g, full_matrices=False)
        s = (s @ vt.mT * torch.cos(-LR * sigma)[..., None, :] + u * torch.sin(-LR * sigma)[..., None, :]) @ vt
        if count % every == 0:
            s = torch.linalg.qr(s).Q
        out.append(s)
    return out


def our_steps(start, a, steps, **options):
    manifold = Grassmann(retraction="exp")
    bases = geoopt.ManifoldParameter(manifold.random(C, N, K, dtype=torch.float64), manifold=manifold)
    with torch.no_grad():
        bases.copy_(start)
    opt = RiemannianSGD.paper_recipe([bases], lr=LR, momentum=MOMENTUM, **options)
    out = []
    for _ in range(steps):
        bases.grad = ky_fan_gradient(bases.detach(), a)
        opt.step()
        out.append(bases.detach().clone())
    return out


def start_basis():
    return Grassmann().random(C, N, K, dtype=torch.float64, generator=generator(12)).detach()


def test_unsigned_qr_from_count_zero_matches_the_reference_step_as_matrices():
    a, start = covariances(), start_basis()
    expected = reference_steps(start, a, 23)
    got = our_steps(start, a, 23, reorth_qr="unsigned", reorth_count_from=0)
    for step, (x, y) in enumerate(zip(got, expected)):
        assert float((x - y).abs().max()) < 1e-11, step


def test_the_default_sign_fixed_recipe_leaves_the_reference_trajectory():
    a, start = covariances(), start_basis()
    expected = reference_steps(start, a, 23)
    got = our_steps(start, a, 23)
    difference = float((got[-1] @ got[-1].mT - expected[-1] @ expected[-1].mT).abs().max())
    assert difference > 1e-6


def test_reorth_count_from_zero_re_orthonormalises_at_the_first_step():
    a, start = covariances(), start_basis()
    unsigned_first = our_steps(start, a, 1, reorth_qr="unsigned", reorth_count_from=0)[0]
    unsigned_fifth = our_steps(start, a, 1, reorth_qr="unsigned")[0]
    assert torch.equal(unsigned_first, torch.linalg.qr(unsigned_fifth).Q)


def test_unsigned_projx_is_torch_householder_qr_and_keeps_the_subspace():
    x = Grassmann().random(C, N, K, dtype=torch.float64, generator=generator(13)).detach().clone()
    expected = torch.linalg.qr(x).Q
    Grassmann().projx_(x, qr="unsigned")
    assert torch.equal(x, expected)
    signs = torch.sign((x * Grassmann().random(C, N, K, dtype=torch.float64, generator=generator(13))).sum(-2))
    assert bool((signs.abs() == 1).all())


@pytest.mark.parametrize(
    "options, message", [({"reorth_qr": "householder"}, "reorth_qr"), ({"reorth_count_from": -1}, "reorth_count_from")]
)
def test_bad_reorth_options_are_refused_by_name(options, message):
    manifold = Grassmann()
    bases = geoopt.ManifoldParameter(manifold.random(N, K), manifold=manifold)
    with pytest.raises(GrassmannError, match=message):
        RiemannianSGD([bases], lr=0.1, **options)


def test_a_manifold_without_an_unsigned_qr_is_refused_at_construction():
    manifold = PaddedGrassmann((2, 3))
    bases = geoopt.ManifoldParameter(manifold.random(2, N, 3, dtype=torch.float64), manifold=manifold)
    with pytest.raises(GrassmannError, match="qr='sign_fixed' only"):
        RiemannianSGD([bases], lr=0.1, momentum=0.9, grassmann_momentum="paper", reorth_qr="unsigned")
