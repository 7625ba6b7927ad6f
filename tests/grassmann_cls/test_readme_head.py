"""The README's "A GCR head in your model" example runs and learns."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## A GCR head in your model", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_head_example_trains_digits_to_high_accuracy(capsys):
    namespace: dict = {}
    with torch.random.fork_rng():
        exec(compile(readme_example(), str(README), "exec"), namespace)
    assert float(namespace["accuracy"]) > 0.9
    assert "test accuracy" in capsys.readouterr().out
