"""A small named registry of interchangeable functions.

The geometry keeps one registry per kind (retractions, transports, distances);
:mod:`grassmann_cls` re-uses the class for logit functions. Entries are plain
callables sharing one signature per kind and are registered under their
function name.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from .errors import ManifoldTypeError, OptionError

__all__ = ["Registry"]

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """A mapping from names to functions of one kind.

    Parameters
    ----------
    kind : str
        What the entries are (``"retraction"``, ``"transport"``, ...); used in
        error messages.
    legacy : mapping of str to str, optional
        Retired names and the registered name that replaces each. A retired
        name is not in :meth:`names`, but :meth:`resolve` and ``in`` accept it
        (with a ``FutureWarning``), so configurations saved under it still
        load; :meth:`canonical` gives the current name.

    Examples
    --------
    >>> reg = Registry("greeting")
    >>> @reg.register
    ... def hello(name):
    ...     return "hello " + name
    >>> reg.names()
    ('hello',)
    >>> reg.resolve("hello")("world")
    'hello world'
    """

    def __init__(self, kind: str, *, legacy: Mapping[str, str] | None = None):
        if not isinstance(kind, str) or not kind:
            raise ManifoldTypeError(f"kind must be a non-empty str; got {kind!r}")
        self.kind = kind
        self._entries: dict[str, F] = {}
        self._legacy: dict[str, str] = dict(legacy or {})
        self._same_map: dict[str, str] = {}

    def register(self, fn: F | None = None, *, name: str | None = None, same_map_as: str | None = None):
        """Register ``fn`` under ``name`` (default: its ``__name__``).

        Usable as ``@reg.register`` or ``@reg.register(name="other")``.
        Registering a name twice raises :class:`~manifolds.errors.OptionError`.
        ``same_map_as`` names an entry already registered that computes the same
        map in exact arithmetic by another algorithm (with another precision,
        cost or hardware behaviour); :meth:`map_of` reports it.
        """

        if name is not None and (not isinstance(name, str) or not name):
            raise ManifoldTypeError(f"name must be a non-empty str or None; got {name!r}")
        if same_map_as is not None and same_map_as not in self._entries:
            raise OptionError(
                f"same_map_as must name a registered {self.kind}; got {same_map_as!r}, "
                f"expected one of {', '.join(self.names())}"
            )

        def add(f: F) -> F:
            if not callable(f):
                raise OptionError(f"a {self.kind} must be callable; got {f!r}")
            key = name or getattr(f, "__name__", None)
            if not isinstance(key, str):
                raise OptionError(f"a {self.kind} without a __name__ needs name=; got {f!r}")
            if key in self._entries:
                raise OptionError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = f
            if same_map_as is not None:
                self._same_map[key] = self.map_of(same_map_as)
            return f

        return add if fn is None else add(fn)

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def resolve(self, name_or_callable: str | F) -> F:
        """Return the entry called ``name_or_callable``, or the callable itself.

        Raises
        ------
        OptionError
            If the name is unknown; the message lists :meth:`names`.
        """
        if callable(name_or_callable):
            return name_or_callable
        return self._entries[self.canonical(name_or_callable)]

    def map_of(self, name: str) -> str:
        """The name of the map that entry ``name`` computes: ``name`` itself, or its ``same_map_as``.

        Two names with the same ``map_of`` differ only by algorithm (results
        agree to rounding); all other names are distinct maps.

        Raises
        ------
        OptionError
            If the name is unknown; the message lists :meth:`names`.
        """
        key = self.canonical(name)
        return self._same_map.get(key, key)

    def canonical(self, name: str) -> str:
        """The registered name for ``name``: itself, or what a retired name became.

        Raises
        ------
        OptionError
            If the name is unknown; the message lists :meth:`names`.
        """
        if isinstance(name, str) and name in self._entries:
            return name
        if isinstance(name, str) and name in self._legacy:
            current = self._legacy[name]
            warnings.warn(
                f"{self.kind} {name!r} is a retired name for {current!r} (the same map); using {current!r}",
                FutureWarning,
                stacklevel=3,
            )
            return current
        raise OptionError(f"unknown {self.kind} {name!r}; expected a callable or one of {', '.join(self.names())}")

    def name_of(self, fn: Callable) -> str:
        """The registered name of ``fn``, or its qualified name if unregistered."""
        for key, value in self._entries.items():
            if value is fn:
                return key
        return getattr(fn, "__qualname__", repr(fn))

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._legacy

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"
