"""Geometry tables: retraction, exponential map, geodesic distance, and where the time goes."""

from __future__ import annotations

import math

import geoopt
import harness as H
import scipy.linalg
import torch
from anchors import geomstats_dist, geomstats_exp, pymanopt_grassmann

from manifolds import Grassmann, expmap, inplace, principal_angles
from manifolds.distances import geodesic

ACCURACY_CLASSES = 64
LU_NOTE = "; one class per call (torch 2.13's batched LU is wrong for stacks of n >= 192)"


def _one_by_one(fn, x, u, count):
    return torch.stack([fn(x[i], u[i]) for i in range(count)])


def _retraction_candidates(w: H.Workload, x, u, full: bool) -> list[H.Candidate]:
    xc, uc = x.contiguous(), u.contiguous()
    z, y_rows, y_cols = torch.empty_like(x), torch.empty_like(x), torch.empty_like(xc)
    ref = H.subset(x, ACCURACY_CLASSES).double() + H.subset(u, ACCURACY_CLASSES).double()

    def acc(y):
        y = H.subset(torch.as_tensor(y), ACCURACY_CLASSES)
        return {"orth": H.orthonormality(y), "span": H.span_error(y, torch.linalg.qr(ref[: len(y)])[0])}

    gr = Grassmann()
    a = [
        H.Candidate("floor: torch.add(x, u, out=z)", lambda: torch.add(x, u, out=z), reference=True),
        H.Candidate(f"ours: Grassmann().retr ({gr.retraction_name}), new output", lambda: gr.retr(x, u), accuracy=acc),
        H.Candidate(
            "ours: inplace.retract_(out=y), (C,k,n) memory", lambda: inplace.retract_(x, u, out=y_rows), accuracy=acc
        ),
        H.Candidate(
            "ours: inplace.retract_(out=y), (C,n,k) memory", lambda: inplace.retract_(xc, uc, out=y_cols), accuracy=acc
        ),
        H.Candidate("torch: linalg.qr(x + u) (no sign fix)", lambda: torch.linalg.qr(xc + uc)[0], accuracy=acc),
        H.Candidate("torch: plain Cholesky-QR (solve_triangular)", lambda: _plain_cholesky_qr(xc + uc), accuracy=acc),
        H.Candidate("torch: polar by thin SVD of x + u", lambda: _svd_polar(xc + uc), accuracy=acc),
        H.Candidate("geoopt: EuclideanStiefel.retr (QR)", lambda: geoopt.EuclideanStiefel().retr(xc, uc), accuracy=acc),
    ]
    few = max(1, min(w.classes, 2 if w.n > 1024 else 8))
    cay = geoopt.CanonicalStiefel()
    a.append(
        H.Candidate(
            "geoopt: CanonicalStiefel.retr (n x n Cayley)",
            lambda: _one_by_one(cay.retr, xc, uc, few),
            scale=w.classes / few,
            note=H.scaled_note(few, w.classes) + LU_NOTE,
            accuracy=_cayley_acc(x, u),
            max_seconds=10.0,
        )
    )
    pm = pymanopt_grassmann(w)
    if pm is not None:
        xn, un = xc.numpy(), uc.numpy()
        a.append(
            H.Candidate("pymanopt: Grassmann.retraction (polar, numpy)", lambda: pm.retraction(xn, un), accuracy=acc)
        )
    return a


def _cayley_acc(x, u):
    from manifolds import RETRACTIONS

    def acc(y):
        y = torch.as_tensor(y)
        ref = RETRACTIONS.resolve("cayley")(x[: len(y)].double(), u[: len(y)].double())
        return {"orth": H.orthonormality(y), "span": H.span_error(y, ref)}

    return acc


def _plain_cholesky_qr(z):
    chol = torch.linalg.cholesky(z.mT @ z)
    return torch.linalg.solve_triangular(chol.mT, z, upper=True, left=False)


def _svd_polar(z):
    u, _, vh = torch.linalg.svd(z, full_matrices=False)
    return u @ vh


def _svd_exp(x, u):
    """The reference code's geodesic step: thin SVD of the tangent."""
    uu, s, vh = torch.linalg.svd(u, full_matrices=False)
    return (x @ vh.mT) * torch.cos(s).unsqueeze(-2) @ vh + (uu * torch.sin(s).unsqueeze(-2)) @ vh


