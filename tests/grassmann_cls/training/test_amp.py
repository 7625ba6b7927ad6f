"""Mixed precision: the gradient scaler with RiemannianSGD and HybridOptimizer, skipped steps, AMP training."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from grassmann_cls.errors import ConfigError
from grassmann_cls.optim import HybridOptimizer, RiemannianSGD
from grassmann_cls.training import precision
from grassmann_cls.training.checkpoint import load_checkpoint
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.models import build_model
from grassmann_cls.training.recipe import OPTIMIZERS
from grassmann_cls.training.train import CHECKPOINT, prepare_data, train
from tests.conftest import generator

BASE = TrainConfig(
    dataset="digits",
    train_size=400,
    epochs=3,
    batch_size=64,
    width=32,
    subspace_dim=4,
    warmup_epochs=0.5,
    progress=False,
)
SHAPE, CLASSES = (1, 8, 8), 5


@pytest.fixture(scope="module")
def digit_data():
    return prepare_data(BASE)


def setup(optimizer: str, momentum: str):
    config = BASE.replace(optimizer=optimizer, grassmann_momentum=momentum, lr=0.1 if optimizer == "sgd" else 1e-3)
    torch.manual_seed(0)
    model = build_model(config, SHAPE, CLASSES)
    return model, OPTIMIZERS.resolve(optimizer)(model, config)


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = generator(seed)
    return torch.randn(16, *SHAPE, generator=g), torch.randint(0, CLASSES, (16,), generator=g)


def loss_of(model, seed: int) -> torch.Tensor:
    x, y = batch(seed)
    return torch.nn.functional.cross_entropy(model(x), y)


def state_of(model, optimizer) -> dict:
    """Parameters (bases included) and optimizer state (momentum buffers, step counts); not BatchNorm buffers,
    which every forward pass updates."""
    parameters = {name: p.detach() for name, p in model.named_parameters()}
    return copy.deepcopy({"parameters": parameters, "optimizer": optimizer.state_dict()})


def assert_same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


OPTIMIZER_CASES = [("sgd", "transport"), ("sgd", "paper"), ("adamw", "paper"), ("adamw", "transport")]


@pytest.mark.parametrize(("optimizer", "momentum"), OPTIMIZER_CASES)
def test_scaled_and_unscaled_steps_are_bitwise_equal(optimizer, momentum):
    """A power-of-two scale is exact: unscale_ hands the optimizer the very gradients of the plain step."""
    plain_model, plain_opt = setup(optimizer, momentum)
    scaled_model, scaled_opt = setup(optimizer, momentum)
    assert isinstance(scaled_opt, RiemannianSGD if optimizer == "sgd" else HybridOptimizer)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    for seed in range(3):
        for model, opt, sc in ((plain_model, plain_opt, None), (scaled_model, scaled_opt, scaler)):
            opt.zero_grad(set_to_none=True)
            precision.step(loss_of(model, seed), opt, sc)
    assert scaler.get_scale() == 2.0**12
    assert_same(state_of(scaled_model, scaled_opt), state_of(plain_model, plain_opt))
    assert all(p.grad.dtype == torch.float32 for p in scaled_model.parameters())


@pytest.mark.parametrize(("optimizer", "momentum"), OPTIMIZER_CASES)
@pytest.mark.parametrize("target", ["bases", "backbone"])
def test_an_infinite_gradient_skips_the_step_and_keeps_bases_and_momentum(optimizer, momentum, target):
    model, opt = setup(optimizer, momentum)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    for seed in range(2):  # momentum buffers exist from here on
        opt.zero_grad(set_to_none=True)
        precision.step(loss_of(model, seed), opt, scaler)
    before = state_of(model, opt)
    param = model.fc.bases if target == "bases" else model.body[1].weight
    hook = param.register_hook(lambda g: torch.full_like(g, math.inf))
    opt.zero_grad(set_to_none=True)
    precision.step(loss_of(model, 2), opt, scaler)
    hook.remove()
    assert_same(state_of(model, opt), before)
    assert scaler.get_scale() == 2.0**7
    opt.zero_grad(set_to_none=True)
    precision.step(loss_of(model, 3), opt, scaler)
    assert not torch.equal(model.fc.bases, before["parameters"]["fc.bases"])


@pytest.mark.parametrize("amp", precision.AMP)
def test_mixed_precision_training_learns_digits_with_float32_parameters(digit_data, amp):
    result = train(BASE.replace(amp=amp), data=digit_data)
    assert result.metrics["test_top1"] > 75.0
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    bases = result.model.fc.bases.detach()
    assert torch.allclose(bases.mT @ bases, torch.eye(4).expand(bases.shape[0], 4, 4), atol=1e-5)


def test_fp16_checkpoint_holds_the_scaler_state(tmp_path, digit_data):
    train(BASE.replace(amp="fp16", epochs=1, output=str(tmp_path / "run")), data=digit_data)
    scaler = load_checkpoint(tmp_path / "run" / CHECKPOINT)["scaler"]
    assert set(scaler) >= {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}
    assert 0 < scaler["scale"] <= 2.0**16


def test_autocast_lowers_the_forward_pass_only():
    model, _ = setup("sgd", "transport")
    x, _ = batch(0)
    with precision.autocast(torch.device("cpu"), "bf16"):
        features = model.features(x)
        logits = model(x)
    assert features.dtype == torch.bfloat16 and logits.dtype == torch.float32
    with precision.autocast(torch.device("cpu"), None):
        assert model.features(x).dtype == torch.float32
    assert precision.grad_scaler(torch.device("cpu"), "bf16") is None
    assert isinstance(precision.grad_scaler(torch.device("cpu"), "fp16"), torch.amp.GradScaler)


def test_unknown_amp_mode_is_refused():
    with pytest.raises(ConfigError, match="amp must be one of bf16, fp16"):
        BASE.replace(amp="fp8")
