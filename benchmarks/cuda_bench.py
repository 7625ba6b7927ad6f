"""The benchmark tables (docs/benchmarks.md) on a CUDA GPU, plus TF32 and bf16 effects.

Usage::

    python benchmarks/cuda_bench.py            # W2 (C=1000, n=2048, k=8), about a minute
    python benchmarks/cuda_bench.py --quick    # tiny sizes

Exits with status 0 and a one-line message when no CUDA device is present.
Besides our kernels and the anchors it times the reference code's approach
(batched thin SVD of the tangent on the GPU), and repeats the geometry with
TF32 matmuls allowed (``torch.backends.cuda.matmul.allow_tf32``) and the head
under bf16 autocast, to show what those do to speed and accuracy.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny workload, 2 repeats")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--output", default=None, help="also write the Markdown here")
    return p.parse_args(argv)


def _geometry(H, w, device, repeats, label=""):
    import geoopt
    from bench_geometry import _arccos_distance, _svd_exp, _svd_polar  # the CPU tables' anchors

    from manifolds import Grassmann, expmap, inplace, principal_angles
    from manifolds.distances import geodesic

    x = H.random_point(w, device=device)
    u = H.random_tangent(x, angle=0.1)
    y = H.rows_layout(expmap(x.double(), H.random_tangent(x, angle=0.03, seed=2).double()).float())
    xc, uc, z, out = x.contiguous(), u.contiguous(), torch.empty_like(x), torch.empty_like(x)
    xs, us = x[:64].double(), u[:64].double()
    span_ref = torch.linalg.qr(xs + us)[0]
    exp_ref = _svd_exp(xs, us)
    d64 = torch.linalg.vector_norm(principal_angles(x.double(), y.double()), dim=-1)

    def acc(ref):
        return lambda r: {"orth": H.orthonormality(r[:64]), "span": H.span_error(r[:64], ref)}

    def dacc(d):
        return {"rel.err": float(((d.double() - d64).abs() / d64).amax())}

    gr = Grassmann()
    tables = {
        "retraction of x + u": [
            H.Candidate("floor: torch.add(x, u, out=z)", lambda: torch.add(x, u, out=z), reference=True),
            H.Candidate(
                f"ours: Grassmann().retr ({gr.retraction_name})", lambda: gr.retr(x, u), accuracy=acc(span_ref)
            ),
            H.Candidate(
                "ours: inplace.retract_(out=y)", lambda: inplace.retract_(x, u, out=out), accuracy=acc(span_ref)
            ),
            H.Candidate("torch: linalg.qr(x + u)", lambda: torch.linalg.qr(xc + uc)[0], accuracy=acc(span_ref)),
            H.Candidate("torch: polar by thin SVD", lambda: _svd_polar(xc + uc), accuracy=acc(span_ref)),
            H.Candidate(
                "geoopt: EuclideanStiefel.retr", lambda: geoopt.EuclideanStiefel().retr(xc, uc), accuracy=acc(span_ref)
            ),
        ],
        "exponential map": [
            H.Candidate("floor: torch.add(x, u, out=z)", lambda: torch.add(x, u, out=z), reference=True),
            H.Candidate("ours: manifolds.expmap", lambda: expmap(x, u), accuracy=acc(exp_ref)),
            H.Candidate(
                "ours: inplace.retract_(retraction='exp')",
                lambda: inplace.retract_(x, u, out=out, retraction="exp"),
                accuracy=acc(exp_ref),
            ),
            H.Candidate("reference code: batched thin SVD geodesic", lambda: _svd_exp(xc, uc), accuracy=acc(exp_ref)),
            H.Candidate(
                "geoopt: EuclideanStiefelExact.expmap",
                lambda: geoopt.EuclideanStiefelExact().expmap(xc, uc),
                accuracy=acc(exp_ref),
            ),
        ],
        f"geodesic distance of {w.classes} pairs": [
            H.Candidate("floor: torch.add(x, y, out=z)", lambda: torch.add(x, y, out=z), reference=True),
            H.Candidate("ours: distances.geodesic", lambda: geodesic(x, y), accuracy=dacc),
            H.Candidate(
                "ours: principal_angles (SVD route)",
                lambda: torch.linalg.vector_norm(principal_angles(x, y), dim=-1),
                accuracy=dacc,
            ),
            H.Candidate("torch: svdvals(x^T y) + arccos", lambda: _arccos_distance(xc, y.contiguous()), accuracy=dacc),
        ],
    }
    out_tables = []
    for title, cands in tables.items():
        rows, load = H.run_table(cands, repeats, device=device)
        out_tables.append(H.format_table(f"CUDA {w.name}{label}: {title}", rows, load))
    return out_tables


def _learning(H, w, device, repeats):
    import bench_training as T

    x = H.random_point(w, device=device)
    grad = H.rows_layout(torch.randn(x.shape, device=device) * 0.05)
    sizes = f"CUDA {w.name}"
    out = []
    images = 16 if w.name == "W0" else 256
    specs = [
        (f"{sizes}: optimizer step, momentum 0.9", T._optimizer_candidates(w, x, grad), "x SGD"),
        (f"{sizes}: head forward + backward, B={w.batch}", _head_with_bf16(T, w, device), "x Linear"),
        (
            f"{sizes}: one training step, ResNet-style backbone (width 64), {images} images 32x32",
            T._train_candidates(w, images, 64, device),
            "x Linear+SGD",
        ),
    ]
    for title, cands, label in specs:
        rows, load = H.run_table(cands, repeats, device=device)
        out.append(H.format_table(title, rows, load, ratio_label=label))
    return out


def _head_with_bf16(T, w, device):
    """The CPU head table on the GPU, each row also under bf16 autocast."""
    cands = T._head_candidates(w, device)
    extra = []
    for c in cands:

        def under_bf16(fn=c.fn):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                fn()

        extra.append(T.H.Candidate(c.name + " [bf16 autocast]", under_bf16))
    return cands + extra


def main(argv=None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("cuda_bench: no CUDA device is available; nothing to do.")
        return 0
    import harness as H

    device = torch.device("cuda")
    w = H.WORKLOADS["W0" if args.quick else "W2"]
    repeats = 2 if args.quick else args.repeats
    lines = [f"## CUDA benchmarks: {torch.cuda.get_device_name(device)}, torch {torch.__version__}", ""]
    print(lines[0], flush=True)
    if args.output:  # each table is appended as soon as it is measured
        with open(args.output, "w") as f:
            f.write("\n".join(lines) + "\n")

    def emit(parts):
        for part in parts:
            print(part, flush=True)
            if args.output:
                with open(args.output, "a") as f:
                    f.write(part + "\n")

    torch.backends.cuda.matmul.allow_tf32 = False
    emit(_geometry(H, w, device, repeats, " (fp32 matmuls)"))
    emit(_learning(H, w, device, repeats))
    torch.backends.cuda.matmul.allow_tf32 = True
    emit(_geometry(H, w, device, repeats, " (TF32 matmuls allowed)"))
    torch.backends.cuda.matmul.allow_tf32 = False
    return 0


if __name__ == "__main__":
    sys.exit(main())
