"""Chunked, allocation-free kernels for the hot paths (no autograd).

The differentiable compositions in :mod:`retractions`, :mod:`angles` and
:mod:`transports` are clear but memory-bound: every intermediate is a fresh
``(..., n, k)`` tensor (page faults cost 3-5x an elementwise pass) and every
product streams the whole stack from memory again. The kernels here compute
the same formulas on stacks of classes in *row form* (``(B, k, n)``, see the
memory-layout note in ``manifolds._linalg``), a cache-sized chunk of classes at
a time, writing into outputs the caller owns.

# Note [chunked kernels]
# For a chunk of classes, x, u (read once from memory) and one scratch
# (m, k, n) buffer stay in cache while the chunk goes through the k x k Gram,
# the small factorisation and the final product; only the result is written
# back. Memory traffic is then that of one elementwise pass (read x, u, write
# y) and the time goes into the batched products (k = 8: about 4 us per class
# per product on 2 cores). On CUDA there is no cache to fit, so the whole
# stack is one chunk. The k x k work (Cholesky, eigh) runs per chunk on a
# (m, k, k) stack; LU-based solvers are never used (torch 2.13's batched LU is
# wrong on large stacks).

Everything here is internal: the kernels are accelerators behind the in-place
methods of :class:`manifolds.Grassmann` (and :mod:`manifolds.inplace`), and
``tests/manifolds/test_kernels.py`` holds each to the registry entry it serves.
"""

from __future__ import annotations

import math

import torch

from ._linalg import default_max_cond, sign_fixed_qr, sinc

__all__ = [
    "row_view",
    "chunk_size",
    "orthonormalize_rows",
    "retract_rows",
    "momentum_step_rows",
    "accumulate_",
    "project_rows",
    "orthonormalize_all_rows",
    "angles_rows",
    "FUSED_RETRACTIONS",
]

FUSED_RETRACTIONS = ("qr", "polar", "cayley", "exp")
"""Retraction names with a chunked kernel (``qr``'s is Cholesky-QR, Householder for ill-conditioned items)."""

_CHUNK_BYTES = 4 << 20


