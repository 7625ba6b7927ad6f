"""The chunked no-autograd kernels (``manifolds.inplace``, ``manifolds._fused``).

They must compute what the differentiable compositions compute, on any stack
size (chunk boundaries, stacks far beyond 192 items: batched LU is broken in
torch 2.13 for those, Cholesky and triangular solves are not), in place or
into ``out=``, on rows- or column-stored bases.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from manifolds import RETRACTIONS, TRANSPORTS, Grassmann, _fused, inplace, principal_angles
from manifolds._linalg import sign_fixed_qr
from manifolds.distances import DISTANCES, cdist
from manifolds.errors import ManifoldTypeError, NonFiniteError, OptionError, ShapeError
from tests.conftest import generator, tolerance
from tests.manifolds.strategies import DEVICES, as_rows, point, seeds, shapes, tangent

FUSED = _fused.FUSED_RETRACTIONS


def _entry(name, x, u):
    """The registry entry (the definition each kernel is held to)."""
    return RETRACTIONS.resolve(name)(x, u)


def _layout(t, layout):
    return as_rows(t) if layout == "rows" else t.contiguous()


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of a few classes, so every stack spans several chunks plus a remainder."""
    monkeypatch.setattr(_fused, "_CHUNK_BYTES", 3 * 8 * 16 * 8)


@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize("layout", ["rows", "columns"])
@pytest.mark.parametrize("device", DEVICES)
@given(shape=shapes(min_codim=1), seed=seeds, radius=st.floats(0.0, 2.0))
def test_retract_in_place_equals_the_differentiable_retraction(name, layout, device, dtype, shape, seed, radius):
    batch, n, k = shape
    gen = generator(seed)
    x = _layout(point(batch, n, k, dtype, gen, device), layout)
    u = _layout(tangent(x, gen, spectral_norm=radius), layout)
    expected = _entry(name, x, u)
    y = x.clone()
    inplace.retract_(y, u, retraction=name)
    torch.testing.assert_close(y, expected, atol=tolerance(dtype, n, factor=100), rtol=0)


@pytest.mark.parametrize("name", FUSED)
def test_registry_entries_keep_dtype_and_shape(name, dtype):
    gen = generator(0)
    x = point((5,), 9, 3, dtype, gen)
    u = tangent(x, gen, spectral_norm=0.5)
    y = RETRACTIONS.resolve(name)(x, u)
    assert y.dtype == dtype and y.shape == x.shape
    eye = torch.eye(3, dtype=dtype)
    torch.testing.assert_close(y.mT @ y, eye.expand(5, 3, 3), atol=tolerance(dtype, 9, factor=100), rtol=0)


@pytest.mark.parametrize("name", ["qr", "exp", "polar"])
@pytest.mark.parametrize("items", [7, 37, 300])
def test_chunked_kernels_agree_on_large_stacks(small_chunks, name, items, dtype):
    gen = generator(items)
    x = as_rows(point((items,), 16, 8, dtype, gen))
    u = as_rows(tangent(x, gen, spectral_norm=1.0))
    out = torch.empty_like(x)
    inplace.retract_(x, u, retraction=name, out=out)
    torch.testing.assert_close(out, _entry(name, x, u), atol=tolerance(dtype, 16, factor=100), rtol=0)


def test_retract_out_leaves_inputs_alone(dtype):
    gen = generator(1)
    x = point((4,), 10, 3, dtype, gen)
    u = tangent(x, gen, spectral_norm=0.3)
    x0, u0 = x.clone(), u.clone()
    out = inplace.empty_like_rows(x)
    assert inplace.retract_(x, u, out=out) is out
    assert torch.equal(x, x0) and torch.equal(u, u0)


@pytest.mark.parametrize("alias", [True, False])
@pytest.mark.parametrize("device", DEVICES)
@given(shape=shapes(min_codim=1), seed=seeds, alpha=st.floats(-1.5, 1.5))
def test_retract_transport_equals_retraction_then_projection(alias, device, dtype, shape, seed, alpha):
    batch, n, k = shape
    gen = generator(seed)
    x = as_rows(point(batch, n, k, dtype, gen, device))
    u = as_rows(tangent(x, gen, spectral_norm=1.0))
    v = u.clone() if alias else as_rows(tangent(x, gen))
    y = _entry("qr", x, alpha * u)
    w = TRANSPORTS.resolve("projection")(x, alpha * u, y, v)
    x_new, v_new = x.clone(), v.clone()
    inplace.retract_transport_(x_new, v_new if alias else u, v_new, alpha=alpha)
    atol = tolerance(dtype, n, factor=200)
    torch.testing.assert_close(x_new, y, atol=atol, rtol=0)
    torch.testing.assert_close(v_new, w, atol=atol, rtol=0)


