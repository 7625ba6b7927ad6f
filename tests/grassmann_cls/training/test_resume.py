"""Exact resume: a run interrupted inside an epoch continues on the uninterrupted run's trajectory, bit for bit."""

from __future__ import annotations

import pytest
import torch

from grassmann_cls.cli import main
from grassmann_cls.errors import ConfigError
from grassmann_cls.training.checkpoint import load_checkpoint, save_checkpoint
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.train import CHECKPOINT, prepare_data, steps_per_epoch, train

# 400 samples in batches of 64: 7 steps per epoch. Checkpoints after steps 3, 6 | 9, 12; interrupted after step 10.
BASE = TrainConfig(
    dataset="digits",
    train_size=400,
    epochs=2,
    batch_size=64,
    width=32,
    subspace_dim=4,
    warmup_epochs=0.5,
    checkpoint_every=3,
    progress=False,
)
INTERRUPT_AT, RESUMED_FROM = 10, 9


class _Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def digit_data():
    return prepare_data(BASE)


def run(config: TrainConfig, data, interrupt_at: int | None = None):
    """``(result or None, [(step, loss), ...])``."""
    losses = []

    def record(step: dict) -> None:
        losses.append((step["step"], step["loss"]))
        if step["step"] == interrupt_at:
            raise _Interrupt

    try:
        return train(config, data=data, on_step_end=record), losses
    except _Interrupt:
        return None, losses


def without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def assert_same_tensors(a, b, where: str = "") -> None:
    """Nested dicts / lists of tensors and plain values are equal, tensors bitwise."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize(
    ("optimizer", "momentum", "amp"),
    [("sgd", "transport", None), ("sgd", "paper", "fp16"), ("adamw", "paper", "bf16")],
)
def test_run_interrupted_mid_epoch_resumes_onto_the_same_per_step_losses(
    tmp_path, digit_data, optimizer, momentum, amp
):
    lr = 0.1 if optimizer == "sgd" else 1e-3
    config = BASE.replace(optimizer=optimizer, lr=lr, grassmann_momentum=momentum, amp=amp)
    whole, whole_losses = run(config.replace(output=str(tmp_path / "whole")), digit_data)
    part = config.replace(output=str(tmp_path / "part"))
    _, part_losses = run(part, digit_data, interrupt_at=INTERRUPT_AT)
    assert part_losses == whole_losses[:INTERRUPT_AT]
    resumed, resumed_losses = run(part.replace(resume=str(tmp_path / "part" / CHECKPOINT)), digit_data)
    assert resumed_losses == whole_losses[RESUMED_FROM:]
    assert without_seconds(resumed.history) == without_seconds(whole.history)
    assert_same_tensors(resumed.model.state_dict(), whole.model.state_dict(), "model")
    final = [load_checkpoint(tmp_path / name / CHECKPOINT) for name in ("whole", "part")]
    for key in ("optimizer", "scheduler", "scaler", "rng", "step", "epoch"):
        assert_same_tensors(final[1][key], final[0][key], key)


def test_mid_epoch_checkpoint_records_position_and_partial_sums(tmp_path, digit_data):
    config = BASE.replace(output=str(tmp_path / "run"))
    run(config, digit_data, interrupt_at=INTERRUPT_AT)
    payload = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    per_epoch = steps_per_epoch(400, 64)
    assert (payload["epoch"], payload["step"], payload["epoch_step"]) == (1, RESUMED_FROM, RESUMED_FROM - per_epoch)
    assert payload["steps_per_epoch"] == per_epoch and payload["world_size"] == 1 and "rng_ranks" not in payload
    assert len(payload["history"]) == 1
    loss_sum, hits, samples = payload["epoch_sums"].reshape(3).tolist()
    assert samples == 64 * (RESUMED_FROM - per_epoch) and 0 <= hits <= samples and loss_sum > 0


def test_mid_epoch_checkpoints_do_not_change_the_trajectory(tmp_path, digit_data):
    _, with_checkpoints = run(BASE.replace(output=str(tmp_path / "run")), digit_data)
    _, without = run(BASE.replace(checkpoint_every=None), digit_data)
    assert with_checkpoints == without


def test_a_checkpoint_without_position_resumes_at_its_epoch_boundary(tmp_path, digit_data):
    """Checkpoints written before mid-epoch checkpoints existed hold none of the new keys."""
    config = BASE.replace(checkpoint_every=None, epochs=3)
    whole, whole_losses = run(config, digit_data)
    part = config.replace(epochs=3, output=str(tmp_path / "part"))
    run(part, digit_data, interrupt_at=steps_per_epoch(400, 64) + 1)  # after the checkpoint of epoch 1
    path = tmp_path / "part" / CHECKPOINT
    payload = load_checkpoint(path)
    for key in ("epoch_step", "epoch_sums", "steps_per_epoch", "world_size", "scaler"):
        del payload[key]
    save_checkpoint(path, payload)
    resumed, resumed_losses = run(part.replace(resume=str(path)), digit_data)
    assert resumed_losses == whole_losses[steps_per_epoch(400, 64) :]
    assert without_seconds(resumed.history) == without_seconds(whole.history)


def test_resume_with_other_steps_per_epoch_is_refused(tmp_path, digit_data):
    config = BASE.replace(output=str(tmp_path / "run"))
    run(config, digit_data, interrupt_at=INTERRUPT_AT)
    path = tmp_path / "run" / CHECKPOINT
    save_checkpoint(path, load_checkpoint(path) | {"steps_per_epoch": 6, "world_size": 2})
    with pytest.raises(ConfigError, match="6 steps per epoch but this run has 7.*resume with 2 processes"):
        train(config.replace(resume=str(path)), data=digit_data)


def test_checkpoint_every_may_change_on_resume_but_amp_may_not(tmp_path, digit_data):
    config = BASE.replace(output=str(tmp_path / "run"))
    run(config, digit_data, interrupt_at=INTERRUPT_AT)
    resume = config.replace(resume=str(tmp_path / "run" / CHECKPOINT))
    with pytest.raises(ConfigError, match="amp"):
        train(resume.replace(amp="bf16"), data=digit_data)
    assert train(resume.replace(checkpoint_every=5), data=digit_data).metrics["epoch"] == 2


@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_bad_checkpoint_every_is_one_line_on_stderr(tmp_path, capsys, value):
    argv = ["train", "--dataset", "digits", "--checkpoint-every", value, "-o", str(tmp_path / "run")]
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own errors (not an integer)
        code = stop.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "checkpoint" in err[0]
    assert not (tmp_path / "run").exists()
