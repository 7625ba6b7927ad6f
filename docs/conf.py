"""Sphinx configuration of the grassmann-cls documentation.

Build with ``make docs`` (``sphinx-build -W``: every warning is an error).
Formulas are rendered by a local MathJax 2 copied into the site, never a CDN
(``_ext/local_mathjax.py``; ``scripts/install-mathjax.sh`` installs it).
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))  # the packages, also without `pip install -e`

from local_mathjax import TARGET, find_mathjax  # noqa: E402
from local_mathjax import mathjax2_config as _mathjax2_config  # noqa: E402

# -- project -------------------------------------------------------------------
project = "grassmann-cls"
author = "the grassmann-cls developers"
copyright = "2026, " + author
try:
    release = metadata.version("grassmann-cls")
except metadata.PackageNotFoundError:
    release = "0.1.0"
version = ".".join(release.split(".")[:2])

# -- extensions ------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "myst_parser",
    # local, in _ext/
    "local_mathjax",
    "registry_doc",
    "public_api",
    "numpydoc_attributes",
    "viewcode_anchors",
    "image_captions",
    "cli_help",
    "optional_include",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# _static/ holds files that pages include or link (e.g. the committed demo
# report, _static/demo/report.md), never pages of its own.
exclude_patterns = ["_build", "_static", "Thumbs.db", ".DS_Store"]
templates_path = []

# -- autodoc and napoleon (NumPy style) ----------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_class_signature = "mixed"
# An override without a docstring (e.g. nn.Module.extra_repr) is not listed
# with its base class's text.
autodoc_inherit_docstrings = False
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True
add_module_names = False

# -- MyST ------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
# MathJax is configured in full below (MathJax 2 syntax); MyST must not add
# its MathJax 3 options.
myst_update_mathjax = False

# -- math: local MathJax 2, never a CDN -------------------------------------------
# find_mathjax() looks in $GRASSMANN_MATHJAX_DIR, Debian's libjs-mathjax and
# the PyPI package jupyter-server-mathjax; local_mathjax copies the needed files
# to _static/mathjax/ at build time. A relative mathjax_path is relative to
# _static/.
mathjax_path = f"{TARGET}/MathJax.js"
mathjax2_config = _mathjax2_config(find_mathjax())

# -- doctest (sphinx -b doctest) ---------------------------------------------------
doctest_global_setup = "import torch\ntorch.manual_seed(0)"

# -- HTML --------------------------------------------------------------------------
html_theme = "furo"
html_title = f"grassmann-cls {release}"
html_show_sourcelink = False
html_theme_options = {"navigation_with_keys": True}
html_static_path = ["_static/css", "_static/js"]
html_css_files = ["custom.css"]
html_js_files = ["wrap-names.js"]


def _repository_url() -> str | None:
    """The ``Repository`` (or ``Source``) URL of the package metadata, if it has one."""
    try:
        entries = metadata.metadata("grassmann-cls").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        return None
    urls = dict((label.strip().lower(), url.strip()) for label, _, url in (e.partition(",") for e in entries))
    return urls.get("repository") or urls.get("source")


# The repository link (header icon, "view source" button) appears once
# pyproject.toml's [project.urls] names a Repository.
if _repository_url():
    html_theme_options.update(source_repository=_repository_url(), source_branch="main", source_directory="docs/")
