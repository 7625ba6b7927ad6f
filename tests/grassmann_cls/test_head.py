"""GrassmannHead: logits, layout, variable k, serialisation, compile and autocast."""

from __future__ import annotations

import copy
import io
import pickle

import geoopt
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from grassmann_cls import GrassmannHead, PaddedGrassmann
from grassmann_cls.errors import GrassmannError, ManifoldTypeError, OptionError, ShapeError
from manifolds import Grassmann
from tests.conftest import generator, tolerance

VARIABLE_DIMS = (1, 3, 2, 3, 1)


def make_head(n=12, C=5, k=3, dtype=torch.float64, seed=0, **kwargs):
    return GrassmannHead(n, C, k, dtype=dtype, generator=generator(seed), **kwargs)


def reference_logits(head, x):
    """Per-class loop straight from the paper: scale * ||S_c^T x_hat||."""
    x_hat = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    columns = [torch.linalg.vector_norm(x_hat @ head.bases[c, :, :k], dim=-1) for c, k in enumerate(head.subspace_dims)]
    return head.scale * torch.stack(columns, dim=-1)


def random_orthogonal(k, dtype, seed):
    q, _ = torch.linalg.qr(torch.randn(k, k, dtype=dtype, generator=generator(seed)))
    return q


def test_bases_are_one_manifold_parameter_stored_as_linear_weight():
    head = make_head(n=12, C=5, k=3)
    assert isinstance(head.bases, geoopt.ManifoldParameter)
    assert isinstance(head.bases.manifold, Grassmann)
    assert tuple(head.bases.shape) == (5, 12, 3)
    assert head.bases.mT.is_contiguous()
    weight = head.linear_weight
    assert weight.shape == (15, 12)
    assert weight.data_ptr() == head.bases.data_ptr()
    assert [name for name, _ in head.named_parameters()] == ["bases"]


def test_initial_bases_are_orthonormal(dtype):
    head = make_head(n=20, C=7, k=4, dtype=dtype)
    gram = head.bases.mT @ head.bases
    eye = torch.eye(4, dtype=dtype)
    assert (gram - eye).abs().max() <= tolerance(dtype, 20)


@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 4), batch=st.integers(1, 5))
def test_logits_invariant_under_basis_rotation(seed, k, batch):
    head = make_head(n=9, C=4, k=k, seed=seed)
    x = torch.randn(batch, 9, dtype=torch.float64, generator=generator(seed + 1))
    before = head(x)
    q = torch.stack([random_orthogonal(k, torch.float64, seed + 2 + c) for c in range(4)])
    with torch.no_grad():
        head.bases.copy_(head.bases @ q)
    torch.testing.assert_close(head(x), before, atol=tolerance(torch.float64, 100), rtol=0)


def test_k1_logit_is_scale_times_absolute_cosine(dtype):
    head = make_head(n=10, C=6, k=1, dtype=dtype, scale=25.0)
    x = torch.randn(7, 10, dtype=dtype, generator=generator(3))
    s = head.bases[..., 0].detach()
    cos = F.cosine_similarity(x[:, None, :], s[None, :, :], dim=-1)
    torch.testing.assert_close(head(x), 25.0 * cos.abs(), atol=tolerance(dtype, 25 * 10), rtol=0)


def test_logits_lie_between_zero_and_scale(dtype):
    head = make_head(n=10, C=6, k=3, dtype=dtype, scale=7.0)
    logits = head(torch.randn(50, 10, dtype=dtype, generator=generator(4)))
    assert logits.min() >= 0
    assert logits.max() <= 7.0 * (1 + tolerance(dtype, 10))


@pytest.mark.parametrize("dims", [3, VARIABLE_DIMS], ids=["fixed_k", "variable_k"])
def test_fused_forward_equals_per_class_loop(dims, dtype):
    head = make_head(n=11, C=5, k=dims, dtype=dtype)
    x = torch.randn(8, 11, dtype=dtype, generator=generator(5))
    torch.testing.assert_close(head(x), reference_logits(head, x), atol=tolerance(dtype, 25 * 11), rtol=0)


def test_forward_accepts_leading_batch_dims():
    head = make_head(n=6, C=3, k=2)
    x = torch.randn(2, 4, 6, dtype=torch.float64, generator=generator(6))
    torch.testing.assert_close(head(x), head(x.reshape(8, 6)).reshape(2, 4, 3))


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dims", [2, (1, 2, 2)], ids=["fixed_k", "variable_k"])
def test_gradcheck_float64(dims, normalize):
    head = make_head(n=5, C=3, k=dims, normalize=normalize, scale=3.0)
    x = torch.randn(4, 5, dtype=torch.float64, generator=generator(7), requires_grad=True)
    bases = head.bases.detach().clone().requires_grad_()

    def logits(features, b):
        return torch.func.functional_call(head, {"bases": b}, (features,))

    assert torch.autograd.gradcheck(logits, (x, bases))