@pytest.mark.parametrize("transport", ["parallel", "aligned_projection"])
def test_grassmann_retr_transp_in_place_matches_out_of_place(transport, dtype):
    gr = Grassmann(transport=transport)
    gen = generator(2)
    x = point((3,), 8, 2, dtype, gen)
    u, v = tangent(x, gen, spectral_norm=0.4), tangent(x, gen)
    y, w = gr.retr_transp(x, -0.5 * u, v)
    x_new, v_new = gr.retr_transp_(x.clone(), u, v.clone(), alpha=-0.5)
    torch.testing.assert_close(x_new, y, atol=tolerance(dtype, 8, factor=100), rtol=0)
    torch.testing.assert_close(v_new, w, atol=tolerance(dtype, 8, factor=100), rtol=0)


@pytest.mark.parametrize("target", ["new", "separate", "v"])
@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_project_accumulates_scaled_projection(small_chunks, target, beta, dtype):
    gen = generator(3)
    x = as_rows(point((11,), 12, 3, dtype, gen))
    v = as_rows(torch.randn(x.shape, dtype=dtype, generator=gen))
    old = as_rows(torch.randn(x.shape, dtype=dtype, generator=gen))
    projected = v - x @ (x.mT @ v)
    if target == "new":
        result, expected = inplace.project(x, v, alpha=0.7), 0.7 * projected
    elif target == "separate":
        out = old.clone()
        result, expected = inplace.project(x, v, out=out, alpha=0.7, beta=beta), beta * old + 0.7 * projected
    else:
        out = v.clone()
        result, expected = inplace.project(x, out, out=out, alpha=0.7, beta=beta), beta * v + 0.7 * projected
    torch.testing.assert_close(result, expected, atol=tolerance(dtype, 12, factor=100), rtol=0)


@pytest.mark.parametrize("layout", ["rows", "columns"])
@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_project_with_transport_out_projects_the_whole_sum(small_chunks, layout, beta, dtype):
    gen = generator(13)
    x = _layout(point((11,), 12, 3, dtype, gen), layout)
    y = _layout(point((11,), 12, 3, dtype, gen), layout)  # the nearby basis the old out is tangent to
    v = torch.randn(x.shape, dtype=dtype, generator=gen)
    old = torch.randn(x.shape, dtype=dtype, generator=gen)
    old = _layout(old - y @ (y.mT @ old), layout)
    out = old.clone()
    result = inplace.project(x, v, out=out, alpha=0.7, beta=beta, transport_out=True)
    x64, total = x.double(), beta * old.double() + 0.7 * v.double()
    expected = total - x64 @ (x64.mT @ total)
    assert result is out
    torch.testing.assert_close(result.double(), expected, atol=tolerance(dtype, 12, factor=100), rtol=0)
    # the same as transporting the old out first, then accumulating the projected v
    transported = TRANSPORTS.resolve("projection")(y, None, x, old)
    two_steps = inplace.project(x, v, out=transported, alpha=0.7, beta=beta)
    torch.testing.assert_close(result, two_steps, atol=tolerance(dtype, 12, factor=100), rtol=0)
    if beta:  # without transport_out the old out is not projected: a different vector
        plain = inplace.project(x, v, out=old.clone(), alpha=0.7, beta=beta)
        assert not torch.allclose(plain, result, atol=1e-3)


def test_project_refuses_a_transport_out_that_is_not_a_bool():
    x = point((2,), 5, 2, torch.float64, generator(1))
    with pytest.raises(ManifoldTypeError, match="transport_out"):
        inplace.project(x, x.clone(), out=x.clone(), transport_out="yes")


MOMENTUM_CASES = [(mode, name) for mode in inplace.MOMENTUM_MODES for name in (*FUSED, "exp_via_callable")]


