"""The research harness: grid specs, resumable sweeps on real data, the report, the diagnostics.

One small sweep on scikit-learn's digits (2 cells, 1 seed, a narrow MLP, 2
epochs) is trained once per session and reused; the resume tests read it back.
"""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest
import torch

from grassmann_cls import LOGITS, GrassmannHead
from grassmann_cls.cli import main
from grassmann_cls.errors import ConfigError
from grassmann_cls.experiments.diagnostics import agreement_with_exp, agreement_with_parallel, orthonormality_drift
from grassmann_cls.experiments.sweep import cell_key, sweep
from grassmann_cls.experiments.sweep_plan import AXES, grid_options, load_data, load_grid_file, parse_grid, plan_sweep
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.models import build_model
from grassmann_cls.training.recipe import BASES_OPTIMIZERS, OPTIMIZERS, UNUSED_SETTINGS
from manifolds import RETRACTIONS, TRANSPORTS, Grassmann
from tests.conftest import generator

TINY = {"epochs": 2, "train_size": 300, "test_size": 150, "width": 32}
GRID = {"retraction": "qr,polar"}
FILES = ("report.md", "results.csv", "sweep.json", "accuracy.png", "curves.png", "cost.png", "order.png")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-cell sweep: ``(folder, result)``."""
    folder = tmp_path_factory.mktemp("sweep")
    return folder, sweep(folder, grid=GRID, seeds=1, dataset="digits", base=TINY, progress=False)


def test_sweep_trains_every_cell_and_writes_the_report(finished):
    folder, result = finished
    assert result["trained"] == 2 and [r["cell"]["retraction"] for r in result["runs"]] == ["qr", "polar"]
    assert all((folder / name).is_file() for name in FILES)
    assert len(list((folder / "cells").glob("*.json"))) == 2
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert [row["retraction"] for row in rows] == ["qr", "polar"]
    assert all(float(row["test_top1"]) > 30.0 for row in rows)  # 10 classes: chance is 10 %
    assert all(float(row["drift"]) < 1e-4 and float(row["bases_step_ms"]) > 0 for row in rows)


def test_report_states_the_measured_orders(finished):
    folder, result = finished
    orders = {(o["kind"], o["name"]): o for o in result["orders"]}
    assert orders["retraction", "qr"]["bases_slope"] == pytest.approx(2.0, abs=0.2)
    assert orders["retraction", "polar"]["bases_slope"] == pytest.approx(3.0, abs=0.2)
    assert ("transport", "projection") in orders
    report = (folder / "report.md").read_text()
    assert "| qr | qr |" in report and "| polar | polar |" in report
    assert "## Reading" in report and "![order](order.png)" in report


def test_resumed_sweep_trains_nothing_again(finished, monkeypatch):
    folder, first = finished

    def refuse(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr("grassmann_cls.experiments.sweep.train", refuse)
    again = sweep(folder, grid=GRID, seeds=1, dataset="digits", base=TINY, progress=False)
    assert again["trained"] == 0
    assert [r["final"] for r in again["runs"]] == [r["final"] for r in first["runs"]]


def test_resumed_sweep_trains_only_new_cells(finished, tmp_path):
    folder, _ = finished
    copy = tmp_path / "copy"
    (copy / "cells").mkdir(parents=True)
    for path in (folder / "cells").glob("*.json"):
        (copy / "cells" / path.name).write_bytes(path.read_bytes())
    result = sweep(copy, grid={"retraction": "qr,polar,cayley"}, seeds=1, dataset="digits", base=TINY, progress=False)
    assert result["trained"] == 1 and len(result["runs"]) == 3


def test_cli_sweep_reads_a_grid_file_and_resumes(finished, tmp_path, capsys):
    folder, _ = finished
    spec = tmp_path / "grid.toml"
    spec.write_text(
        'seeds = 1\n[grid]\nretraction = ["qr", "polar"]\n[base]\n' + "".join(f"{k} = {v}\n" for k, v in TINY.items())
    )
    code = main(["sweep", "--config", str(spec), "--dataset", "digits", "-o", str(folder), "--no-progress"])
    assert code == 0
    assert "2 runs (0 trained now)" in capsys.readouterr().out


def test_changed_setting_changes_the_cell_key(finished):
    _, result = finished
    cell = {"retraction": "qr", "seed": 0}
    plan = plan_sweep(GRID, seeds=1, dataset="digits", base=TINY)
    data = load_data(plan)
    longer = plan_sweep(GRID, seeds=1, dataset="digits", base=TINY | {"epochs": 3})
    assert cell_key(plan, cell, data) == result["runs"][0]["key"]
    assert cell_key(longer, cell, data) != cell_key(plan, cell, data)


def test_default_grid_is_every_retraction_by_both_momentum_modes_by_two_k():
    plan = plan_sweep(quick=True, dataset="digits")
    assert dict(plan.axes) == {
        "retraction": RETRACTIONS.names(),
        "momentum": ("transport", "paper"),
        "k": (1, 8),
        "seed": (0, 1, 2),
    }
    assert len(plan.cells()) + len(plan.dropped) == 3 * 2 * 2 * len(RETRACTIONS.names())


def test_the_default_grid_runs_only_distinct_computations():
    plan = plan_sweep(quick=True, dataset="digits", seeds=1, base={"lr": 0.3})
    same_map = {name for name in RETRACTIONS.names() if RETRACTIONS.map_of(name) != name}
    expected = sorted([("polar", 1)] * 2 + [(name, k) for name in same_map for k in (1, 8)] * 2)
    assert sorted((c["retraction"], c["k"]) for c, _ in plan.dropped) == expected
    assert all("computes the same map as retraction=" in reason for _, reason in plan.dropped)
    bases = {repr(cell): _bases_after_steps(plan.config(cell)) for cell in plan.cells()}
    names = list(bases)
    for i, a in enumerate(names):
        for b in names[:i]:
            same = bases[a].shape == bases[b].shape and torch.allclose(bases[a], bases[b], rtol=0, atol=1e-9)
            assert not same, f"the same computation: {a} and {b}"


def test_a_grid_over_transport_and_momentum_drops_paper_cells_that_would_ignore_the_transport():
    plan = plan_sweep(
        {"transport": TRANSPORTS.names(), "momentum": ("transport", "paper")}, seeds=1, dataset="digits", base=TINY
    )
    kept = [(c["transport"], c["momentum"]) for c in plan.cells()]
    assert ("projection", "paper") in kept and all(t == "projection" for t, m in kept if m == "paper")
    assert {c["transport"] for c, _ in plan.dropped} == set(TRANSPORTS.names()) - {"projection"}
    assert all("paper momentum never transports its buffer" in reason for _, reason in plan.dropped)


def test_a_grid_of_only_dropped_cells_is_refused():
    with pytest.raises(ConfigError, match="every cell of the grid is left out: momentum=paper with transport=parallel"):
        plan_sweep({"transport": ("parallel",), "momentum": ("paper",)}, seeds=1, dataset="digits", base=TINY)


def _bases_after_steps(config) -> torch.Tensor:
    """The bases of ``config``'s model after 4 optimizer steps on fixed random gradients (float64)."""
    torch.manual_seed(0)
    model = build_model(config, (1, 8, 8), 3).double()
    optimizer = OPTIMIZERS.resolve(config.optimizer)(model, config)
    gen = generator(1)
    for _ in range(4):
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        optimizer.step()
    return model.fc.bases.detach().clone()


