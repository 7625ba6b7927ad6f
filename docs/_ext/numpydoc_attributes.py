"""Split ``a, b : type`` in a NumPy ``Attributes`` section into one entry per name.

napoleon (with ``napoleon_use_ivar``) turns ``logit, retraction, transport : str``
into one ``:ivar:`` field whose type swallows the other names, which renders as
``transport (logit, retraction,)`` and cross-references the names as types.
This runs before napoleon on ``autodoc-process-docstring`` and repeats the
description under each name, as ``Parameters`` sections render them.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^(\w[\w ]*)$")
_UNDERLINE = re.compile(r"^-{3,}$")
_SHARED = re.compile(r"^(\w+(?:\s*,\s*\w+)+)\s*:\s*(.*)$")


def split_shared_attributes(app, what, name, obj, options, lines: list[str]) -> None:
    out, section, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and _HEADER.match(line) and _UNDERLINE.match(lines[i + 1]):
            section = line.strip()
        match = _SHARED.match(line) if section == "Attributes" else None
        if not match:
            out.append(line)
            i += 1
            continue
        j = i + 1
        while j < len(lines) and (not lines[j] or lines[j][0].isspace()):
            j += 1
        body = lines[i + 1 : j]
        for attribute in (part.strip() for part in match.group(1).split(",")):
            out += [f"{attribute} : {match.group(2)}".rstrip(), *body]
        i = j
    lines[:] = out


def setup(app):
    app.setup_extension("sphinx.ext.napoleon")
    app.connect("autodoc-process-docstring", split_shared_attributes, priority=400)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
