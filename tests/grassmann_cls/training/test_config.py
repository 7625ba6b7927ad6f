"""TrainConfig: legacy names load, the paper's recipe is one setting, and no setting is silently ignored."""

from __future__ import annotations

import pytest
import torch

from grassmann_cls.errors import ConfigError
from grassmann_cls.optim import PAPER_RECIPE
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.models import build_model
from grassmann_cls.training.recipe import OPTIMIZERS


def test_a_saved_config_naming_cholesky_qr_loads_as_qr():
    saved = TrainConfig(dataset="digits").to_dict() | {"retraction": "cholesky_qr"}
    config = TrainConfig.from_dict(saved)
    assert config.retraction == "qr"
    model = build_model(config, (1, 8, 8), 10)
    assert model.fc.manifold.retraction_name == "qr"


def test_a_checkpoint_naming_cholesky_qr_resumes_with_qr_settings():
    saved = TrainConfig(dataset="digits", epochs=2).to_dict() | {"retraction": "cholesky_qr"}
    config = TrainConfig.resumed(saved, {"resume": "run/checkpoint.pt", "retraction": "qr", "epochs": 3})
    assert (config.retraction, config.epochs) == ("qr", 3)


@pytest.mark.parametrize(("optimizer", "reorth_every"), [("sgd", PAPER_RECIPE["reorth_every"]), ("adamw", 1)])
def test_the_paper_recipe_sets_its_three_fields(optimizer, reorth_every):
    config = TrainConfig(recipe="paper", optimizer=optimizer)
    expected = (PAPER_RECIPE["retraction"], PAPER_RECIPE["grassmann_momentum"], reorth_every)
    assert (config.retraction, config.grassmann_momentum, config.reorth_every) == expected
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_the_paper_recipe_builds_an_exp_manifold_and_a_paper_optimizer():
    config = TrainConfig(recipe="paper", subspace_dim=2)
    model = build_model(config, (1, 8, 8), 3)
    optimizer = OPTIMIZERS.resolve(config.optimizer)(model, config)
    group = next(g for g in optimizer.param_groups if any(p is model.fc.bases for p in g["params"]))
    assert model.fc.manifold.retraction_name == "exp"
    assert (group["grassmann_momentum"], group["reorth_every"]) == ("paper", 5)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"retraction": "polar"}, "retraction='polar'"),
        ({"reorth_every": 3}, "reorth_every=3"),
        ({"grassmann_momentum": "transport", "retraction": "cayley"}, "retraction='cayley'"),
    ],
)
def test_the_paper_recipe_refuses_conflicting_settings_by_name(values, named):
    with pytest.raises(ConfigError, match=f"recipe='paper' sets .* conflicts with .*{named}"):
        TrainConfig(recipe="paper", **values)


def test_the_paper_recipe_refuses_an_explicit_default_that_conflicts():
    with pytest.raises(ConfigError, match="conflicts with retraction='qr'"):
        TrainConfig.from_dict({"recipe": "paper", "retraction": "qr"})


