"""The ``registry`` directive: one table row and one section per registry entry.

Usage (reStructuredText)::

    .. registry:: manifolds.RETRACTIONS

It imports the registry, and for every name in ``names()`` (so a newly
registered entry appears without touching the docs) it shows the formula, the
cost and the reference from ``registry_notes.NOTES``, the entry's docstring,
and an order of agreement *measured at build time* in float64:

* retraction ``R``: :math:`\\|R(x, tu) - \\exp_x(tu)\\| = O(t^{p+1})`, both for
  the bases as matrices and for the subspaces (geodesic distance);
* transport ``T`` along :math:`y = \\exp_x(tu)`: distance to parallel transport;
* distance ``d``: :math:`|d(x, \\exp_x(tu)) - t\\|u\\||`.

The order ``p`` is the log-log slope between ``t = 10^{-1.5}`` and
``t = 10^{-2.5}`` minus one, the diagnostic of pymanopt's ``check_retraction``
and Manopt's ``checkretraction``.
"""

from __future__ import annotations

import importlib
import math
import re

from docutils import nodes
from docutils.statemachine import StringList
from registry_notes import NOTES
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)

STEPS = (10**-1.5, 10**-2.5)
EXACT = 1e-12  # errors below this at both steps: the entry is exact
MISSING = "*(no note yet in* ``docs/_ext/registry_notes.py`` *)*"


def import_object(path: str):
    """Import ``package.module.NAME`` given as a dotted path."""
    module_name, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def _order(errors: list[float]) -> str:
    if max(errors) < EXACT:
        return "exact"
    if min(errors) <= 0.0:
        return "not measurable"
    slope = math.log(errors[0] / errors[1]) / math.log(STEPS[0] / STEPS[1])
    order = round(slope) - 1
    if abs(slope - round(slope)) > 0.25:
        return f"{slope - 1:.1f} (measured slope {slope:.2f})"
    return "none (differs at first order)" if order < 1 else str(order)


def _fixture():
    import torch

    from manifolds import Grassmann

    gen = torch.Generator().manual_seed(0)
    manifold = Grassmann()
    x = manifold.random(8, 3, dtype=torch.float64, generator=gen)
    u = manifold.random_tangent(x, generator=gen)
    v = manifold.random_tangent(x, generator=gen)
    return x, u / u.norm(), v


def measure(kind: str, fn) -> dict[str, str]:
    """Measured orders of agreement for an entry of a registry of ``kind``."""
    from manifolds import DISTANCES, TRANSPORTS, expmap

    x, u, v = _fixture()
    geodesic = DISTANCES.resolve("geodesic")
    if kind == "retraction":
        pairs = [(fn(x, t * u), expmap(x, t * u)) for t in STEPS]
        return {
            "order vs exp (bases)": _order([float((a - b).norm()) for a, b in pairs]),
            "order vs exp (subspaces)": _order([float(geodesic(a, b)) for a, b in pairs]),
        }
    if kind == "transport":
        parallel = TRANSPORTS.resolve("parallel")
        errors = []
        for t in STEPS:
            y = expmap(x, t * u)
            errors.append(float((fn(x, t * u, y, v) - parallel(x, t * u, y, v)).norm()))
        return {"order vs parallel": _order(errors)}
    if kind == "distance":
        errors = [abs(float(fn(x, expmap(x, t * u))) - t) for t in STEPS]
        return {"order vs arc length": _order(errors)}
    return {}


def _field(name: str, body: str) -> list[str]:
    # "A. Edelman, ..." would start an enumerated list: escape the period.
    body = re.sub(r"^([A-Za-z]{1,2})\. ", r"\1\\. ", body)
    return [f":{name}: {body}"]


class RegistryDirective(SphinxDirective):
    """Document every entry of a :class:`manifolds.Registry`."""

    required_arguments = 1
    has_content = False

    def run(self):
        path = self.arguments[0]
        registry = import_object(path)
        entries = [(name, registry.resolve(name)) for name in registry.names()]
        measured = {}
        for name, fn in entries:
            try:
                measured[name] = measure(registry.kind, fn)
            except Exception as exc:  # a broken entry must fail the -W build
                logger.warning(f"registry: could not measure {registry.kind} {name!r}: {exc!r}")
                measured[name] = {}
        lines = self._table(registry, entries, measured)
        for name, fn in entries:
            lines += self._section(registry, name, fn, measured[name])
        container = nodes.section()  # as autodoc does, so that titles become sections
        nested_parse_with_titles(self.state, StringList(lines, source=path), container)
        return container.children

    def _table(self, registry, entries, measured) -> list[str]:
        columns = ["name", "formula"]
        order_columns = list(next(iter(measured.values()), {}).keys())
        columns += order_columns + ["cost"]
        caption = f"The {len(entries)} entries of ``{self.arguments[0]}`` (orders measured at build time)"
        lines = [f".. list-table:: {caption}", "   :header-rows: 1", ""]
        lines.append("   * - " + columns[0])
        lines += [f"     - {c}" for c in columns[1:]]
        for name, _ in entries:
            note = NOTES.get((registry.kind, name), {})
            lines.append(f"   * - :ref:`{name} <{self._label(registry, name)}>`")
            lines.append(f"     - {note.get('formula', MISSING)}")
            lines += [f"     - {measured[name].get(c, '')}" for c in order_columns]
            lines.append(f"     - {note.get('cost', MISSING)}")
        return lines + [""]

    def _label(self, registry, name) -> str:
        return f"{registry.kind}-{name}".replace("_", "-")

    def _section(self, registry, name, fn, orders) -> list[str]:
        note = NOTES.get((registry.kind, name), {})
        title = f"``{name}``"
        lines = [f".. _{self._label(registry, name)}:", "", title, "^" * len(title), ""]
        lines += [f".. autofunction:: {fn.__module__}.{fn.__qualname__}", "   :no-index:", ""]
        lines += _field("Formula", note.get("formula", MISSING))
        for column, value in orders.items():
            lines += _field("Order " + column.removeprefix("order "), value)
        lines += _field("Cost", note.get("cost", MISSING))
        if "notes" in note:
            lines += _field("Notes", note["notes"])
        lines += _field("Reference", note.get("reference", MISSING))
        return lines + [""]


def setup(app):
    app.add_directive("registry", RegistryDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