@pytest.mark.parametrize("dampening", [0.0, 0.1])
@pytest.mark.parametrize("layout", ["rows", "columns"])
@pytest.mark.parametrize(("mode", "retraction"), MOMENTUM_CASES, ids=[f"{m}-{r}" for m, r in MOMENTUM_CASES])
def test_momentum_step_equals_projection_then_retraction(small_chunks, mode, retraction, layout, dampening, dtype):
    gen = generator(23)
    x = _layout(point((11,), 12, 3, dtype, gen), layout)
    grad = _layout(torch.randn(x.shape, dtype=dtype, generator=gen), layout)
    buf = _layout(torch.randn(x.shape, dtype=dtype, generator=gen), layout)
    if retraction == "exp_via_callable":  # not a fused name: the generic route
        retraction = lambda x, u: RETRACTIONS.resolve("exp")(x, u)  # noqa: E731
    x1, buf1 = x.clone(), buf.clone()
    result = inplace.momentum_step_(
        x1, grad, buf1, lr=0.3, momentum=0.9, dampening=dampening, mode=mode, retraction=retraction
    )
    x2, buf2 = x.clone(), buf.clone()
    if mode == "transport":
        inplace.project(x2, grad, out=buf2, alpha=1 - dampening, beta=0.9, transport_out=True)
        inplace.retract_(x2, buf2, alpha=-0.3, retraction=retraction)
    else:
        _fused.accumulate_(buf2, grad, 0.9, 1 - dampening)
        inplace.retract_(x2, inplace.project(x2, buf2), alpha=-0.3, retraction=retraction)
    assert result is x1
    if layout == "rows" and callable(retraction) is False:  # the same operations, chunk by chunk
        assert torch.equal(x1, x2) and torch.equal(buf1, buf2)
    torch.testing.assert_close(x1, x2, atol=tolerance(dtype, 12, factor=100), rtol=0)
    torch.testing.assert_close(buf1, buf2, atol=tolerance(dtype, 12, factor=100), rtol=0)
    # against a float64 composition of the registry functions
    x64, g64, b64 = x.double(), grad.double(), buf.double()
    if mode == "transport":
        total = 0.9 * b64 + (1 - dampening) * g64
        b_new = total - x64 @ (x64.mT @ total)
        x_new = RETRACTIONS.resolve(retraction)(x64, -0.3 * b_new)
    else:
        b_new = 0.9 * b64 + (1 - dampening) * g64
        x_new = RETRACTIONS.resolve(retraction)(x64, -0.3 * (b_new - x64 @ (x64.mT @ b_new)))
    torch.testing.assert_close(x1.double(), x_new, atol=tolerance(dtype, 12, factor=1000), rtol=0)
    torch.testing.assert_close(buf1.double(), b_new, atol=tolerance(dtype, 12, factor=1000), rtol=0)


@pytest.mark.parametrize("mode", ["transport", "paper"])
@pytest.mark.parametrize("layout", ["rows", "columns"])
@pytest.mark.parametrize("device", DEVICES)
@given(shape=shapes(min_codim=1), seed=seeds, lr=st.floats(0.0, 0.5), momentum=st.floats(0.0, 0.95))
def test_momentum_step_matches_float64_composition(mode, layout, device, dtype, shape, seed, lr, momentum):
    batch, n, k = shape
    gen = generator(seed)
    x = _layout(point(batch, n, k, dtype, gen, device), layout)
    grad = _layout(torch.randn(x.shape, dtype=dtype, generator=gen).to(device), layout)
    buf = _layout(tangent(x, gen), layout)
    x1, b1 = x.clone(), buf.clone()
    inplace.momentum_step_(x1, grad, b1, lr=lr, momentum=momentum, mode=mode, retraction="qr")
    x64, g64, b64 = x.double(), grad.double(), buf.double()
    total = momentum * b64 + g64
    if mode == "transport":
        b_new = total - x64 @ (x64.mT @ total)
        x_new = RETRACTIONS.resolve("qr")(x64, -lr * b_new)
    else:
        b_new = total
        x_new = RETRACTIONS.resolve("qr")(x64, -lr * (total - x64 @ (x64.mT @ total)))
    scale = 1.0 + float(total.abs().amax())
    torch.testing.assert_close(b1.double(), b_new, atol=tolerance(dtype, n, factor=100) * scale, rtol=0)
    torch.testing.assert_close(x1.double(), x_new, atol=tolerance(dtype, n, factor=100) * scale, rtol=0)
    assert x1.shape == x.shape and x1.stride() == x.stride()


