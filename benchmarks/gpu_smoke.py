"""Correctness checks of the geometry, the head and the optimizer on a CUDA GPU.

Usage::

    python benchmarks/gpu_smoke.py

Runs the same computations on the GPU (float32, and bf16 autocast for the
head) and on the CPU in float64, and prints the largest differences and
orthonormality errors; exits 1 if one exceeds its tolerance, 0 with a message
when no GPU is present. Optional backbones (timm ``resnet50d``, torchvision
``resnet50``) are converted to an ImageNet-size GCR head (C 1000, k 8) and
trained for two steps under bf16 autocast when those packages are installed.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from grassmann_cls import GrassmannHead, RiemannianSGD, convert  # noqa: E402
from manifolds import RETRACTIONS, TRANSPORTS, Grassmann, expmap, logmap, principal_angles  # noqa: E402

FAILURES: list[str] = []


def report(name: str, value: float, limit: float) -> None:
    ok = value <= limit
    print(f"{'ok  ' if ok else 'FAIL'} {name:<58} {value:10.3e}  (limit {limit:.0e})")
    if not ok:
        FAILURES.append(name)


def orthonormality(x: torch.Tensor) -> float:
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    return float((x.mT @ x - eye).abs().amax())


def geometry(device: torch.device) -> None:
    gen = torch.Generator().manual_seed(0)
    gr = Grassmann()
    x64 = gr.random(64, 256, 8, dtype=torch.float64, generator=gen)
    u64 = gr.random_tangent(x64, generator=gen)
    u64 = u64 * (0.5 / torch.linalg.matrix_norm(u64, ord=2)[:, None, None])  # inside the injectivity radius
    x, u = x64.float().to(device), u64.float().to(device)
    for name in RETRACTIONS.names():
        fn = RETRACTIONS.resolve(name)
        y = fn(x, u)
        ref = fn(x64, u64)
        report(f"retraction {name}: orthonormality (cuda f32)", orthonormality(y), 1e-5)
        report(f"retraction {name}: |cuda f32 - cpu f64|", float((y.double().cpu() - ref).abs().amax()), 1e-5)
    y64 = expmap(x64, u64)
    y = expmap(x, u)
    report("expmap: |cuda f32 - cpu f64|", float((y.double().cpu() - y64).abs().amax()), 1e-5)
    report("logmap(expmap): |cuda f32 - u|", float((logmap(x, y).double().cpu() - u64).abs().amax()), 1e-4)
    angles = principal_angles(x, y).double().cpu()
    report("principal angles: |cuda f32 - cpu f64|", float((angles - principal_angles(x64, y64)).abs().amax()), 1e-5)
    for name in TRANSPORTS.names():
        v64 = gr.random_tangent(x64, generator=gen)
        w = TRANSPORTS.resolve(name)(x, u, y, v64.float().to(device))
        w64 = TRANSPORTS.resolve(name)(x64, u64, y64, v64)
        report(f"transport {name}: |cuda f32 - cpu f64|", float((w.double().cpu() - w64).abs().amax()), 1e-4)


def head_training(device: torch.device, mode: str) -> None:
    torch.manual_seed(0)
    features = torch.randn(512, 64, dtype=torch.float64)
    labels = torch.randint(0, 10, (512,))
    heads = {}
    start = GrassmannHead(64, 10, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for key, where, dtype in (("reference", "cpu", torch.float64), ("test", device, torch.float32)):
        head = copy.deepcopy(start).to(where, dtype)  # the same starting bases in both precisions
        opt = RiemannianSGD(head.parameters(), lr=0.05, momentum=0.9, grassmann_momentum=mode)
        x, t = features.to(where, dtype), labels.to(where)
        for _ in range(50):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(head(x), t).backward()
            opt.step()
        heads[key] = head.bases.detach()
    gpu = heads["test"]
    report(f"RiemannianSGD {mode}, 50 steps: orthonormality (cuda f32)", orthonormality(gpu), 1e-5)
    report(
        f"RiemannianSGD {mode}, 50 steps: |cuda f32 - cpu f64|",
        float((gpu.double().cpu() - heads["reference"]).abs().amax()),
        1e-4,
    )


@torch.no_grad()
def head_autocast(device: torch.device) -> None:
    head = GrassmannHead(2048, 1000, 8, generator=torch.Generator().manual_seed(0)).to(device)
    x = torch.randn(256, 2048, device=device)
    ref = head(x)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        low = head(x)
    report("head bf16 autocast: logits dtype is float32", float(low.dtype != torch.float32), 0)
    report("head bf16 autocast: |logits - fp32 logits| / scale", float((low - ref).abs().amax()) / 25.0, 2e-2)


def external_backbone(device: torch.device, spec: str) -> None:
    from grassmann_cls.training.backbones import build_backbone

    model = build_backbone(spec, in_shape=(3, 224, 224), num_classes=1000)
    model = convert(model, 8).to(device)
    opt = RiemannianSGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    images = torch.randn(8, 3, 224, 224, device=device)
    labels = torch.randint(0, 1000, (8,), device=device)
    for _ in range(2):
        opt.zero_grad()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        opt.step()
    bases = model.fc.bases.detach()
    print(f"     {spec}: head {tuple(bases.shape)}, loss {float(loss):.3f}")
    report(f"{spec} + GCR k=8, 2 bf16 steps: orthonormality", orthonormality(bases), 1e-5)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu to dry-run the script")
    parser.add_argument("--skip-backbones", action="store_true", help="skip the timm/torchvision models")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 0
    device = torch.device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}")
    geometry(device)
    for mode in ("transport", "paper"):
        head_training(device, mode)
    head_autocast(device)
    for package, spec in (("timm", "timm:resnet50d"), ("torchvision", "torchvision:resnet50")):
        if not args.skip_backbones and importlib.util.find_spec(package) is not None:
            external_backbone(device, spec)
    print(f"{len(FAILURES)} failed" if FAILURES else "all checks passed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
