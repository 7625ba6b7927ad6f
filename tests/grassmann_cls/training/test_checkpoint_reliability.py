"""Checkpoints that cannot be lost or silently misread, and the CLI's two failure paths.

Edited bases (off the manifold, wrong shape or ``k``), non-finite weights and
truncated files give a clear :class:`CheckpointError` (or, when asked for with
``reproject=True`` / ``--reproject``, a re-projection with a warning). A
training run killed while it writes a checkpoint leaves the previous one
intact, loadable and resumable. Library errors end the CLI with one stderr
line and exit code 2; a bug exits with code 1 and its traceback.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from grassmann_cls.cli import main
from grassmann_cls.errors import CheckpointError
from grassmann_cls.training.checkpoint import load_checkpoint, save_checkpoint
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.runs import load_model
from grassmann_cls.training.train import train

ROOT = Path(__file__).resolve().parents[3]
CONFIG = TrainConfig(
    dataset="digits", train_size=200, test_size=100, epochs=1, batch_size=64, width=16, subspace_dim=3, progress=False
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    return train(CONFIG.replace(output=str(folder))).checkpoint


def edited(checkpoint: Path, folder: Path, key: str, change, **config) -> Path:
    """A copy of ``checkpoint`` whose model tensor ``key`` is ``change(tensor)`` (and ``config`` entries changed)."""
    payload = load_checkpoint(checkpoint)
    payload["model"][key] = change(payload["model"][key].clone())
    payload["config"].update(config)
    return save_checkpoint(folder / "edited.pt", payload)


def stretched(bases: torch.Tensor) -> torch.Tensor:
    bases[..., 0] *= 1.5
    return bases


def test_bases_off_the_manifold_are_refused_with_a_hint(checkpoint, tmp_path):
    path = edited(checkpoint, tmp_path, "fc.bases", stretched)
    with pytest.raises(CheckpointError, match=r"fc\.bases is not on its manifold.*reproject=True") as err:
        load_model(path)
    assert "\n" not in str(err.value)


def test_reproject_repairs_edited_bases_with_a_warning(checkpoint, tmp_path):
    path = edited(checkpoint, tmp_path, "fc.bases", stretched)
    with pytest.warns(RuntimeWarning, match=r"fc\.bases was not on its manifold.*re-projected"):
        model, _ = load_model(path, reproject=True)
    bases = model.fc.bases.detach()
    torch.testing.assert_close(bases.mT @ bases, torch.eye(3).expand(10, 3, 3), atol=1e-5, rtol=0)
    original = load_checkpoint(checkpoint)["model"]["fc.bases"]
    torch.testing.assert_close(bases, original, atol=1e-5, rtol=0)  # stretching a column keeps its QR factor


@pytest.mark.parametrize("key", ["fc.bases", "body.1.weight"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nonfinite_weights_are_refused_even_with_reproject(checkpoint, tmp_path, key, value):
    path = edited(checkpoint, tmp_path, key, lambda t: t.index_fill(0, torch.tensor([0]), value))
    with pytest.raises(CheckpointError, match=f"{key} holds NaN or Inf"):
        load_model(path, reproject=True)


@pytest.mark.parametrize(
    "shape",
    [(10, 16, 2), (10, 16, 4), (10, 17, 3), (9, 16, 3), (16, 3), (1, 10, 16, 3)],
    ids=["smaller k", "larger k", "other n", "other C", "no class dim", "extra dim"],
)
def test_bases_of_another_shape_or_k_are_refused(checkpoint, tmp_path, shape):
    path = edited(checkpoint, tmp_path, "fc.bases", lambda t: torch.linalg.qr(torch.randn(shape)).Q)
    with pytest.raises(CheckpointError, match="does not match its model"):
        load_model(path, reproject=True)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_checkpoint_is_refused_everywhere(checkpoint, tmp_path, keep):
    data = checkpoint.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(path)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        train(CONFIG.replace(epochs=2, resume=str(path), output=str(tmp_path / "resumed")))
    assert not (tmp_path / "resumed").exists()


def test_resuming_from_edited_bases_is_refused_before_anything_is_written(checkpoint, tmp_path):
    path = edited(checkpoint, tmp_path, "fc.bases", stretched, epochs=2)
    with pytest.raises(CheckpointError, match="fc.bases is not on its manifold"):
        train(CONFIG.replace(epochs=2, resume=str(path), output=str(tmp_path / "resumed")))
    assert not (tmp_path / "resumed").exists()


# --- a run killed while it saves ------------------------------------------------------------------------------------

KILLED_RUN = """
import sys, time, torch
from grassmann_cls.training import checkpoint
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.train import train

real_save, saves = torch.save, []

def save_then_stall(obj, f):
    saves.append(1)
    if len(saves) == 1:
        return real_save(obj, f)
    real_save(obj, f)             # the whole new checkpoint is in the temporary file ...
    f.flush()
    print("stalled", flush=True)  # ... but not yet moved over the old one
    time.sleep(120)

checkpoint.torch.save = save_then_stall
config = TrainConfig(dataset="digits", train_size=200, test_size=100, epochs=2, batch_size=64, width=16,
                     subspace_dim=3, progress=False, output=sys.argv[1])
train(config)
"""


def test_run_killed_while_saving_leaves_the_previous_checkpoint_loadable_and_resumable(tmp_path):
    folder = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(folder)], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    try:
        assert proc.stdout.readline().strip() == "stalled"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    model, payload = load_model(folder / "checkpoint.pt")
    assert payload["epoch"] == 1 and len(payload["history"]) == 1
    resumed = train(CONFIG.replace(epochs=2, resume=str(folder / "checkpoint.pt"), output=str(folder)))
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert load_checkpoint(folder / "checkpoint.pt")["epoch"] == 2


# --- the command line -----------------------------------------------------------------------------------------------


def test_cli_refuses_edited_bases_in_one_line_and_reprojects_on_request(checkpoint, tmp_path, capsys):
    path = edited(checkpoint, tmp_path, "fc.bases", stretched)
    assert main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--reproject" in err and "Traceback" not in err
    with pytest.warns(RuntimeWarning, match="re-projected"):
        assert main(["evaluate", str(path), "--reproject"]) == 0
    assert capsys.readouterr().out.startswith("top-1")


LIBRARY_ERROR = """
import sys
from grassmann_cls import cli
from grassmann_cls.errors import NonFiniteError
def diverged(args):
    raise NonFiniteError("training diverged:\\n the loss is nan")
cli._evaluate = diverged
sys.exit(cli.main(["evaluate", "x.pt"]))
"""

INTERNAL_BUG = """
import sys
from grassmann_cls import cli
def broken(args):
    return {}["missing key"]
cli._evaluate = broken
sys.exit(cli.main(["evaluate", "x.pt"]))
"""


def _run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_cli_library_error_is_one_stderr_line_and_exit_code_2():
    result = _run_python(LIBRARY_ERROR)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["grassmann-cls evaluate: error: training diverged: the loss is nan"]


def test_cli_internal_bug_exits_nonzero_with_its_traceback():
    result = _run_python(INTERNAL_BUG)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr and "KeyError: 'missing key'" in result.stderr