def test_a_grid_over_every_retraction_and_momentum_style_runs_only_distinct_computations():
    plan = plan_sweep(
        {"retraction": RETRACTIONS.names(), "momentum": ("transport", "paper")},
        seeds=1,
        dataset="digits",
        base=TINY | {"lr": 0.3},
    )
    maps = {RETRACTIONS.map_of(name) for name in RETRACTIONS.names()}
    assert len(plan.cells()) == 2 * len(maps) and len(plan.cells()) + len(plan.dropped) == 2 * len(RETRACTIONS.names())
    bases = [_bases_after_steps(plan.config(cell).replace(subspace_dim=3)) for cell in plan.cells()]
    for i in range(len(bases)):
        for j in range(i):
            assert not torch.allclose(bases[i], bases[j], rtol=0, atol=1e-9), (
                f"the same computation: {plan.cells()[i]} and {plan.cells()[j]}"
            )


def test_grid_entries_are_parsed_and_converted():
    grid = parse_grid(["logit=projection,neg_angle", "k=1,8", "lr=0.05", "momentum=paper"])
    assert grid == {"logit": ("projection", "neg_angle"), "k": (1, 8), "lr": (0.05,), "momentum": ("paper",)}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("retraction", "AXIS=V1,V2"),
        ("retractoin=qr", "expected one of retraction, transport"),
        ("retraction=qr,householder", "expected one of " + ", ".join(RETRACTIONS.names())),
        ("transport=teleport", "expected one of " + ", ".join(TRANSPORTS.names())),
        ("logit=cosine", "expected one of " + ", ".join(LOGITS.names())),
        ("k=1,two", "takes integers"),
        ("k=1.5", "takes integers"),
        ("k=0", ">= 1"),
        ("lr=0", "> 0"),
        ("lr=nan", "takes numbers"),
        ("seed=1,1", "repeats 1"),
        ("k=", "has no values"),
    ],
)
def test_bad_grid_entry_raises_a_clear_config_error(entry, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("+", r"\+")):
        parse_grid([entry])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grid": {"seed": "0,1"}, "seeds": 2}, "not both"),
        ({"seeds": 0}, "count >= 1"),
        ({"grid": {"k": "1,8"}, "base": {"subspace_dim": 4}}, "both a grid axis and a base setting"),
        ({"base": {"head": "softmax"}}, "GCR heads"),
        ({"base": {"epcohs": 3}}, "unknown configuration keys"),
    ],
)
def test_bad_plan_raises_a_clear_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        plan_sweep(dataset="digits", **kwargs)