def _exp_candidates(w: H.Workload, x, u, full: bool) -> list[H.Candidate]:
    xc, uc = x.contiguous(), u.contiguous()
    z, y_rows = torch.empty_like(x), torch.empty_like(x)
    xs, us = H.subset(x, ACCURACY_CLASSES).double(), H.subset(u, ACCURACY_CLASSES).double()
    ref = _svd_exp(xs, us)

    def acc(y):
        y = H.subset(torch.as_tensor(y), ACCURACY_CLASSES)
        return {"orth": H.orthonormality(y), "span": H.span_error(y, ref[: len(y)])}

    a = [
        H.Candidate("floor: torch.add(x, u, out=z)", lambda: torch.add(x, u, out=z), reference=True),
        H.Candidate("ours: manifolds.expmap, new output", lambda: expmap(x, u), accuracy=acc),
        H.Candidate(
            "ours: inplace.retract_(retraction='exp', out=y)",
            lambda: inplace.retract_(x, u, out=y_rows, retraction="exp"),
            accuracy=acc,
        ),
        H.Candidate("torch: thin-SVD geodesic (reference code's route)", lambda: _svd_exp(xc, uc), accuracy=acc),
        H.Candidate(
            "geoopt: EuclideanStiefelExact.expmap (2k x 2k expm)",
            lambda: geoopt.EuclideanStiefelExact().expmap(xc, uc),
            accuracy=acc,
        ),
    ]
    few = max(1, min(w.classes, 2 if w.n > 1024 else 8))
    cay = geoopt.CanonicalStiefel()
    a.append(
        H.Candidate(
            "geoopt: CanonicalStiefel.expmap (= n x n Cayley)",
            lambda: _one_by_one(cay.expmap, xc, uc, few),
            scale=w.classes / few,
            note=H.scaled_note(few, w.classes) + LU_NOTE + "; not the true exp",
            accuracy=acc,
            max_seconds=10.0,
        )
    )
    pm = pymanopt_grassmann(w)
    if pm is not None:
        xn, un = xc.numpy(), uc.numpy()
        a.append(H.Candidate("pymanopt: Grassmann.exp (SVD + QR, numpy)", lambda: pm.exp(xn, un), accuracy=acc))
    gs = geomstats_exp(w, xc, uc) if full else None
    if gs is not None:
        fn, used = gs
        a.append(
            H.Candidate(
                "geomstats: Grassmannian exp (n x n expm, float64)",
                fn,
                scale=w.classes / used,
                note=H.scaled_note(used, w.classes),
                max_seconds=10.0,
            )
        )
    return a


def _distance_candidates(w: H.Workload, x, y, full: bool) -> list[H.Candidate]:
    xc, yc = x.contiguous(), y.contiguous()
    z = torch.empty_like(x)
    d64 = torch.linalg.vector_norm(principal_angles(x.double(), y.double()), dim=-1)

    def acc(d):
        d = torch.as_tensor(d).double().reshape(-1)
        ref = d64[: len(d)] if len(d) > 1 else torch.linalg.vector_norm(d64).reshape(1)
        return {"rel.err": float(((d - ref).abs() / ref).amax())}

    few = max(1, min(w.classes, 100))
    xn, yn = xc.double().numpy(), yc.double().numpy()
    xf, yf = xc.numpy(), yc.numpy()
    a = [
        H.Candidate("floor: torch.add(x, y, out=z)", lambda: torch.add(x, y, out=z), reference=True),
        H.Candidate("ours: distances.geodesic / Grassmann.dist", lambda: geodesic(x, y), accuracy=acc),
        H.Candidate(
            "ours: inplace.principal_angles (float64 kernel, no autograd) + norm",
            lambda: torch.linalg.vector_norm(inplace.principal_angles(x, y), dim=-1),
            accuracy=acc,
        ),
        H.Candidate(
            "ours: principal_angles (differentiable SVD route)",
            lambda: torch.linalg.vector_norm(principal_angles(x, y), dim=-1),
            accuracy=acc,
        ),
        H.Candidate("torch: svdvals(x^T y) + arccos", lambda: _arccos_distance(xc, yc), accuracy=acc),
        H.Candidate(
            "scipy: linalg.subspace_angles loop (float32 in)",
            lambda: [math.hypot(*scipy.linalg.subspace_angles(xf[i], yf[i])) for i in range(few)],
            scale=w.classes / few,
            note=H.scaled_note(few, w.classes),
            accuracy=acc,
        ),
    ]
    pm = pymanopt_grassmann(w)
    if pm is not None:
        a.append(
            H.Candidate(
                "pymanopt: Grassmann.dist (arccos; one product distance)", lambda: pm.dist(xf, yf), accuracy=acc
            )
        )
    gs = geomstats_dist(w, xn, yn) if full else None
    if gs is not None:
        fn, used = gs
        a.append(
            H.Candidate(
                "geomstats: Grassmannian dist / sqrt 2 (logm, float64)",
                fn,
                scale=w.classes / used,
                note=H.scaled_note(used, w.classes),
                max_seconds=15.0,
            )
        )
    return a


