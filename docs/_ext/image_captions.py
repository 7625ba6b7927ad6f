"""Every stand-alone Markdown image becomes a captioned figure.

A paragraph that holds only ``![alt text](file.png)`` (as in the committed run
reports and in pages written quickly) is replaced by a figure at the column's
width whose caption is the alt text, so that no figure on the site goes
without a caption. Figures written with the ``figure`` directive are left alone.
"""

from __future__ import annotations

from docutils import nodes


def caption_images(app, doctree) -> None:
    for paragraph in list(doctree.findall(nodes.paragraph)):
        children = [c for c in paragraph.children if not (isinstance(c, nodes.Text) and not c.astext().strip())]
        if not children or not all(isinstance(c, nodes.image) and c.get("alt", "").strip() for c in children):
            continue
        figures = []
        for image in children:
            alt = image["alt"].strip()
            image = image.deepcopy()
            image.setdefault("width", "100%")
            figure = nodes.figure("", image, nodes.caption(alt, alt))
            figure.source, figure.line = paragraph.source, paragraph.line
            doctree.set_id(figure)
            figures.append(figure)
        paragraph.replace_self(figures)


def setup(app):
    app.connect("doctree-read", caption_images)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
