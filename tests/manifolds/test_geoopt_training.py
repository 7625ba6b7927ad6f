"""A ``geoopt.ManifoldParameter`` on ``Grassmann`` trains under geoopt's optimizers.

The problem has a known answer: minimising ``-tr(x^T A x)`` over the
Grassmannian finds the span of the top-``k`` eigenvectors of the symmetric
``A`` (Ky Fan). ``A`` is built with a spectral gap of 1 after the ``k``-th
eigenvalue, so gradient descent contracts quickly and the final principal
angles to the true eigenspace measure whether the optimizer, the retraction
and the transport work together.
"""

from __future__ import annotations

import geoopt
import pytest
import torch

from manifolds import RETRACTIONS, TRANSPORTS, Grassmann, principal_angles
from tests.conftest import generator, tolerance

N, K = 8, 2
# Largest principal angle to the true eigenspace accepted after training
# (both optimizers reach rounding level, ~2e-7 and ~1e-15, well before).
CONVERGED = {torch.float32: 1e-5, torch.float64: 1e-7}


def _problem(dtype):
    """Symmetric ``A`` with eigenvalues 3, 2.5 | 1.5, ..., 0 and its top-K eigenvectors."""
    gen = generator(0)
    eigenvectors = torch.linalg.qr(torch.randn(N, N, dtype=torch.float64, generator=gen)).Q
    eigenvalues = torch.cat([torch.tensor([3.0, 2.5]), torch.linspace(1.5, 0.0, N - K)]).double()
    a = (eigenvectors * eigenvalues) @ eigenvectors.T
    return a.to(dtype), eigenvectors[:, :K].to(dtype)


def _train(manifold, make_optimizer, dtype, steps):
    a, top = _problem(dtype)
    start = manifold.random(N, K, dtype=dtype, generator=generator(1))
    x = geoopt.ManifoldParameter(start, manifold=manifold)
    optimizer = make_optimizer([x])
    for _ in range(steps):
        optimizer.zero_grad()
        loss = -torch.trace(x.mT @ a @ x)
        loss.backward()
        optimizer.step()
    return x.detach(), top


@pytest.mark.parametrize("transport", TRANSPORTS.names())
@pytest.mark.parametrize("retraction", RETRACTIONS.names())
def test_riemannian_sgd_with_momentum_finds_the_top_eigenspace(retraction, transport, dtype):
    manifold = Grassmann(retraction=retraction, transport=transport)
    x, top = _train(manifold, lambda params: geoopt.optim.RiemannianSGD(params, lr=0.1, momentum=0.5), dtype, 100)
    assert manifold.check_point_on_manifold(x, atol=tolerance(dtype, N, 100))
    assert principal_angles(x, top).max() < CONVERGED[dtype]


@pytest.mark.parametrize("retraction", RETRACTIONS.names())
def test_riemannian_adam_finds_the_top_eigenspace(retraction, dtype):
    manifold = Grassmann(retraction=retraction)
    x, top = _train(manifold, lambda params: geoopt.optim.RiemannianAdam(params, lr=0.05), dtype, 400)
    assert manifold.check_point_on_manifold(x, atol=tolerance(dtype, N, 100))
    assert principal_angles(x, top).max() < CONVERGED[dtype]


def test_riemannian_sgd_with_stabilize_and_nesterov_finds_the_top_eigenspace():
    manifold = Grassmann(transport="parallel")
    x, top = _train(
        manifold,
        lambda params: geoopt.optim.RiemannianSGD(params, lr=0.1, momentum=0.5, nesterov=True, stabilize=10),
        torch.float64,
        100,
    )
    assert principal_angles(x, top).max() < CONVERGED[torch.float64]
