"""Accuracy and analysis of models and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grassmann_cls.errors import CheckpointError, DataError, ManifoldTypeError, OptionError, ShapeError
from grassmann_cls.experiments.transfer import transfer_checkpoint
from grassmann_cls.training.analysis import feature_statistics
from grassmann_cls.training.backbones import extract_features
from grassmann_cls.training.checkpoint import load_checkpoint, save_checkpoint
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.evaluation import evaluate_model, topk_correct
from grassmann_cls.training.runs import analyze, evaluate, load_model
from grassmann_cls.training.train import train

CONFIG = TrainConfig(
    dataset="digits", train_size=300, epochs=2, batch_size=64, width=32, subspace_dim=3, progress=False
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    return train(CONFIG.replace(output=str(folder)))


def test_topk_counts_labels_among_the_highest_logits():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 1, 0])
    assert topk_correct(logits, labels, (1, 2, 5)).tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("logits", "labels", "ks", "error", "message"),
    [
        (torch.zeros(3, 4), torch.tensor([0, 4, 1]), (1,), DataError, r"\[0, 4\) for 4 classes; got \[0, 4\]"),
        (torch.zeros(3, 4), torch.tensor([0, -1, 1]), (1,), DataError, r"got \[-1, 1\]"),
        (torch.zeros(3, 4), torch.tensor([0, 1]), (1,), ShapeError, r"got \(3, 4\) and \(2,\)"),
        (torch.zeros(3), torch.tensor([0, 1, 2]), (1,), ShapeError, "must be \\(B, C\\)"),
        (torch.zeros(3, 4), torch.zeros(3), (1,), ManifoldTypeError, "integer tensor; got torch.float32"),
        (torch.zeros(3, 4, dtype=torch.int64), torch.tensor([0, 1, 2]), (1,), ManifoldTypeError, "floating tensor"),
        (torch.zeros(3, 4), torch.tensor([0, 1, 2]), (0,), OptionError, ">= 1; got \\(0,\\)"),
        (torch.zeros(3, 4), torch.tensor([0, 1, 2]), (), OptionError, "at least one k"),
    ],
    ids=["label-too-big", "negative-label", "length", "1d-logits", "float-labels", "int-logits", "k=0", "no-ks"],
)
def test_topk_correct_refuses_bad_input_stating_expected_and_got(logits, labels, ks, error, message):
    with pytest.raises(error, match=message):
        topk_correct(logits, labels, ks)


def test_evaluate_model_restores_training_mode(trained):
    model = trained.model.train()
    data = torch.utils.data.TensorDataset(torch.randn(10, 1, 8, 8), torch.arange(10))
    result = evaluate_model(model, data, batch_size=3)
    assert model.training and result["num_samples"] == 10 and 0 <= result["top1"] <= result["top5"] <= 100


def test_evaluate_reproduces_the_final_test_accuracy(trained):
    result = evaluate(trained.checkpoint)
    assert result["top1"] == pytest.approx(trained.metrics["test_top1"])
    assert result["top5"] == pytest.approx(trained.metrics["test_top5"])
    assert (result["epoch"], result["dataset"], result["split"]) == (2, "digits", "test")


def test_evaluate_on_the_training_split(trained):
    assert evaluate(trained.checkpoint, split="train")["num_samples"] == 300


def test_evaluate_on_data_of_another_shape_is_a_data_error(trained, tmp_path):
    import numpy as np

    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros((100, 5, 5)), y=np.arange(100) % 10)
    with pytest.raises(DataError, match="matching --dataset"):
        evaluate(trained.checkpoint, dataset=str(path))


def test_load_model_rejects_weights_of_another_model(trained, tmp_path):
    payload = load_checkpoint(trained.checkpoint)
    payload["model"]["fc.bases"] = torch.zeros(10, 32, 5)
    save_checkpoint(tmp_path / "edited.pt", payload)
    with pytest.raises(CheckpointError, match="does not match"):
        load_model(tmp_path / "edited.pt")


def test_load_model_rejects_bases_that_are_not_orthonormal(trained, tmp_path):
    payload = load_checkpoint(trained.checkpoint)
    payload["model"]["fc.bases"] = payload["model"]["fc.bases"] * 1.5
    save_checkpoint(tmp_path / "edited.pt", payload)
    with pytest.raises(CheckpointError, match="fc.bases is not on its manifold"):
        load_model(tmp_path / "edited.pt")


def test_load_model_rejects_an_unusable_configuration(trained, tmp_path):
    payload = load_checkpoint(trained.checkpoint)
    payload["config"]["head"] = "nonsense"
    save_checkpoint(tmp_path / "edited.pt", payload)
    with pytest.raises(CheckpointError, match="unusable configuration"):
        load_model(tmp_path / "edited.pt")


def test_analyze_matches_feature_statistics(trained):
    result = analyze(trained.checkpoint)
    model, _ = load_model(trained.checkpoint)
    from grassmann_cls.training.runs import checkpoint_data

    features, labels = extract_features(model, checkpoint_data(load_checkpoint(trained.checkpoint)).test)
    expected = feature_statistics(features, labels, model.fc)
    assert result["variability"] == pytest.approx(expected["variability"])
    assert result["r2"] == pytest.approx(expected["r2"])
    assert result["subspace_dim"] == 3 and len(result["principal_angles"]) == 45 * 3


def test_transfer_repeats_grey_targets_for_a_colour_model(tmp_path):
    from grassmann_cls.training.data import load_npz, repeat_channels

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 90)
    images = rng.random((90, 3, 8, 8)).astype(np.float32) * 0.3
    images[np.arange(90), labels] += 0.7  # a colour per class
    np.savez(tmp_path / "rgb.npz", x_train=images[:60], y_train=labels[:60], x_test=images[60:], y_test=labels[60:])
    config = TrainConfig(
        dataset=str(tmp_path / "rgb.npz"),
        backbone="mlp",
        width=16,
        subspace_dim=2,
        epochs=1,
        batch_size=16,
        progress=False,
        output=str(tmp_path / "run"),
    )
    checkpoint = train(config).checkpoint
    result = transfer_checkpoint(checkpoint, "digits", classes=[0, 1, 2])
    assert result["resized"] and result["target"].startswith("digits") and result["num_test"] > 0
    grey = load_npz(tmp_path / "rgb.npz")
    with pytest.raises(DataError, match="one-channel"):
        repeat_channels(grey)
    with pytest.raises(DataError, match="channels"):
        repeat_channels(grey, 0)


def test_transfer_checkpoint_resizes_to_the_model_input(trained):
    result = transfer_checkpoint(trained.checkpoint, "digits", classes=[5, 6, 7, 8, 9])
    assert not result["resized"] and result["num_test"] == 224 and result["accuracy"] > 50.0
