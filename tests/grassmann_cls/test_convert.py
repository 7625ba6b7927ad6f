"""convert(): swapping the classifier of ResNet- and ViT-style models for a GrassmannHead."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grassmann_cls import GrassmannHead, RiemannianSGD, convert, find_classifier
from grassmann_cls.errors import ConfigError, ManifoldTypeError, OptionError
from tests.conftest import generator


class BasicBlock(nn.Module):
    def __init__(self, channels_in, channels_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.downsample = None
        if stride != 1 or channels_in != channels_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride, bias=False), nn.BatchNorm2d(channels_out)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + identity)


class TinyResNet(nn.Module):
    """torchvision-style: stem, stages, global pool, ``fc``."""

    def __init__(self, num_classes=7):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, stride=2), BasicBlock(16, 16))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class Block(nn.Module):
    def __init__(self, dim, heads=2):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """timm-style: patch embedding, class token, blocks, norm, ``head`` (MLP Linears come first)."""

    def __init__(self, num_classes=5, dim=16):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 4, 4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, dim))
        self.blocks = nn.Sequential(Block(dim), Block(dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def build(model_class, *args, **kwargs):
    """A model initialised from seed 0 without touching the global RNG."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return model_class(*args, **kwargs)


@pytest.mark.parametrize(
    ("model_class", "path", "n", "C", "image"),
    [(TinyResNet, "fc", 16, 7, 8), (TinyViT, "head", 16, 5, 8)],
    ids=["resnet", "vit"],
)
def test_convert_replaces_the_classifier_and_trains(model_class, path, n, C, image):
    model = convert(build(model_class), 3, generator=generator(0))
    head = model.get_submodule(path)
    assert isinstance(head, GrassmannHead)
    assert (head.in_features, head.num_classes, head.subspace_dim) == (n, C, 3)
    assert not any(isinstance(m, nn.Linear) and name == path for name, m in model.named_modules())
    x = torch.randn(6, 3, image, image, generator=generator(1))
    y = torch.arange(6) % C
    opt = RiemannianSGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    gram = head.bases.mT @ head.bases
    assert (gram - torch.eye(3)).abs().max() < 1e-5


def test_convert_by_dotted_name_in_a_sequential():
    model = build(nn.Sequential, nn.Linear(8, 12), nn.ReLU(), nn.Sequential(nn.Dropout(0.0), nn.Linear(12, 4)))
    convert(model, 2, name="2.1", generator=generator(5))
    assert isinstance(model[2][1], GrassmannHead)
    assert isinstance(model[0], nn.Linear)
    assert model(torch.randn(3, 8, generator=generator(3))).shape == (3, 4)


def test_convert_bare_linear_returns_the_head():
    head = convert(build(nn.Linear, 6, 3), (1, 2, 3), generator=generator(4))
    assert isinstance(head, GrassmannHead) and head.subspace_dim == (1, 2, 3)


def test_convert_keeps_dtype_and_passes_head_options():
    model = build(lambda: nn.Sequential(nn.Linear(4, 6, dtype=torch.float64), nn.Linear(6, 3, dtype=torch.float64)))
    convert(model, 2, scale=10.0, logit="neg_angle", generator=generator(6))
    head = model[1]
    assert head.bases.dtype == torch.float64
    assert float(head.scale) == 10.0 and "logit=neg_angle" in repr(head)


def test_convert_from_linear_keeps_class_vectors():
    model = build(TinyResNet)
    weight = model.fc.weight.detach().clone()
    convert(model, 2, init="linear", generator=generator(2))
    torch.testing.assert_close(model.fc.bases[..., 0].detach(), F.normalize(weight, dim=-1))


def test_find_classifier_picks_the_last_linear_of_a_vit():
    name, module = find_classifier(build(TinyViT))
    assert name == "head" and module.out_features == 5


def test_convert_unknown_name_lists_the_linear_layers():
    with pytest.raises(OptionError, match=r"no nn.Linear called 'classifier'.*'fc'"):
        convert(build(TinyResNet), 2, name="classifier")


def test_convert_model_without_linear_raises():
    with pytest.raises(ConfigError, match="no nn.Linear"):
        convert(build(nn.Conv2d, 3, 4, 3), 2)
    with pytest.raises(ManifoldTypeError, match="nn.Module"):
        convert("resnet", 2)
    with pytest.raises(OptionError, match="init must be one of"):
        convert(build(TinyResNet), 2, init="svd")