def test_momentum_step_refuses_bad_arguments():
    x = as_rows(point((2,), 5, 2, torch.float64, generator(1)))
    grad, buf = torch.randn_like(x), torch.zeros_like(x)
    with pytest.raises(OptionError, match="mode"):
        inplace.momentum_step_(x, grad, buf, lr=0.1, momentum=0.9, mode="adam")
    with pytest.raises(ShapeError, match="separate memory"):
        inplace.momentum_step_(x, grad, grad, lr=0.1, momentum=0.9)
    with pytest.raises(ManifoldTypeError, match="lr"):
        inplace.momentum_step_(x, grad, buf, lr="0.1", momentum=0.9)
    with pytest.raises(OptionError, match="momentum"):
        inplace.momentum_step_(x, grad, buf, lr=0.1, momentum=math.inf)
    with pytest.raises(ShapeError):
        inplace.momentum_step_(x, grad[..., :1], buf, lr=0.1, momentum=0.9)


def test_ill_conditioned_steps_still_give_the_q_factor(dtype):
    gen = generator(4)
    x = as_rows(point((6,), 30, 4, dtype, gen))
    u = tangent(x, gen, spectral_norm=1.0)
    u[0] *= 300.0  # Gram condition ~1e5: the CholQR2 repair
    u[1] *= 3e4  # beyond float32 Cholesky: the Householder fallback
    u = as_rows(u)
    y = x.clone()
    inplace.retract_(y, u)
    expected = sign_fixed_qr((x + u).double())
    torch.testing.assert_close(y.double(), expected, atol=tolerance(dtype, 30, factor=1000), rtol=0)
    torch.testing.assert_close(y.mT @ y, torch.eye(4, dtype=dtype).expand(6, 4, 4), atol=1e-5, rtol=0)


@pytest.mark.parametrize("sigma", [0.0, 1e-4, 0.3, 2.0, 40.0])
def test_exp_coefficients_match_spectral_functions(sigma):
    gen = generator(5)
    a = torch.randn(9, 6, 6, generator=gen, dtype=torch.float64)
    s = a @ a.mT
    s = s * (sigma**2 / torch.linalg.matrix_norm(s, ord=2).clamp_min(1e-300))[:, None, None]
    s32 = s.float()
    cos, sinc = _fused._cos_sinc_sqrt(s32)
    evals, evecs = torch.linalg.eigh(s32.double())
    root = evals.clamp_min(0).sqrt()
    expected_cos = (evecs * torch.cos(root).unsqueeze(-2)) @ evecs.mT
    expected_sinc = (evecs * torch.sinc(root / math.pi).unsqueeze(-2)) @ evecs.mT
    torch.testing.assert_close(cos.double(), expected_cos, atol=1e-6, rtol=0)
    torch.testing.assert_close(sinc.double(), expected_sinc, atol=1e-6, rtol=0)


@pytest.mark.parametrize("angle", [1e-4, 1e-3, 0.03, 0.7, 1.55])
def test_float32_geodesic_distance_matches_float64_arithmetic(small_chunks, angle):
    # The float32 difference h = y - x x^T y carries rounding of size eps * |y|,
    # so below ~0.01 the relative error grows like eps / angle, on every
    # float32 route; the fast one must be as good as the SVD route there.
    gen = generator(6)
    x = as_rows(point((40,), 64, 8, torch.float32, gen))
    u = tangent(x.double(), gen, spectral_norm=angle)
    y = as_rows(Grassmann().expmap(x.double(), u).float())
    reference = torch.linalg.vector_norm(principal_angles(x.double(), y.double()), dim=-1)
    d = DISTANCES.resolve("geodesic")(x, y)
    svd_route = torch.linalg.vector_norm(principal_angles(x, y), dim=-1)
    assert d.dtype == torch.float32

    def error(value):
        return float(((value.double() - reference) / reference).abs().max())

    assert error(d) <= 1.5 * error(svd_route) + 1e-7
    if angle >= 0.03:
        assert error(d) <= 1e-6


