"""Data-parallel training: 2-process gloo runs on digits against the 1-process run, and torchrun end to end.

One spawn of two worker processes (1 thread each) serves every two-process
test: rank 0 first trains each scenario alone (the 1-process reference,
before any process group exists), then both ranks join a gloo group and
train it again, recording after every step the global mean loss and whether
all parameters, bases included, are bitwise equal on both ranks.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from grassmann_cls.cli import build_parser
from grassmann_cls.errors import ConfigError, ManifoldTypeError, ShapeError
from grassmann_cls.training.backbones import BACKBONES, Backbone
from grassmann_cls.training.batches import epoch_batches, steps_per_epoch
from grassmann_cls.training.checkpoint import load_checkpoint
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.distributed import environment, loss_weight, resolve_device, shard
from grassmann_cls.training.train import CHECKPOINT, prepare_data, train

ROOT = Path(__file__).resolve().parents[3]
LINEAR = "linear_relu_for_tests"  # registered in the workers only: BatchNorm-free, so 1 and 2 processes agree

# 400 samples in global batches of 63: shares of 32 and 31, a last batch of 22 (11 + 11).
BASE = TrainConfig(
    dataset="digits",
    train_size=400,
    epochs=2,
    batch_size=63,
    width=32,
    subspace_dim=4,
    warmup_epochs=0.5,
    progress=False,
)
SCENARIOS = {  # changes to BASE; configurations naming LINEAR can only be built where it is registered
    "sgd-transport": {"backbone": LINEAR},
    "adamw-paper": {"backbone": LINEAR, "optimizer": "adamw", "lr": 1e-3, "grassmann_momentum": "paper"},
    "mlp-batchnorm": {"backbone": "mlp"},
}
EQUIVALENT = ("sgd-transport", "adamw-paper")
RESUMED = "adamw-paper"
INTERRUPT_AT, CHECKPOINT_EVERY = 9, 4  # interrupted after step 9, resumed from step 8 (mid-epoch 2)


class _LinearReLU(Backbone):
    def __init__(self, in_shape, num_classes: int, width: int | None = None):
        super().__init__()
        self.in_shape, self.feature_dim = tuple(in_shape), width or 32
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(in_shape[0] * in_shape[1] * in_shape[2], self.feature_dim), nn.ReLU()
        )
        self.fc = nn.Linear(self.feature_dim, num_classes)

    def features(self, x):
        return self.body(x)


class _Interrupt(Exception):
    pass


def _run(config: TrainConfig, data, interrupt_at: int | None = None) -> dict:
    """Train, recording per step the global mean loss and whether every rank holds the same parameters."""
    steps = []

    def record(step: dict) -> None:
        world = step["world_size"]
        loss = torch.tensor([step["loss"] * step["batch_size"], step["batch_size"]], dtype=torch.float64)
        params = torch.cat([p.detach().reshape(-1) for p in step["model"].parameters()])
        bases = step["model"].fc.bases.detach().clone()
        if world > 1:
            dist.all_reduce(loss)
            every_params = [torch.empty_like(params) for _ in range(world)]
            every_bases = [torch.empty_like(bases) for _ in range(world)]
            dist.all_gather(every_params, params)
            dist.all_gather(every_bases, bases)
        else:
            every_params, every_bases = [params], [bases]
        steps.append(
            {
                "step": step["step"],
                "loss": float(loss[0] / loss[1]),
                "same_bases": all(torch.equal(every_bases[0], b) for b in every_bases[1:]),
                "same_params": all(torch.equal(every_params[0], p) for p in every_params[1:]),
            }
        )
        if step["step"] == interrupt_at:
            raise _Interrupt

    try:
        result = train(config, data=data, on_step_end=record)
    except _Interrupt:
        return {"steps": steps}
    state = {k: v.detach().clone() for k, v in result.model.state_dict().items()}
    return {"steps": steps, "history": result.history, "state": state, "world_size": result.world_size}


def _worker(rank: int, world: int, folder: str) -> None:
    torch.set_num_threads(1)
    BACKBONES.register(lambda in_shape, num_classes, width=None: _LinearReLU(in_shape, num_classes, width), name=LINEAR)
    data = prepare_data(BASE)
    results = {}
    configs = {name: BASE.replace(**changes) for name, changes in SCENARIOS.items()}
    if rank == 0:  # before any process group: a plain 1-process run
        results["one"] = {name: _run(configs[name], data) for name in EQUIVALENT}
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    # A file rendezvous: no TCP port that another process could take between
    # choosing it and binding it.
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    results["two"] = {name: _run(config, data) for name, config in configs.items()}
    part = configs[RESUMED].replace(output=f"{folder}/part", checkpoint_every=CHECKPOINT_EVERY)
    results["interrupted"] = _run(part, data, interrupt_at=INTERRUPT_AT)
    if rank == 0:  # rank 0 wrote the checkpoint before the interruption reached it
        shutil.copytree(f"{folder}/part", f"{folder}/alone")
    results["resumed"] = _run(part.replace(resume=f"{folder}/part/{CHECKPOINT}"), data)
    # Both ranks leave the group together, with no collective in flight.
    dist.barrier()
    dist.destroy_process_group()
    if rank == 0:  # the 2-process checkpoint, resumed by 1 process
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            del os.environ[name]
        alone = part.replace(output=f"{folder}/alone", resume=f"{folder}/alone/{CHECKPOINT}")
        results["resumed_alone"] = _run(alone, data)
        torch.save(results, f"{folder}/results.pt")
    # Note [worker exit]: leave without interpreter teardown. Once in a few
    # full-suite runs a worker aborted at exit ("terminate called without an
    # active exception", a native thread destroyed while still joinable);
    # everything this worker had to do is done and flushed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.start_processes(_worker, args=(2, str(folder)), nprocs=2, join=True, start_method="spawn")
    return torch.load(folder / "results.pt", weights_only=False) | {"folder": folder}


# --- two processes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_bases_and_parameters_are_bitwise_identical_on_every_rank_after_every_step(runs, scenario):
    steps = runs["two"][scenario]["steps"]
    assert len(steps) == 2 * steps_per_epoch(400, 63, world_size=2) == 14
    assert all(s["same_bases"] and s["same_params"] for s in steps)


@pytest.mark.parametrize("scenario", EQUIVALENT)
def test_two_processes_follow_the_one_process_run_on_the_same_global_batches(runs, scenario):
    one, two = runs["one"][scenario], runs["two"][scenario]
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert [s["loss"] for s in two["steps"]] == pytest.approx([s["loss"] for s in one["steps"]], rel=1e-5, abs=1e-6)
    for key, value in one["state"].items():
        assert torch.allclose(two["state"][key], value, rtol=1e-4, atol=1e-5), key
    for a, b in zip(one["history"], two["history"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-4)
        assert b["train_top1"] == a["train_top1"] and b["test_top1"] == a["test_top1"]


def test_interrupted_two_process_run_resumes_onto_the_uninterrupted_trajectory(runs):
    whole, resumed = runs["two"][RESUMED], runs["resumed"]
    assert [s["step"] for s in runs["interrupted"]["steps"]] == list(range(1, INTERRUPT_AT + 1))
    start = INTERRUPT_AT - INTERRUPT_AT % CHECKPOINT_EVERY
    assert [s["step"] for s in resumed["steps"]] == [s["step"] for s in whole["steps"][start:]]
    assert [s["loss"] for s in resumed["steps"]] == [s["loss"] for s in whole["steps"][start:]]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed["history"]] == [
        {k: v for k, v in h.items() if k != "seconds"} for h in whole["history"]
    ]
    for key, value in whole["state"].items():
        assert torch.equal(resumed["state"][key], value), key


def test_a_two_process_checkpoint_resumes_in_one_process_on_the_same_global_batches(runs):
    whole, alone = runs["two"][RESUMED], runs["resumed_alone"]
    start = INTERRUPT_AT - INTERRUPT_AT % CHECKPOINT_EVERY
    assert alone["world_size"] == 1 and [s["step"] for s in alone["steps"]] == list(range(start + 1, 15))
    assert [s["loss"] for s in alone["steps"]] == pytest.approx([s["loss"] for s in whole["steps"][start:]], rel=1e-5)
    assert alone["history"][-1]["train_loss"] == pytest.approx(whole["history"][-1]["train_loss"], rel=1e-5)
    assert alone["history"][-1]["test_top1"] == whole["history"][-1]["test_top1"]


def test_only_rank_zero_writes_and_the_checkpoint_holds_every_rank(runs):
    payload = load_checkpoint(runs["folder"] / "part" / CHECKPOINT)
    assert payload["world_size"] == 2 and payload["epoch"] == 2 and payload["epoch_step"] == 0
    assert len(payload["rng_ranks"]) == 2 and payload["epoch_sums"].shape == (2, 3)
    assert sorted(p.name for p in (runs["folder"] / "part").iterdir()) == [CHECKPOINT, "metrics.json"]


def test_torchrun_runs_the_command_line_with_two_processes(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "grassmann_cls",
        "train",
        "--dataset",
        "digits",
        "--train-size",
        "200",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--width",
        "16",
        "-k",
        "2",
        "--no-progress",
        "--output",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == 2
    assert sum(line.startswith("trained on digits") for line in lines) == 1
    payload = load_checkpoint(out / CHECKPOINT)
    assert payload["world_size"] == 2 and payload["step"] == 2 * steps_per_epoch(200, 64, world_size=2)


# --- sharding and set-up ---------------------------------------------------------------------------------------


@given(size=st.integers(1, 300), world=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_shards_partition_the_global_batch_and_weighted_means_average_to_its_mean(size, world, seed):
    batch = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    parts = [shard(batch, rank, world) for rank in range(world)]
    assert torch.equal(torch.cat(parts), batch)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    losses = torch.rand(size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    averaged = sum(loss_weight(len(p), size, world) * losses[p].mean() for p in parts if len(p)) / world  # as DDP
    assert float(averaged) == pytest.approx(float(losses.mean()), rel=1e-12)


@pytest.mark.parametrize(
    ("n", "batch", "world", "steps"),
    [(130, 64, 1, 3), (130, 64, 2, 2), (132, 64, 2, 3), (40, 64, 4, 1), (400, 63, 2, 7)],
)
def test_a_last_batch_too_small_for_two_samples_per_process_is_dropped(n, batch, world, steps):
    assert steps_per_epoch(n, batch, world) == steps == len(epoch_batches(n, batch, 0, 0, world))
    assert all(torch.equal(a, b) for a, b in zip(epoch_batches(n, batch, 0, 0, world), epoch_batches(n, batch, 0, 0)))


def test_torchrun_variables_are_read_and_checked(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert environment() == (1, 4, 1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ConfigError, match="RANK=4, WORLD_SIZE=4"):
        environment()
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ConfigError, match="RANK must be an integer"):
        environment()


@pytest.mark.parametrize("device", ["mps", "cuda:1"])
def test_a_fixed_device_cannot_be_shared_by_processes(device):
    with pytest.raises(ConfigError, match="cannot be shared|CUDA is not available"):
        resolve_device(device, world_size=2, local_rank=0)


def test_a_global_batch_smaller_than_two_per_process_fails_before_joining(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ConfigError, match="--batch-size >= 8"):
        train(BASE.replace(batch_size=6))


# --- the paper's ImageNet command line -------------------------------------------------------------------------


def _imagenet_command() -> list[str]:
    text = (ROOT / "docs" / "distributed.md").read_text()
    block = next(b for b in text.split("```")[1::2] if "timm:resnet50d" in b)
    words = shlex.split(block.partition("\n")[2].replace("\\\n", " "))
    module = words.index("-m")
    assert words[0] == "torchrun" and words[module + 1 : module + 3] == ["grassmann_cls", "train"]
    assert words[words.index("--nproc-per-node") + 1] == "8"  # 8 GPUs x 32 images = the global batch of 256
    return words[module + 2 :]


def test_the_documented_imagenet_command_line_builds_the_paper_configuration():
    args = build_parser().parse_args(_imagenet_command())
    # As `grassmann-cls train` does: the flags given (options left out are None).
    given = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    config = TrainConfig.from_dict(given, given=given)
    assert config.dataset.startswith("imagefolder:") and config.backbone == "timm:resnet50d"
    assert (config.head, config.subspace_dim, config.scale) == ("gcr", 8, 25.0)
    assert (config.optimizer, config.lr, config.momentum, config.schedule) == ("sgd", 0.1, 0.9, "cosine")
    assert (config.epochs, config.batch_size, config.recipe) == (100, 256, "paper")
    assert (config.retraction, config.grassmann_momentum, config.reorth_every) == ("exp", "paper", 5)
    assert (config.weight_decay, config.warmup_epochs, config.label_smoothing) == (1e-4, 0.0, 0.0)
    assert config.image_size == 224 and config.device == "cuda" and config.amp is None


@pytest.mark.parametrize(
    ("batch", "rank", "world", "error", "message"),
    [
        (torch.arange(5), 3, 2, ConfigError, "0 <= rank < world_size; got rank=3, world_size=2"),
        (torch.arange(5), -1, 2, ConfigError, "got rank=-1"),
        (torch.arange(5), 0, 0, ConfigError, "world_size >= 1"),
        (torch.arange(5), 0.5, 2, ManifoldTypeError, "rank must be an int"),
        (torch.tensor(3), 0, 1, ShapeError, "at least one dim"),
        ([0, 1], 0, 1, ManifoldTypeError, "batch must be a torch.Tensor"),
    ],
    ids=["rank-too-big", "negative-rank", "no-processes", "float-rank", "scalar", "list"],
)
def test_shard_refuses_bad_arguments_stating_expected_and_got(batch, rank, world, error, message):
    with pytest.raises(error, match=message):
        shard(batch, rank, world)