def chunk_size(batch: int, k: int, n: int, tensor: torch.Tensor) -> int:
    """Classes per chunk: about 4 MiB of scratch on CPU, everything on GPU."""
    if tensor.device.type != "cpu":
        return max(batch, 1)
    per_item = k * n * tensor.element_size()
    return max(1, min(batch, _CHUNK_BYTES // max(per_item, 1)))


def row_view(t: torch.Tensor) -> torch.Tensor | None:
    """The ``(B, k, n)`` row view of ``(..., n, k)`` storage, or ``None`` if it needs a copy."""
    rows = t.mT
    k, n = rows.shape[-2:]
    try:
        return rows.view(-1, k, n)
    except RuntimeError:
        return None


def _eye(k: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(k, dtype=like.dtype, device=like.device)


def _default_max_cond(dtype: torch.dtype) -> float:
    # Same threshold as manifolds._linalg.cholesky_qr (see Note [Cholesky-QR accuracy]).
    return default_max_cond(dtype)


def orthonormalize_rows(z, out, eye_batch, diag_out=None) -> None:
    """Rows of the Q factor of ``z^T = QR`` (``diag(R) > 0``) by one Cholesky-QR pass.

    ``z, out`` have shape ``(m, k, n)`` and must not overlap; ``eye_batch`` is
    an ``(M, k, k)`` stack of identities with ``M >= m``. Items whose Gram
    matrix is not positive definite get Householder QR. The Cholesky diagonal
    goes to ``diag_out`` (``(m, k)``) so that :func:`repair_rows` can re-run
    ill-conditioned items once the whole stack is done (one check per call
    instead of one per chunk).
    """
    chol, info = torch.linalg.cholesky_ex(torch.bmm(z, z.mT))
    failed = bool(info.any())
    if failed:
        bad = info != 0
        chol = torch.where(bad[:, None, None], eye_batch[0], chol)
    # Rows of Q = z^T L^{-T} are L^{-1} z: invert the k x k factor, one bmm.
    linv = torch.linalg.solve_triangular(chol, eye_batch[: z.shape[0]], upper=False)
    torch.bmm(linv, z, out=out)
    if failed:
        out[bad] = sign_fixed_qr(z[bad].mT).mT
    if diag_out is not None:
        diag_out.copy_(torch.diagonal(chol, dim1=-2, dim2=-1))


def repair_rows(outr, diag, eye_batch, vr=None) -> None:
    """Second Cholesky-QR pass (CholQR2) for items whose first pass was ill-conditioned.

    # Note [deferred conditioning check]
    # Cholesky-QR of z loses orthonormality like eps * cond(z^T z) but keeps
    # the span: y1 = z R1^{-1}. A second pass on y1 gives z (R2 R1)^{-1}, the
    # same Q as Householder QR with diag(R) > 0, so the check can wait until
    # the whole stack is done and needs no copy of z. The rows of ``vr`` (a
    # vector transported by projection onto the new point) are projected again.
    """
    low, high = torch.aminmax(diag, dim=-1)
    bad = ~(low * _default_max_cond(diag.dtype) ** 0.5 >= high)
    if not bool(bad.any()):
        return
    idx = bad.nonzero().squeeze(-1)
    first = outr[idx]
    fixed = torch.empty_like(first)
    eye = eye_batch[:1].expand(len(idx), -1, -1)
    orthonormalize_rows(first, fixed, eye)
    outr[idx] = fixed
    if vr is not None:
        vs = vr[idx]
        vr[idx] = vs.baddbmm_(torch.bmm(fixed, vs.mT).mT, fixed, alpha=-1.0)


_TAYLOR_RADIUS = 0.25


def _cos_sinc_sqrt(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``cos(sqrt S)`` and ``sinc(sqrt S)`` for a PSD stack ``S`` (``(m, k, k)``).

    # Note [exp coefficients without eigh]
    # LAPACK's eigh costs about 3.5 us per 8 x 8 matrix on CPU, about as much as
    # a whole (k, n) product. Both functions are entire in S, so on CPU they are
    # evaluated in float64 by a Taylor polynomial of S / 4^d, ||S / 4^d|| <= 1/4
    # (bounded by the trace), truncated below 1e-17, and d doublings
    # cos(2a) = 2 cos(a)^2 - 1, sinc(2a) = sinc(a) cos(a): far more accurate
    # than float32 eigh. float64 input keeps eigh (the doublings would cost it
    # a few ulps for steps with sigma > 1), and so does CUDA, where batched eigh
    # is cheap and needs no host sync.
    """
    if s.device.type != "cpu" or s.dtype == torch.float64:
        evals, evecs = torch.linalg.eigh(s)
        sigma = evals.clamp_min(0).sqrt()
        return (
            (evecs * torch.cos(sigma).unsqueeze(-2)) @ evecs.mT,
            (evecs * sinc(sigma).unsqueeze(-2)) @ evecs.mT,
        )
    s64 = s.double()
    bound = float(torch.diagonal(s64, dim1=-2, dim2=-1).sum(-1).amax()) if len(s) else 0.0
    if not math.isfinite(bound):
        nan = torch.full_like(s, math.nan)
        return nan, nan
    doublings = max(0, math.ceil(math.log(bound / _TAYLOR_RADIUS, 4))) if bound > _TAYLOR_RADIUS else 0
    s64 = s64 / 4.0**doublings
    radius = bound / 4.0**doublings
    eye = torch.eye(s.shape[-1], dtype=torch.float64).expand_as(s64)
    power, cos, sinc_ = eye, eye.clone(), eye.clone()
    term = 1
    while radius**term / math.factorial(2 * term) > 1e-17 and term < 12:
        power = power @ s64
        sign = -1.0 if term % 2 else 1.0
        cos.add_(power, alpha=sign / math.factorial(2 * term))
        sinc_.add_(power, alpha=sign / math.factorial(2 * term + 1))
        term += 1
    for _ in range(doublings):
        cos, sinc_ = 2.0 * (cos @ cos) - eye, sinc_ @ cos
    return cos.to(s.dtype), sinc_.to(s.dtype)


def _spectral_pair(s: torch.Tensor, name: str, diag_out=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row coefficients ``(a, b)`` with ``y_rows = a x_rows + b u_rows`` from ``s = u^T u``.

    For ``cayley`` the Cholesky diagonal of ``I + s/4`` goes to ``diag_out``
    (its conditioning decides :func:`repair_rows`).
    """
    if name == "cayley":
        eye = _eye(s.shape[-1], s)
        chol = torch.linalg.cholesky(eye + 0.25 * s)
        inv = torch.cholesky_solve(eye.expand_as(s), chol)
        if diag_out is not None:
            diag_out.copy_(torch.diagonal(chol, dim1=-2, dim2=-1))
        return inv @ (eye - 0.25 * s), inv
    return _cos_sinc_sqrt(s)


def _polar_rows(z, out, diag_out=None) -> None:
    """Rows of the polar factor ``z^T (z z^T)^{-1/2}``; singular values of ``z`` to ``diag_out``."""
    evals, evecs = torch.linalg.eigh(torch.bmm(z, z.mT))
    if diag_out is not None:
        diag_out.copy_(evals.clamp_min(0).sqrt())
    inv_sqrt = evals.clamp_min(torch.finfo(z.dtype).tiny).rsqrt()
    torch.bmm((evecs * inv_sqrt.unsqueeze(-2)) @ evecs.mT, z, out=out)


def retract_rows(name: str, xr, ur, alpha: float, outr, vr=None) -> None:
    """``out <- R(x, alpha u)`` in row form; then ``v <- (I - y y^T) v`` if ``vr`` is given.

    All arguments have shape ``(B, k, n)``. ``outr`` may be ``xr`` (in place)
    and ``vr`` may be ``ur`` (momentum stepped along and transported).
    """
    batch, k, n = xr.shape
    m = chunk_size(batch, k, n, xr)
    scratch = xr.new_empty((m, k, n))
    eye_batch = _eye(k, xr).expand(m, k, k).contiguous()
    diag = xr.new_ones((batch, k))
    for start in range(0, batch, m):
        stop = min(start + m, batch)
        os = outr[start:stop]
        _retract_chunk(
            name, xr[start:stop], ur[start:stop], alpha, os, scratch[: stop - start], eye_batch, diag[start:stop]
        )
        if vr is not None:
            vs = vr[start:stop]
            vs.baddbmm_(torch.bmm(os, vs.mT).mT, os, alpha=-1.0)
    # Polar and Cayley are orthonormal in exact arithmetic but lose it like
    # eps * cond for huge rank-deficient steps (Note [second orthonormalisation
    # pass] in manifolds._linalg); their diag holds that conditioning.
    repair_rows(outr, diag, eye_batch, vr)


def _retract_chunk(name: str, xs, us, alpha: float, os, z, eye_batch, diag) -> None:
    """One chunk of :func:`retract_rows` without the transport: ``os <- R(xs, alpha us)``.

    ``z`` is scratch shaped like ``xs``; ``os`` may be ``xs``. ``diag`` (the
    chunk's ``(m, k)`` rows) receives what :func:`repair_rows` checks.
    """
    if name == "cayley" or name == "exp":
        a, b = _spectral_pair(torch.bmm(us, us.mT).mul_(alpha * alpha), name, diag)
        torch.bmm(a, xs, out=z)
        z.baddbmm_(b, us, alpha=alpha)
    else:
        torch.add(xs, us, alpha=alpha, out=z)
    if name == "cayley":
        # Note [Cayley drift]: one Newton-Schulz polar step, see retractions.cayley.
        # Ill-conditioned items skip it: repair_rows re-orthonormalises them.
        coef = torch.bmm(z, z.mT).mul_(-0.5)
        coef.diagonal(dim1=-2, dim2=-1).add_(1.5)
        low, high = torch.aminmax(diag, dim=-1)
        well_conditioned = low * _default_max_cond(z.dtype) ** 0.5 >= high
        coef = torch.where(well_conditioned[:, None, None], coef, eye_batch[: len(z)])
        torch.bmm(coef, z, out=os)
    elif name == "polar":
        _polar_rows(z, os, diag)
    else:
        orthonormalize_rows(z, os, eye_batch, diag)


def momentum_step_rows(mode: str, name: str, xr, gr, br, lr: float, momentum: float, dampening: float) -> None:
    """One Riemannian SGD step with momentum in row form, as one chunked pass.

    ``"transport"``: ``b <- P_x(mu b + (1 - tau) g)``, ``x <- R(x, -lr b)``
    (Note [deferred transport] in ``manifolds.inplace``);
    ``"paper"``: ``b <- mu b + (1 - tau) g``, ``x <- R(x, -lr P_x b)``. These
    are the operations of :func:`project_rows` and :func:`retract_rows` in
    sequence (the same results, bitwise), taken chunk by chunk so that the
    buffer and the basis are read from memory once. ``xr``, ``gr``, ``br``
    have shape ``(B, k, n)``; ``xr`` and ``br`` are written.
    """
    batch, k, n = xr.shape
    m = chunk_size(batch, k, n, xr)
    scratch = xr.new_empty((m, k, n))
    tangent = xr.new_empty((m, k, n)) if mode == "paper" else None
    eye_batch = _eye(k, xr).expand(m, k, k).contiguous()
    diag = xr.new_ones((batch, k))
    for start in range(0, batch, m):
        stop = min(start + m, batch)
        xs, bs = xr[start:stop], br[start:stop]
        if tangent is None:
            _project_chunk(xs, gr[start:stop], bs, 1 - dampening, momentum, whole=True)
            direction = bs
        else:
            accumulate_(bs, gr[start:stop], momentum, 1 - dampening)
            direction = tangent[: stop - start]
            _project_chunk(xs, bs, direction, 1.0, 0.0)
        _retract_chunk(name, xs, direction, -lr, xs, scratch[: stop - start], eye_batch, diag[start:stop])
    repair_rows(xr, diag, eye_batch)


def orthonormalize_all_rows(xr, outr) -> None:
    """``out <- qf(x)`` (sign-fixed Q factor) in row form by CholQR2; ``outr`` may be ``xr``.

    Two Cholesky-QR passes per chunk, both in cache: the second makes the
    result orthonormal to a few ulps whatever the conditioning of ``x`` (up
    to where the first Cholesky fails and Householder QR takes over).
    """
    batch, k, n = xr.shape
    m = chunk_size(batch, k, n, xr)
    first, second = xr.new_empty((m, k, n)), xr.new_empty((m, k, n))
    eye_batch = _eye(k, xr).expand(m, k, k).contiguous()
    diag = xr.new_ones((batch, k))
    for start in range(0, batch, m):
        stop = min(start + m, batch)
        z, y = first[: stop - start], second[: stop - start]
        z.copy_(xr[start:stop])
        orthonormalize_rows(z, y, eye_batch)
        orthonormalize_rows(y, outr[start:stop], eye_batch, diag[start:stop])
    repair_rows(outr, diag, eye_batch)


def project_rows(xr, vr, outr, alpha: float = 1.0, beta: float = 0.0, whole: bool = False) -> None:
    """``out <- beta out + alpha (v - x x^T v)`` in row form (``out`` may be ``v``).

    With ``whole`` the old ``out`` is projected too: ``out <- P_x(beta out + alpha v)``.
    """
    batch, k, n = xr.shape
    m = chunk_size(batch, k, n, xr)
    for start in range(0, batch, m):
        stop = min(start + m, batch)
        _project_chunk(xr[start:stop], vr[start:stop], outr[start:stop], alpha, beta, whole)


def _project_chunk(xs, vs, os, alpha: float, beta: float, whole: bool = False) -> None:
    """One chunk of :func:`project_rows` (shared with :func:`momentum_step_rows`, which must round alike)."""
    if whole and os.data_ptr() != vs.data_ptr():
        accumulate_(os, vs, beta, alpha)  # in cache for the product that follows
        os.baddbmm_(torch.bmm(xs, os.mT).mT, xs, alpha=-1.0)
        return
    coef = torch.bmm(xs, vs.mT).mT  # rows of x (x^T v) are (x^T v)^T x_rows
    if os.data_ptr() == vs.data_ptr():
        if alpha + beta != 1.0:
            os.mul_(alpha + beta)
    elif beta == 0.0:  # one pass: out = alpha v - alpha coef x
        torch.baddbmm(vs, coef, xs, beta=alpha, alpha=-alpha, out=os)
        return
    else:
        accumulate_(os, vs, beta, alpha)
    os.baddbmm_(coef, xs, alpha=-alpha)


def accumulate_(out: torch.Tensor, v: torch.Tensor, beta: float, alpha: float) -> torch.Tensor:
    """``out <- beta out + alpha v`` in place; one pass (``v + beta out``) when ``alpha`` is 1.

    The momentum update of every kernel here, so that the fused step and the
    separate calls round alike.
    """
    if alpha == 1.0:
        return torch.add(v, out, alpha=beta, out=out)
    return out.mul_(beta).add_(v, alpha=alpha)


def rows(t: torch.Tensor) -> torch.Tensor:
    """Row form ``(B, k, n)`` of an input; a view when the storage allows."""
    view = row_view(t)
    return view if view is not None else t.mT.reshape(-1, t.shape[-1], t.shape[-2])


def angles_rows(xr: torch.Tensor, yr: torch.Tensor) -> torch.Tensor:
    """Principal angles in float64, ascending, shape ``(B, k)``, of row-form orthonormal bases ``(B, k, n)``.

    # Note [fast principal angles]
    # Only c = x^T y and h = y - x c (formed explicitly, not as y^T y - c^T c,
    # so that tiny sines keep their relative accuracy) run in the input
    # precision, chunk by chunk with h in cache; h is then taken to float64
    # for its Gram h^T h = V S V^T and for h V. The sines are the column norms
    # of h V, not sqrt(eigvalsh(h^T h)): squaring in the Gram loses small sines
    # next to large ones (absolute error eps * s_max^2 / s), while the norms
    # of h V are off by about eps * s_max as singular values of h are (up to
    # eigenvector mixing of order eps64 * s_max^2 / gap, about 1e-8 at worst).
    # Cosines are sqrt(1 - sin^2), accurate for angles <= pi/4; items with a
    # wider angle (and all items on CUDA, avoiding a host sync) take the
    # singular values of c in float64. atan2 pairs them as in Note [accurate
    # principal angles].
    """
    batch, k, n = xr.shape
    m = chunk_size(batch, k, n, xr)
    scratch = xr.new_empty((m, k, n))
    cross = xr.new_empty((batch, k, k))
    sin = xr.new_empty((batch, k), dtype=torch.float64)
    for start in range(0, batch, m):
        stop = min(start + m, batch)
        xs, ys, h = xr[start:stop], yr[start:stop], scratch[: stop - start]
        c = torch.bmm(xs, ys.mT, out=cross[start:stop])
        torch.baddbmm(ys, c.mT, xs, alpha=-1.0, out=h)
        h64 = h.double()
        vectors = torch.linalg.eigh(torch.bmm(h64, h64.mT)).eigenvectors
        torch.linalg.vector_norm(torch.bmm(vectors.mT, h64), dim=-1, out=sin[start:stop])
    sin = sin.clamp_(0.0, 1.0).sort(dim=-1).values
    cos = (1.0 - sin.square()).sqrt()
    wide = sin[:, -1] > 0.5**0.5
    if xr.device.type != "cpu" or bool(wide.any()):
        idx = slice(None) if xr.device.type != "cpu" else wide.nonzero().squeeze(-1)
        exact = torch.linalg.svdvals(cross[idx].double())  # descending: pairs with the ascending sines
        cos[idx] = torch.where(wide[idx, None], exact, cos[idx])
    return torch.atan2(sin, cos)
