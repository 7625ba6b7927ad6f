"""Long-run orthonormality drift of Riemannian SGD in float32.

For every retraction (with ``grassmann_momentum="transport"``) and for the
paper's momentum (exponential map, with and without its periodic
re-orthonormalisation), run many float32 optimizer steps on the bases of a
GCR head and report ``max |S^T S - I|`` over the run (checked every
``--check-every`` steps and at the end) against the budget of 1e-5.

The gradient is the closed-form cross-entropy gradient of the head for fresh
random unit features and labels at every step, so the run measures the
optimizer alone (no backbone, no autograd).

Usage::

    .venv/bin/python benchmarks/drift.py                    # 100,000 steps, C=4, n=16, k=4
    .venv/bin/python benchmarks/drift.py --steps 2000       # the CI version (tests/benchmarks/test_drift.py)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from grassmann_cls import GrassmannHead, RiemannianSGD  # noqa: E402
from manifolds import RETRACTIONS, Grassmann  # noqa: E402

BUDGET = 1e-5
"""Largest accepted ``max |S^T S - I|`` in float32."""


@dataclasses.dataclass(frozen=True)
class Config:
    """One row: a momentum mode, a retraction and the re-orthonormalisation period (``None``: the default)."""

    mode: str
    retraction: str
    reorth_every: int | None = None

    @property
    def name(self) -> str:
        reorth = "" if self.reorth_every is None else f", reorth_every={self.reorth_every}"
        return f"{self.mode} / {self.retraction}{reorth}"


CONFIGS = [Config("transport", name) for name in RETRACTIONS.names()] + [
    Config("paper", "exp"),
    Config("paper", "exp", reorth_every=0),
]


def head_gradient(bases: torch.Tensor, x: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
    """Closed-form gradient of the mean cross-entropy of a GCR head at ``bases`` (``(C, n, k)``).

    ``x`` are unit features ``(B, n)``, ``y`` labels ``(B,)``; returns ``(C, n, k)``.
    """
    classes, n, k = bases.shape
    rows = bases.mT.reshape(classes * k, n)
    coefficients = (x @ rows.T).unflatten(-1, (classes, k))
    norms = torch.linalg.vector_norm(coefficients, dim=-1)
    weights = torch.softmax(scale * norms, dim=-1)
    weights[torch.arange(len(y)), y] -= 1
    weights = scale * weights / norms.clamp_min(torch.finfo(norms.dtype).tiny) / len(y)
    return ((weights[..., None] * coefficients).flatten(1).T @ x).reshape(classes, k, n).mT


def orthonormality_error(bases: torch.Tensor) -> float:
    """``max |S^T S - I|`` over all classes."""
    eye = torch.eye(bases.shape[-1], dtype=bases.dtype)
    bases = bases.detach()
    return float((bases.mT @ bases - eye).abs().amax())


def drift(
    config: Config,
    *,
    steps: int,
    classes: int = 4,
    n: int = 16,
    k: int = 4,
    batch: int = 8,
    lr: float = 0.1,
    momentum: float = 0.9,
    scale: float = 25.0,
    check_every: int = 10,
    seed: int = 0,
) -> dict:
    """Run ``steps`` float32 steps of ``config``; returns ``max_error``, ``final_error`` and ``seconds``."""
    head = GrassmannHead(
        n,
        classes,
        k,
        scale=scale,
        dtype=torch.float32,
        generator=torch.Generator().manual_seed(seed),
        manifold=Grassmann(retraction=config.retraction),
    )
    opt = RiemannianSGD(
        [head.bases], lr=lr, momentum=momentum, grassmann_momentum=config.mode, reorth_every=config.reorth_every
    )
    data = torch.Generator().manual_seed(seed + 1)
    bases = head.bases
    bases.grad = torch.zeros_like(bases)
    worst, began, block = 0.0, time.perf_counter(), 1000
    with torch.no_grad():
        for start in range(0, steps, block):
            count = min(block, steps - start)
            features = F.normalize(torch.randn(count, batch, n, generator=data), dim=-1)
            labels = torch.randint(0, classes, (count, batch), generator=data)
            for t in range(count):
                bases.grad.copy_(head_gradient(bases, features[t], labels[t], scale))
                opt.step()
                if (start + t + 1) % check_every == 0:
                    worst = max(worst, orthonormality_error(bases))
    final = orthonormality_error(bases)
    return {"max_error": max(worst, final), "final_error": final, "seconds": time.perf_counter() - began}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("-n", type=int, default=16)
    p.add_argument("-k", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--check-every", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"float32 drift after {args.steps:,} steps, C={args.classes}, n={args.n}, k={args.k}, lr={args.lr}, "
        f"momentum=0.9; budget max|S^T S - I| < {BUDGET:g}\n"
    )
    print("| momentum / retraction | max over run | final | seconds | within budget |")
    print("|---|---|---|---|---|")
    failed = 0
    for config in CONFIGS:
        r = drift(
            config, steps=args.steps, classes=args.classes, n=args.n, k=args.k, lr=args.lr, check_every=args.check_every
        )
        ok = r["max_error"] < BUDGET
        failed += not ok
        print(
            f"| {config.name} | {r['max_error']:.2e} | {r['final_error']:.2e} | {r['seconds']:.1f} | "
            f"{'yes' if ok else 'NO'} |",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
