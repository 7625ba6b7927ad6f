"""Shared machinery of the benchmarks: workloads, timing, load, accuracy, tables.

Timing method (see docs/benchmarks.md): every candidate of one table is warmed
up once, then all candidates are timed round-robin, one call each per round,
so that a change in the machine's load hits them alike; the table shows the
median per candidate and its ratio to the reference row (the floor
``torch.add(x, u, out=z)``, or ``torch.optim.SGD``), both from the same run.
Anchors that would take minutes (``n x n`` work) run on a few classes and are
scaled linearly to the full stack; their rows say so.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable

import torch


@dataclasses.dataclass(frozen=True)
class Workload:
    """Sizes of one benchmark workload."""

    name: str
    classes: int
    n: int
    k: int
    batch: int = 256


WORKLOADS = {
    "W0": Workload("W0", classes=16, n=64, k=4, batch=32),
    "W1": Workload("W1", classes=100, n=512, k=8, batch=256),
    "W2": Workload("W2", classes=1000, n=2048, k=8, batch=256),
}


@dataclasses.dataclass
class Candidate:
    """One row of a table: a callable timed as is, times ``scale``."""

    name: str
    fn: Callable[[], object]
    scale: float = 1.0
    note: str = ""
    reference: bool = False
    accuracy: Callable[[object], dict[str, float]] | None = None
    max_seconds: float = 20.0


@dataclasses.dataclass
class Row:
    name: str
    seconds: float
    cpu_seconds: float
    runs: int
    note: str
    accuracy: dict[str, float]
    reference: bool
    paired: float = float("nan")
    """Median over rounds of (this call / the reference's call in the same round), wall clock."""


# --- machine load -------------------------------------------------------------------
def _busy_jiffies() -> int:
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle


def _own_jiffies() -> int:
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (all threads)


class LoadMonitor:
    """CPU used by *other* processes while a block runs, in cores (from /proc)."""

    def __init__(self):
        self.available = os.path.exists("/proc/stat") and os.path.exists("/proc/self/stat")

    def __enter__(self):
        self.start = time.perf_counter()
        if self.available:
            self.busy0, self.own0 = _busy_jiffies(), _own_jiffies()
        return self

    def __exit__(self, *exc):
        self.elapsed = time.perf_counter() - self.start
        if self.available:
            hz = os.sysconf("SC_CLK_TCK")
            other = (_busy_jiffies() - self.busy0) - (_own_jiffies() - self.own0)
            self.other_cores = max(other, 0) / hz / max(self.elapsed, 1e-9)
        return False

    def describe(self) -> str:
        cores = os.cpu_count() or 1
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        other = f"{self.other_cores:.2f}" if self.available else "n/a"
        return f"other processes' CPU during this table: {other} of {cores} cores; loadavg(1 min) {load:.2f}"


# --- timing -------------------------------------------------------------------------------
def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_once(fn: Callable[[], object], device) -> tuple[tuple[float, float], object]:
    """``((wall seconds, this process's CPU seconds), result)`` of one call."""
    _sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    _sync(device)
    return (time.perf_counter() - start, time.process_time() - cpu), result


def run_table(candidates: list[Candidate], repeats: int, device: torch.device | None = None) -> tuple[list[Row], str]:
    """Time candidates round-robin; returns rows (median seconds x scale) and the load line.

    A candidate that raises is reported as a row with the error, not timed.
    """
    failed: dict[str, str] = {}
    with LoadMonitor() as monitor:
        first: dict[str, tuple[float, object]] = {}
        for c in candidates:
            try:
                first[c.name] = _time_once(c.fn, device)
            except Exception as error:  # an anchor broken on this machine must not stop the run
                failed[c.name] = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:80]}"
        live = [c for c in candidates if c.name not in failed]
        budget = {c.name: max(1, min(repeats, int(c.max_seconds / max(first[c.name][0][0], 1e-9)))) for c in live}
        samples: dict[str, list[tuple[float, float]]] = {c.name: [] for c in live}
        for r in range(repeats):
            for c in live:
                if r < budget[c.name]:
                    samples[c.name].append(_time_once(c.fn, device)[0])
    rows = []
    ref = next((c for c in live if c.reference), None)
    for c in candidates:
        if c.name in failed:
            rows.append(Row(c.name, float("nan"), float("nan"), 0, failed[c.name], {}, c.reference))
            continue
        acc = c.accuracy(first[c.name][1]) if c.accuracy is not None else {}
        wall = statistics.median(t[0] for t in samples[c.name])
        cpu = statistics.median(t[1] for t in samples[c.name])
        paired = float("nan")
        if ref is not None:
            pairs = zip(samples[c.name], samples[ref.name])
            paired = statistics.median(t[0] * c.scale / (r[0] * ref.scale) for t, r in pairs)
        rows.append(Row(c.name, wall * c.scale, cpu * c.scale, len(samples[c.name]), c.note, acc, c.reference, paired))
    return rows, monitor.describe()