def _arccos_distance(x, y):
    cos = torch.linalg.svdvals(x.mT @ y).clamp(max=1.0)
    return torch.linalg.vector_norm(torch.arccos(cos), dim=-1)


def _breakdown_candidates(w: H.Workload, x, u) -> list[H.Candidate]:
    """Single kernels of the stack, to show where the time of the fused kernels goes."""
    xr, ur = x.mT, u.mT  # contiguous (C, k, n)
    z, out = torch.empty_like(x), torch.empty_like(xr)
    g = torch.bmm(xr, xr.mT) + torch.eye(w.k)
    g64 = g.double()
    eye = torch.eye(w.k).expand_as(g).contiguous()
    chol = torch.linalg.cholesky(g)
    return [
        H.Candidate("floor: torch.add(x, u, out=z)", lambda: torch.add(x, u, out=z), reference=True),
        H.Candidate("x + u into a new tensor (page faults)", lambda: x + u),
        H.Candidate("Gram bmm (C,k,n) @ (C,n,k)", lambda: torch.bmm(xr, ur.mT)),
        H.Candidate("apply bmm (C,k,k) @ (C,k,n), out=", lambda: torch.bmm(chol, xr, out=out)),
        H.Candidate(
            "cholesky_ex + triangular inverse, (C,k,k)",
            lambda: torch.linalg.solve_triangular(torch.linalg.cholesky_ex(g)[0], eye, upper=False),
        ),
        H.Candidate("eigh, (C,k,k) float32", lambda: torch.linalg.eigh(g)),
        H.Candidate("eigvalsh, (C,k,k) float64", lambda: torch.linalg.eigvalsh(g64)),
        H.Candidate("Householder QR of the stack (C,n,k)", lambda: torch.linalg.qr(x.contiguous())),
    ]


def _polar_map_candidates(w: H.Workload, x, u) -> list[H.Candidate]:
    """The polar map by eigh (``polar``) and by Newton-Schulz iterations (``newton_schulz``), float32 and bfloat16."""
    from manifolds import RETRACTIONS

    polar, newton_schulz = RETRACTIONS.resolve("polar"), RETRACTIONS.resolve("newton_schulz")
    xs, us = H.subset(x, ACCURACY_CLASSES), H.subset(u, ACCURACY_CLASSES)

    def versus_polar(dtype):
        exact = polar(xs.to(dtype).double(), us.to(dtype).double())  # polar of the same rounded inputs, float64

        def acc(y):
            y = H.subset(torch.as_tensor(y), ACCURACY_CLASSES).double()
            return {"orth": H.orthonormality(y), "vs polar": float((y - exact).abs().amax())}

        return acc

    xb, ub = x.bfloat16(), u.bfloat16()
    return [
        H.Candidate(
            "polar (eigh of the k x k Gram), float32",
            lambda: polar(x, u),
            reference=True,
            accuracy=versus_polar(torch.float32),
        ),
        H.Candidate(
            "newton_schulz (matrix products), float32",
            lambda: newton_schulz(x, u),
            accuracy=versus_polar(torch.float32),
        ),
        H.Candidate(
            "newton_schulz, bfloat16 inputs",
            lambda: newton_schulz(xb, ub),
            accuracy=versus_polar(torch.bfloat16),
            note="CPU bf16 matmul; the GPU case is tensor cores",
        ),
    ]


TABLES = ("retraction", "exp", "polar", "distance", "breakdown")
"""Names of the geometry tables, for ``run_all.py --tables``."""


def tables(w: H.Workload, repeats: int, full: bool = True, only=TABLES) -> list[str]:
    """The geometry tables named in ``only`` for one workload, as Markdown strings."""
    x = H.random_point(w)
    u = H.random_tangent(x, angle=0.1)
    small = H.random_tangent(x, angle=0.03, seed=2)
    y = H.rows_layout(expmap(x.double(), small.double()).float())
    out = []
    for name, title, cands in [
        ("retraction", "retraction of x + u (||u||_2 = 0.1)", lambda: _retraction_candidates(w, x, u, full)),
        ("exp", "exponential map (||u||_2 = 0.1)", lambda: _exp_candidates(w, x, u, full)),
        (
            "polar",
            "the polar map two ways (||u||_2 = 0.1): polar vs newton_schulz",
            lambda: _polar_map_candidates(w, x, u),
        ),
        (
            "distance",
            f"geodesic distance of {w.classes} pairs (angles <= 0.03)",
            lambda: _distance_candidates(w, x, y, full),
        ),
        ("breakdown", "where the time goes: single kernels over the stack", lambda: _breakdown_candidates(w, x, u)),
    ]:
        if name not in only:
            continue
        rows, load = H.run_table(cands(), repeats)
        out.append(H.format_table(f"{w.name} (C={w.classes}, n={w.n}, k={w.k}): {title}", rows, load))
    return out
