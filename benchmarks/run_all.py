"""Run the benchmark tables of docs/benchmarks.md and print them as Markdown.

Usage::

    .venv/bin/python benchmarks/run_all.py              # W1 and W2, 2 threads
    .venv/bin/python benchmarks/run_all.py --quick      # tiny smoke run (seconds)
    .venv/bin/python benchmarks/run_all.py --workloads W2 --only geometry
    .venv/bin/python benchmarks/run_all.py --workloads W2 --only geometry --tables distance

Timings are medians of interleaved runs; ratios are to the reference row of
the same table, measured side by side. Each table reports the CPU used by
other processes while it ran (this machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _threads_from_argv(argv) -> str:
    """``--threads`` before numpy is imported: its BLAS must not keep idle threads spinning."""
    for i, arg in enumerate(argv):
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
    return "2"


for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _threads_from_argv(sys.argv[1:]))

import anchors  # noqa: E402
import bench_geometry  # noqa: E402
import bench_training  # noqa: E402
import harness  # noqa: E402
import torch  # noqa: E402

# images per training step and backbone width, per workload
TRAIN_SIZES = {"W0": (8, 8), "W1": (64, 32), "W2": (128, 64)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny workload W0, 2 repeats: a smoke run")
    p.add_argument("--workloads", nargs="+", default=["W1", "W2"], choices=sorted(harness.WORKLOADS))
    p.add_argument("--only", choices=["geometry", "training"], default=None)
    p.add_argument(
        "--tables",
        nargs="+",
        choices=bench_geometry.TABLES,
        default=bench_geometry.TABLES,
        help="geometry tables to run (default: all)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per candidate (median)")
    p.add_argument("--output", default=None, help="also write the Markdown here")
    return p.parse_args(argv)


def header(args) -> str:
    return "\n".join(
        [
            "## grassmann-cls benchmarks",
            "",
            f"- torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU: "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs",
            f"- anchors: {anchors.describe()}",
            f"- medians of {args.repeats} interleaved runs; started {time.strftime('%Y-%m-%d %H:%M:%S')}",
            "",
        ]
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.workloads, args.repeats = ["W0"], min(args.repeats, 2)
    torch.set_num_threads(args.threads)
    chunks = [header(args)]
    print(chunks[0], flush=True)
    for name in args.workloads:
        w = harness.WORKLOADS[name]
        parts = []
        if args.only in (None, "geometry"):
            parts += bench_geometry.tables(w, args.repeats, full=not args.quick, only=args.tables)
        if args.only in (None, "training"):
            images, width = TRAIN_SIZES[name]
            parts += bench_training.tables(w, args.repeats, images, width)
        for part in parts:
            print(part, flush=True)
        chunks += parts
    if args.output:
        with open(args.output, "w") as f:
            f.write("\n".join(chunks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
