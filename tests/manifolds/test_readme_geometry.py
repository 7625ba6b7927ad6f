"""The README's "Geometry with geoopt" example runs and finds the eigenspace."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## Geometry with geoopt", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_geometry_example_finds_the_top_eigenspace(capsys):
    namespace: dict = {}
    with torch.random.fork_rng():
        exec(compile(readme_example(), str(README), "exec"), namespace)
    assert float(namespace["angles"].max()) < 1e-12
    assert "tensor" in capsys.readouterr().out
