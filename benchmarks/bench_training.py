"""Learning tables: optimizer step, head forward+backward, one full training step.

Rows that need :mod:`grassmann_cls` (``GrassmannHead``, ``RiemannianSGD``) are
left out, with a note, when those are not importable.
"""

from __future__ import annotations

import geoopt
import harness as H
import torch
import torch.nn.functional as F
from torch import nn

from manifolds import Grassmann, inplace

try:
    from grassmann_cls.head import GrassmannHead
    from grassmann_cls.optim import LandingSGD, RiemannianSGD
except ImportError:  # pragma: no cover - only while grassmann_cls is incomplete
    GrassmannHead = RiemannianSGD = LandingSGD = None

LR, MOMENTUM, SCALE = 0.1, 0.9, 25.0


# --- optimizer step -----------------------------------------------------------------------
def _param(x, manifold=None):
    data = H.rows_layout(x.clone())
    p = geoopt.ManifoldParameter(data, manifold=manifold) if manifold is not None else nn.Parameter(data)
    return p


def _stepper(p, grad, opt):
    def step():
        p.grad = grad
        opt.step()

    return step


def _kernel_step(x, grad, mode):
    """The bare manifolds.inplace call sequence that RiemannianSGD's Grassmann step is built on."""
    buf = torch.zeros_like(x)

    def transport():  # Note [deferred transport]: the buffer's transport is this projection
        inplace.momentum_step_(x, grad, buf, lr=LR, momentum=MOMENTUM)

    def paper():
        inplace.momentum_step_(x, grad, buf, lr=LR, momentum=MOMENTUM, mode="paper")

    return transport if mode == "transport" else paper


def _optimizer_candidates(w: H.Workload, x, grad) -> list[H.Candidate]:
    def orth(p):
        return lambda _: {"orth": H.orthonormality(H.subset(p.detach(), 64))}

    cands = []
    p = _param(x)
    sgd = torch.optim.SGD([p], lr=LR, momentum=MOMENTUM)
    cands.append(H.Candidate("torch.optim.SGD(momentum=0.9), same tensor", _stepper(p, grad, sgd), reference=True))
    if RiemannianSGD is not None:
        for mode in ("transport", "paper"):
            p = _param(x, Grassmann())
            opt = RiemannianSGD([p], lr=LR, momentum=MOMENTUM, grassmann_momentum=mode)
            cands.append(
                H.Candidate(f"ours: grassmann_cls.RiemannianSGD({mode!r})", _stepper(p, grad, opt), accuracy=orth(p))
            )
    if LandingSGD is not None:
        p = _param(x, Grassmann())
        opt = LandingSGD([p], lr=LR, momentum=MOMENTUM)
        cands.append(
            H.Candidate(
                "ours: grassmann_cls.LandingSGD (no retraction)",
                _stepper(p, grad, opt),
                accuracy=orth(p),
                note="orth: ||S^T S - I|| drifts within its bound (0.1)",
            )
        )
    for mode in ("transport", "paper"):
        xk = H.rows_layout(x.clone())
        cands.append(
            H.Candidate(
                f"ours: manifolds.inplace kernel sequence ({mode})",
                _kernel_step(xk, grad, mode),
                accuracy=(lambda t: lambda _: {"orth": H.orthonormality(H.subset(t, 64))})(xk),
                note="lower bound of RiemannianSGD's step",
            )
        )
    for label, p, g in [
        ("our Grassmann", _param(x, Grassmann()), grad),
        (
            "EuclideanStiefel",
            geoopt.ManifoldParameter(x.contiguous().clone(), manifold=geoopt.EuclideanStiefel()),
            grad.contiguous(),
        ),
    ]:
        opt = geoopt.optim.RiemannianSGD([p], lr=LR, momentum=MOMENTUM)
        cands.append(H.Candidate(f"geoopt.optim.RiemannianSGD + {label}", _stepper(p, g, opt), accuracy=orth(p)))
    return cands


# --- head forward + backward ------------------------------------------------------------
def _logits_linear(f, weight, classes, k):
    coefficients = F.linear(F.normalize(f, dim=-1), weight).unflatten(-1, (classes, k))
    return SCALE * torch.linalg.vector_norm(coefficients, dim=-1)