def test_variable_k_equals_separate_fixed_k_heads(dtype):
    head = make_head(n=10, C=len(VARIABLE_DIMS), k=VARIABLE_DIMS, dtype=dtype)
    x = torch.randn(6, 10, dtype=dtype, generator=generator(9))
    logits = head(x)
    for k in sorted(set(VARIABLE_DIMS)):
        classes = [c for c, kc in enumerate(VARIABLE_DIMS) if kc == k]
        fixed = make_head(n=10, C=len(classes), k=k, dtype=dtype)
        with torch.no_grad():
            fixed.bases.copy_(head.bases[classes, :, :k])
        torch.testing.assert_close(logits[:, classes], fixed(x), atol=tolerance(dtype, 250), rtol=0)


def test_variable_k_bases_have_zero_padding_and_padded_manifold():
    head = make_head(n=10, C=len(VARIABLE_DIMS), k=VARIABLE_DIMS)
    assert isinstance(head.manifold, PaddedGrassmann)
    assert head.subspace_dim == VARIABLE_DIMS
    gram = head.bases.mT @ head.bases
    expected = torch.diag_embed(head.manifold.mask(head.bases).squeeze(-2))
    torch.testing.assert_close(gram, expected, atol=tolerance(torch.float64, 10), rtol=0)
    ok, reason = head.manifold.check_point_on_manifold(head.bases, explain=True)
    assert ok, reason


def test_from_linear_puts_class_vector_first():
    linear = torch.nn.Linear(9, 4, dtype=torch.float64, device="meta").to_empty(device="cpu")
    with torch.no_grad():
        linear.weight.copy_(torch.randn(4, 9, dtype=torch.float64, generator=generator(11)))
        linear.weight[2] = 0.0
    head = GrassmannHead.from_linear(linear, 3, generator=generator(10))
    w = linear.weight.detach()
    first = head.bases[..., 0].detach()
    torch.testing.assert_close(first[[0, 1, 3]], F.normalize(w[[0, 1, 3]], dim=-1))
    gram = head.bases.mT @ head.bases
    torch.testing.assert_close(gram, torch.eye(3, dtype=torch.float64).expand(4, 3, 3))
    assert head.bases.dtype == torch.float64
    assert head.bases.mT.is_contiguous()


def clone_via(method, head):
    if method == "deepcopy":
        return copy.deepcopy(head)
    if method == "pickle":
        return pickle.loads(pickle.dumps(head))
    if method == "torch.save":
        buffer = io.BytesIO()
        torch.save(head, buffer)
        buffer.seek(0)
        return torch.load(buffer, weights_only=False)
    fresh = make_head(n=8, C=len(VARIABLE_DIMS), k=head.subspace_dim, seed=99, manifold=Grassmann(retraction="polar"))
    buffer = io.BytesIO()
    torch.save(head.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer))
    return fresh


@pytest.mark.parametrize("method", ["deepcopy", "pickle", "torch.save", "state_dict"])
@pytest.mark.parametrize("dims", [2, VARIABLE_DIMS], ids=["fixed_k", "variable_k"])
def test_copies_keep_bases_a_manifold_parameter(method, dims):
    head = make_head(n=8, C=len(VARIABLE_DIMS), k=dims, manifold=Grassmann(retraction="polar"))
    copied = clone_via(method, head)
    assert isinstance(copied.bases, geoopt.ManifoldParameter)
    assert type(copied.bases.manifold) is type(head.bases.manifold)
    assert copied.bases.manifold.retraction_name == "polar"
    assert copied.bases.requires_grad
    assert copied.bases.mT.is_contiguous()
    assert torch.equal(copied.bases, head.bases)
    x = torch.randn(3, 8, dtype=torch.float64, generator=generator(11))
    assert torch.equal(copied(x), head(x))


def test_deepcopy_does_not_share_bases():
    head = make_head()
    copied = copy.deepcopy(head)
    with torch.no_grad():
        copied.bases.zero_()
    assert head.bases.abs().sum() > 0


