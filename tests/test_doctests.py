"""Every ``>>>`` example runs: in the docstrings of both packages and in the docs.

Docstring examples are collected per module with :class:`doctest.DocTestFinder`,
so a new module is covered as soon as it exists. Examples in the Markdown pages
of ``docs/`` (``>>>`` lines inside code fences, ended by a blank line) run the
same way.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

PACKAGES = ("manifolds", "grassmann_cls")
DOCS = Path(__file__).resolve().parents[1] / "docs"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names() -> list[str]:
    names = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        names += [info.name for info in pkgutil.walk_packages(package.__path__, package_name + ".")]
    return sorted(names)


def _doc_pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)


def _run(tests: list[doctest.DocTest]) -> tuple[int, str]:
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    return runner.failures, "".join(report)


@pytest.mark.parametrize("module_name", _module_names())
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, module_name)
    failures, report = _run(tests)
    assert failures == 0, report


@pytest.mark.parametrize("page", _doc_pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_docs_page_examples_run(page):
    text = page.read_text(encoding="utf-8")
    test = doctest.DocTestParser().get_doctest(text, {}, page.name, str(page), 0)
    failures, report = _run([test])
    assert failures == 0, report
