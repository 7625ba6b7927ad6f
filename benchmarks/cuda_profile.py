"""Where the GPU time of the geometry goes: primitive timings and profiler tables.

Usage::

    python benchmarks/cuda_profile.py            # W2 (C=1000, n=2048, k=8)
    python benchmarks/cuda_profile.py --quick    # W0, also runs on the CPU

The first table times each primitive that our kernels are made of (the Gram
product, the batched k x k Cholesky, triangular inverse and eigh, the apply
product, a host synchronisation) next to the memory floor, by CUDA events
over ``--repeats`` calls. Then ``torch.profiler`` lists the kernels of one
in-place retraction, one exponential map, one geodesic distance and one
RiemannianSGD step. Exits with status 0 and a message when no CUDA device is
present, unless ``--device cpu`` is given.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny workload W0")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--device", default="cuda")
    return p.parse_args(argv)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn, device, repeats):
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def primitives(H, w, device, repeats):
    """Median time of each building block, and its ratio to the floor."""
    x = H.random_point(w, device=device)
    u = H.random_tangent(x, angle=0.1)
    xr, ur = x.mT, u.mT  # (C, k, n) row views, as the kernels see them
    z, out = torch.empty_like(xr), torch.empty_like(xr)
    gram = torch.bmm(xr, xr.mT)
    chol = torch.linalg.cholesky(gram)
    eye = torch.eye(w.k, device=device).expand(w.classes, -1, -1).contiguous()
    linv = torch.linalg.solve_triangular(chol, eye, upper=False)
    info = torch.zeros(w.classes, dtype=torch.int32, device=device)
    rows = [
        ("floor: torch.add(x, u, out=z)", lambda: torch.add(xr, ur, out=z)),
        ("Gram product bmm(z, z^T) (C, k, k)", lambda: torch.bmm(xr, xr.mT)),
        ("apply product bmm(L^-1, z, out=y)", lambda: torch.bmm(linv, xr, out=out)),
        ("cholesky_ex of C k x k", lambda: torch.linalg.cholesky_ex(gram)),
        ("solve_triangular(L, I) of C k x k", lambda: torch.linalg.solve_triangular(chol, eye, upper=False)),
        ("inv_ex of C k x k", lambda: torch.linalg.inv_ex(chol)),
        ("eigh of C k x k", lambda: torch.linalg.eigh(gram)),
        ("host sync: bool(info.any())", lambda: bool(info.any())),
    ]
    floor = None
    lines = [
        f"### primitives, {w.name} (C {w.classes}, n {w.n}, k {w.k}), {device.type}",
        "",
        "| primitive | median | x floor |",
        "|---|---:|---:|",
    ]
    for name, fn in rows:
        ms = _median_ms(fn, device, repeats)
        floor = floor or ms
        lines.append(f"| {name} | {ms:.3f} ms | {ms / floor:.2f} |")
    return "\n".join(lines)


def profiles(H, w, device, rows=12):
    """Profiler tables of our main operations (self device time, top kernels)."""
    from torch.profiler import ProfilerActivity, profile

    from grassmann_cls import RiemannianSGD
    from manifolds import expmap, inplace
    from manifolds.distances import geodesic

    x = H.random_point(w, device=device)
    u = H.random_tangent(x, angle=0.1)
    y = H.rows_layout(expmap(x, H.random_tangent(x, angle=0.03, seed=2)))
    out = torch.empty_like(x)
    param = torch.nn.Parameter(x.clone())
    opt = RiemannianSGD([param], lr=0.1, momentum=0.9)
    param.grad = H.rows_layout(torch.randn(x.shape, device=device) * 0.05)
    cases = {
        "inplace.retract_ (qr)": lambda: inplace.retract_(x, u, out=out),
        "expmap": lambda: expmap(x, u),
        "distances.geodesic": lambda: geodesic(x, y),
        "RiemannianSGD('transport').step": opt.step,
    }
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    parts = []
    for name, fn in cases.items():
        for _ in range(3):
            fn()
        _sync(device)
        with profile(activities=activities) as prof:
            for _ in range(10):
                fn()
            _sync(device)
        table = prof.key_averages().table(sort_by=sort, row_limit=rows)
        parts.append(f"### profile of 10 calls: {name}\n\n```\n{table}\n```")
    return parts


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("cuda_profile: no CUDA device is available; nothing to do.")
        return 0
    import harness as H

    torch.backends.cuda.matmul.allow_tf32 = False
    w = H.WORKLOADS["W0" if args.quick else "W2"]
    print(primitives(H, w, device, args.repeats), flush=True)
    for part in profiles(H, w, device):
        print(part, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
