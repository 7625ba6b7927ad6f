"""Random bad input to every public entry point: only the library's documented errors come out.

Every name in ``manifolds.__all__`` and ``grassmann_cls.__all__``, every entry
of their registries and every public method their classes define is either
fuzzed here (``ENTRY_POINTS``) or listed in ``UNCHECKED`` with the reason it
does not validate (optimizer and forward hot paths: "garbage in, garbage
out"). ``test_every_public_entry_point_is_fuzzed_or_excused`` keeps the two
lists complete.
Some public functions of submodules are fuzzed too (``manifolds.inplace``,
``manifolds.interop``'s tangent helpers, ``shard``, ``topk_correct``,
``extract_features``); the ``analysis`` statistics are not, since they return
a documented ``nan`` for some finite input (e.g. a single sample).

Each example draws arguments that are often wrong: shapes with ``k > n`` or
missing dims, int / bool / complex / half tensors, NaN and Inf, zero or
negative hyper-parameters, unknown option names, strings, ``None``, lists.
A call passes if it raises a :class:`~manifolds.errors.GrassmannError` with
a one-line message, or returns a result that is finite whenever its inputs
were (entry points in ``VALUE_CHECKED`` must refuse non-finite input). Raw
torch / LAPACK / Python errors fail the test, and so does a call that runs
past ``TIME_LIMIT`` seconds.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import math
import signal
import warnings

import geoopt
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given
from torch import nn

import grassmann_cls
import manifolds
from grassmann_cls import (
    LOGITS,
    GrassmannHead,
    HybridOptimizer,
    LandingSGD,
    PaddedGrassmann,
    RiemannianAdam,
    RiemannianSGD,
    convert,
    find_classifier,
    hybrid_optimizer,
    is_manifold_parameter,
    split_parameters,
)
from grassmann_cls.training.backbones import build_backbone, extract_features
from grassmann_cls.training.distributed import shard
from grassmann_cls.training.evaluation import topk_correct
from manifolds import (
    DISTANCES,
    RETRACTIONS,
    TRANSPORTS,
    Grassmann,
    Registry,
    cdist,
    expmap,
    from_projector,
    from_scipy,
    inplace,
    logmap,
    principal_angles,
    to_projector,
    to_scipy,
)
from manifolds.errors import GrassmannError
from manifolds.interop import tangent_from_projector, tangent_to_projector
from tests.conftest import generator

TIME_LIMIT = 10.0
"""Seconds one call may take before it counts as a hang."""

CUDA = torch.cuda.is_available()

# --- what each argument may be -------------------------------------------------

TENSOR_KINDS = (
    "basis",
    "basis64",
    "gaussian",
    "zeros",
    "batched",
    "empty_batch",
    "k_gt_n",
    "vector",
    "scalar",
    "nan",
    "inf",
    "int",
    "bool",
    "complex",
    "half",
    "requires_grad",
    "row_storage",
) + (("cuda",) if CUDA else ())
OTHER_VALUES = (None, "qr", "nope", [1, 2], [[0.5]], 3, -1, 0, 2.5, math.nan, math.inf, True, {}, ())
BAD_NUMBERS = (0, -1, -0.5, 2.5, math.nan, math.inf, -math.inf, None, "1", True, [1], 1e300)
BAD_OPTIONS = ("nope", "", None, 3, ["qr"], "QR")
DEVICES = (None, "cpu", torch.device("cpu"), "nope", "cuda:7", 3, 2.5, [0]) + (("cuda",) if CUDA else ())
DTYPES = (None, torch.float32, torch.float64, torch.float16, torch.int64, torch.complex64, torch.bool, "float32", 4)


def make_tensor(kind: str, n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """A tensor of the given kind around shape ``(n, k)``."""
    basis = Grassmann().random(n, k, generator=gen, dtype=torch.float64).as_subclass(torch.Tensor)
    gaussian = torch.randn(n, k, generator=gen, dtype=torch.float64)
    made = {
        "basis": lambda: basis.float(),
        "basis64": lambda: basis,
        "gaussian": lambda: gaussian.float(),
        "zeros": lambda: torch.zeros(n, k),
        "batched": lambda: basis.float().expand(2, n, k),
        "empty_batch": lambda: torch.zeros(0, n, k),
        "k_gt_n": lambda: torch.randn(n, n + 1, generator=gen),
        "vector": lambda: gaussian[:, 0].float(),
        "scalar": lambda: torch.tensor(1.0),
        "nan": lambda: basis.float().index_fill(0, torch.tensor([0]), math.nan),
        "inf": lambda: basis.float().index_fill(0, torch.tensor([n - 1]), -math.inf),
        "int": lambda: torch.randint(-3, 3, (n, k), generator=gen),
        "bool": lambda: torch.ones(n, k, dtype=torch.bool),
        "complex": lambda: basis.to(torch.complex64),
        "half": lambda: basis.half(),
        "requires_grad": lambda: basis.float().requires_grad_(),
        "row_storage": lambda: basis.float().mT.contiguous().mT,
        "cuda": lambda: basis.float().to("cuda"),
    }
    return made[kind]()


class Draw:
    """The arguments of one call, drawn from one hypothesis ``data`` object.

    Tensors share one ``(n, k)`` so that pairs are often consistent; every
    tensor and value drawn is recorded, so the harness knows whether the
    call received anything non-finite.
    """

    def __init__(self, data):
        self.data = data
        self.n = data.draw(st.integers(1, 6), label="n")
        self.k = data.draw(st.integers(1, self.n), label="k")
        self.gen = generator(data.draw(st.integers(0, 2**32 - 1), label="seed"))
        self.nonfinite = False

    def pick(self, options, label="value"):
        value = self.data.draw(st.sampled_from(list(options)), label=label)
        self._note(value)
        return value

    def _note(self, value) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            self.nonfinite = True
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            self.nonfinite = True

    def tensor(self, *, n=None, k=None, label="tensor"):
        if self.data.draw(st.integers(0, 9), label=f"{label} is a tensor") == 0:
            return self.pick(OTHER_VALUES, label)
        kind = self.data.draw(st.sampled_from(TENSOR_KINDS), label=f"{label} kind")
        value = make_tensor(kind, self.n if n is None else n, self.k if k is None else k, self.gen)
        self._note(value)
        return value

    def number(self, valid, label="number"):
        """A valid value most of the time, else one of ``BAD_NUMBERS``."""
        return self.pick([valid] * 3 + list(BAD_NUMBERS), label)

    def integer(self, low, high, label="integer"):
        return self.pick(list(range(low, high + 1)) + [0, -1, 2.5, "2", None, True], label)

    def option(self, names, label="option"):
        return self.pick(list(names) * 2 + list(BAD_OPTIONS), label)

    def boolean(self, label="flag"):
        return self.pick([True, False, True, False, "False", 0, None], label)

    def dtype(self):
        return self.pick(DTYPES, "dtype")

    def device(self):
        return self.pick(DEVICES, "device")

    def generator(self):
        return self.pick([None, None, torch.Generator().manual_seed(1), "seed", 3], "generator")


# --- entry points --------------------------------------------------------------


def _gcr_model(n=6, classes=3, k=2) -> nn.Module:
    return nn.Sequential(nn.Linear(4, n), nn.ReLU(), GrassmannHead(n, classes, k, generator=generator(0)))


def _with_gradients(model: nn.Module, d: Draw) -> nn.Module:
    for p in model.parameters():
        kind = d.pick(["gaussian", "gaussian", "zeros", "nan", "inf"], "gradient kind")
        grad = torch.randn(p.shape, generator=d.gen)
        if kind == "zeros":
            grad.zero_()
        elif kind != "gaussian":
            grad.view(-1)[0] = math.nan if kind == "nan" else math.inf
            d.nonfinite = True
        p.grad = grad
    return model


def _optimizer_options(d: Draw) -> dict:
    return {
        "lr": d.number(0.1, "lr"),
        "momentum": d.number(0.9, "momentum"),
        "dampening": d.number(0.0, "dampening"),
        "weight_decay": d.number(1e-4, "weight_decay"),
        "nesterov": d.boolean("nesterov"),
        "grassmann_momentum": d.option(("transport", "paper"), "grassmann_momentum"),
        "reorth_every": d.pick([None, 0, 5, -1, 2.5, "5"], "reorth_every"),
        "reorth_qr": d.pick(["sign_fixed", "unsigned", "householder", 1], "reorth_qr"),
        "reorth_count_from": d.pick([1, 0, -1, 0.5], "reorth_count_from"),
        "nonfinite": d.option(("raise", "skip"), "nonfinite"),
        "foreach": d.pick([None, False, True, "yes"], "foreach"),
    }


def _params(d: Draw):
    model = _gcr_model()
    return d.pick(
        [
            model.parameters(),
            list(model.named_parameters()),
            [{"params": list(model.parameters()), "lr": 0.1}],
            [],
            torch.zeros(3),
            "params",
            None,
            5,
            [torch.zeros(2, requires_grad=True) * 2],
        ],
        "params",
    )


def _damaged_state_dict(d: Draw, opt) -> dict:
    state = copy.deepcopy(opt.state_dict())
    damage = d.pick(["none", "groups", "lr", "buffer_nan", "buffer_shape", "not_a_dict", "no_groups"], "damage")
    if damage == "groups":
        state["param_groups"] = state["param_groups"] * 2
    elif damage == "lr":
        state["param_groups"][0]["lr"] = -1.0
    elif damage.startswith("buffer"):
        for buffers in state["state"].values():
            buf = buffers["momentum_buffer"]
            buffers["momentum_buffer"] = buf.fill_(math.nan) if damage == "buffer_nan" else buf[..., :1].clone()
    elif damage == "not_a_dict":
        return [state]
    elif damage == "no_groups":
        del state["param_groups"]
    return state


def _stepped_rsgd(options=None) -> tuple[nn.Module, RiemannianSGD]:
    model = _gcr_model()
    opt = RiemannianSGD(model.parameters(), lr=0.1, momentum=0.9, **(options or {}))
    model(torch.randn(4, 4, generator=generator(1))).sum().backward()
    opt.step()
    return model, opt


def _radam_step(d: Draw):
    model = _gcr_model()
    opt = RiemannianAdam(
        model.parameters(), lr=1e-2, amsgrad=d.boolean("amsgrad"), nonfinite=d.option(("raise", "skip"))
    )
    for _ in range(2):
        _with_gradients(model, d)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            opt.step()
    return model, [s.get("exp_avg") for s in opt.state.values()]


def _landing_step(d: Draw):
    model = _gcr_model()
    opt = LandingSGD(model.parameters(), lr=0.1, momentum=0.9, nonfinite=d.option(("raise", "skip")))
    for _ in range(2):
        _with_gradients(model, d)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            opt.step()
    return model, [s.get("momentum_buffer") for s in opt.state.values()]


def _rsgd_step(d: Draw):
    model = _gcr_model()
    opt = RiemannianSGD(model.parameters(), lr=0.1, momentum=0.9, nonfinite=d.option(("raise", "skip")))
    for _ in range(2):
        _with_gradients(model, d)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            opt.step()
    return model, [s.get("momentum_buffer") for s in opt.state.values()]


def _hybrid_step(d: Draw):
    model = _gcr_model()
    opt = hybrid_optimizer(model, lr=1e-3, bases_lr_factor=100.0, nonfinite=d.option(("raise", "skip")))
    for _ in range(2):
        _with_gradients(model, d)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            opt.step()
    return model, [t for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor)]


def _convertible(d: Draw):
    return d.pick(
        [
            nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)),
            nn.Linear(5, 2),
            nn.Conv1d(2, 2, 1),
            nn.Sequential(nn.Linear(4, 6, dtype=torch.float16)),
            "model",
            None,
        ],
        "model",
    )


def _head_kwargs(d: Draw) -> dict:
    return d.pick(
        [
            {},
            {"scale": 10.0},
            {"scale": -1.0},
            {"logit": "nope"},
            {"sacle": 25.0},
            {"bias": True},
            {"normalize": "yes"},
            {"dtype": torch.float16},
        ],
        "head kwargs",
    )


def _head(d: Draw):
    return GrassmannHead(
        d.integer(1, 8, "in_features"),
        d.integer(1, 5, "num_classes"),
        d.pick([1, 2, 9, 0, -1, 2.5, (1, 2), [1, 2, 3], (), "2", None, (0, 1)], "subspace_dim"),
        scale=d.number(25.0, "scale"),
        learn_scale=d.boolean("learn_scale"),
        normalize=d.boolean("normalize"),
        logit=d.option(LOGITS.names(), "logit"),
        manifold=d.pick([None, Grassmann("polar"), PaddedGrassmann((1, 2)), "qr", geoopt.Sphere()], "manifold"),
        eps=d.number(1e-12, "eps"),
        dtype=d.dtype(),
        device=d.device(),
        generator=d.generator(),
    )


def _head_forward(d: Draw):
    head = GrassmannHead(d.n, 3, d.k, generator=generator(0))
    return head(d.tensor(n=2, k=d.n, label="features"))


def _grassmann_method(name: str):
    def call(d: Draw):
        gr = d.pick([Grassmann(), PaddedGrassmann((1, 2))], "manifold")
        method = getattr(gr, name)
        if name in ("random", "origin"):
            size = d.pick(
                [
                    (d.n, d.k),
                    (2, d.n, d.k),
                    (d.k, d.n + 1),
                    (d.n,),
                    (),
                    (-1, d.n, d.k),
                    (d.n, 0),
                    (2.5, 1),
                    ("3", 2),
                    ([2, 3],),
                    (torch.Size([2, d.n, d.k]),),
                    (None,),
                ],
                "size",
            )
            kwargs = {"dtype": d.dtype(), "device": d.device()}
            if name == "random":
                kwargs["generator"] = d.generator()
            return method(*size, **kwargs)
        if name == "random_tangent":
            return method(d.tensor(label="x"), generator=d.generator())
        if name in ("check_point_on_manifold", "check_point", "assert_check_point", "assert_check_point_on_manifold"):
            return method(d.tensor(label="x"))
        if name in ("check_vector", "assert_check_vector"):
            return method(d.tensor(label="u"))
        return method(d.tensor(label="x"), d.tensor(label="u"))

    return call


def _registry_method(name: str):
    def call(d: Draw):
        registry = d.pick([RETRACTIONS, TRANSPORTS, DISTANCES, LOGITS], "registry")
        if name == "resolve":
            return registry.resolve(d.option(registry.names()))
        if name == "name_of":
            return registry.name_of(d.pick([registry.resolve(registry.names()[0]), len, "x", None], "fn"))
        fn = d.pick([lambda x: x, len, "f", None, 3, np.sin, functools.partial(len)], "fn")
        return Registry("thing").register(fn, name=d.pick([None, "f", "", 3], "name"))

    return call


def _momentum_style(d: Draw):
    manifold = d.pick([Grassmann(), Grassmann(transport="parallel"), PaddedGrassmann((1, 2))], "manifold")
    return manifold.check_momentum_style(d.pick(["transport", "paper", "Paper", None, 3], "style"))


def _paper_recipe(d: Draw):
    options = {
        k: v
        for k, v in _optimizer_options(d).items()
        if k not in ("lr", "momentum") and (k not in ("grassmann_momentum", "reorth_every") or d.boolean(f"pass {k}"))
    }
    model = nn.Sequential(nn.Linear(4, 6), GrassmannHead(6, 3, 2, manifold=Grassmann(retraction="exp")))
    params = d.pick([model.parameters(), _gcr_model().parameters(), [], None], "params")
    return RiemannianSGD.paper_recipe(params, d.number(0.1, "lr"), d.number(0.9, "momentum"), **options)


def _stack(t):
    """``t`` with a leading set dim when it is a tensor (cdist's ``(P, n, k)``)."""
    return t[None] if isinstance(t, torch.Tensor) else t


def _padded(d: Draw):
    return PaddedGrassmann(
        d.pick([(1, 2), [3], (), (0, 1), "ab", 5, (1.5,), None, (True,), np.array([1, 2])], "dims"),
        retraction=d.option(RETRACTIONS.names()),
        transport=d.option(TRANSPORTS.names()),
    )


# Spelled out for the names that manifolds re-exports since PaddedGrassmann lives there (grassmann_cls keeps it).
_PADDED_MIRRORED = (
    "assert_check_point",
    "assert_check_point_on_manifold",
    "assert_check_vector",
    "assert_check_vector_on_tangent",
    "check_point",
    "check_vector",
    "check_point_on_manifold",
    "check_vector_on_tangent",
    "random_tangent",
    "random",
    "origin",
    "random_uniform",
)
_PADDED_HOT = (
    "projx",
    "proju",
    "egrad2rgrad",
    "inner",
    "norm",
    "retr",
    "expmap",
    "logmap",
    "transp",
    "retr_transp",
    "expmap_transp",
    "transp_follow_retr",
    "transp_follow_expmap",
    "dist",
    "dist2",
    "mask",
)

ENTRY_POINTS = {
    "manifolds.PaddedGrassmann": _padded,
    "manifolds.InPlaceManifold.check_momentum_style": _momentum_style,
    "manifolds.Registry.canonical": lambda d: d.pick([RETRACTIONS, TRANSPORTS, DISTANCES], "registry").canonical(
        d.pick(["qr", "cholesky_qr", "householder", "", None, 3], "name")
    ),
    "grassmann_cls.RiemannianSGD.paper_recipe": _paper_recipe,
    # manifolds
    "manifolds.Grassmann": lambda d: Grassmann(d.option(RETRACTIONS.names()), d.option(TRANSPORTS.names())),
    **{
        f"manifolds.Grassmann.{m}": _grassmann_method(m)
        for m in (
            "random",
            "origin",
            "random_tangent",
            "check_point",
            "check_vector",
            "check_point_on_manifold",
            "check_vector_on_tangent",
            "assert_check_point",
            "assert_check_vector",
            "assert_check_point_on_manifold",
            "assert_check_vector_on_tangent",
        )
    },
    "manifolds.Registry": lambda d: Registry(d.pick(["kind", "", None, 3, ["kind"]], "kind")),
    **{f"manifolds.Registry.{m}": _registry_method(m) for m in ("register", "resolve", "name_of")},
    "manifolds.Registry.map_of": lambda d: d.pick([RETRACTIONS, TRANSPORTS], "registry").map_of(
        d.pick(["newton_schulz", "qr", "cholesky_qr", "nope", None, 3], "name")
    ),
    **{
        f"manifolds.DISTANCES[{name}]": (lambda fn: lambda d: fn(d.tensor(label="x"), d.tensor(label="y")))(
            DISTANCES.resolve(name)
        )
        for name in DISTANCES.names()
    },
    "manifolds.cdist": lambda d: cdist(
        _stack(d.tensor(label="x")),
        d.tensor(label="y"),
        d.option(DISTANCES.names(), "distance"),
        chunk_size=d.integer(1, 3, "chunk_size"),
    ),
    "manifolds.expmap": lambda d: expmap(d.tensor(label="x"), d.tensor(label="u")),
    "manifolds.logmap": lambda d: logmap(d.tensor(label="x"), d.tensor(label="y")),
    "manifolds.principal_angles": lambda d: principal_angles(d.tensor(label="x"), d.tensor(label="y")),
    "manifolds.to_projector": lambda d: to_projector(d.tensor(label="x")),
    "manifolds.from_projector": lambda d: from_projector(d.tensor(k=d.n, label="p"), d.integer(1, d.n, "k")),
    "manifolds.to_scipy": lambda d: to_scipy(d.tensor(label="x")),
    "manifolds.from_scipy": lambda d: from_scipy(
        d.pick(
            [
                np.ones((d.n, d.k)),
                np.full((2, 2), np.nan),
                [["a", "b"]],
                [[1, 2], [3]],
                5,
                None,
                np.ones((1, 3)),
                np.eye(3, dtype=np.complex64),
                np.eye(3) * 1e300,
            ],
            "a",
        ),
        dtype=d.dtype(),
    ),
    # grassmann_cls
    "grassmann_cls.GrassmannHead": _head,
    "grassmann_cls.GrassmannHead.forward": _head_forward,
    "grassmann_cls.GrassmannHead.from_linear": lambda d: GrassmannHead.from_linear(
        d.pick([nn.Linear(6, 3), nn.Linear(6, 3, dtype=torch.float64), nn.Conv1d(2, 2, 1), "linear", None], "linear"),
        d.pick([1, 2, 7, 0, "2", (1, 2, 3)], "subspace_dim"),
        generator=d.generator(),
        **_head_kwargs(d),
    ),
    "grassmann_cls.GrassmannHead.reset_parameters": lambda d: GrassmannHead(6, 3, 2).reset_parameters(d.generator()),
    "grassmann_cls.PaddedGrassmann": _padded,
    "grassmann_cls.LOGITS": lambda d: LOGITS.resolve(d.option(LOGITS.names())),
    "grassmann_cls.RiemannianSGD": lambda d: RiemannianSGD(_params(d), **_optimizer_options(d)),
    "grassmann_cls.RiemannianSGD.add_param_group": lambda d: RiemannianSGD(
        _gcr_model().parameters(), lr=0.1
    ).add_param_group(
        d.pick(
            [
                {"params": [torch.zeros(2, requires_grad=True)], "lr": d.number(0.1)},
                {"params": "x"},
                {"lr": 0.1},
                [],
                {"params": [torch.zeros(2)], "momentum": -1},
            ],
            "group",
        )
    ),
    "grassmann_cls.RiemannianSGD.step": _rsgd_step,
    "grassmann_cls.RiemannianSGD.load_state_dict": lambda d: (
        lambda opt: opt.load_state_dict(_damaged_state_dict(d, opt))
    )(_stepped_rsgd()[1]),
    "grassmann_cls.RiemannianAdam": lambda d: RiemannianAdam(
        _params(d),
        lr=d.number(1e-3, "lr"),
        betas=d.pick([(0.9, 0.999), (0.9, 1.0), 0.9, (-0.1, 0.9)], "betas"),
        eps=d.number(1e-8, "eps"),
        weight_decay=d.number(1e-2, "weight_decay"),
        amsgrad=d.boolean("amsgrad"),
        decoupled_weight_decay=d.pick([True, False, 1], "decoupled_weight_decay"),
        nonfinite=d.option(("raise", "skip"), "nonfinite"),
        foreach=d.pick([None, False, True, "yes"], "foreach"),
    ),
    "grassmann_cls.RiemannianAdam.step": _radam_step,
    "grassmann_cls.LandingSGD": lambda d: LandingSGD(
        _params(d),
        lr=d.number(0.1, "lr"),
        momentum=d.number(0.9, "momentum"),
        nesterov=d.boolean("nesterov"),
        attraction=d.number(1.0, "attraction"),
        bound=d.number(0.1, "bound"),
        nonfinite=d.option(("raise", "skip"), "nonfinite"),
    ),
    "grassmann_cls.LandingSGD.step": _landing_step,
    "grassmann_cls.LandingSGD.add_param_group": lambda d: LandingSGD(_gcr_model().parameters(), lr=0.1).add_param_group(
        d.pick(
            [
                {"params": [torch.zeros(2, requires_grad=True)], "lr": d.number(0.1)},
                {"params": "x"},
                {"lr": 0.1},
                [],
                {"params": [torch.zeros(2)], "bound": 2},
            ],
            "group",
        )
    ),
    "grassmann_cls.LandingSGD.load_state_dict": lambda d: (
        lambda opt: opt.load_state_dict(
            d.pick([opt.state_dict(), {}, [], None, {"state": {}, "param_groups": []}], "state")
        )
    )(LandingSGD(_gcr_model().parameters(), lr=0.1)),
    "grassmann_cls.RiemannianAdam.add_param_group": lambda d: RiemannianAdam(_gcr_model().parameters()).add_param_group(
        d.pick(
            [
                {"params": [torch.zeros(2, requires_grad=True)], "lr": d.number(0.1)},
                {"params": "x"},
                {"lr": 0.1},
                [],
                {"params": [torch.zeros(2)], "eps": -1},
            ],
            "group",
        )
    ),
    "grassmann_cls.RiemannianAdam.load_state_dict": lambda d: (
        lambda opt: opt.load_state_dict(
            d.pick([opt.state_dict(), {}, [], None, {"state": {}, "param_groups": []}], "state")
        )
    )(RiemannianAdam(_gcr_model().parameters())),
    "grassmann_cls.HybridOptimizer": lambda d: HybridOptimizer(
        *d.pick([(), ("adam",), (RiemannianSGD(_gcr_model().parameters(), lr=0.1),), (None, 3)], "optimizers"),
        nonfinite=d.pick([None, "raise", "skip", "ignore", 3], "nonfinite"),
    ),
    "grassmann_cls.HybridOptimizer.step": _hybrid_step,
    "grassmann_cls.HybridOptimizer.load_state_dict": lambda d: (
        lambda opt: opt.load_state_dict(
            d.pick(
                [
                    opt.state_dict(),
                    {"optimizers": []},
                    {"optimizers": [{}, {}]},
                    [],
                    None,
                    {"optimizers": [opt.state_dict()["optimizers"][1], opt.state_dict()["optimizers"][0]]},
                ],
                "state",
            )
        )
    )(hybrid_optimizer(_gcr_model(), lr=1e-3, bases_lr_factor=100.0)),
    "grassmann_cls.HybridOptimizer.add_param_group": lambda d: hybrid_optimizer(
        _gcr_model(), lr=1e-3, bases_lr_factor=10.0
    ).add_param_group({"params": [torch.zeros(1, requires_grad=True)]}),
    "grassmann_cls.hybrid_optimizer": lambda d: hybrid_optimizer(
        d.pick([_gcr_model(), nn.Linear(3, 2), _gcr_model().parameters(), 5, "model", None], "params"),
        backbone=d.pick([torch.optim.AdamW, torch.optim.SGD, "adamw", None], "backbone"),
        lr=d.number(1e-3, "lr"),
        bases_lr_factor=d.number(100.0, "bases_lr_factor"),
        momentum=d.number(0.9, "momentum"),
        nonfinite=d.option(("raise", "skip")),
        **d.pick([{}, {"weight_decay": 0.05}, {"betas": "x"}, {"weight_decay": -1.0}, {"nope": 1}], "backbone kwargs"),
    ),
    "grassmann_cls.split_parameters": lambda d: split_parameters(
        d.pick(
            [
                _gcr_model(),
                list(_gcr_model().named_parameters()),
                5,
                "x",
                None,
                torch.zeros(3),
                [{"params": []}],
                [("a", "b")],
            ],
            "params",
        )
    ),
    "grassmann_cls.is_manifold_parameter": lambda d: is_manifold_parameter(d.tensor()),
    "grassmann_cls.convert": lambda d: convert(
        _convertible(d),
        d.pick([2, 0, 7, "2", (1, 2, 3), None], "subspace_dim"),
        name=d.pick([None, "2", "0", "nope", 3], "name"),
        init=d.option(("random", "linear"), "init"),
        **_head_kwargs(d),
    ),
    "grassmann_cls.find_classifier": lambda d: find_classifier(_convertible(d), d.pick([None, "2", "x", 3], "name")),
    # public functions of submodules (not in the packages' __all__)
    "manifolds.inplace.retract_": lambda d: inplace.retract_(
        d.tensor(label="x"),
        d.tensor(label="u"),
        alpha=d.pick([1.0, -0.1], "alpha"),
        retraction=d.option(RETRACTIONS.names(), "retraction"),
    ),
    "manifolds.inplace.retract_transport_": lambda d: inplace.retract_transport_(
        d.tensor(label="x"),
        d.tensor(label="u"),
        d.tensor(label="v"),
        alpha=d.pick([1.0, -0.1], "alpha"),
        retraction=d.option(RETRACTIONS.names(), "retraction"),
    ),
    "manifolds.inplace.project": lambda d: inplace.project(
        d.tensor(label="x"), d.tensor(label="v"), out=d.pick([None, None, torch.zeros(d.n, d.k)], "out")
    ),
    "manifolds.inplace.momentum_step_": lambda d: inplace.momentum_step_(
        d.tensor(label="x"),
        d.tensor(label="grad"),
        d.tensor(label="buf"),
        lr=d.number(0.1, "lr"),
        momentum=d.number(0.9, "momentum"),
        mode=d.option(inplace.MOMENTUM_MODES, "mode"),
        retraction=d.option(RETRACTIONS.names(), "retraction"),
    ),
    "manifolds.inplace.orthonormalize_": lambda d: inplace.orthonormalize_(d.tensor(label="x")),
    "manifolds.inplace.principal_angles": lambda d: inplace.principal_angles(d.tensor(label="x"), d.tensor(label="y")),
    "manifolds.interop.tangent_to_projector": lambda d: tangent_to_projector(d.tensor(label="x"), d.tensor(label="u")),
    "manifolds.interop.tangent_from_projector": lambda d: tangent_from_projector(
        d.tensor(label="x"), d.tensor(k=d.n, label="dp")
    ),
    "grassmann_cls.training.distributed.shard": lambda d: shard(
        d.pick([torch.arange(d.n), torch.zeros(d.n, 2), torch.tensor(3), [1, 2], None], "batch"),
        d.integer(0, 3, "rank"),
        d.integer(1, 3, "world_size"),
    ),
    "grassmann_cls.training.evaluation.topk_correct": lambda d: topk_correct(
        d.tensor(label="logits"),
        d.pick(
            [torch.arange(d.n) % max(d.k, 1), torch.full((d.n,), d.k), torch.zeros(d.n), torch.arange(d.n + 1), None],
            "labels",
        ),
        d.pick([(1,), (1, 5), (), (0,), (1.5,), "1", 3], "ks"),
    ),
    "grassmann_cls.training.backbones.extract_features": lambda d: extract_features(
        build_backbone("cnn", in_shape=(1, 4, 4), num_classes=3, width=2),
        d.pick(
            [
                torch.randn(3, 1, 4, 4, generator=d.gen),
                torch.randn(3, 2, 4, 4, generator=d.gen),
                torch.zeros(0, 1, 4, 4),
                d.tensor(label="images"),
            ],
            "images",
        ),
        batch_size=d.integer(1, 3, "batch_size"),
    ),
}

VALUE_CHECKED = {name for name in ENTRY_POINTS if name.startswith(("manifolds.DISTANCES", "manifolds.cdist"))} | {
    "manifolds.expmap",
    "manifolds.logmap",
    "manifolds.principal_angles",
    "manifolds.to_projector",
    "manifolds.from_projector",
    "manifolds.from_scipy",
    "grassmann_cls.RiemannianSGD",
    "manifolds.interop.tangent_to_projector",
    "manifolds.interop.tangent_from_projector",
    "manifolds.inplace.principal_angles",
}
"""Entry points that must refuse non-finite input (the others may pass it through)."""

ALWAYS_FINITE = {
    "grassmann_cls.RiemannianSGD.step",
    "grassmann_cls.RiemannianAdam.step",
    "grassmann_cls.HybridOptimizer.step",
    "grassmann_cls.LandingSGD.step",
}
"""Entry points whose results must be finite even for non-finite input (bases and momentum after a step)."""

_HOT = "optimizer hot path: called every step on tensors the optimizer made; checks would cost a pass and a sync"
UNCHECKED = {
    **{f"manifolds.RETRACTIONS[{name}]": _HOT for name in RETRACTIONS.names()},
    **{f"manifolds.TRANSPORTS[{name}]": _HOT for name in TRANSPORTS.names()},
    **{
        f"grassmann_cls.LOGITS[{name}]": "forward hot path of GrassmannHead, on coefficients the head computed"
        for name in LOGITS.names()
    },
    **{
        f"manifolds.Grassmann.{m}": _HOT + " (geoopt's Manifold protocol; manifolds.expmap/logmap/DISTANCES "
        "are the checked versions)"
        for m in (
            "projx",
            "proju",
            "egrad2rgrad",
            "inner",
            "norm",
            "retr",
            "expmap",
            "logmap",
            "transp",
            "retr_transp",
            "retr_",
            "retr_transp_",
            "transp_follow_retr",
            "expmap_transp",
            "transp_follow_expmap",
            "dist",
            "dist2",
        )
    },
    **{
        f"grassmann_cls.PaddedGrassmann.{m}": _HOT + " (as Grassmann's)"
        for m in (
            "projx",
            "proju",
            "egrad2rgrad",
            "retr",
            "expmap",
            "logmap",
            "transp",
            "retr_transp",
            "retr_",
            "retr_transp_",
            "expmap_transp",
            "dist",
            "dist2",
            "mask",
        )
    },
    "manifolds.Grassmann.random_uniform": "alias of Grassmann.random (fuzzed)",
    **{
        f"{package}.PaddedGrassmann.{m}": f"fuzzed through manifolds.Grassmann.{m} on a PaddedGrassmann"
        for package in ("manifolds", "grassmann_cls")
        for m in _PADDED_MIRRORED
    },
    **{
        f"{package}.PaddedGrassmann.{m}": _HOT + " (as Grassmann's)"
        for package in ("manifolds", "grassmann_cls")
        for m in _PADDED_HOT
    },
    **{
        f"{cls}.{m}": _HOT + " (RiemannianSGD.step, fuzzed, calls it)"
        for cls in ("manifolds.Grassmann", "manifolds.InPlaceManifold")
        for m in ("momentum_step_", "projx_", "retr_", "retr_transp_")
    },
    "manifolds.InPlaceManifold": "a base class; its subclasses Grassmann and PaddedGrassmann are fuzzed",
    "manifolds.MOMENTUM_STYLES": "a tuple of names",
    "manifolds.checks": "the argument checks of the entry points fuzzed here",
    "manifolds.PaddedGrassmann.extra_repr": "no arguments",
    "grassmann_cls.RiemannianSGD.check_gradients": "the first half of RiemannianSGD.step, fuzzed through it",
    "grassmann_cls.RiemannianSGD.update": "the second half of RiemannianSGD.step, fuzzed through it",
    "grassmann_cls.ood": "a package of scores and metrics; tests/grassmann_cls/test_ood.py checks its input validation",
    "grassmann_cls.PaddedGrassmann.random_uniform": "alias of PaddedGrassmann.random (fuzzed)",
    "grassmann_cls.PaddedGrassmann.random": "fuzzed through manifolds.Grassmann.random on a PaddedGrassmann",
    "grassmann_cls.PaddedGrassmann.origin": "fuzzed through manifolds.Grassmann.origin on a PaddedGrassmann",
    "manifolds.Grassmann.extra_repr": "no arguments",
    "grassmann_cls.PaddedGrassmann.extra_repr": "no arguments",
    "grassmann_cls.GrassmannHead.extra_repr": "no arguments",
    "grassmann_cls.RiemannianSGD.__setstate__": "pickling protocol, not called by users",
    "grassmann_cls.RiemannianSGD.__getstate__": "pickling protocol, not called by users",
    "grassmann_cls.RiemannianAdam.__setstate__": "pickling protocol, not called by users",
    "grassmann_cls.RiemannianAdam.check_gradients": "the first half of RiemannianAdam.step, fuzzed through it",
    "grassmann_cls.RiemannianAdam.update": "the second half of RiemannianAdam.step, fuzzed through it",
    "grassmann_cls.LandingSGD.check_gradients": "the first half of LandingSGD.step, fuzzed through it",
    "grassmann_cls.LandingSGD.update": "the second half of LandingSGD.step, fuzzed through it",
    "grassmann_cls.RiemannianAdam.__getstate__": "pickling protocol, not called by users",
    "grassmann_cls.LandingSGD.__setstate__": "pickling protocol, not called by users",
    "grassmann_cls.LandingSGD.__getstate__": "pickling protocol, not called by users",
    "manifolds.Grassmann.check_landing": "no arguments",
    "manifolds.InPlaceManifold.check_landing": "no arguments",
    **{
        f"manifolds.InPlaceManifold.{m}": "abstract here (the subclass gives the shape and manifold tests); "
        "fuzzed through Grassmann and PaddedGrassmann"
        for m in (
            "check_point",
            "check_vector",
            "check_point_on_manifold",
            "check_vector_on_tangent",
            "assert_check_point",
            "assert_check_vector",
            "assert_check_point_on_manifold",
            "assert_check_vector_on_tangent",
        )
    },
    "manifolds.InPlaceManifold.landing_step_": "raises NotImplementedError; Grassmann.landing_step_ is the implementation",
    "manifolds.Grassmann.landing_step_": _HOT + " (LandingSGD.step, fuzzed, calls it)",
    "grassmann_cls.HybridOptimizer.__setstate__": "pickling protocol, not called by users",
    "grassmann_cls.HybridOptimizer.__getstate__": "pickling protocol, not called by users",
    "grassmann_cls.HybridOptimizer.zero_grad": "set_to_none is passed to each inner torch optimizer as is",
    "grassmann_cls.RiemannianSGD.state_dict": "no arguments",
    "grassmann_cls.HybridOptimizer.state_dict": "no arguments",
    "grassmann_cls.ManifoldOptimizer": "a base class; its subclasses RiemannianSGD, RiemannianAdam, LandingSGD are fuzzed",
    **{
        f"grassmann_cls.ManifoldOptimizer.{m}": "inherited by RiemannianSGD, RiemannianAdam and LandingSGD, fuzzed there"
        for m in (
            "step",
            "check_gradients",
            "update",
            "add_param_group",
            "load_state_dict",
            "__getstate__",
            "__setstate__",
        )
    },
    "manifolds.Registry.names": "no arguments",
    "manifolds.errors": "a module of exception classes",
    "grassmann_cls.errors": "a module of exception classes",
}


def _public_entry_points() -> set[str]:
    """Every public name, registry entry and own public method of both packages."""
    names = set()
    for package in (manifolds, grassmann_cls):
        for name in package.__all__:
            obj = getattr(package, name)
            qualified = f"{package.__name__}.{name}"
            if isinstance(obj, Registry):
                names |= {f"{qualified}[{entry}]" for entry in obj.names()}
            names.add(qualified)
            if inspect.isclass(obj):
                names |= {
                    f"{qualified}.{attr}"
                    for attr, value in vars(obj).items()
                    if (not attr.startswith("_") or attr in ("__getstate__", "__setstate__"))
                    and (inspect.isfunction(value) or isinstance(value, (classmethod, staticmethod)))
                }
    return names


def test_every_public_entry_point_is_fuzzed_or_excused():
    registries = {
        f"{p.__name__}.{n}"
        for p in (manifolds, grassmann_cls)
        for n in p.__all__
        if isinstance(getattr(p, n), Registry)
    }
    missing = _public_entry_points() - set(ENTRY_POINTS) - set(UNCHECKED) - registries
    assert not missing, f"not fuzzed and not excused: {sorted(missing)}"
    assert not set(ENTRY_POINTS) & set(UNCHECKED)


# --- the harness -----------------------------------------------------------------


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise ``TimeoutError`` in the main thread once ``seconds`` have passed."""

    def expire(signum, frame):
        raise TimeoutError(f"the call ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def nonfinite_parts(result) -> list[str]:
    """Descriptions of the non-finite floating parts of ``result``."""
    if isinstance(result, torch.Tensor):
        floating = result.is_floating_point() or result.is_complex()
        return [f"tensor of shape {tuple(result.shape)}"] if floating and not bool(torch.isfinite(result).all()) else []
    if isinstance(result, np.ndarray):
        return ["array"] if result.dtype.kind in "fc" and not np.isfinite(result).all() else []
    if isinstance(result, float):
        return [repr(result)] if not math.isfinite(result) else []
    if isinstance(result, nn.Module):
        return [
            f"{name} of the module"
            for name, t in [*result.named_parameters(), *result.named_buffers()]
            if nonfinite_parts(t)
        ]
    if isinstance(result, (tuple, list)):
        return [part for item in result for part in nonfinite_parts(item)]
    if isinstance(result, dict):
        return [part for item in result.values() for part in nonfinite_parts(item)]
    return []


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
@given(data=st.data())
def test_bad_input_gives_only_documented_errors(entry_point, data):
    d = Draw(data)
    try:
        with time_limit(TIME_LIMIT), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = ENTRY_POINTS[entry_point](d)
    except GrassmannError as err:
        message = str(err)
        assert message and "\n" not in message, f"{type(err).__name__} message is not one line: {message!r}"
        return
    if d.nonfinite and entry_point not in ALWAYS_FINITE:
        assert entry_point not in VALUE_CHECKED, "non-finite input was accepted"
        return
    bad = nonfinite_parts(result)
    assert not bad, f"finite input gave non-finite output: {bad}"
