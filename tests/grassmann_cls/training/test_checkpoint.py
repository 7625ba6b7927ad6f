"""Atomic files and validated checkpoint loading."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from grassmann_cls.errors import CheckpointError
from grassmann_cls.training.checkpoint import (
    FORMAT,
    atomic_write,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_json,
)


def payload(value: float = 1.0) -> dict:
    return {
        "format": FORMAT,
        "config": {"seed": 0},
        "data": {"name": "x"},
        "epoch": 1,
        "model": {"w": torch.full((3,), value)},
    }


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with atomic_write(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(ZeroDivisionError), atomic_write(target) as f:
        f.write(b"partial")
        raise ZeroDivisionError
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


KILLED_WRITER = """
import sys, time, torch
from grassmann_cls.training import checkpoint
def slow_save(obj, f):
    f.write(b"x" * 4096)
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
checkpoint.torch.save = slow_save
checkpoint.save_checkpoint(sys.argv[1], {"format": "f", "config": {}, "data": {}, "epoch": 2, "model": {}})
"""


def test_process_killed_while_saving_leaves_previous_checkpoint_loadable(tmp_path):
    target = tmp_path / "checkpoint.pt"
    save_checkpoint(target, payload(7.0))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert torch.equal(load_checkpoint(target)["model"]["w"], torch.full((3,), 7.0))


def test_checkpoint_round_trips_with_weights_only(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {**payload(), "rng": rng_state()})
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 1 and torch.equal(loaded["model"]["w"], torch.ones(3))


def test_saving_an_incomplete_payload_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="lacks"):
        save_checkpoint(tmp_path / "c.pt", {"format": FORMAT})
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],
        lambda data: data[:100],
        lambda data: b"",
        lambda data: b"hello world\n",
        lambda data: data[:-30] + bytes(30),
    ],
    ids=["half", "head", "empty", "text", "zeroed-tail"],
)
def test_damaged_checkpoint_raises_checkpoint_error(tmp_path, damage):
    path = save_checkpoint(tmp_path / "c.pt", payload())
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


def test_missing_checkpoint_says_what_to_pass(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing.pt")


@pytest.mark.parametrize(
    "content", [{"format": "other"}, [1, 2], {"format": FORMAT, "epoch": 1}], ids=["format", "list", "keys"]
)
def test_foreign_files_are_not_checkpoints(tmp_path, content):
    torch.save(content, tmp_path / "c.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "c.pt")


def test_rng_state_round_trip_restores_the_streams():
    state = rng_state()
    first = (torch.rand(3), random.random())
    set_rng_state(state)
    second = (torch.rand(3), random.random())
    assert torch.equal(first[0], second[0]) and first[1] == second[1]


def test_write_json_handles_tensors_paths_and_tuples(tmp_path):
    write_json(tmp_path / "m.json", {"t": torch.tensor([1.5]), "p": Path("a"), "s": (1, 2)})
    assert json.loads((tmp_path / "m.json").read_text()) == {"t": [1.5], "p": "a", "s": [1, 2]}


def test_atomic_write_creates_the_folder(tmp_path):
    with atomic_write(tmp_path / "a" / "b.txt") as f:
        f.write(b"x")
    assert (tmp_path / "a" / "b.txt").read_bytes() == b"x"