@pytest.mark.parametrize("name", DISTANCES.names())
def test_distances_agree_with_the_differentiable_path(name, dtype):
    gen = generator(7)
    x, y = point((3,), 10, 3, dtype, gen), point((4,), 10, 3, dtype, gen)
    fast = cdist(x, y, name)
    with torch.enable_grad():
        slow = cdist(x.clone().requires_grad_(), y, name).detach()
    torch.testing.assert_close(fast, slow, atol=tolerance(dtype, 10, factor=100), rtol=0)


def test_in_place_kernels_refuse_tensors_that_require_grad():
    x = point((2,), 5, 2, torch.float64, generator(8)).requires_grad_()
    u = torch.zeros(2, 5, 2, dtype=torch.float64)
    with pytest.raises(ManifoldTypeError, match="no_grad"):
        inplace.retract_(x, u)


def test_in_place_kernels_check_shapes_and_aliasing():
    x = point((2,), 5, 2, torch.float64, generator(9))
    with pytest.raises(ShapeError, match=r"\(2, 5, 2\) and \(2, 5, 3\)"):
        inplace.retract_(x, torch.zeros(2, 5, 3, dtype=torch.float64))
    u = torch.zeros_like(x)
    with pytest.raises(ShapeError, match="into u"):
        inplace.retract_(x, u, out=u)


_IN_PLACE_CALLS = {
    "retract_": lambda x, u: inplace.retract_(x, u),
    "retract_transport_": lambda x, u: inplace.retract_transport_(x, u, u.clone()),
    "project": lambda x, u: inplace.project(x, u),
    "orthonormalize_": lambda x, u: inplace.orthonormalize_(x),
}


@pytest.mark.parametrize("name", sorted(_IN_PLACE_CALLS))
def test_in_place_kernels_refuse_bad_input_with_documented_errors(name):
    call = _IN_PLACE_CALLS[name]
    wide = torch.zeros(2, 3, 5, dtype=torch.float64)
    with pytest.raises(ShapeError, match=r"1 <= k <= n; got k=5, n=3"):
        call(wide, wide.clone())
    ints = torch.zeros(2, 5, 2, dtype=torch.int64)
    with pytest.raises(ManifoldTypeError, match=r"float32 or float64; got torch.int64"):
        call(ints, ints.clone())
    if name.startswith("retract"):
        x = point((2,), 5, 2, torch.float64, generator(10))
        u = torch.zeros_like(x)
        u[0, 0, 0] = float("nan")
        with pytest.raises(NonFiniteError, match="u holds NaN"):
            call(x, u)
    expanded = point((), 5, 2, torch.float64, generator(11)).expand(2, 5, 2)
    zeros = torch.zeros(2, 5, 2, dtype=torch.float64)
    with pytest.raises(ShapeError, match="expanded"):
        if name == "project":
            inplace.project(expanded, zeros, out=expanded)
        else:
            call(expanded, zeros)


def test_retract_of_an_empty_batch_is_not_mistaken_for_aliasing():
    x, u = torch.zeros(0, 5, 2, dtype=torch.float64), torch.zeros(0, 5, 2, dtype=torch.float64)
    assert inplace.retract_(x, u).shape == (0, 5, 2)


@pytest.mark.parametrize("condition", [1.0, 1e3])
@pytest.mark.parametrize("items", [5, 300])
def test_orthonormalize_equals_sign_fixed_householder_qr(small_chunks, condition, items, dtype):
    gen = generator(10)
    z = torch.randn(items, 20, 6, dtype=dtype, generator=gen)
    z[..., -1] = z[..., 0] + z[..., -1] / condition  # nearly dependent columns
    x = as_rows(z)
    inplace.orthonormalize_(x)
    expected = sign_fixed_qr(z.double())
    eye = torch.eye(6, dtype=dtype).expand(items, 6, 6)
    torch.testing.assert_close(x.mT @ x, eye, atol=tolerance(dtype, 20), rtol=0)
    torch.testing.assert_close(x.double(), expected, atol=tolerance(dtype, 20, factor=10 * condition), rtol=0)
