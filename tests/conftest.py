"""Shared fixtures: dtypes, one tolerance helper, hypothesis profiles.

The hypothesis profile is chosen by ``GRASSMANN_HYPOTHESIS_PROFILE``
(``dev`` by default; ``.ci/run`` sets ``ci``: derandomized, no deadline).
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("GRASSMANN_HYPOTHESIS_PROFILE", "dev"))

torch.set_num_threads(min(2, torch.get_num_threads()))

DTYPES = (torch.float32, torch.float64)


@pytest.fixture(scope="session", params=DTYPES, ids=["float32", "float64"])
def dtype(request) -> torch.dtype:
    """Each test using it runs in float32 and float64.

    Session-scoped so that hypothesis ``@given`` tests can use it (hypothesis
    rejects function-scoped fixtures, which are not reset between examples).
    """
    return request.param


def tolerance(dtype: torch.dtype, size: int = 1, factor: float = 10.0) -> float:
    """Absolute tolerance ``factor * size * eps(dtype)``; the one helper all tests use."""
    return factor * max(size, 1) * torch.finfo(dtype).eps


@pytest.fixture
def tol():
    """The :func:`tolerance` helper as a fixture."""
    return tolerance


def generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (tests never touch the global RNG)."""
    return torch.Generator(device=device).manual_seed(int(seed))