def test_an_unknown_recipe_is_refused_listing_the_known_ones():
    with pytest.raises(ConfigError, match="unknown recipe 'papers'; expected None or one of paper"):
        TrainConfig(recipe="papers")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"grassmann_momentum": "paper", "transport": "parallel"}, "transport='parallel' would be ignored"),
        ({"momentum": 0.0, "grassmann_momentum": "paper"}, "momentum=0 keeps none"),
        ({"momentum": 0.0, "transport": "parallel"}, "transport='parallel' moves the bases' momentum buffer"),
        ({"head": "softmax", "retraction": "exp"}, "retraction='exp' would be ignored: head='softmax' has no class"),
        ({"head": "cosine", "subspace_dim": 4}, "subspace_dim=4 would be ignored: head='cosine'"),
        ({"head": "cosine", "recipe": "paper"}, "would be ignored: head='cosine'"),
        ({"head": "softmax", "scale": 10.0}, "scale=10.0 would be ignored"),
        ({"bases_lr_factor": 10.0}, "bases_lr_factor=10.0 would be ignored: optimizer='sgd'"),
        ({"optimizer": "adamw", "nesterov": True}, "nesterov=True would be ignored: optimizer='adamw'"),
    ],
    ids=[
        "paper-parallel",
        "paper-no-momentum",
        "transport-no-momentum",
        "softmax-retraction",
        "cosine-k",
        "cosine-recipe",
        "softmax-scale",
        "sgd-bases-lr",
        "adamw-nesterov",
    ],
)
def test_settings_the_run_would_ignore_are_refused_by_name(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        TrainConfig(**values)


@pytest.mark.parametrize(
    "values",
    [
        {"head": "cosine", "scale": 10.0},
        {"optimizer": "adamw", "bases_lr_factor": 10.0},
        {"grassmann_momentum": "paper", "retraction": "polar"},
    ],
)
def test_settings_the_run_uses_are_accepted(values):
    assert TrainConfig(**values).to_dict().items() >= values.items()


def test_paper_momentum_alone_keeps_the_configured_retraction():
    config = TrainConfig(grassmann_momentum="paper", subspace_dim=2)
    torch.manual_seed(0)
    assert build_model(config, (1, 8, 8), 3).fc.manifold.retraction_name == "qr"


@pytest.mark.parametrize(
    ("field", "value"),
    [("retraction", "polar"), ("transport", "parallel"), ("grassmann_momentum", "paper"), ("reorth_every", 5)],
)
def test_landing_bases_refuse_the_settings_of_retractions_by_name(field, value):
    with pytest.raises(ConfigError, match=f"{field}={value!r} would be ignored: bases_optimizer='landing': landing"):
        TrainConfig(bases_optimizer="landing", **{field: value})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"reorth_qr": "unsigned"}, "reorth_qr='unsigned' would be ignored: the bases are never re-orthonormalised"),
        (
            {"grassmann_momentum": "paper", "reorth_every": 0, "reorth_count_from": 0},
            "reorth_count_from=0 would be ignored: the bases are never re-orthonormalised",
        ),
        (
            {"recipe": "paper", "optimizer": "adamw", "reorth_count_from": 0},
            "reorth_count_from=0 would be ignored: the bases are re-orthonormalised after every step",
        ),
        (
            {"bases_optimizer": "adam", "bases_lr_factor": 0.01, "reorth_qr": "unsigned"},
            "reorth_qr='unsigned' would be ignored: bases_optimizer='adam'",
        ),
        (
            {"bases_optimizer": "landing", "reorth_count_from": 0},
            "reorth_count_from=0 would be ignored: bases_optimizer=",
        ),
        ({"head": "softmax", "reorth_qr": "unsigned"}, "reorth_qr='unsigned' would be ignored: head='softmax'"),
    ],
    ids=["transport", "reorth-0", "every-step", "adam", "landing", "softmax"],
)
def test_reference_reorth_settings_are_refused_where_they_change_nothing(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**values)


@pytest.mark.parametrize("values", [{"reorth_qr": "bad"}, {"reorth_count_from": -1}, {"reorth_count_from": True}])
def test_bad_reference_reorth_settings_are_refused_by_name(values):
    with pytest.raises(ConfigError, match=next(iter(values))):
        TrainConfig(recipe="paper", **values)


def test_the_reference_reorth_settings_reach_the_bases_optimizer():
    config = TrainConfig(recipe="paper", reorth_qr="unsigned", reorth_count_from=0, subspace_dim=2)
    assert TrainConfig.from_dict(config.to_dict()) == config
    model = build_model(config, (1, 8, 8), 3)
    optimizer = OPTIMIZERS.resolve(config.optimizer)(model, config)
    group = next(g for g in optimizer.param_groups if any(p is model.fc.bases for p in g["params"]))
    assert (group["reorth_qr"], group["reorth_count_from"], group["reorth_every"]) == ("unsigned", 0, 5)


def test_a_saved_config_without_the_reference_reorth_settings_loads_with_the_sign_fix():
    saved = {k: v for k, v in TrainConfig(recipe="paper").to_dict().items() if not k.startswith("reorth_")}
    config = TrainConfig.from_dict(saved)
    assert (config.reorth_qr, config.reorth_count_from) == ("sign_fixed", 1)
