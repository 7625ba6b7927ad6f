"""The short CI version of ``benchmarks/drift.py``: 2,000 float32 steps stay orthonormal
(``tests/grassmann_cls/test_optim.py`` runs 10,000 steps for every retraction and momentum mode).

The full run (100,000 steps per row) is ``.venv/bin/python benchmarks/drift.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "drift.py"


def _load_drift():
    spec = importlib.util.spec_from_file_location("drift_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


drift = _load_drift()


@pytest.mark.parametrize("config", drift.CONFIGS, ids=[c.name for c in drift.CONFIGS])
def test_two_thousand_float32_steps_stay_within_the_drift_budget(config):
    result = drift.drift(config, steps=2000, check_every=50)
    assert result["max_error"] < drift.BUDGET
