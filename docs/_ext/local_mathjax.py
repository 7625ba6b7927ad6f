"""Serve MathJax 2 from the built site, copied from a local installation.

The docs must render formulas without internet access, so MathJax is never
loaded from a CDN. This extension looks for a local MathJax 2 (in this order):

1. the directory named by the environment variable ``GRASSMANN_MATHJAX_DIR``;
2. Debian's ``libjs-mathjax`` (``/usr/share/javascript/mathjax``);
3. the copy inside the PyPI package ``jupyter-server-mathjax``.

``scripts/install-mathjax.sh`` (run by ``make docs``) installs 2 or 3. The
files the pages need (a few MB, not the whole 50 MB distribution) are copied
to ``_static/mathjax/`` of the HTML output; ``conf.py`` points ``mathjax_path``
there (``mathjax/MathJax.js``, relative to ``_static``) and takes
``mathjax2_config`` from :func:`mathjax2_config`.
Without any local MathJax the build still succeeds and formulas show as TeX.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

DEBIAN_DIR = Path("/usr/share/javascript/mathjax")
TARGET = "mathjax"  # below _static/


@dataclass(frozen=True)
class MathJaxSource:
    """A local MathJax 2 tree and the parts of it the pages load."""

    root: Path
    combined_config: str  # a file in config/, e.g. "TeX-AMS_CHTML.js"
    parts: tuple[str, ...]  # files or directories below root to copy

    @property
    def stamp(self) -> str:
        return f"{self.root}|{self.combined_config}|{','.join(self.parts)}\n"


_COMMON = ("MathJax.js", "extensions", "jax/input/TeX", "jax/element", "localization/en")
_CHTML = MathJaxSource(
    Path(),
    "TeX-AMS_CHTML.js",
    _COMMON + ("config/TeX-AMS_CHTML.js", "jax/output/CommonHTML", "fonts/HTML-CSS/TeX/woff"),
)
# jupyter-server-mathjax ships only the HTML-CSS output with STIX-Web fonts.
_HTML_CSS = MathJaxSource(
    Path(),
    "TeX-AMS-MML_HTMLorMML-full.js",
    _COMMON
    + (
        "config/TeX-AMS-MML_HTMLorMML-full.js",
        "jax/output/HTML-CSS",
        "jax/output/NativeMML",
        "fonts/HTML-CSS/STIX-Web/woff",
    ),
)


def _layout(root: Path) -> MathJaxSource | None:
    """The source description for a MathJax 2 tree at ``root``, if it is one."""
    if not (root / "MathJax.js").is_file():
        return None
    for layout in (_CHTML, _HTML_CSS):
        if (root / "config" / layout.combined_config).is_file():
            parts = tuple(p for p in layout.parts if (root / p).exists())
            return MathJaxSource(root, layout.combined_config, parts)
    return None


def _candidates() -> list[Path]:
    roots = []
    if os.environ.get("GRASSMANN_MATHJAX_DIR"):
        roots.append(Path(os.environ["GRASSMANN_MATHJAX_DIR"]))
    roots.append(DEBIAN_DIR)
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    if spec is not None and spec.submodule_search_locations:
        roots.extend(Path(p) / "static" for p in spec.submodule_search_locations)
    return roots


def find_mathjax() -> MathJaxSource | None:
    """The first usable local MathJax 2 installation, or ``None``."""
    for root in _candidates():
        source = _layout(root)
        if source is not None:
            return source
    return None


def mathjax2_config(source: MathJaxSource | None) -> dict:
    """The ``mathjax2_config`` for pages served with ``source``."""
    # Note [MathJax 2 configuration]
    # Sphinx refuses query strings in local asset paths, so the combined
    # configuration is named in the in-page config's ``config`` array, which
    # MathJax 2 loads after the text/x-mathjax-config blocks. Only the
    # \( \) and \[ \] delimiters Sphinx writes are processed ($ is not).
    return {
        "config": [source.combined_config if source else _CHTML.combined_config],
        "tex2jax": {
            "inlineMath": [["\\(", "\\)"]],
            "displayMath": [["\\[", "\\]"]],
            "processEscapes": False,
            "processEnvironments": False,
        },
        "messageStyle": "none",
    }


def _copy(app) -> None:
    if app.builder.format != "html":
        return
    source = find_mathjax()
    if source is None:
        logger.info(
            "local_mathjax: no local MathJax found (run scripts/install-mathjax.sh); formulas will show as TeX source"
        )
        return
    target = Path(app.outdir) / "_static" / TARGET
    stamp = target / ".source"
    if stamp.is_file() and stamp.read_text() == source.stamp:
        return
    shutil.rmtree(target, ignore_errors=True)
    for part in source.parts:
        src, dst = source.root / part, target / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    stamp.write_text(source.stamp)
    logger.info(f"local_mathjax: copied MathJax from {source.root}")


def setup(app):
    app.connect("builder-inited", _copy)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
