"""Step-by-step parity of the paper recipe with the GCR authors' reference optimizer.

Usage::

    python benchmarks/reference_parity.py --reference /path/to/GCR [--steps 40] [--subspace-dim 2]

``--reference`` is a checkout of https://github.com/innerlee/GCR; its
``gcr/rsgd.py`` (class ``RSGD``) is loaded from there at run time, nothing of
it lives in this project. That module imports ``mmpretrain.registry`` only to
register the class; when mmpretrain is not installed the script puts a stand-in
registry (whose ``register_module()`` returns the class unchanged) in
``sys.modules`` before loading the file with importlib, and changes nothing else.

A GCR head on scikit-learn's digits (64 standardised features, 10 classes,
logits ``scale * ||S_c^T x|| / ||x||``) is trained in float64 from one start
by the reference and by :meth:`grassmann_cls.RiemannianSGD.paper_recipe`,
each taking its gradient at its own bases on the same batches. Printed per
step: the largest entry of ``|P_ours - P_reference|`` (``P = S S^T`` per
class) for the reference-exact options (``reorth_qr="unsigned",
reorth_count_from=0``) and for the default recipe (sign-fixed QR, counted
from 1), and how many columns the reference's QR negated at that step.

On the CPU the reference takes its CPU branch only for ``k <= 2`` (for
``k > 2`` it calls ``torch.linalg.svd(..., driver="gesvda")``, which torch
accepts on CUDA only), so ``--subspace-dim`` above 2 needs ``--device cuda``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import geoopt
import torch
import torch.nn.functional as F

from grassmann_cls import RiemannianSGD
from manifolds import Grassmann


def load_reference(root: Path):
    """A fresh copy of the reference's ``gcr/rsgd.py`` module (its step counter is module-global)."""
    path = root / "gcr" / "rsgd.py"
    if not path.is_file():
        raise SystemExit(f"--reference must be a checkout of innerlee/GCR; {path} does not exist")
    try:
        import mmpretrain.registry  # noqa: F401
    except ImportError:
        registry = types.ModuleType("mmpretrain.registry")
        registry.OPTIMIZERS = types.SimpleNamespace(register_module=lambda *a, **k: lambda cls: cls)
        sys.modules.setdefault("mmpretrain", types.ModuleType("mmpretrain"))
        sys.modules["mmpretrain.registry"] = registry
    spec = importlib.util.spec_from_file_location("gcr_reference_rsgd", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digits(device):
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.as_tensor(data.data, dtype=torch.float64, device=device)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    return x, torch.as_tensor(data.target, device=device)


def loss(rows: torch.Tensor, x: torch.Tensor, y: torch.Tensor, k: int, scale: float) -> torch.Tensor:
    """GCR cross-entropy with bases given as ``(C*k, n)`` rows (the reference's layout)."""
    coefficients = (F.normalize(x, dim=-1) @ rows.T).unflatten(-1, (-1, k))
    return F.cross_entropy(scale * torch.linalg.vector_norm(coefficients, dim=-1), y)


def projectors(rows: torch.Tensor, k: int) -> torch.Tensor:
    s = rows.detach().unflatten(0, (-1, k)).mT
    return s @ s.mT


def run_ours(start, batches, args, **options):
    manifold = Grassmann(retraction="exp")
    bases = geoopt.ManifoldParameter(start.unflatten(0, (-1, args.subspace_dim)).mT.clone(), manifold=manifold)
    opt = RiemannianSGD.paper_recipe([bases], lr=args.lr, momentum=args.momentum, **options)
    trajectory = []
    for x, y in batches:
        opt.zero_grad()
        loss(bases.mT.flatten(0, 1), x, y, args.subspace_dim, args.scale).backward()
        opt.step()
        trajectory.append(bases.detach().mT.flatten(0, 1).clone())
    return trajectory


def run_reference(module, start, batches, args):
    weight = torch.nn.Parameter(start.clone())
    weight.geometry = [args.subspace_dim] * (start.shape[0] // args.subspace_dim)
    opt = module.RSGD([weight], lr=args.lr, momentum=args.momentum, reorth_step=5)
    trajectory, flips = [], []
    for x, y in batches:
        before = weight.detach().clone()
        opt.zero_grad()
        loss(weight, x, y, args.subspace_dim, args.scale).backward()
        opt.step()
        flips.append(int(((before * weight.detach()).sum(-1) < 0).sum()))
        trajectory.append(weight.detach().clone())
    return trajectory, flips


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="checkout of innerlee/GCR")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--subspace-dim", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--scale", type=float, default=25.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.subspace_dim > 2 and not args.device.startswith("cuda"):
        raise SystemExit(
            "the reference's k > 2 branch needs CUDA (torch.linalg.svd driver='gesvda'); use --device cuda"
        )
    x, y = digits(args.device)
    generator = torch.Generator().manual_seed(args.seed)
    start = Grassmann().random(10, x.shape[1], args.subspace_dim, dtype=torch.float64, generator=generator)
    start = start.detach().mT.flatten(0, 1).to(args.device)  # (C*k, n) rows, as the reference stores them
    batches = [
        (x[i], y[i])
        for i in (
            torch.randperm(len(x), generator=generator)[: args.batch_size].to(args.device) for _ in range(args.steps)
        )
    ]
    reference, flips = run_reference(load_reference(args.reference), start, batches, args)
    exact = run_ours(start, batches, args, reorth_qr="unsigned", reorth_count_from=0)
    default = run_ours(start, batches, args)
    k = args.subspace_dim
    print(f"digits n={x.shape[1]} k={k} C=10 float64 lr={args.lr} momentum={args.momentum} device={args.device}")
    print("step  flips  max|P_exact - P_ref|  max|P_default - P_ref|  max|S_exact - S_ref|")
    for step, (r, e, d, f) in enumerate(zip(reference, exact, default, flips), start=1):
        pr = projectors(r, k)
        print(
            f"{step:4d}  {f:5d}  {float((projectors(e, k) - pr).abs().max()):20.3e}  "
            f"{float((projectors(d, k) - pr).abs().max()):22.3e}  {float((e - r).abs().max()):20.3e}"
        )


if __name__ == "__main__":
    main()
