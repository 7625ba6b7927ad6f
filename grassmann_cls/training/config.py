"""The training configuration: one flat, validated, JSON-friendly dataclass."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

from grassmann_cls.errors import ConfigError
from grassmann_cls.logits import LOGITS
from grassmann_cls.optim import GRASSMANN_MOMENTUM, PAPER_RECIPE
from grassmann_cls.training.backbones import BACKBONES, backbone_names
from grassmann_cls.training.models import HEADS
from grassmann_cls.training.precision import AMP
from grassmann_cls.training.recipe import BASES_OPTIMIZERS, OPTIMIZERS, SCHEDULES, UNUSED_SETTINGS, uses_bases_lr_factor
from manifolds import RETRACTIONS, TRANSPORTS
from manifolds.stepping import QR_SIGNS

__all__ = ["TrainConfig", "RECIPES", "RESUME_FREE", "resume_conflicts"]

RECIPES = MappingProxyType({"paper": PAPER_RECIPE})
"""Named optimizer recipes of the bases, for :attr:`TrainConfig.recipe`: the fields each sets.

``"paper"`` is the GCR paper's reference optimizer,
:data:`~grassmann_cls.optim.PAPER_RECIPE`: the exponential-map step,
``"paper"`` momentum, re-orthonormalisation every 5 steps (every step with
``optimizer="adamw"``, as in the paper's AdamW/Lamb runs).
"""

#: Fields that only the GCR head uses (``scale`` is also the cosine head's).
_GCR_ONLY = (
    "subspace_dim",
    "logit",
    "retraction",
    "transport",
    "grassmann_momentum",
    "reorth_every",
    "reorth_qr",
    "reorth_count_from",
    "recipe",
    "bases_optimizer",
)


#: Settings a resumed run may change freely: where and how it runs, not what it trains.
#: ``epochs`` may also grow (:func:`resume_conflicts`); every other setting is the checkpoint's.
RESUME_FREE = frozenset(
    {
        "output",
        "overwrite",
        "resume",
        "progress",
        "device",
        "eval_batch_size",
        "data_dir",
        "checkpoint_every",
        "workers",
    }
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything :func:`~grassmann_cls.training.train.train` needs; every field has a default.

    Attributes
    ----------
    dataset : str
        A :data:`~grassmann_cls.training.data.DATASETS` name or a path (``.npz`` or image
        folder); ``"auto"`` is Fashion-MNIST when installed, else digits.
    data_dir : str, optional
        Folder of the Fashion-MNIST IDX files.
    train_size, test_size : int, optional
        Stratified random subsets (seeded by ``seed``) of the splits.
    classes : tuple of int, optional
        Train on these classes only, relabelled ``0 ..`` in this order.
    imbalance_ratio : float, optional
        Long-tailed training set: class ``c`` keeps
        ``floor(n_max * R^(-c / (C - 1)))`` samples (Cao et al. 2019), class 0
        the head, drawn with ``seed``; ``None`` (default) keeps the split
        balanced (:mod:`~grassmann_cls.training.data.longtail`).
    image_size : int, optional
        Resize images to ``image_size x image_size`` (bilinear).
    backbone : str
        A :func:`~grassmann_cls.training.backbones.backbone_names` entry.
    width : int, optional
        The backbone's width knob (``None``: its default).
    head : str
        A :data:`~grassmann_cls.training.models.HEADS` name: ``softmax``, ``cosine``, ``gcr``.
    subspace_dim : int
        ``k`` of the GCR head.
    scale : float
        Logit scale of the cosine and GCR heads (25 in the paper).
    logit, retraction, transport : str
        GCR logit function and the bases' retraction and vector transport.
    optimizer : str
        A :data:`~grassmann_cls.training.recipe.OPTIMIZERS` name: ``sgd`` (Riemannian
        SGD for everything) or ``adamw`` (AdamW; the bases get ``bases_optimizer``).
    lr, momentum, weight_decay, nesterov
        Optimizer settings; weight decay never applies to the bases, biases or
        normalisation parameters.
    grassmann_momentum : str
        ``"transport"`` or ``"paper"`` (see :class:`~grassmann_cls.optim.RiemannianSGD`).
        Independent of ``retraction``: ``"paper"`` steps with the configured
        retraction (``qr`` by default); ``recipe="paper"`` gives the paper's
        exponential-map step. ``"paper"`` needs ``transport="projection"``
        (it never transports its buffer) and ``momentum > 0``.
    bases_optimizer : str
        A :data:`~grassmann_cls.training.recipe.BASES_OPTIMIZERS` name: the
        optimizer of the class bases, ``rsgd`` (Riemannian SGD, default) or
        ``adam`` (Riemannian Adam). Settings a bases optimizer never reads
        (:data:`~grassmann_cls.training.recipe.UNUSED_SETTINGS`, e.g.
        ``grassmann_momentum`` for ``adam``) are refused unless left at their
        defaults.
    bases_lr_factor : float
        Bases lr over backbone lr, used with ``optimizer="adamw"`` and with
        ``bases_optimizer="adam"`` (whose steps are normalised per entry);
        Riemannian SGD bases under ``sgd`` share its lr. The
        default, 100, is the paper's factor for AdamW backbones; with an
        ``sgd`` backbone and Adam bases choose a small one (e.g. 0.01).
    reorth_every : int, optional
        Re-orthonormalise the bases every this many steps (0: never).
        ``None``: the optimizer's default, every 5 steps for ``"paper"``
        momentum with ``sgd``, every step for ``"paper"`` inside ``adamw``
        (as in the paper's AdamW/Lamb runs), never for ``"transport"``.
    reorth_qr : {"sign_fixed", "unsigned"}
        The QR factor that re-orthonormalises Riemannian SGD bases
        (:class:`~grassmann_cls.optim.RiemannianSGD`'s ``reorth_qr``):
        ``"sign_fixed"`` (default) or ``"unsigned"``, what the GCR authors'
        reference optimizer does. Refused where the bases are never
        re-orthonormalised (``reorth_every`` 0, ``"transport"`` momentum by
        default) and with bases optimizers other than ``rsgd``.
    reorth_count_from : int
        The count of the first step (:class:`~grassmann_cls.optim.RiemannianSGD`'s
        ``reorth_count_from``): ``1`` (default) re-orthonormalises after steps
        ``reorth_every``, ``2 reorth_every``, ...; ``0`` after steps 1,
        ``reorth_every + 1``, ..., as the reference does. Refused where it
        changes nothing: no re-orthonormalisation, or every step.
        ``recipe="paper", reorth_qr="unsigned", reorth_count_from=0`` is the
        reference's algorithm.
    recipe : str, optional
        A :data:`RECIPES` name that sets ``retraction``, ``grassmann_momentum``
        and ``reorth_every`` together; ``"paper"`` is the GCR paper's optimizer
        (exponential map, ``"paper"`` momentum, re-orthonormalised every 5
        steps, every step with ``adamw``). Those fields, left at their
        defaults, take the recipe's values; another value is refused by name.
        A retired retraction name (``"cholesky_qr"``) is replaced by the name
        of the same map (``"qr"``), so older configurations still load.
    schedule : str
        A :data:`~grassmann_cls.training.recipe.SCHEDULES` name (``cosine``, ``constant``).
    warmup_epochs : float
        Linear warm-up length, in epochs (fractions allowed).
    label_smoothing : float
        In ``[0, 1)``.
    epochs, batch_size, seed : int
        Training length, mini-batch size and the seed of everything random.
    output : str, optional
        Folder for ``checkpoint.pt`` and ``metrics.json``; ``None`` writes nothing.
    overwrite : bool
        Allow replacing a run already in ``output``.
    resume : str, optional
        Checkpoint to continue from.
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``"auto"``.
    progress : bool
        Show a tqdm progress bar on stderr.
    eval_batch_size : int
        Batch size of evaluation passes.
    amp : {"bf16", "fp16"}, optional
        Mixed precision (:mod:`~grassmann_cls.training.precision`); ``None``: float32.
    checkpoint_every : int, optional
        Also save ``checkpoint.pt`` every this many optimizer steps, inside
        epochs, so that a resumed run continues from that step.
    workers : int
        Data-loading processes per training process, for image folders read
        from disk (``imagefolder:`` data sets); 0 loads in the main process.
    sync_batchnorm : bool
        With several processes on CUDA, BatchNorm statistics over the whole
        global batch (``torch.nn.SyncBatchNorm``) instead of per process.
    """

    dataset: str = "auto"
    data_dir: str | None = None
    train_size: int | None = None
    test_size: int | None = None
    classes: tuple[int, ...] | None = None
    imbalance_ratio: float | None = None
    image_size: int | None = None
    backbone: str = "mlp"
    width: int | None = None
    head: str = "gcr"
    subspace_dim: int = 8
    scale: float = 25.0
    logit: str = "projection"
    retraction: str = "qr"
    transport: str = "projection"
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    grassmann_momentum: str = "transport"
    bases_optimizer: str = "rsgd"
    bases_lr_factor: float = 100.0
    reorth_every: int | None = None
    reorth_qr: str = "sign_fixed"
    reorth_count_from: int = 1
    recipe: str | None = None
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    output: str | None = None
    overwrite: bool = False
    resume: str | None = None
    device: str = "cpu"
    progress: bool = True
    eval_batch_size: int = 1024
    amp: str | None = None
    checkpoint_every: int | None = None
    workers: int = 0
    sync_batchnorm: bool = False

    def __post_init__(self):
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        for name in ("data_dir", "output", "resume"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(value))
        for name, value in _canonical_names(vars(self)).items():
            object.__setattr__(self, name, value)
        _apply_recipe(self)
        self.validate()

    def validate(self) -> None:
        """Check ranges and option names; raises :class:`~grassmann_cls.errors.ConfigError`."""
        _integers(self, minimum=1, names=("epochs", "batch_size", "subspace_dim", "eval_batch_size"))
        _integers(self, minimum=1, names=("train_size", "test_size", "image_size", "width"), optional=True)
        _integers(self, minimum=0, names=("seed", "workers"))
        _integers(self, minimum=1, names=("checkpoint_every",), optional=True)
        _integers(self, minimum=0, names=("reorth_every",), optional=True)
        _integers(self, minimum=0, names=("reorth_count_from",))
        if self.reorth_qr not in QR_SIGNS:
            raise ConfigError(f"reorth_qr must be one of {', '.join(QR_SIGNS)}; got {self.reorth_qr!r}")
        if self.amp is not None and self.amp not in AMP:
            raise ConfigError(f"amp must be one of {', '.join(AMP)} or None; got {self.amp!r}")
        _reals(self, minimum=0.0, names=("lr", "weight_decay", "warmup_epochs"))
        _reals(self, minimum=0.0, names=("scale", "bases_lr_factor"), strict=True)
        if self.imbalance_ratio is not None:
            _reals(self, minimum=1.0, names=("imbalance_ratio",))
        if not 0.0 <= self.momentum < 1.0 or isinstance(self.momentum, bool):
            raise ConfigError(f"momentum must be in [0, 1); got {self.momentum}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")
        if self.warmup_epochs > self.epochs:
            raise ConfigError(f"warmup_epochs must be <= epochs; got {self.warmup_epochs} > {self.epochs}")
        if self.grassmann_momentum not in GRASSMANN_MOMENTUM:
            raise ConfigError(
                f"grassmann_momentum must be one of {', '.join(GRASSMANN_MOMENTUM)}; got {self.grassmann_momentum!r}"
            )
        for registry, name in ((LOGITS, "logit"), (RETRACTIONS, "retraction"), (TRANSPORTS, "transport")):
            if getattr(self, name) not in registry:
                raise ConfigError(
                    f"unknown {name} {getattr(self, name)!r}; expected one of {', '.join(registry.names())}"
                )
        _names(self)
        _refuse_ignored(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["classes"] = list(self.classes) if self.classes is not None else None
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, given: Iterable[str] = ()) -> TrainConfig:
        """Build from a dict, refusing unknown keys (typos) with a :class:`ConfigError`.

        Settings the run would not read are refused by name when they differ
        from their defaults, and also at their default value when named in
        ``given`` (the settings a user gave explicitly, e.g. command-line flags).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys {unknown}; known keys are {', '.join(sorted(known))}")
        config = cls(**dict(values))
        if config.recipe is not None:
            # Keys given explicitly must agree with the recipe even when they hold a default value.
            clash = [
                f"{name}={values[name]!r}"
                for name, value in _recipe_values(config).items()
                if name in values
                and values[name] != value
                and not (
                    name == "retraction"
                    and values[name] in RETRACTIONS
                    and RETRACTIONS.canonical(values[name]) == value
                )
            ]
            if clash:
                raise _recipe_conflict(config, clash)
        names, message = _ignored(config, frozenset(given))
        if names:
            raise ConfigError(message)
        return config

    @classmethod
    def from_saved(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a configuration saved in a checkpoint, resetting the settings its run never read.

        Checkpoints written by earlier versions may hold settings that the
        run's head or optimizer never read (e.g. ``subspace_dim=8`` for a
        ``softmax`` head), which :meth:`from_dict` now refuses. Those settings
        did not affect the trained run, so they are reset to their defaults
        here; retired names (``retraction="cholesky_qr"``) become their
        current ones, and keys the file lacks take their defaults. Settings
        given by a user go through :meth:`from_dict` instead, which refuses
        ignored settings by name.

        Parameters
        ----------
        values : mapping
            The checkpoint's ``config`` (:meth:`to_dict` of the run's configuration).

        Returns
        -------
        TrainConfig

        Raises
        ------
        ConfigError
            For unknown keys or invalid values, as :meth:`from_dict`.

        Examples
        --------
        >>> saved = {"dataset": "digits", "head": "softmax", "subspace_dim": 8, "retraction": "cholesky_qr"}
        >>> config = TrainConfig.from_saved(saved)
        >>> config.head, config.subspace_dim == TrainConfig().subspace_dim, config.retraction
        ('softmax', True, 'qr')
        """
        values = dict(values)
        values |= _canonical_names(values)
        for _ in range(len(_DEFAULTS)):  # each pass resets at least one setting
            draft = SimpleNamespace(**(dict(_DEFAULTS) | values))
            names, _ = _ignored(draft)
            if not names:
                break
            values |= {name: _DEFAULTS[name] for name in names}
        return cls.from_dict(values)

    def replace(self, **changes) -> TrainConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def resumed(
        cls, saved: Mapping[str, Any], overrides: Mapping[str, Any], *, given: Iterable[str] = ()
    ) -> TrainConfig:
        """The configuration that continues a run: the checkpoint's settings with ``overrides``.

        Parameters
        ----------
        saved : mapping
            The checkpoint's ``config`` (:meth:`to_dict` of the run's
            configuration), read by :meth:`from_saved`: keys it lacks (an
            older file) take their defaults, settings its run never read are reset.
        overrides : mapping
            The settings given for the resumed run, usually with ``resume``.
            Those in :data:`RESUME_FREE` may take any value and ``epochs``
            may grow (extending the run); any other must equal the
            checkpoint's. ``output`` defaults to the folder of ``resume``,
            ``overwrite`` to ``False``.
        given : iterable of str
            The overrides a user gave explicitly (see :meth:`from_dict`).

        Returns
        -------
        TrainConfig

        Raises
        ------
        ConfigError
            Naming every override that would change the part already trained.

        Examples
        --------
        >>> saved = TrainConfig(dataset="digits", epochs=2, seed=3).to_dict()
        >>> config = TrainConfig.resumed(saved, {"resume": "run/checkpoint.pt", "epochs": 4})
        >>> config.seed, config.epochs, config.output
        (3, 4, 'run')
        >>> TrainConfig.resumed(saved, {"resume": "run/checkpoint.pt", "seed": 0})
        Traceback (most recent call last):
        ...
        grassmann_cls.errors.ConfigError: cannot resume run/checkpoint.pt with other settings: seed 0 (checkpoint: 3); a resumed run keeps its checkpoint's settings, may extend epochs, and may change only checkpoint_every, data_dir, device, eval_batch_size, output, overwrite, progress, resume, workers
        """
        checkpoint = cls.from_saved(saved)
        resume = overrides.get("resume")
        defaults = {"overwrite": False, "output": str(Path(resume).parent) if resume else checkpoint.output}
        config = cls.from_dict(checkpoint.to_dict() | defaults | dict(overrides), given=given)
        _refuse_resume_conflicts(checkpoint, config)
        return config


_DEFAULTS = MappingProxyType({f.name: f.default for f in dataclasses.fields(TrainConfig)})


def _canonical_names(values: Mapping[str, Any]) -> dict[str, Any]:
    """The retraction and transport of ``values`` under their current names (a retired name is routine in saved configs)."""
    out = {}
    for registry, name in ((RETRACTIONS, "retraction"), (TRANSPORTS, "transport")):
        value = values.get(name)
        if isinstance(value, str) and value in registry:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                out[name] = registry.canonical(value)
    return out


def resume_conflicts(saved: TrainConfig, config: TrainConfig) -> list[str]:
    """The settings of ``config`` that would change the part of ``saved``'s run already trained.

    Settings in :data:`RESUME_FREE` never conflict, and neither does a larger
    ``epochs`` (the run is extended).

    Returns
    -------
    list of str
        ``"name value (checkpoint: value)"`` for each conflicting setting;
        empty when ``config`` may resume ``saved``'s run.
    """
    old, new = saved.to_dict(), config.to_dict()
    conflicts = []
    for name, value in new.items():
        if name in RESUME_FREE or value == old[name] or (name == "epochs" and value > old[name]):
            continue
        conflicts.append(f"{name} {value!r} (checkpoint: {old[name]!r})")
    return conflicts


def _refuse_resume_conflicts(saved: TrainConfig, config: TrainConfig) -> None:
    """Raise :class:`ConfigError` naming :func:`resume_conflicts`, if any."""
    conflicts = resume_conflicts(saved, config)
    if conflicts:
        raise ConfigError(
            f"cannot resume {config.resume} with other settings: {', '.join(conflicts)}; a resumed "
            "run keeps its checkpoint's settings, may extend epochs, and may change only "
            f"{', '.join(sorted(RESUME_FREE))}"
        )


def _recipe_values(config) -> dict[str, Any]:
    """The fields ``config.recipe`` sets, for ``config.optimizer``."""
    values = dict(RECIPES[config.recipe])
    if config.recipe == "paper" and config.optimizer == "adamw":
        values["reorth_every"] = 1  # the paper re-orthonormalises every step inside AdamW/Lamb
    return values


def _recipe_conflict(config, clash: list[str]) -> ConfigError:
    settings = ", ".join(f"{k}={v!r}" for k, v in _recipe_values(config).items())
    return ConfigError(
        f"recipe={config.recipe!r} sets {settings}; it conflicts with {', '.join(clash)} "
        "(drop those settings, or drop the recipe and set each field)"
    )


def _apply_recipe(config) -> None:
    """Set the fields of ``config.recipe``, refusing non-default values that differ."""
    if config.recipe is None:
        return
    if config.recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {config.recipe!r}; expected None or one of {', '.join(RECIPES)}")
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    values = _recipe_values(config)
    clash = [
        f"{name}={getattr(config, name)!r}"
        for name, value in values.items()
        if getattr(config, name) not in (value, defaults[name])
    ]
    if clash:
        raise _recipe_conflict(config, clash)
    for name, value in values.items():
        object.__setattr__(config, name, value)


def _refuse_ignored(config) -> None:
    """Refuse settings that the configured run would not use, naming them."""
    names, message = _ignored(config)
    if names:
        raise ConfigError(message)


def _ignored(config, given: frozenset[str] = frozenset()) -> tuple[list[str], str]:
    """The settings of ``config`` (any object with its fields) that its run would not read, and why.

    A setting counts when it differs from its default or is named in ``given``.
    """

    def set_(name: str) -> bool:
        return name in given or getattr(config, name) != _DEFAULTS[name]

    if config.grassmann_momentum == "paper" and config.transport != "projection":
        return ["transport"], (
            f"grassmann_momentum='paper' never transports its buffer, so transport="
            f"{config.transport!r} would be ignored; use transport='projection' or "
            "grassmann_momentum='transport'"
        )
    if config.momentum == 0 and config.grassmann_momentum != "transport":
        return ["grassmann_momentum"], (
            f"grassmann_momentum={config.grassmann_momentum!r} chooses how the bases keep momentum, "
            "and momentum=0 keeps none; use momentum > 0 (and reorth_every for re-orthonormalisation)"
        )
    if config.momentum == 0 and config.transport != "projection":
        return ["transport"], (
            f"transport={config.transport!r} moves the bases' momentum buffer, and momentum=0 "
            "keeps none; use momentum > 0 or transport='projection'"
        )
    unused = []
    if config.head != "gcr":
        unused += [name for name in _GCR_ONLY if set_(name)]
        unused += ["bases_lr_factor"] if set_("bases_lr_factor") else []
        unused += ["scale"] if config.head == "softmax" and set_("scale") else []
        where = f"head={config.head!r} has no class bases" + (" and no logit scale" if "scale" in unused else "")
    elif not uses_bases_lr_factor(config) and set_("bases_lr_factor"):
        unused = ["bases_lr_factor"]
        where = (
            f"optimizer={config.optimizer!r} with bases_optimizer={config.bases_optimizer!r} steps the bases at the lr"
        )
    elif unused := [name for name in UNUSED_SETTINGS.get(config.bases_optimizer, ()) if set_(name)]:
        reasons = UNUSED_SETTINGS[config.bases_optimizer]
        where = f"bases_optimizer={config.bases_optimizer!r}: " + "; ".join(dict.fromkeys(reasons[n] for n in unused))
    elif config.optimizer == "adamw" and config.nesterov:
        unused, where = ["nesterov"], "optimizer='adamw' has no Nesterov momentum"
    elif unused := [name for name in _moot_reorth_settings(config) if set_(name)]:
        period = _reorth_period(config)
        where = (
            f"the bases are never re-orthonormalised (reorth_every {period} with grassmann_momentum="
            f"{config.grassmann_momentum!r})"
            if period == 0
            else "the bases are re-orthonormalised after every step, whatever the count of the first"
        )
    if not unused:
        return [], ""
    settings = ", ".join(f"{name}={getattr(config, name)!r}" for name in unused)
    them = "it" if len(unused) == 1 else "them"
    return unused, f"{settings} would be ignored: {where}; leave {them} out (or at the default)"


def _reorth_period(config) -> int:
    """How often Riemannian SGD bases are re-orthonormalised under ``config`` (0: never)."""
    if config.reorth_every is not None:
        return config.reorth_every
    if config.grassmann_momentum != "paper":
        return 0
    return 1 if config.optimizer == "adamw" else PAPER_RECIPE["reorth_every"]


def _moot_reorth_settings(config) -> tuple[str, ...]:
    """``reorth_qr`` / ``reorth_count_from`` where the re-orthonormalisation period makes them moot."""
    period = _reorth_period(config)
    return ("reorth_qr", "reorth_count_from") if period == 0 else ("reorth_count_from",) if period == 1 else ()


def _integers(config, *, minimum: int, names, optional: bool = False) -> None:
    for name in names:
        value = getattr(config, name)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{name} must be an integer >= {minimum}; got {value!r}")


def _reals(config, *, minimum: float, names, strict: bool = False) -> None:
    for name in names:
        value = getattr(config, name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < minimum or (strict and value == minimum):
            raise ConfigError(f"{name} must be a finite number {'>' if strict else '>='} {minimum}; got {value!r}")


def _names(config) -> None:
    """Check the head, optimizer, schedule and backbone names against their registries."""

    for registry, name in (
        (HEADS, "head"),
        (OPTIMIZERS, "optimizer"),
        (SCHEDULES, "schedule"),
        (BASES_OPTIMIZERS, "bases_optimizer"),
    ):
        if getattr(config, name) not in registry:
            raise ConfigError(
                f"unknown {name} {getattr(config, name)!r}; expected one of {', '.join(registry.names())}"
            )
    if ":" not in config.backbone and config.backbone not in BACKBONES:
        raise ConfigError(f"unknown backbone {config.backbone!r}; expected one of {', '.join(backbone_names())}")
    if not isinstance(config.dataset, str) or not config.dataset:
        raise ConfigError(f"dataset must be a name or a path; got {config.dataset!r}")
    if config.device != "auto" and not config.device.startswith(("cpu", "cuda", "mps")):
        raise ConfigError(f"device must be cpu, cuda[:i], mps or auto; got {config.device!r}")