def test_grid_given_twice_is_refused():
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["k=1", "k=8"])


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_grid_file_and_options_combine(tmp_path, suffix):
    if suffix == ".yaml":
        pytest.importorskip("yaml")
        text = "seeds: 2\ngrid:\n  retraction: [qr, polar]\n  k: [1, 8]\nbase:\n  epochs: 3\n"
    else:
        text = 'seeds = 2\n[grid]\nretraction = ["qr", "polar"]\nk = [1, 8]\n[base]\nepochs = 3\n'
    path = tmp_path / f"grid{suffix}"
    path.write_text(text)
    assert load_grid_file(path) == {
        "grid": {"retraction": ("qr", "polar"), "k": (1, 8)},
        "seeds": 2,
        "base": {"epochs": 3},
    }
    options = grid_options(["k=4"], path, seeds=5)
    assert options == {"grid": {"retraction": ("qr", "polar"), "k": (4,)}, "seeds": 5, "base": {"epochs": 3}}


@pytest.mark.parametrize(
    ("text", "message"),
    [("[grid\n", "not valid TOML"), ("speed = 3\n", "only the keys"), ("[grid]\nk = [0]\n", ">= 1")],
)
def test_bad_grid_file_raises_a_clear_config_error(tmp_path, text, message):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_grid_file(path)


