"""Training on small real data (digits): heads, optimizers, schedules, checkpoints, resume."""

from __future__ import annotations

import math

import pytest
import torch

from grassmann_cls.errors import ConfigError, GrassmannError, ShapeError
from grassmann_cls.head import GrassmannHead
from grassmann_cls.optim import HybridOptimizer
from grassmann_cls.training.checkpoint import load_checkpoint
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.models import HEADS, CosineHead
from grassmann_cls.training.recipe import OPTIMIZERS, SCHEDULES, build_scheduler
from grassmann_cls.training.train import CHECKPOINT, METRICS, epoch_batches, prepare_data, steps_per_epoch, train

BASE = TrainConfig(
    dataset="digits",
    train_size=400,
    epochs=2,
    batch_size=64,
    width=32,
    subspace_dim=4,
    warmup_epochs=0.5,
    progress=False,
)


@pytest.fixture(scope="module")
def digit_data():
    return prepare_data(BASE)


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("head", HEADS.names())
def test_every_head_learns_digits(digit_data, head):
    gcr_only = {} if head == "gcr" else {"subspace_dim": TrainConfig().subspace_dim}  # refused if set elsewhere
    result = train(BASE.replace(head=head, epochs=4, **gcr_only), data=digit_data)
    assert len(result.history) == 4 and result.metrics["test_top1"] > 80.0
    assert set(result.metrics) == {
        "epoch",
        "lr",
        "train_loss",
        "train_top1",
        "test_loss",
        "test_top1",
        "test_top5",
        "seconds",
    }
    expected = {"softmax": torch.nn.Linear, "cosine": CosineHead, "gcr": GrassmannHead}[head]
    assert isinstance(result.model.fc, expected) and not result.model.training


@pytest.mark.parametrize("optimizer", OPTIMIZERS.names())
@pytest.mark.parametrize("momentum", ["transport", "paper"])
def test_bases_stay_orthonormal_under_every_optimizer(digit_data, optimizer, momentum):
    lr = 0.1 if optimizer == "sgd" else 1e-3
    result = train(BASE.replace(optimizer=optimizer, lr=lr, grassmann_momentum=momentum), data=digit_data)
    bases = result.model.fc.bases.detach()
    gram = bases.mT @ bases
    assert torch.allclose(gram, torch.eye(4).expand_as(gram), atol=1e-5)
    assert math.isfinite(result.metrics["train_loss"])


def test_adamw_steps_bases_with_riemannian_sgd_at_the_factor(digit_data):
    from grassmann_cls.training.models import build_model

    config = BASE.replace(optimizer="adamw", lr=1e-3, bases_lr_factor=50.0)
    model = build_model(config, digit_data.image_shape, digit_data.num_classes)
    optimizer = OPTIMIZERS.resolve("adamw")(model, config)
    assert isinstance(optimizer, HybridOptimizer)
    assert optimizer.param_groups[-1]["lr"] == pytest.approx(0.05)
    assert all(g["weight_decay"] == 0.0 for g in optimizer.optimizers[-1].param_groups)


@pytest.mark.parametrize("optimizer", OPTIMIZERS.names())
@pytest.mark.parametrize(
    ("momentum", "reorth_every", "expected"),
    [
        ("paper", None, {"sgd": 5, "adamw": 1}),
        ("transport", None, {"sgd": 0, "adamw": 0}),
        ("paper", 0, {"sgd": 0, "adamw": 0}),
        ("transport", 3, {"sgd": 3, "adamw": 3}),
    ],
)
def test_reorth_every_reaches_the_bases_optimizer(digit_data, optimizer, momentum, reorth_every, expected):
    from grassmann_cls.optim.rsgd import _reorth_every
    from grassmann_cls.training.models import build_model

    config = BASE.replace(optimizer=optimizer, grassmann_momentum=momentum, reorth_every=reorth_every)
    model = build_model(config, digit_data.image_shape, digit_data.num_classes)
    opt = OPTIMIZERS.resolve(optimizer)(model, config)
    bases_opt = opt.optimizers[-1] if isinstance(opt, HybridOptimizer) else opt
    group = next(g for g in bases_opt.param_groups if any(p is model.fc.bases for p in g["params"]))
    assert _reorth_every(group) == expected[optimizer]


@pytest.mark.parametrize("value", [-1, 2.5, True, "5"])
def test_reorth_every_must_be_a_non_negative_integer(value):
    with pytest.raises(ConfigError, match="reorth_every"):
        BASE.replace(reorth_every=value)


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_schedules_warm_up_linearly_then_follow_their_shape(name):
    fn = SCHEDULES.resolve(name)
    assert [fn(s, 100, 4) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert fn(4, 100, 4) == pytest.approx(1.0)
    assert fn(99, 100, 4) == pytest.approx(0.0 if name == "cosine" else 1.0, abs=1e-3)


def test_scheduler_sets_the_lr_of_every_group():
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
    opt = torch.optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr": 2.0}], lr=1.0)
    scheduler = build_scheduler(opt, "cosine", total_steps=10, warmup_steps=0)
    for _ in range(5):
        opt.step()
        scheduler.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 1.0])