# --- tables ----------------------------------------------------------------------------
def _fmt_time(seconds: float) -> str:
    if seconds != seconds:
        return "n/a"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.2f} ms"


def _fmt_acc(acc: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1e}" for k, v in acc.items()) if acc else ""


def format_table(title: str, rows: list[Row], load: str, ratio_label: str = "x floor") -> str:
    """A Markdown table: name, wall median and ratios, CPU-time median and ratio, accuracy, note.

    The paired ratio is the median over rounds of the call's time divided by
    the reference's time in the same round: it follows the machine's memory
    bandwidth, which drifts between rounds on a shared host. The CPU-time
    columns (this process's user + system time) are the cross-check against
    waiting for a core; with more than one thread they also count OpenMP
    spin-waiting.
    """
    ref = next((r for r in rows if r.reference), None)

    def ratio(value, base):
        return f"{value / base:.2f}" if base and base == base and value == value and base > 0 else "n/a"

    lines = [
        f"### {title}",
        "",
        f"| implementation | median | {ratio_label} | {ratio_label}, paired | CPU time | {ratio_label} (CPU) "
        "| runs | accuracy | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        wall_ratio = ratio(r.seconds, ref.seconds if ref else None)
        paired = f"{r.paired:.2f}" if r.paired == r.paired else "n/a"
        cpu_ratio = ratio(r.cpu_seconds, ref.cpu_seconds if ref else None)
        lines.append(
            f"| {r.name} | {_fmt_time(r.seconds)} | {wall_ratio} | {paired} | {_fmt_time(r.cpu_seconds)} "
            f"| {cpu_ratio} | {r.runs} | {_fmt_acc(r.accuracy)} | {r.note} |"
        )
    lines += ["", f"_{load}_", ""]
    return "\n".join(lines)


# --- data ------------------------------------------------------------------------------------
def rows_layout(t: torch.Tensor) -> torch.Tensor:
    """The same values stored as a transposed view over ``(..., k, n)`` memory."""
    return t.mT.contiguous().mT


def random_point(w: Workload, dtype=torch.float32, seed: int = 0, device="cpu") -> torch.Tensor:
    """Sign-fixed QR of a Gaussian ``(C, n, k)``, stored as rows."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(w.classes, w.n, w.k, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    return rows_layout(q.to(dtype)).to(device)


def random_tangent(x: torch.Tensor, angle: float, seed: int = 1) -> torch.Tensor:
    """Horizontal tangent at ``x`` with spectral norm ``angle`` per class, stored as rows."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(x.shape, generator=g, dtype=torch.float64).to(x.device)
    x64 = x.double()
    u = raw - x64 @ (x64.mT @ raw)
    u = u * (angle / torch.linalg.matrix_norm(u, ord=2)[:, None, None])
    return rows_layout(u.to(x.dtype))


# --- accuracy ----------------------------------------------------------------------------
def orthonormality(y: torch.Tensor) -> float:
    """``max |y^T y - I|`` over the stack, in float64."""
    y = torch.as_tensor(y).double()
    eye = torch.eye(y.shape[-1], dtype=torch.float64, device=y.device)
    return float((y.mT @ y - eye).abs().amax())


def span_error(y: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest ``||(I - r r^T) y||_2`` over the stack (sine of the largest angle), in float64."""
    y = torch.as_tensor(y).double()
    r = reference.double().to(y.device)
    resid = y - r @ (r.mT @ y)
    return float(torch.linalg.matrix_norm(resid, ord=2).amax())


def subset(t: torch.Tensor, count: int) -> torch.Tensor:
    return t[: min(count, t.shape[0])]


def scaled_note(used: int, total: int) -> str:
    return f"timed on {used} of {total} classes, scaled x{total / used:g}"