def test_cli_bad_grid_is_one_line_and_exit_code_2(tmp_path, capsys):
    assert main(["sweep", "-g", "retraction=qr,householder", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "householder" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", RETRACTIONS.names())
@pytest.mark.parametrize("k", [1, 3])
def test_every_retraction_agrees_with_exp_to_at_least_first_order(name, k):
    measured = agreement_with_exp(name, 12, k)
    for slope in (measured["bases_slope"], measured["subspace_slope"]):
        assert slope is None or slope >= 2.0 - 0.2


def test_measured_orders_match_the_known_ones():
    qr, polar, exp = (agreement_with_exp(name, 12, 3) for name in ("qr", "polar", "exp"))
    assert qr["bases_slope"] == pytest.approx(2.0, abs=0.15) and qr["subspace_slope"] == pytest.approx(3.0, abs=0.15)
    assert polar["bases_slope"] == pytest.approx(3.0, abs=0.15)
    assert exp["bases_slope"] is None and exp["subspace_slope"] is None
    assert agreement_with_parallel("parallel", 12, 3)["slope"] is None
    assert agreement_with_parallel("projection", 12, 3)["slope"] == pytest.approx(2.0, abs=0.15)


def test_orthonormality_drift_is_rounding_for_bases_and_sees_a_perturbation():
    bases = Grassmann().random(4, 10, 3, dtype=torch.float64, generator=generator(0))
    assert orthonormality_drift(bases) < 1e-13
    bent = bases.clone()
    bent[2, 0, 0] += 1e-3
    gram = bent[2].numpy().T @ bent[2].numpy()
    assert orthonormality_drift(bent) == pytest.approx(np.linalg.norm(gram - np.eye(3)), rel=1e-9)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize(
    ("n", "k", "where"), [(6, 2, "inside"), (6, 2, "orthogonal"), (6, 6, "inside"), (6, 2, "zero")]
)
@pytest.mark.parametrize("name", LOGITS.names())
def test_logit_gradient_finite_at_extremes_in_float32(name, n, k, where, normalize):
    """Complements ``test_logits.py`` (float64): float32, full subspaces, unnormalised features."""
    head = GrassmannHead(n, 2, k, logit=name, normalize=normalize, dtype=torch.float32, generator=generator(0))
    bases = head.bases.detach().clone().requires_grad_()
    x = {
        "inside": bases[0].detach() @ torch.randn(k, generator=generator(1)),
        "orthogonal": torch.randn(n, generator=generator(2)),
        "zero": torch.zeros(n),
    }[where]
    if where == "orthogonal":
        x = x - bases[0].detach() @ (bases[0].detach().T @ x)
    x = x[None].clone().requires_grad_()
    logits = torch.func.functional_call(head, {"bases": bases}, (x,))
    grads = torch.autograd.grad(logits.sum(), (x, bases))
    assert all(bool(torch.isfinite(t).all()) for t in (logits, *grads))


# --- the bases-optimizer axis -----------------------------------------------------------------


def _unused_axis_values() -> list[tuple[str, str, object]]:
    """``(bases optimizer, axis, a non-default value)`` for every axis a bases optimizer never reads."""
    defaults = TrainConfig().to_dict()
    cases = []
    for name, unused in UNUSED_SETTINGS.items():
        for axis in (a for a in AXES.values() if a.field in unused and a.choices is not None):
            cases.append((name, axis.name, next(v for v in axis.choices() if v != defaults[axis.field])))
    return cases


def test_the_optimizer_grid_keeps_one_cell_per_distinct_bases_optimizer_and_momentum_style():
    plan = plan_sweep(
        {"bases_optimizer": BASES_OPTIMIZERS.names(), "momentum": ("transport", "paper")},
        seeds=1,
        dataset="digits",
        base=TINY,
    )
    kept = [(c["bases_optimizer"], c["momentum"]) for c in plan.cells()]
    expected = [
        (name, style)
        for name in BASES_OPTIMIZERS.names()
        for style in ("transport", "paper")
        if style == "transport" or "grassmann_momentum" not in UNUSED_SETTINGS[name]
    ]
    assert kept == expected and ("rsgd", "paper") in kept
    assert all(c["momentum"] == "paper" and "is left out" in reason for c, reason in plan.dropped)


@pytest.mark.parametrize(("name", "axis", "value"), _unused_axis_values())
def test_a_bases_optimizer_is_not_trained_with_a_setting_it_never_reads(name, axis, value):
    default = TrainConfig().to_dict()[AXES[axis].field]
    plan = plan_sweep({"bases_optimizer": (name,), axis: (default, value)}, seeds=1, dataset="digits", base=TINY)
    assert [c[axis] for c in plan.cells()] == [default]
    ((cell, reason),) = plan.dropped
    assert cell[axis] == value and reason.startswith(f"bases_optimizer={name} with {axis}={value} is left out: ")
    assert reason.endswith(f"it would repeat the {axis}={default} cell")
    with pytest.raises(ConfigError, match=f"every cell of the grid is left out: bases_optimizer={name} with {axis}"):
        plan_sweep({"bases_optimizer": (name,), axis: (value,)}, seeds=1, dataset="digits", base=TINY)
    with pytest.raises(ConfigError, match="would be ignored: bases_optimizer="):
        TrainConfig(bases_optimizer=name, **{AXES[axis].field: value})


def test_the_bases_lr_factor_axis_is_dropped_where_the_bases_share_the_sgd_lr():
    plan = plan_sweep(
        {"bases_optimizer": ("rsgd", "adam"), "bases_lr_factor": (100, 0.01)}, seeds=1, dataset="digits", base=TINY
    )
    assert [(c["bases_optimizer"], c["bases_lr_factor"]) for c in plan.cells()] == [
        ("rsgd", 100.0),
        ("adam", 100.0),
        ("adam", 0.01),
    ]
    ((cell, reason),) = plan.dropped
    assert cell["bases_lr_factor"] == 0.01 and "optimizer=sgd steps these bases at the lr" in reason
    adamw = plan_sweep(
        {"bases_optimizer": ("rsgd",), "bases_lr_factor": (1, 100)},
        seeds=1,
        dataset="digits",
        base=TINY | {"optimizer": "adamw", "lr": 1e-3},
    )
    assert len(adamw.cells()) == 2 and adamw.dropped == ()


def _bases_after_four_steps(config: TrainConfig) -> torch.Tensor:
    """The float64 bases of ``config``'s model after 4 steps of its optimizer on fixed random gradients."""
    torch.manual_seed(0)
    model = build_model(config, (1, 8, 8), 3).double()
    optimizer = OPTIMIZERS.resolve(config.optimizer)(model, config)
    gen = generator(1)
    for _ in range(4):
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        optimizer.step()
    return model.fc.bases.detach().clone()


@pytest.mark.parametrize("backbone", [{}, {"optimizer": "adamw", "lr": 1e-3}])
def test_every_cell_of_the_optimizer_grid_is_a_distinct_computation(backbone):
    grid = {
        "bases_optimizer": BASES_OPTIMIZERS.names(),
        "momentum": ("transport", "paper"),
        "bases_lr_factor": (1, 100),
    }
    plan = plan_sweep(grid, seeds=1, dataset="digits", base=TINY | backbone)
    bases = [_bases_after_four_steps(plan.config(cell).replace(subspace_dim=3)) for cell in plan.cells()]
    for i, j in itertools.combinations(range(len(bases)), 2):
        same = torch.allclose(bases[i], bases[j], rtol=0, atol=1e-9)
        assert not same, f"the same computation: {plan.cells()[i]} and {plan.cells()[j]}"


@pytest.mark.parametrize("backbone", [{"bases_lr_factor": 0.01}, {"optimizer": "adamw", "lr": 1e-3}])
def test_a_quick_sweep_measures_every_bases_optimizer(tmp_path, backbone):
    grid = {"bases_optimizer": BASES_OPTIMIZERS.names(), "momentum": ("transport", "paper")}
    base = TINY | {"epochs": 1, "train_size": 200, "test_size": 100} | backbone
    if "optimizer" not in backbone:  # under SGD only Adam reads the factor: one cell per optimizer
        grid["bases_lr_factor"], base = (100, base.pop("bases_lr_factor")), base
    result = sweep(tmp_path, grid=grid, seeds=1, dataset="digits", base=base, progress=False)
    names = {r["cell"]["bases_optimizer"] for r in result["runs"]}
    assert names == set(BASES_OPTIMIZERS.names())
    for run in result["runs"]:
        retracted = "retraction" not in UNUSED_SETTINGS[run["cell"]["bases_optimizer"]]
        # Retractions keep the bases orthonormal to rounding; landing keeps them within its safe step's bound.
        assert run["step_ms"] > 0 and run["bases_step_ms"] > 0 and 0 <= run["drift"] < (1e-2 if retracted else 0.1)
        assert run["step_map"] == ("qr" if retracted else None)
    assert (tmp_path / "report.md").exists()


def test_the_reference_reorth_axes_differ_where_the_unsigned_qr_flips_columns():
    plan = plan_sweep(
        {"reorth_qr": ("sign_fixed", "unsigned"), "reorth_count_from": (1, 0)},
        seeds=1,
        dataset="digits",
        base=TINY | {"grassmann_momentum": "paper", "reorth_every": 2},
    )
    configs = [plan.config(cell) for cell in plan.cells()]
    assert {(c.reorth_qr, c.reorth_count_from) for c in configs} == {
        ("sign_fixed", 1),
        ("sign_fixed", 0),
        ("unsigned", 1),
        ("unsigned", 0),
    }
    bases = {(c.reorth_qr, c.reorth_count_from): _bases_after_four_steps(c.replace(subspace_dim=3)) for c in configs}
    # A sign-fixed QR of bases that a retraction kept orthonormal changes them by rounding only: when it runs
    # does not matter. The unsigned QR flips columns, so each of its cells is a computation of its own.
    torch.testing.assert_close(bases["sign_fixed", 1], bases["sign_fixed", 0], rtol=0, atol=1e-12)
    for a, b in itertools.combinations(bases, 2):
        if "unsigned" in (a[0], b[0]):
            assert not torch.allclose(bases[a], bases[b], rtol=0, atol=1e-9), (a, b)


def test_cell_keys_leave_out_the_reference_reorth_settings_at_their_defaults(monkeypatch):
    from types import SimpleNamespace

    data = SimpleNamespace(name="digits", train=range(3), test=range(2))
    plan = plan_sweep(
        {"reorth_qr": ("sign_fixed", "unsigned")}, seeds=1, dataset="digits", base=TINY | {"recipe": "paper"}
    )
    keys = [cell_key(plan, cell, data) for cell in plan.cells()]
    full = TrainConfig.to_dict
    monkeypatch.setattr(
        TrainConfig,
        "to_dict",
        lambda self: {k: v for k, v in full(self).items() if k not in ("reorth_qr", "reorth_count_from")},
    )
    assert cell_key(plan, plan.cells()[0], data) == keys[0] != keys[1]  # keys stored before these fields hold