def _head_candidates(w: H.Workload, device="cpu") -> list[H.Candidate]:
    gen = torch.Generator().manual_seed(3)
    f = torch.randn(w.batch, w.n, generator=gen).to(device).requires_grad_()
    labels = torch.randint(0, w.classes, (w.batch,), generator=gen).to(device)
    weight = nn.Parameter((torch.randn(w.classes * w.k, w.n, generator=gen) / w.n**0.5).to(device))
    bases_cols = nn.Parameter(weight.detach().view(w.classes, w.k, w.n).mT.contiguous())

    def run(params, logits_fn):
        def step():
            for p in params:
                p.grad = None
            F.cross_entropy(logits_fn(), labels).backward()

        return step

    cands = [
        H.Candidate(
            "x @ W, W stored (C*k, n) (nn.Linear layout) + norm + CE",
            run([weight, f], lambda: _logits_linear(f, weight, w.classes, w.k)),
            reference=True,
        ),
        H.Candidate(
            "bases stored (C, n, k), permute copy per call",
            run([bases_cols, f], lambda: _logits_linear(f, bases_cols.mT.reshape(-1, w.n), w.classes, w.k)),
        ),
    ]
    if GrassmannHead is not None:
        head = GrassmannHead(w.n, w.classes, w.k, scale=SCALE, device=device)
        cands.append(H.Candidate("ours: GrassmannHead", run([head.bases, f], lambda: head(f))))
    return cands


# --- full training step --------------------------------------------------------------------
class _ResNetStyle(nn.Module):
    """Stem, three residual stages, a 1 x 1 expansion to ``n`` channels (as ResNet-50's last), pool."""

    def __init__(self, n: int, width: int):
        super().__init__()
        from grassmann_cls.training.backbones import BasicBlock

        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            BasicBlock(width, width, 1),
            BasicBlock(width, 2 * width, 2),
            BasicBlock(2 * width, 4 * width, 2),
            nn.Conv2d(4 * width, n, 1, bias=False),
            nn.BatchNorm2d(n),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, images):
        return self.body(images)


class _LinearHead(nn.Module):
    def __init__(self, n, classes, k):
        super().__init__()
        self.classes, self.k = classes, k
        self.linear = nn.Linear(n, classes * k, bias=False)

    def forward(self, f):
        return _logits_linear(f, self.linear.weight, self.classes, self.k)


def _train_candidates(w: H.Workload, images_per_step: int, width: int, device="cpu") -> list[H.Candidate]:
    gen = torch.Generator().manual_seed(4)
    images = torch.randn(images_per_step, 3, 32, 32, generator=gen).to(device)
    labels = torch.randint(0, w.classes, (images_per_step,), generator=gen).to(device)

    def trainer(head, make_opt):
        torch.manual_seed(0)
        model = nn.Sequential(_ResNetStyle(w.n, width), head).to(device)
        opt = make_opt(model.parameters())

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(images), labels).backward()
            opt.step()

        return step

    sgd = lambda params: torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=1e-4)  # noqa: E731
    cands = [
        H.Candidate(
            "nn.Linear(n, C*k) + norm head, torch SGD",
            trainer(_LinearHead(w.n, w.classes, w.k), sgd),
            reference=True,
            max_seconds=60.0,
        )
    ]
    if GrassmannHead is not None and RiemannianSGD is not None:
        for mode in ("transport", "paper"):

            def rsgd(params, m=mode):
                return RiemannianSGD(params, lr=LR, momentum=MOMENTUM, weight_decay=1e-4, grassmann_momentum=m)

            cands.append(
                H.Candidate(
                    f"ours: GrassmannHead k={w.k} + RiemannianSGD({mode!r})",
                    trainer(GrassmannHead(w.n, w.classes, w.k, scale=SCALE), rsgd),
                    max_seconds=60.0,
                )
            )
    return cands


def tables(w: H.Workload, repeats: int, images_per_step: int, width: int) -> list[str]:
    """Optimizer, head and training-step tables for one workload (Markdown strings)."""
    x = H.random_point(w)
    grad = H.rows_layout(torch.randn(x.shape, generator=torch.Generator().manual_seed(5)) * 0.05)
    out = []
    sizes = f"{w.name} (C={w.classes}, n={w.n}, k={w.k})"
    for title, cands, label in [
        (f"{sizes}: optimizer step, momentum 0.9", _optimizer_candidates(w, x, grad), "x SGD"),
        (f"{sizes}: head forward + backward, B={w.batch}", _head_candidates(w), "x Linear"),
        (
            f"{sizes}: one training step, ResNet-style backbone (width {width}), {images_per_step} images 32x32",
            _train_candidates(w, images_per_step, width),
            "x Linear+SGD",
        ),
    ]:
        rows, load = H.run_table(cands, repeats)
        out.append(H.format_table(title, rows, load, ratio_label=label))
    return out
