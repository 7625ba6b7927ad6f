"""The Sphinx site builds with ``-W`` in under two minutes and documents every public name.

One build per session (``built_docs``) into a temporary folder, exactly as
``make docs`` runs it; the tests then read the HTML.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")
pytest.importorskip("furo")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))

from local_mathjax import find_mathjax  # noqa: E402
from public_api import canonical_name, public_names  # noqa: E402  (docs/_ext, on the path above)

PACKAGES = ("manifolds", "grassmann_cls")
BUILD_LIMIT_S = 120

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def built_docs(tmp_path_factory) -> Path:
    """The HTML output of one ``sphinx-build -W`` run."""
    out = tmp_path_factory.mktemp("docs")
    command = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-q",
        "-b",
        "html",
        "-d",
        str(out / "doctrees"),
        str(DOCS),
        str(out / "html"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=BUILD_LIMIT_S)
    elapsed = time.monotonic() - start
    assert result.returncode == 0, f"sphinx-build -W failed:\n{result.stderr}\n{result.stdout}"
    assert elapsed < BUILD_LIMIT_S, f"docs took {elapsed:.0f} s to build; the limit is {BUILD_LIMIT_S} s"
    return out / "html"


def _html(built: Path, page: str) -> str:
    path = built / page
    assert path.is_file(), f"{page} was not built"
    return path.read_text(encoding="utf-8")


def _ids(html: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', html))


def test_index_page_links_the_guide_and_both_api_pages(built_docs):
    html = _html(built_docs, "index.html")
    for page in ("getting-started", "concepts", "geometry", "optimizers", "results", "cli", "api/index", "citing"):
        assert f'href="{page}.html' in html, f"index.html does not link {page}"
    for package in PACKAGES:
        assert f"api/{package}.html" in html


def _anchor(obj, path: str) -> str:
    """The HTML id of a public name's entry: ``module-<name>`` for modules."""
    return f"module-{obj.__name__}" if inspect.ismodule(obj) else path


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_module_has_a_page_that_starts_with_its_summary(built_docs, package):
    from public_api import public_modules, summary

    for module in public_modules(importlib.import_module(package)):
        plain = re.sub(r":[\w:]+:`(?:[^`<]*<)?~?([^`>]*)>?`", r"\1", summary(module))  # roles: their text
        words = re.findall(r"[A-Za-z]{4,}", plain)[:4]
        assert words, f"{module.__name__} has no docstring: its page would open without a summary"
        html = _html(built_docs, f"api/{module.__name__}.html")
        assert f'id="module-{module.__name__}"' in html, f"api/{module.__name__}.html has no module anchor"
        opening = re.sub(r"<[^>]+>", "", html[html.index("<article") :].split('<dl class="py')[0])
        missing = [word for word in words if word not in opening]
        assert not missing, f"api/{module.__name__}.html does not open with its summary (lacks {missing})"


@pytest.mark.parametrize("package", PACKAGES)
def test_api_pages_have_an_anchor_for_every_public_name(built_docs, package):
    names = public_names(package)
    assert names, f"{package} has no public names"
    ids = set()
    for page in (built_docs / "api").glob(f"{package}*.html"):
        ids |= _ids(page.read_text(encoding="utf-8"))
    missing = [public.path for public in names if _anchor(public.obj, public.path) not in ids]
    assert not missing, f"the api/{package}*.html pages lack entries for {missing}"


def test_no_api_page_is_larger_than_a_topic(built_docs):
    sizes = {p.name: p.stat().st_size for p in (built_docs / "api").glob("*.html")}
    large = {name: size for name, size in sizes.items() if size > 250_000}
    assert not large, f"API pages over 250 kB (split the module): {large}"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_top_level_name_is_in_the_general_index(built_docs, package):
    html = _html(built_docs, "genindex.html")
    module = importlib.import_module(package)
    absent = []
    for name in module.__all__:
        obj = getattr(module, name)
        target = _anchor(obj, canonical_name(obj, name) or f"{package}.{name}")
        if f'#{target}"' not in html:
            absent.append(name)
    assert not absent, f"genindex.html lacks {absent}"


@pytest.mark.parametrize("registry", ["RETRACTIONS", "TRANSPORTS", "DISTANCES"])
def test_geometry_page_lists_every_registry_entry(built_docs, registry):
    import manifolds

    entries = getattr(manifolds, registry)
    ids = _ids(_html(built_docs, "geometry.html"))
    missing = [name for name in entries.names() if f"{entries.kind}-{name}".replace("_", "-") not in ids]
    assert not missing, f"geometry.html lacks sections for {missing}"


