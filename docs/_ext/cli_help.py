"""The ``cli-help`` directive: ``--help`` of a command and each of its subcommands.

Usage (reStructuredText)::

    .. cli-help:: grassmann_cls.cli
       :prog: grassmann-cls

imports the module, builds its :class:`argparse.ArgumentParser` with the first
of :data:`BUILDERS` it defines (called without arguments), and renders the
parser's help followed by one section per subcommand, in the order the
subcommands were added. Help is formatted 88 columns wide without colour, so
the page does not depend on the terminal that builds it.

If the module does not exist yet the directive renders a note; if it exists
but has no parser builder, or building fails, it emits a warning (an error
under ``-W``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)

BUILDERS = ("build_parser", "make_parser", "get_parser", "create_parser", "parser")
WIDTH = "88"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@contextlib.contextmanager
def _plain_terminal():
    saved = {key: os.environ.get(key) for key in ("COLUMNS", "NO_COLOR", "FORCE_COLOR")}
    os.environ.update(COLUMNS=WIDTH, NO_COLOR="1")
    os.environ.pop("FORCE_COLOR", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def build_parser(module) -> argparse.ArgumentParser | None:
    """The module's argument parser, from the first builder in :data:`BUILDERS`."""
    for name in BUILDERS:
        candidate = getattr(module, name, None)
        if isinstance(candidate, argparse.ArgumentParser):
            return candidate
        if callable(candidate):
            parser = candidate()
            if isinstance(parser, argparse.ArgumentParser):
                return parser
    return None


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """``(name, parser)`` of each subcommand, aliases skipped, in definition order."""
    found, seen = [], set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    found.append((name, sub))
    return found


def help_text(parser: argparse.ArgumentParser) -> str:
    with _plain_terminal():
        return _ANSI.sub("", parser.format_help()).rstrip()


def _literal(text: str) -> list[str]:
    return [".. code-block:: text", ""] + ["   " + line for line in text.splitlines()] + [""]


def cli_rst(parser: argparse.ArgumentParser, prog: str) -> list[str]:
    """reStructuredText for the main help and one section per subcommand."""
    parser.prog = prog
    lines = _literal(help_text(parser))
    for name, sub in subcommands(parser):
        sub.prog = f"{prog} {name}"
        title = f"``{prog} {name}``"
        lines += [f".. _cli-{name}:", "", title, "-" * len(title), ""]
        lines += _literal(help_text(sub))
    return lines


class CliHelpDirective(SphinxDirective):
    """Render ``--help`` of a command-line module."""

    required_arguments = 1
    option_spec = {"prog": str}

    def run(self):
        module_name = self.arguments[0]
        prog = self.options.get("prog", module_name)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return [self._note(f"``{module_name}`` does not exist yet; its reference appears here once it does.")]
            raise
        parser = build_parser(module)
        if parser is None:
            logger.warning(
                f"cli-help: {module_name} defines none of {', '.join(BUILDERS)}",
                location=self.get_location(),
            )
            return []
        container = nodes.section()
        nested_parse_with_titles(self.state, StringList(cli_rst(parser, prog), source=module_name), container)
        return container.children

    def _note(self, text: str) -> nodes.Node:
        note = nodes.note()
        self.state.nested_parse(StringList([text]), 0, note)
        return note


def setup(app):
    app.add_directive("cli-help", CliHelpDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
