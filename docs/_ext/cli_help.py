"""The ``cli-help`` directive: ``--help`` of a command and each of its subcommands.

Usage (reStructuredText)::

    .. cli-help:: grassmann_cls.cli
       :prog: grassmann-cls

imports the module, builds its :class:`argparse.ArgumentParser` with the first
of :data:`BUILDERS` it defines (called without arguments), and renders, from
the parser itself (so the page cannot drift from the command): the command's
usage, then one section per subcommand in the order they were added, each with
its description, usage, a worked example (from the module's ``EXAMPLES`` dict,
keyed by subcommand) and one ``.. option::`` entry per option (an anchor
``cmdoption-<prog>-<subcommand>-<option>``, the index and ``:option:``
references) stating its help, its choices and its default. Text is formatted
:data:`WIDTH` columns wide without colour, so the page does not depend on the
terminal that builds it and code blocks fit the text column.

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
WIDTH = "72"
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


def _literal(text: str, language: str = "text") -> list[str]:
    return [f".. code-block:: {language}", ""] + ["   " + line for line in text.splitlines()] + [""]


def usage_text(parser: argparse.ArgumentParser) -> str:
    with _plain_terminal():
        return _ANSI.sub("", parser.format_usage()).rstrip()


_FLAG = re.compile(r"(?<!\S)(--?[A-Za-z][\w-]*)")


def _escape(text: str) -> str:
    """Help text as reStructuredText: flags as literals (not smart-quoted ``--``), no stray markup."""
    text = text.replace("\\", "\\\\").replace("*", "\\*").replace("`", "``").replace("````", "``")
    return _FLAG.sub(r"``\1``", text)


def wrap_command(command: str, width: int = 64) -> str:
    """A shell command broken into ``\\``-continued lines of at most ``width`` columns (at spaces before options)."""
    lines, current = [], ""
    for word in command.split(" "):
        if current and word.startswith("-") and len(current) + 1 + len(word) > width:
            lines.append(current + " \\")
            current = "    " + word
        else:
            current = f"{current} {word}" if current else word
    return "\n".join(lines + [current])


def option_rst(parser: argparse.ArgumentParser, action: argparse.Action) -> list[str]:
    """One ``.. option::`` entry: flags and metavar, help, choices, default."""
    formatter = parser._get_formatter()
    if action.option_strings:
        metavar = "" if action.nargs == 0 else " " + formatter._format_args(action, action.dest.upper())
        if action.choices is not None and action.metavar is None:
            metavar = " " + action.dest.upper().replace("_", "-")
        signature = ", ".join(f"{flag}{metavar}" for flag in action.option_strings)
    else:
        signature = action.metavar or action.dest
    text = formatter._expand_help(action) if action.help else ""
    text = " ".join(text.split())
    lines = [f".. option:: {signature}", ""]
    if text:
        lines += [f"   {_escape(text[0].upper() + text[1:])}", ""]
    if action.choices is not None:
        listed = ", ".join(f"``{choice}``" for choice in action.choices)
        lines += [f"   One of: {listed}.", ""]
    if action.required and action.option_strings:
        lines += ["   Required.", ""]
    return lines


def cli_rst(parser: argparse.ArgumentParser, prog: str, examples: dict[str, str] | None = None) -> list[str]:
    """reStructuredText for the command's usage and one section per subcommand."""
    examples = examples or {}
    parser.prog = prog
    lines = _literal(usage_text(parser))
    for name, sub in subcommands(parser):
        sub.prog = f"{prog} {name}"
        title = f"``{prog} {name}``"
        lines += [f".. _cli-{name}:", "", title, "-" * len(title), ""]
        if sub.description:
            lines += [_escape(" ".join(sub.description.split())), ""]
        lines += _literal(usage_text(sub))
        if name in examples:
            lines += [".. rubric:: Example", ""] + _literal(wrap_command(examples[name]), "sh")
        lines += [".. rubric:: Options", "", f".. program:: {prog} {name}", ""]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            lines += option_rst(sub, action)
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
        self.env.note_dependency(module.__file__)  # the page is rebuilt when the parser changes
        examples = getattr(module, "EXAMPLES", {})
        nested_parse_with_titles(self.state, StringList(cli_rst(parser, prog, examples), source=module_name), container)
        return container.children

    def _note(self, text: str) -> nodes.Node:
        note = nodes.note()
        self.state.nested_parse(StringList([text]), 0, note)
        return note


def setup(app):
    app.add_directive("cli-help", CliHelpDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
