"""The ``optional-include`` directive: include a Markdown file if it exists.

Usage (MyST Markdown)::

    ```{optional-include} ../runs/demo/report.md
    :heading-offset: 1

    Text shown while the file does not exist.
    ```

With the file present it is included like MyST's ``include`` directive (the
path is relative to the including page, images relative to the file);
otherwise the directive's own content is shown. Run outputs such as
``runs/demo/report.md`` are not committed, so a fresh clone builds with the
placeholder text.
"""

from __future__ import annotations

from pathlib import Path

from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective


class OptionalIncludeDirective(SphinxDirective):
    required_arguments = 1
    has_content = True
    option_spec = {"heading-offset": directives.nonnegative_int, "end-before": directives.unchanged_required}

    def run(self):
        relative = self.arguments[0]
        page_dir = Path(self.env.doc2path(self.env.docname)).parent
        target = (page_dir / relative).resolve()
        if not target.is_file():
            node = self._parse(list(self.content))
            return node
        self.env.note_dependency(str(target))
        lines = [f"```{{include}} {relative}", ":relative-images:"]
        if "heading-offset" in self.options:
            lines.append(f":heading-offset: {self.options['heading-offset']}")
        if "end-before" in self.options:  # e.g. leave out a section the including page already shows
            lines.append(f':end-before: "{self.options["end-before"]}"')
        return self._parse(lines + ["```"])

    def _parse(self, lines: list[str]):
        from docutils import nodes

        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=self.arguments[0]), self.content_offset, container)
        return container.children


def setup(app):
    app.add_directive("optional-include", OptionalIncludeDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
