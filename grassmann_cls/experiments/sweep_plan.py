r"""What a sweep trains: the grid axes, grid files, and the plan of cells.

A grid has one or more *axes*, each setting one
:class:`~grassmann_cls.training.config.TrainConfig` field:

=====================  ======================  ====================================
axis                   TrainConfig field       values
=====================  ======================  ====================================
``retraction``         ``retraction``          names of ``manifolds.RETRACTIONS``
``transport``          ``transport``           names of ``manifolds.TRANSPORTS``
``momentum``           ``grassmann_momentum``  ``transport`` or ``paper`` (the
                                               style, not the coefficient)
``logit``              ``logit``               names of :data:`~grassmann_cls.logits.LOGITS`
``bases_optimizer``    ``bases_optimizer``     names of :data:`~grassmann_cls.training.recipe.BASES_OPTIMIZERS`
``bases_lr_factor``    ``bases_lr_factor``     numbers > 0 (bases lr over backbone lr)
``reorth_qr``          ``reorth_qr``           ``sign_fixed`` or ``unsigned``
``reorth_count_from``  ``reorth_count_from``   integers >= 0
``k``                  ``subspace_dim``        integers >= 1
``lr``                 ``lr``                  numbers > 0
``seed``               ``seed``                integers >= 0
=====================  ======================  ====================================

A grid comes from ``AXIS=V1,V2`` strings (:func:`parse_grid`, the CLI's
``--grid``) or from a TOML or YAML file (:func:`load_grid_file`);
:func:`plan_sweep` checks every combination and fills in the defaults. Every
mistake raises :class:`~grassmann_cls.errors.ConfigError` before anything is
trained.

No two cells of a plan compute the same thing: every retraction, transport
and momentum style is a distinct map, and ``paper`` momentum steps with the
cell's retraction. Two kinds of cell are left out of the plan with their
reason (:attr:`SweepPlan.dropped`) rather than trained as a copy of another:
``momentum=paper`` with a ``transport`` other than ``projection`` (the paper
style never transports its buffer), and a retraction that computes the same
map as one earlier in the grid (``RETRACTIONS.map_of``, e.g.
``newton_schulz`` and ``polar``; at ``k = 1`` also ``polar`` and ``qr``,
which both normalise :math:`x + u`). Likewise a bases optimizer that never reads a setting
(:data:`~grassmann_cls.training.recipe.UNUSED_SETTINGS`: ``momentum`` for
``adam``; ``bases_lr_factor`` for ``rsgd`` under an ``sgd`` backbone) is trained
only with that axis at its default value, its other cells left out with
the reason.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from grassmann_cls.errors import ConfigError
from grassmann_cls.logits import LOGITS
from grassmann_cls.optim import GRASSMANN_MOMENTUM
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.data import DATASETS, DataSplits, find_fashion_mnist, prepare
from grassmann_cls.training.recipe import BASES_OPTIMIZERS, UNUSED_SETTINGS, uses_bases_lr_factor
from manifolds import RETRACTIONS, TRANSPORTS
from manifolds.stepping import QR_SIGNS

__all__ = [
    "AXES",
    "Axis",
    "SweepPlan",
    "parse_grid",
    "load_grid_file",
    "grid_options",
    "plan_sweep",
    "load_data",
    "step_map",
]


@dataclasses.dataclass(frozen=True)
class Axis:
    """One axis a sweep can vary.

    Attributes
    ----------
    name : str
        The name used on the command line and in grid files.
    field : str
        The :class:`~grassmann_cls.training.config.TrainConfig` field it sets.
    kind : type
        ``str``, ``int`` or ``float``.
    choices : callable, optional
        Returns the allowed names (for ``str`` axes), e.g. ``RETRACTIONS.names``.
    minimum : float, optional
        Smallest allowed number; ``strict`` makes it exclusive.
    """

    name: str
    field: str
    kind: type
    choices: Callable[[], Sequence[str]] | None = None
    minimum: float | None = None
    strict: bool = False

    def value(self, raw: Any) -> Any:
        """``raw`` (a string from the command line or a file value) checked and converted."""
        if self.kind is str:
            assert self.choices is not None, "every str axis lists its choices"
            text = str(raw).strip()
            if text not in self.choices():
                raise ConfigError(
                    f"unknown {self.name} {text!r} in the grid; expected one of {', '.join(self.choices())}"
                )
            return text
        try:
            number = self.kind(str(raw).strip()) if isinstance(raw, str) else raw
            ok = isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number)
            ok = ok and (self.kind is float or float(number).is_integer())
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(
                f"grid axis {self.name} takes {'integers' if self.kind is int else 'numbers'}; got {raw!r}"
            )
        number = self.kind(number)
        if self.minimum is not None and (number < self.minimum or (self.strict and number == self.minimum)):
            raise ConfigError(
                f"grid axis {self.name} needs values {'>' if self.strict else '>='} {self.minimum:g}; got {number!r}"
            )
        return number


AXES: dict[str, Axis] = {
    a.name: a
    for a in (
        Axis("retraction", "retraction", str, RETRACTIONS.names),
        Axis("transport", "transport", str, TRANSPORTS.names),
        Axis("momentum", "grassmann_momentum", str, lambda: GRASSMANN_MOMENTUM),
        Axis("logit", "logit", str, LOGITS.names),
        Axis("bases_optimizer", "bases_optimizer", str, BASES_OPTIMIZERS.names),
        Axis("bases_lr_factor", "bases_lr_factor", float, minimum=0.0, strict=True),
        Axis("reorth_qr", "reorth_qr", str, lambda: QR_SIGNS),
        Axis("reorth_count_from", "reorth_count_from", int, minimum=0),
        Axis("k", "subspace_dim", int, minimum=1),
        Axis("lr", "lr", float, minimum=0.0, strict=True),
        Axis("seed", "seed", int, minimum=0),
    )
}
"""The axes a sweep can vary, by name (see the module table)."""


def _axis_values(name: str, raw: Any) -> tuple:
    if name not in AXES:
        raise ConfigError(f"unknown grid axis {name!r}; expected one of {', '.join(AXES)}")
    items = raw.split(",") if isinstance(raw, str) else list(raw) if isinstance(raw, (list, tuple)) else [raw]
    values = tuple(AXES[name].value(item) for item in items if not (isinstance(item, str) and not item.strip()))
    if not values:
        raise ConfigError(f"grid axis {name} has no values; write e.g. {name}={_example(name)}")
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(f"grid axis {name} repeats {', '.join(repeated)}")
    return values


def _example(name: str) -> str:
    axis = AXES[name]
    examples = {"k": "1,8", "lr": "0.05,0.1", "bases_lr_factor": "1,100", "seed": "0,1,2"}
    return ",".join(axis.choices()[:2]) if axis.choices else examples[name]


def parse_grid(entries: Sequence[str]) -> dict[str, tuple]:
    """Axes from ``AXIS=V1,V2`` strings (the CLI's ``--grid``), in the order given.

    Examples
    --------
    >>> parse_grid(["retraction=qr,polar", "k=1,8"])
    {'retraction': ('qr', 'polar'), 'k': (1, 8)}
    """
    grid: dict[str, tuple] = {}
    for entry in entries:
        name, sep, raw = str(entry).partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"grid entries look like AXIS=V1,V2 (e.g. retraction=qr,polar); got {entry!r}")
        name = name.strip()
        if name in grid:
            raise ConfigError(f"grid axis {name} is given twice; list all its values in one entry")
        grid[name] = _axis_values(name, raw)
    return grid


def load_grid_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a grid file (TOML, or YAML when PyYAML is installed).

    The file holds a ``grid`` table (axis -> list of values), optionally
    ``seeds`` (a count) and a ``base`` table of
    :class:`~grassmann_cls.training.config.TrainConfig` fields::

        seeds = 3
        [grid]
        retraction = ["qr", "polar"]
        k = [1, 8]
        [base]
        epochs = 5

    Returns
    -------
    dict
        ``grid`` (checked axes), ``seeds`` (int or None), ``base`` (dict).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{path}: YAML grid files need PyYAML (pip install pyyaml); or use TOML") from None
        try:
            content = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib
            except ImportError:
                raise ConfigError(f"{path}: TOML grid files need Python 3.11+ or the tomli package") from None
        try:
            content = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path} is not valid TOML: {err}") from None
    if not isinstance(content, dict) or set(content) - {"grid", "seeds", "base"}:
        extra = sorted(set(content) - {"grid", "seeds", "base"}) if isinstance(content, dict) else content
        raise ConfigError(f"{path}: expected only the keys grid, seeds and base; got {extra}")
    grid, base = content.get("grid", {}), content.get("base", {})
    if not isinstance(grid, dict) or not isinstance(base, dict):
        raise ConfigError(f"{path}: grid and base must be tables (mappings)")
    return {
        "grid": {name: _axis_values(name, raw) for name, raw in grid.items()},
        "seeds": content.get("seeds"),
        "base": dict(base),
    }


def grid_options(
    entries: Sequence[str] = (), path: str | os.PathLike | None = None, seeds: int | None = None
) -> dict[str, Any]:
    """Combine ``--grid`` entries, a grid file and ``--seeds`` into :func:`plan_sweep` arguments.

    Entries override the file's axes of the same name, ``seeds`` the file's
    ``seeds``. Returns ``grid`` (``None``: the default grid), ``seeds`` and ``base``.
    """
    spec = load_grid_file(path) if path is not None else {"grid": {}, "seeds": None, "base": {}}
    grid = {**spec["grid"], **parse_grid(entries)}
    return {"grid": grid or None, "seeds": spec["seeds"] if seeds is None else seeds, "base": spec["base"]}


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """What a sweep trains: a base configuration and the axes varied over it.

    Attributes
    ----------
    base : TrainConfig
        Settings shared by every cell (no output folder, no progress bar).
    axes : tuple of (str, tuple)
        ``(axis name, values)``, ``seed`` last.
    quick : bool
        Whether :func:`plan_sweep` sized it with ``quick=True``.
    dropped : tuple of (dict, str)
        ``(cell, reason)`` for the combinations of axis values left out of
        :meth:`cells` because they cannot be honoured.
    """

    base: TrainConfig
    axes: tuple[tuple[str, tuple], ...]
    quick: bool = False
    dropped: tuple[tuple[dict[str, Any], str], ...] = ()

    def cells(self) -> list[dict[str, Any]]:
        """Every ``{axis: value}`` combination not in :attr:`dropped`, the last axis varying fastest."""
        names = [name for name, _ in self.axes]
        every = [dict(zip(names, values)) for values in itertools.product(*(v for _, v in self.axes))]
        left_out = [cell for cell, _ in self.dropped]
        return [cell for cell in every if cell not in left_out]

    def config(self, cell: Mapping[str, Any]) -> TrainConfig:
        """The :class:`TrainConfig` of one cell (validated)."""
        return self.base.replace(**{AXES[name].field: value for name, value in cell.items()})


def _sizes(dataset: str, quick: bool) -> dict[str, Any]:
    """The training set-up of a sweep on ``dataset``; ``quick``: minutes for the default grid."""
    if dataset == "fashion_mnist":
        return {"train_size": 10000, "test_size": 5000, "epochs": 8} if quick else {"epochs": 10}
    return {"epochs": 15} if quick else {"epochs": 40}


def plan_sweep(
    grid: Mapping[str, Sequence] | None = None,
    *,
    seeds: int | None = None,
    quick: bool = False,
    dataset: str = "auto",
    data_dir: str | None = None,
    base: Mapping[str, Any] | None = None,
) -> SweepPlan:
    """Check a sweep's settings and fill in the defaults, before anything is trained.

    Parameters
    ----------
    grid : mapping, optional
        Axis name -> values (strings are split at commas). Default: every
        retraction x both momentum styles x ``k`` in {1, 8}, all distinct
        computations (``paper`` momentum steps with the cell's retraction).
    seeds : int, optional
        Seeds ``0 .. seeds-1`` (default 3, or the grid's ``seed`` axis; not both).
    quick : bool
        Small data and few epochs: the default grid runs in minutes on a CPU.
    dataset, data_dir : str, optional
        The data (``auto``: Fashion-MNIST when installed, else digits).
    base : mapping, optional
        Further :class:`TrainConfig` fields shared by all cells (e.g.
        ``epochs``); its ``dataset`` and ``data_dir`` replace the arguments.
    """
    base = dict(base or {})
    dataset, data_dir = base.pop("dataset", dataset), base.pop("data_dir", data_dir)
    if grid is None:
        grid = {"retraction": RETRACTIONS.names(), "momentum": GRASSMANN_MOMENTUM, "k": (1, 8)}
    axes = {name: _axis_values(name, values) for name, values in grid.items()}
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ConfigError(f"seeds must be a count >= 1; got {seeds!r}")
    if "seed" in axes and seeds is not None:
        raise ConfigError("give the seeds either as a count (--seeds) or as a grid axis (seed=...), not both")
    axes["seed"] = axes.pop("seed", tuple(range(3 if seeds is None else seeds)))
    key = str(dataset).replace("-", "_") if str(dataset).replace("-", "_") in DATASETS else str(dataset)
    if key == "auto":
        key = "fashion_mnist" if find_fashion_mnist(data_dir) is not None else "digits"
    settings = {
        "dataset": key,
        "data_dir": data_dir,
        "backbone": "mlp",
        "width": 256,
        "head": "gcr",
        "warmup_epochs": 0.5,
        **_sizes(key, quick),
        "progress": False,
    }
    settings |= base | {"output": None, "resume": None, "progress": False}
    if settings["head"] != "gcr":
        raise ConfigError(f"a sweep trains GCR heads (head = 'gcr'); got head = {settings['head']!r}")
    fixed = sorted({AXES[name].field for name in axes} & set(base))
    if fixed:
        raise ConfigError(f"{', '.join(fixed)} is both a grid axis and a base setting; keep one")
    plan = SweepPlan(TrainConfig.from_dict(settings), tuple(axes.items()), quick)
    plan = dataclasses.replace(plan, dropped=_dropped(plan))
    if not plan.cells():
        raise ConfigError(f"every cell of the grid is left out: {plan.dropped[0][1]}")
    for cell in plan.cells():
        plan.config(cell)  # validates every combination now, not after hours of training
    return plan


def _unhonourable(plan: SweepPlan, cell: Mapping[str, Any]) -> str | None:
    """Why the axis values of ``cell`` cannot be trained together, or ``None``."""
    fields = plan.base.to_dict() | {AXES[name].field: value for name, value in cell.items()}
    reason = _unused_by_bases_optimizer(plan, fields, cell)
    if reason:
        return reason
    if "transport" in cell and fields["grassmann_momentum"] == "paper" and fields["transport"] != "projection":
        return (
            f"momentum=paper with transport={fields['transport']} is left out: paper momentum never "
            "transports its buffer, so the cell would repeat the transport=projection one"
        )
    return None


def _step_map_key(retraction: str, k: int) -> str:
    """The map a retraction computes at ``k``: its ``map_of``, with ``polar`` = ``qr`` for one column."""
    name = RETRACTIONS.map_of(retraction)
    return "qr" if k == 1 and name == "polar" else name  # both normalise x + u


def _dropped(plan: SweepPlan) -> tuple[tuple[dict[str, Any], str], ...]:
    """The cells that cannot be honoured, and those that repeat an earlier cell's computation, with reasons."""
    dropped: list[tuple[dict[str, Any], str]] = []
    seen: dict[str, Any] = {}
    for cell in plan.cells():
        reason = _unhonourable(plan, cell)
        if reason is None and "retraction" in cell:
            config = plan.config(cell)
            key = repr(sorted((cell | {"retraction": _step_map_key(config.retraction, config.subspace_dim)}).items()))
            first = seen.setdefault(key, cell["retraction"])
            if first != cell["retraction"]:
                reason = (
                    f"retraction={cell['retraction']} with k={config.subspace_dim} is left out: it computes "
                    f"the same map as retraction={first} (benchmarks/ compares their cost)"
                )
        if reason:
            dropped.append((cell, reason))
    return tuple(dropped)


def _unused_by_bases_optimizer(plan: SweepPlan, fields: Mapping[str, Any], cell: Mapping[str, Any]) -> str | None:
    """Why ``cell`` sets an axis that its bases optimizer never reads to a non-default value, or ``None``."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    name = fields["bases_optimizer"]
    unused = dict(UNUSED_SETTINGS[name])
    if not uses_bases_lr_factor(SimpleNamespace(**fields)):
        unused["bases_lr_factor"] = f"optimizer={fields['optimizer']} steps these bases at the lr"
    for axis, value in cell.items():
        field = AXES[axis].field
        if field in unused and value != defaults[field]:
            default = defaults[field]
            tail = (
                f"it would repeat the {axis}={default} cell"
                if default in dict(plan.axes)[axis]
                else f"add {axis}={default} to the grid to train bases_optimizer={name}"
            )
            return f"bases_optimizer={name} with {axis}={value} is left out: {unused[field]}; {tail}"
    return None


def load_data(plan: SweepPlan) -> DataSplits:
    """The data of a sweep, drawn once (subsets seeded with 0) and shared by every cell."""
    b = plan.base
    return prepare(
        b.dataset,
        data_dir=b.data_dir,
        classes=b.classes,
        train_size=b.train_size,
        test_size=b.test_size,
        image_size=b.image_size,
        seed=0,
    )


def step_map(config: TrainConfig) -> str | None:
    """The map the bases are stepped with: the retraction (any momentum style); ``None`` without one (landing)."""
    return None if "retraction" in UNUSED_SETTINGS[config.bases_optimizer] else config.retraction
