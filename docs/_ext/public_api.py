"""The ``public-api`` directive: the API reference of a package, from ``__all__``.

Usage (reStructuredText)::

    .. public-api:: manifolds

renders a summary table and an entry for every name in the package's
``__all__``, then one section per public submodule (names not starting with
``_``, found by walking the package) with an entry for every name in that
submodule's ``__all__``. Each object is documented once, under its canonical
name (see :func:`canonical_name`); every other public path to it gets a short
entry with its own link target that points to the canonical one, so every
public name has an anchor ``id="<module>.<name>"`` in the built page.

A package that cannot be imported yet, or has no ``__all__``, gets a note
instead of an error, so that the docs build while the package is written.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from types import ModuleType

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)

#: The packages whose objects are documented here; anything else is external.
PACKAGES = ("manifolds", "grassmann_cls")


@dataclass(frozen=True)
class PublicName:
    """``module.name`` is a public path to ``obj``."""

    module: str
    name: str
    obj: object

    @property
    def path(self) -> str:
        return f"{self.module}.{self.name}"


def public_modules(package: ModuleType) -> list[ModuleType]:
    """The package and its public submodules (recursively), in a stable order."""
    modules = [package]
    prefix = package.__name__ + "."
    for info in sorted(pkgutil.walk_packages(package.__path__, prefix), key=lambda i: i.name):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        modules.append(importlib.import_module(info.name))
    return modules


def public_names(package_name: str) -> list[PublicName]:
    """Every ``(module, name)`` in the ``__all__`` of the package and its submodules."""
    package = importlib.import_module(package_name)
    found = []
    for module in public_modules(package):
        for name in getattr(module, "__all__", ()):
            found.append(PublicName(module.__name__, name, getattr(module, name)))
    return found


def _is_routine_or_class(obj) -> bool:
    return inspect.isclass(obj) or inspect.isroutine(obj)


def canonical_name(obj, name: str) -> str | None:
    """Where ``obj`` is documented in full, or ``None`` for external objects.

    A class or function belongs to the package its ``__module__`` is in and is
    documented at the first public path to it there (the package's own
    ``__all__`` comes first). Other objects (modules, data) are documented at
    the first public path with the same name in :data:`PACKAGES` order.
    """
    if inspect.ismodule(obj):
        return obj.__name__ if obj.__name__.split(".")[0] in PACKAGES else None
    if _is_routine_or_class(obj):
        home = getattr(obj, "__module__", "") or ""
        home = home.split(".")[0]
        if home not in PACKAGES:
            return None
        packages = (home,)
    else:
        packages = PACKAGES
    for package in packages:
        for public in _cached_public_names(package):
            if public.obj is obj and (public.name == name or _is_routine_or_class(obj)):
                return public.path
    return None


_CACHE: dict[str, list[PublicName]] = {}


def _cached_public_names(package: str) -> list[PublicName]:
    if package not in _CACHE:
        try:
            _CACHE[package] = public_names(package)
        except ImportError:
            _CACHE[package] = []
    return _CACHE[package]


def summary(obj) -> str:
    """First paragraph of the docstring, joined to one line."""
    if not (inspect.ismodule(obj) or _is_routine_or_class(obj)):
        return _data_summary(obj)
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _data_summary(obj) -> str:
    names = getattr(obj, "names", None)
    if callable(names) and hasattr(obj, "kind"):
        listed = ", ".join(f"``{n}``" for n in names())
        return f"Registry of {obj.kind} functions: {listed}."
    return f"Constant ``{obj!r}``."


def _attr_doc(module: str, name: str) -> bool:
    """Whether ``module`` documents the attribute ``name`` in its source."""
    try:
        return ("", name) in ModuleAnalyzer.for_module(module).find_attr_docs()
    except Exception:
        return False


def entry(public: PublicName) -> list[str]:
    """reStructuredText for the entry of one public name."""
    obj, path = public.obj, public.path
    canonical = canonical_name(obj, public.name)
    if inspect.ismodule(obj):
        return [f"* ``{public.name}``: the module :py:mod:`{obj.__name__}`.", ""]
    if canonical is None:
        origin = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', public.name)}"
        return _alias(public, f"Re-exported from ``{origin}``.")
    if canonical != path:
        return _alias(public, f"Same object as :py:obj:`{canonical}`.")
    if inspect.isclass(obj):
        kind = "autoexception" if issubclass(obj, BaseException) else "autoclass"
        return [f".. {kind}:: {path}", "   :members:", "   :show-inheritance:", ""]
    if inspect.isroutine(obj):
        return [f".. autofunction:: {path}", ""]
    if _attr_doc(public.module, public.name):
        return [f".. autodata:: {path}", ""]
    return [f".. py:data:: {public.name}", f"   :module: {public.module}", "", f"   {_data_summary(obj)}", ""]


def _objtype(obj) -> str:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    return "function" if inspect.isroutine(obj) else "data"


def _alias(public: PublicName, text: str) -> list[str]:
    return [f".. public-alias:: {public.path}", f"   :objtype: {_objtype(public.obj)}", "", f"   {text}", ""]


class PublicAliasDirective(SphinxDirective):
    """A one-line entry with the HTML id ``<module>.<name>`` for a re-exported name.

    The name is registered in the Python domain as *aliased*, so that
    ``:class:`grassmann_cls.errors.OptionError``` links here while Sphinx's
    fuzzy look-up (used for the types in ``Raises`` and ``Returns`` sections)
    still prefers the one canonical entry instead of reporting an ambiguity.
    """

    required_arguments = 1
    has_content = True
    option_spec = {"objtype": directives.unchanged_required}

    def run(self):
        path = self.arguments[0]
        domain = self.env.get_domain("py")
        # autodoc already registers a class's defining-module path (its
        # ``:canonical:`` name) as aliased; that entry is as good as ours.
        if path not in domain.objects:
            domain.note_object(path, self.options.get("objtype", "data"), path, aliased=True, location=self.get_location())
        paragraph = nodes.paragraph(ids=[path], classes=["public-alias"])
        paragraph += nodes.literal(text=path)
        paragraph += nodes.Text(": ")
        content, messages = self.state.inline_text(" ".join(self.content), self.lineno)
        paragraph += content
        return [paragraph, *messages]


def _summary_table(title: str, names: list[PublicName]) -> list[str]:
    lines = [f".. list-table:: {title}", "   :header-rows: 1", "   :widths: 30 70", ""]
    lines += ["   * - name", "     - summary"]
    for public in names:
        role = "py:mod" if inspect.ismodule(public.obj) else "py:obj"
        target = public.obj.__name__ if inspect.ismodule(public.obj) else public.path
        lines += [f"   * - :{role}:`{public.name} <{target}>`", f"     - {summary(public.obj)}"]
    return lines + [""]


def package_rst(package_name: str) -> list[str]:
    """The whole reference of one package as reStructuredText lines."""
    package = importlib.import_module(package_name)
    names = public_names(package_name)
    top = [p for p in names if p.module == package_name]
    lines = [f".. automodule:: {package_name}", ""]
    lines += _summary_table(f"``{package_name}.__all__``", top)
    for public in top:
        lines += entry(public)
    documented = {p.path for p in top if not inspect.ismodule(p.obj)}
    for module in public_modules(package)[1:]:
        own = [p for p in names if p.module == module.__name__]
        title = f"``{module.__name__}``"
        lines += [title, "-" * len(title), "", f".. automodule:: {module.__name__}"]
        if module.__name__ in documented:
            # ``from .convert import convert``: the public name is the function,
            # so the module may not claim the same Python-domain name.
            lines.append("   :no-index:")
        lines.append("")
        for public in own:
            lines += entry(public)
    return lines


class PublicApiDirective(SphinxDirective):
    """Render the API reference of the package named in the argument."""

    required_arguments = 1

    def run(self):
        package_name = self.arguments[0]
        try:
            package = importlib.import_module(package_name)
        except ImportError as exc:
            return [self._note(f"``{package_name}`` cannot be imported yet ({exc}).")]
        if not hasattr(package, "__all__"):
            return [self._note(f"``{package_name}`` does not define ``__all__`` yet.")]
        _CACHE.clear()  # objects may have been reloaded since the last page
        lines = package_rst(package_name)
        container = nodes.section()
        nested_parse_with_titles(self.state, StringList(lines, source=package_name), container)
        return container.children

    def _note(self, text: str) -> nodes.Node:
        note = nodes.note()
        self.state.nested_parse(StringList([text + " Its reference appears here once it does."]), 0, note)
        return note


def setup(app):
    app.add_directive("public-api", PublicApiDirective)
    app.add_directive("public-alias", PublicAliasDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
