"""Resume takes its settings from the checkpoint; epochs may grow, with the schedule recomputed over the new total."""

from __future__ import annotations

import pytest
from torch.optim.optimizer import register_optimizer_step_pre_hook

from grassmann_cls.errors import CheckpointError, ConfigError
from grassmann_cls.training.checkpoint import CHECKPOINT, load_checkpoint, resolve_checkpoint
from grassmann_cls.training.config import RESUME_FREE, TrainConfig
from grassmann_cls.training.recipe import cosine
from grassmann_cls.training.train import prepare_data, resumed_config, steps_per_epoch, train

SAVED = TrainConfig(
    dataset="digits", train_size=200, epochs=1, batch_size=50, width=16, subspace_dim=3, seed=3, progress=False
).to_dict()


def test_resumed_config_takes_every_setting_from_the_checkpoint():
    config = TrainConfig.resumed(SAVED, {"resume": "runs/a/checkpoint.pt"})
    assert config.to_dict() == SAVED | {"resume": "runs/a/checkpoint.pt", "output": "runs/a"}


def test_resumed_config_may_extend_epochs_and_change_free_settings():
    config = TrainConfig.resumed(
        SAVED,
        {
            "resume": "r/checkpoint.pt",
            "epochs": 4,
            "device": "cpu",
            "workers": 2,
            "output": "elsewhere",
            "subspace_dim": 3,
        },
    )
    assert (config.epochs, config.workers, config.output, config.seed) == (4, 2, "elsewhere", 3)
    assert {"output", "device", "resume", "checkpoint_every"} <= RESUME_FREE


@pytest.mark.parametrize(
    ("name", "value"),
    [("seed", 0), ("subspace_dim", 2), ("dataset", "fashion_mnist"), ("lr", 0.5), ("epochs", 1), ("amp", "bf16")],
)
def test_resumed_config_refuses_a_change_of_the_trained_part_by_name(name, value):
    saved = SAVED | {"epochs": 2}
    with pytest.raises(ConfigError, match=rf"cannot resume r/checkpoint.pt with other settings: {name} ") as err:
        TrainConfig.resumed(saved, {"resume": "r/checkpoint.pt", name: value})
    assert "\n" not in str(err.value) and "may extend epochs" in str(err.value)


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume") / "run"
    config = TrainConfig.from_dict(SAVED | {"output": str(folder)})
    data = prepare_data(config)
    train(config, data=data)
    return folder, data


def test_extended_run_follows_the_cosine_schedule_recomputed_over_the_new_total(one_epoch_run, tmp_path):
    folder, data = one_epoch_run
    work = tmp_path / "run"
    work.mkdir()
    (work / CHECKPOINT).write_bytes((folder / CHECKPOINT).read_bytes())
    config = resumed_config(work, {"epochs": 3})  # a run folder, as the command line passes it
    assert config.resume == str(work / CHECKPOINT) and config.output == str(work)
    lrs = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: lrs.append(optimizer.param_groups[0]["lr"])
    )
    try:
        result = train(config, data=data)
    finally:
        handle.remove()
    per_epoch = steps_per_epoch(200, 50)
    expected = [0.1 * cosine(step, 3 * per_epoch, 0) for step in range(per_epoch, 3 * per_epoch)]
    assert lrs == pytest.approx(expected, rel=1e-12) and lrs[0] > 0.05  # the old 1-epoch curve had reached 0
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert load_checkpoint(work)["config"]["epochs"] == 3


def test_finished_run_without_more_epochs_says_how_to_extend(one_epoch_run):
    folder, data = one_epoch_run
    config = resumed_config(folder, {"output": str(folder)})
    with pytest.raises(ConfigError, match=r"already finished all 1 epochs.*--epochs"):
        train(config, data=data)


def test_run_folder_without_checkpoint_is_refused_naming_it(tmp_path):
    with pytest.raises(CheckpointError, match=rf"run folder {tmp_path} holds no {CHECKPOINT}"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match=f"holds no {CHECKPOINT}"):
        resumed_config(tmp_path, {})
