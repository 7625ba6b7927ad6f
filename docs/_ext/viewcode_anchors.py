"""Point the ``[docs]`` links of the highlighted-source pages at the real entries.

``sphinx.ext.viewcode`` links each object on a source page back to
``<page>#<module>.<name>``, using for every object of a source module the
module path of the *first* entry that documented any of them. When a module's
objects are documented under different public paths (``manifolds.cdist``,
``manifolds.distances.chordal``) most of those anchors do not exist. This
records the anchor of each documented object (by defining module and
qualified name) and rewrites the links when the source pages are written.
"""

from __future__ import annotations

import re

from sphinx import addnodes
from sphinx.ext.viewcode import OUTPUT_DIRNAME, _get_full_modname

_BACKLINK = re.compile(r'(<div class="viewcode-block" id="([^"]+)">\s*<a class="viewcode-back" href=")([^"]*)(")')


def _anchors(env) -> dict:
    if not hasattr(env, "viewcode_anchors"):
        env.viewcode_anchors = {}
    return env.viewcode_anchors


def record(app, doctree) -> None:
    anchors = _anchors(app.env)
    for desc in doctree.findall(addnodes.desc):
        if desc.get("domain") != "py":
            continue
        for signature in desc.findall(addnodes.desc_signature):
            fullname = signature.get("fullname")
            if not signature["ids"] or not fullname:
                continue
            modname = _get_full_modname(signature.get("module"), fullname)
            if modname:
                anchors.setdefault((modname, fullname), (app.env.docname, signature["ids"][0]))


def purge(app, env, docname) -> None:
    anchors = _anchors(env)
    for key in [key for key, (doc, _) in anchors.items() if doc == docname]:
        del anchors[key]


def merge(app, env, docnames, other) -> None:
    for key, value in _anchors(other).items():
        _anchors(env).setdefault(key, value)


def rewrite(app, pagename, templatename, context, doctree) -> None:
    prefix = OUTPUT_DIRNAME + "/"
    if not pagename.startswith(prefix) or "body" not in context:
        return
    modname = pagename[len(prefix) :].replace("/", ".")
    anchors = _anchors(app.env)

    def fix(match: re.Match) -> str:
        found = anchors.get((modname, match.group(2)))
        if found is None:
            return match.group(0)
        docname, anchor = found
        return f"{match.group(1)}{app.builder.get_relative_uri(pagename, docname)}#{anchor}{match.group(4)}"

    context["body"] = _BACKLINK.sub(fix, context["body"])


def setup(app):
    app.setup_extension("sphinx.ext.viewcode")
    app.connect("doctree-read", record, priority=600)
    app.connect("env-purge-doc", purge)
    app.connect("env-merge-info", merge)
    app.connect("html-page-context", rewrite)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