def test_extra_repr_shows_sizes_scale_and_retraction():
    head = make_head(n=12, C=5, k=3, scale=16.0, manifold=Grassmann(retraction="cayley"))
    text = repr(head)
    for part in (
        "in_features=12",
        "num_classes=5",
        "subspace_dim=3",
        "scale=16",
        "retraction=cayley",
        "logit=projection",
    ):
        assert part in text


def test_learned_scale_is_a_plain_parameter_and_fixed_scale_a_buffer():
    learned = make_head(learn_scale=True)
    fixed = make_head()
    assert [n for n, _ in learned.named_parameters()] == ["bases", "scale"]
    assert "scale" in fixed.state_dict() and "scale" in dict(fixed.named_buffers())
    assert not isinstance(learned.scale, geoopt.ManifoldParameter)


@pytest.mark.parametrize("dims", [3, VARIABLE_DIMS], ids=["fixed_k", "variable_k"])
def test_forward_under_torch_compile(dims):
    torch._dynamo.reset()
    head = make_head(n=16, C=5, k=dims, dtype=torch.float32)
    x = torch.randn(4, 16, generator=generator(12), requires_grad=True)
    compiled = torch.compile(head, fullgraph=True)
    out = compiled(x)
    torch.testing.assert_close(out, head(x), atol=1e-4, rtol=1e-5)
    (grad,) = torch.autograd.grad(out.sum(), x)
    (expected,) = torch.autograd.grad(head(x).sum(), x)
    torch.testing.assert_close(grad, expected, atol=1e-4, rtol=1e-4)


def test_autocast_bf16_matmul_with_float32_norm():
    head = make_head(n=32, C=6, k=4, dtype=torch.float32)
    x = torch.randn(16, 32, generator=generator(13))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(x)
    assert logits.dtype == torch.float32
    x_hat = F.normalize(x, dim=-1)
    coefficients = F.linear(x_hat.bfloat16(), head.linear_weight.bfloat16()).float().unflatten(-1, (6, 4))
    expected = head.scale * torch.linalg.vector_norm(coefficients, dim=-1)
    torch.testing.assert_close(logits, expected, atol=tolerance(torch.float32, 25 * 4), rtol=0)
    torch.testing.assert_close(logits, head(x), atol=25 * 2.0**-6, rtol=0)


def test_zero_features_give_finite_logits_and_gradients():
    head = make_head(n=6, C=3, k=2)
    x = torch.zeros(2, 6, dtype=torch.float64, requires_grad=True)
    logits = head(x)
    logits.sum().backward()
    assert torch.equal(logits, torch.zeros_like(logits))
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.bases.grad).all()


def test_forward_rejects_wrong_feature_size():
    head = make_head(n=6)
    with pytest.raises(ShapeError, match=r"\(\.\.\., 6\); got \(2, 7\)"):
        head(torch.zeros(2, 7, dtype=torch.float64))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"subspace_dim": 5, "in_features": 3}, ShapeError, "1 <= k <= n; got k=5, n=3"),
        ({"subspace_dim": 0}, ShapeError, "got k=0"),
        ({"subspace_dim": (1, 2)}, ShapeError, "one entry per class; got 2 entries for num_classes=4"),
        ({"subspace_dim": (1, 2, 9, 1)}, ShapeError, "for class 2; got k=9, n=6"),
        ({"subspace_dim": 2.5}, ManifoldTypeError, "subspace_dim must be an int; got float"),
        ({"num_classes": 0}, OptionError, "num_classes must be >= 1; got 0"),
        ({"in_features": True}, ManifoldTypeError, "in_features must be an int; got bool"),
        ({"scale": 0.0}, OptionError, "scale must be > 0.0; got 0.0"),
        ({"scale": float("nan")}, OptionError, "scale must be finite"),
        ({"logit": "cosine"}, OptionError, "unknown logit 'cosine'; expected a callable or one of projection"),
        ({"manifold": geoopt.Sphere()}, ManifoldTypeError, "manifolds.PaddedGrassmann; got Sphere"),
        ({"dtype": torch.int64}, ManifoldTypeError, "floating dtype; got torch.int64"),
        (
            {"subspace_dim": (1, 2, 2, 1), "manifold": PaddedGrassmann((1, 1, 2, 1))},
            ShapeError,
            r"subspace_dims must equal the head's",
        ),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, error, message):
    arguments = {"in_features": 6, "num_classes": 4, "subspace_dim": 2, **kwargs}
    n, C, k = arguments.pop("in_features"), arguments.pop("num_classes"), arguments.pop("subspace_dim")
    with pytest.raises(error, match=message) as info:
        GrassmannHead(n, C, k, **arguments)
    assert isinstance(info.value, GrassmannError)