def test_label_smoothing_raises_the_training_loss(digit_data):
    plain = train(BASE.replace(epochs=1), data=digit_data)
    smooth = train(BASE.replace(epochs=1, label_smoothing=0.3), data=digit_data)
    assert smooth.metrics["train_loss"] > plain.metrics["train_loss"] + 0.1


def test_epoch_batches_are_a_permutation_fixed_by_seed_and_epoch():
    batches = epoch_batches(130, 64, seed=3, epoch=2)
    assert [len(b) for b in batches] == [64, 64, 2]
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(130))
    assert all(torch.equal(a, b) for a, b in zip(batches, epoch_batches(130, 64, seed=3, epoch=2)))
    assert not torch.equal(batches[0], epoch_batches(130, 64, seed=3, epoch=1)[0])


@pytest.mark.parametrize(("n", "batch", "steps"), [(129, 64, 2), (130, 64, 3), (1, 64, 1), (64, 64, 1)])
def test_a_last_batch_of_one_sample_is_dropped(n, batch, steps):
    assert steps_per_epoch(n, batch) == steps == len(epoch_batches(n, batch, 0, 0))


def test_output_holds_checkpoint_and_metrics(tmp_path, digit_data):
    result = train(BASE.replace(output=str(tmp_path / "run")), data=digit_data)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [CHECKPOINT, METRICS]
    payload = load_checkpoint(result.checkpoint)
    assert payload["epoch"] == 2 and payload["step"] == 2 * steps_per_epoch(400, 64)
    assert set(payload) >= {"model", "optimizer", "scheduler", "rng", "config", "data", "history"}
    assert payload["config"] == BASE.replace(output=str(tmp_path / "run")).to_dict()


def test_resumed_run_equals_uninterrupted_run(tmp_path, digit_data):
    config = BASE.replace(epochs=3, head="gcr", grassmann_momentum="paper")
    whole = train(config.replace(output=str(tmp_path / "whole")), data=digit_data)

    def interrupt(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    part = config.replace(output=str(tmp_path / "part"))
    with pytest.raises(KeyboardInterrupt):
        train(part, data=digit_data, on_epoch_end=interrupt)
    resumed = train(part.replace(resume=str(tmp_path / "part" / CHECKPOINT)), data=digit_data)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_existing_run_is_not_overwritten_without_permission(tmp_path, digit_data):
    folder = tmp_path / "run"
    train(BASE.replace(epochs=1, output=str(folder)), data=digit_data)
    before = snapshot(folder)
    with pytest.raises(ConfigError, match="--overwrite"):
        train(BASE.replace(epochs=1, output=str(folder)), data=digit_data)
    assert snapshot(folder) == before
    train(BASE.replace(epochs=1, output=str(folder), overwrite=True, seed=5), data=digit_data)
    assert snapshot(folder) != before


def test_resume_with_other_settings_is_refused(tmp_path, digit_data):
    folder = tmp_path / "run"
    train(BASE.replace(epochs=1, output=str(folder)), data=digit_data)
    with pytest.raises(ConfigError, match="lr"):
        train(BASE.replace(lr=0.5, output=str(folder), resume=str(folder / CHECKPOINT)), data=digit_data)


def test_subspace_dim_above_feature_dim_fails_before_writing(tmp_path, digit_data):
    with pytest.raises(ShapeError, match="k=33, n=32"):
        train(BASE.replace(subspace_dim=33, output=str(tmp_path / "run")), data=digit_data)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "changes",
    [
        {"lr": -0.1},
        {"lr": float("nan")},
        {"epochs": 0},
        {"batch_size": 0},
        {"momentum": 1.0},
        {"label_smoothing": 1.0},
        {"warmup_epochs": 5.0},
        {"scale": 0.0},
        {"head": "arcface"},
        {"optimizer": "lamb"},
        {"schedule": "step"},
        {"retraction": "svd"},
        {"backbone": "vit"},
        {"train_size": 0},
        {"grassmann_momentum": "heavy"},
        {"device": "tpu"},
        {"epochs": 2.5},
    ],
    ids=lambda c: next(iter(c)),
)
def test_bad_configurations_raise_config_error(changes):
    with pytest.raises(ConfigError):
        BASE.replace(**changes)


def test_unknown_configuration_keys_are_refused():
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_config_round_trips_through_a_dict():
    config = BASE.replace(classes=[0, 1, 2])
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_missing_data_set_is_a_library_error():
    with pytest.raises(GrassmannError, match="not found"):
        train(BASE.replace(dataset="/nonexistent/data.npz"))
