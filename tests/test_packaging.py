"""What a user's installer sees: dependency bounds and the typing marker."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_torch_has_a_lower_bound_and_no_upper_bound():
    (torch,) = [Requirement(r) for r in PROJECT["project"]["dependencies"] if Requirement(r).name == "torch"]
    operators = {spec.operator for spec in torch.specifier}
    assert operators == {">="}, f"users keep the torch they have; got {torch}"


@pytest.mark.parametrize("package", ["manifolds", "grassmann_cls"])
def test_both_packages_ship_the_typing_marker(package):
    assert (ROOT / package / "py.typed").is_file()
    assert "py.typed" in PROJECT["tool"]["setuptools"]["package-data"][package]