def test_math_is_served_by_the_site_itself(built_docs):
    html = _html(built_docs, "geometry.html")
    scripts = re.findall(r'<script[^>]*src="([^"]*MathJax[^"]*)"', html)
    assert scripts, "geometry.html loads no MathJax"
    assert all("://" not in src for src in scripts), f"MathJax loaded from the network: {scripts}"
    if find_mathjax() is None:
        pytest.skip("no local MathJax installed (scripts/install-mathjax.sh); formulas show as TeX")
    assert (built_docs / "_static" / "mathjax" / "MathJax.js").is_file()


def test_cli_page_has_a_section_per_subcommand(built_docs):
    cli = pytest.importorskip("grassmann_cls.cli")
    from cli_help import build_parser, subcommands

    html = _html(built_docs, "cli.html")
    parser = build_parser(cli)
    assert parser is not None
    missing = [name for name, _ in subcommands(parser) if f'id="cli-{name}"' not in html]
    assert not missing, f"cli.html lacks {missing}"


class _Links(HTMLParser):
    """The ids and the link targets (``href``) of one HTML page."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attributes.get(key):
                self.ids.add(attributes[key])
        if tag in ("a", "link") and attributes.get("href"):
            self.hrefs.append(attributes["href"])


def _parse(path: Path) -> _Links:
    links = _Links()
    links.feed(path.read_text(encoding="utf-8"))
    return links


def _reader_pages(built: Path) -> list[Path]:
    """Every HTML page a reader sees, the highlighted sources (``_modules/``) included."""
    return sorted(p for p in built.rglob("*.html") if "_static" not in p.relative_to(built).parts)


def test_every_internal_link_and_anchor_resolves(built_docs):
    parsed: dict[Path, _Links] = {}

    def links(path: Path) -> _Links:
        if path not in parsed:
            parsed[path] = _parse(path)
        return parsed[path]

    broken = []
    for page in _reader_pages(built_docs):
        for href in links(page).hrefs:
            if urlsplit(href).scheme or href.startswith("//"):
                continue  # outbound: not checked offline
            parts = urlsplit(href)
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(built_docs)}: {href} (no such file)")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in links(target).ids:
                broken.append(f"{page.relative_to(built_docs)}: {href} (no such anchor)")
    assert not broken, f"{len(broken)} broken links:\n" + "\n".join(broken[:40])


def test_no_page_shows_a_maintainer_note(built_docs):
    """``# Note [...]`` comments explain code to maintainers; readers never see them (source pages aside)."""
    shown = []
    for page in _reader_pages(built_docs):
        if "_modules" in page.relative_to(built_docs).parts:
            continue
        text = re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))
        if "Note [" in text:
            shown.append(str(page.relative_to(built_docs)))
    assert not shown, f"maintainer notes shown on {shown}"


def test_cli_page_has_an_example_and_an_anchor_per_option(built_docs):
    cli = pytest.importorskip("grassmann_cls.cli")
    from cli_help import build_parser, subcommands

    html = _html(built_docs, "cli.html")
    ids = _ids(html)
    missing = []
    for name, sub in subcommands(build_parser(cli)):
        if name not in getattr(cli, "EXAMPLES", {}):
            missing.append(f"an example of {name}")
        for action in sub._actions:
            if action.help == argparse.SUPPRESS:
                continue
            flags = [f for f in action.option_strings if f.startswith("--") and f != "--help"]
            if flags and f"cmdoption-grassmann-cls-{name}-{flags[0].lstrip('-')}" not in ids:
                missing.append(f"{name} {flags[0]}")
    assert not missing, f"cli.html lacks {missing}"


def test_every_figure_has_a_caption(built_docs):
    bare = []
    for page in _reader_pages(built_docs):
        html = page.read_text(encoding="utf-8")
        for match in re.finditer(r'<img [^>]*src="[^"]*_images/[^>]*>', html):
            before = html[: match.start()]
            if before.rfind("<figure") <= before.rfind("</figure>"):
                bare.append(f"{page.relative_to(built_docs)}: {match.group(0)[:80]}")
    assert not bare, "images without a figure caption:\n" + "\n".join(bare)
