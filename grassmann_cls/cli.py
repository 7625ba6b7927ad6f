"""The ``grassmann-cls`` command: a thin argparse layer over the library's functions.

Every library error (:class:`~grassmann_cls.errors.GrassmannError`) and every
file-system error becomes one line on stderr and exit code 2, with no
traceback; bugs keep their traceback (exit code 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from manifolds import RETRACTIONS, TRANSPORTS
from manifolds.stepping import QR_SIGNS

from .errors import GrassmannError
from .experiments.transfer import PROBES
from .logits import LOGITS
from .optim import GRASSMANN_MOMENTUM
from .training.backbones import backbone_names
from .training.config import RECIPES, TrainConfig
from .training.models import HEADS
from .training.recipe import BASES_OPTIMIZERS, OPTIMIZERS, SCHEDULES

__all__ = ["build_parser", "main"]

PROG = "grassmann-cls"
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(TrainConfig)}  # every field has one


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 0,1,2; got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _add_data(p: argparse.ArgumentParser, default: str | None = "auto", shown: str | None = None) -> None:
    shown = shown or default
    p.add_argument(
        "--dataset",
        metavar="NAME_OR_PATH",
        default=default,
        help="data set name (auto, fashion_mnist, digits) or a path to an "
        ".npz file or image folder" + (f" (default: {shown})" if shown else ""),
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder of the Fashion-MNIST IDX files (else $GRASSMANN_CLS_DATA, then /usr/share/datasets/fashion-mnist)",
    )


def _default(name: str) -> str:
    """``"(default: X)"`` with TrainConfig's default of ``name``."""
    return f"(default: {_DEFAULTS[name]})"


def _add_train(sub) -> None:
    # Every option defaults to None (TrainConfig supplies the defaults), so that _train sees which were given:
    # with --resume only those override the checkpoint's settings.
    p = sub.add_parser(
        "train",
        help="train a softmax, cosine or GCR classifier",
        description="Train a model; writes checkpoint.pt and metrics.json to --output. With "
        "--resume, continue a run with its checkpoint's settings.",
    )
    _add_data(p, default=None, shown=_DEFAULTS["dataset"])
    p.add_argument("--train-size", metavar="N", type=int, help="stratified subset of the training split")
    p.add_argument("--test-size", metavar="N", type=int, help="stratified subset of the test split")
    p.add_argument("--classes", metavar="LIST", type=_int_list, help="train on these classes only, e.g. 0,1,2,3,4")
    p.add_argument(
        "--imbalance-ratio",
        metavar="R",
        type=float,
        help="long-tailed training set: class c keeps n_max * R^(-c/(C-1)) samples, class 0 the head "
        "(default: balanced)",
    )
    p.add_argument("--image-size", metavar="SIZE", type=int, help="resize images to SIZE x SIZE")
    p.add_argument("--backbone", metavar="NAME", help=f"one of {', '.join(backbone_names())} {_default('backbone')}")
    p.add_argument("--width", metavar="N", type=int, help="backbone width (default: the backbone's)")
    p.add_argument("--head", choices=HEADS.names(), help=_default("head"))
    p.add_argument("--subspace-dim", "-k", metavar="K", type=int, help=f"GCR k {_default('subspace_dim')}")
    p.add_argument("--scale", metavar="X", type=float, help=f"logit scale of cosine/GCR {_default('scale')}")
    p.add_argument("--logit", choices=LOGITS.names(), help=f"GCR logit {_default('logit')}")
    p.add_argument("--retraction", choices=RETRACTIONS.names(), help=_default("retraction"))
    p.add_argument("--transport", choices=TRANSPORTS.names(), help=_default("transport"))
    p.add_argument("--optimizer", choices=OPTIMIZERS.names(), help=_default("optimizer"))
    p.add_argument(
        "--bases-optimizer",
        choices=BASES_OPTIMIZERS.names(),
        help=f"optimizer of the class bases, beside --optimizer {_default('bases_optimizer')}",
    )
    p.add_argument("--lr", metavar="X", type=float, help=f"peak learning rate {_default('lr')}")
    p.add_argument("--momentum", metavar="X", type=float, help=_default("momentum"))
    p.add_argument("--weight-decay", metavar="X", type=float, help=_default("weight_decay"))
    p.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum")
    p.add_argument(
        "--grassmann-momentum",
        choices=GRASSMANN_MOMENTUM,
        help=f"momentum style of the bases, independent of --retraction "
        f"{_default('grassmann_momentum')}; --recipe paper for the paper's",
    )
    p.add_argument(
        "--bases-lr-factor",
        metavar="X",
        type=float,
        help=f"bases lr / backbone lr with --optimizer adamw or --bases-optimizer adam {_default('bases_lr_factor')}",
    )
    p.add_argument(
        "--reorth-every",
        metavar="N",
        type=int,
        help="re-orthonormalise the bases every N steps, 0 never (default: 5 for paper momentum, "
        "1 for paper momentum with adamw, never for transport)",
    )
    p.add_argument(
        "--reorth-qr",
        choices=QR_SIGNS,
        help=f"QR factor of the re-orthonormalisation: sign_fixed, or unsigned as the GCR reference "
        f"{_default('reorth_qr')}",
    )
    p.add_argument(
        "--reorth-count-from",
        metavar="N",
        type=int,
        help=f"count of the first step for --reorth-every; 0 as the GCR reference {_default('reorth_count_from')}",
    )
    p.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        help="set the bases' optimizer at once: paper = --retraction exp --grassmann-momentum paper "
        "--reorth-every 5 (1 with adamw), the GCR paper's; conflicting options are refused",
    )
    p.add_argument("--schedule", choices=SCHEDULES.names(), help=_default("schedule"))
    p.add_argument("--warmup-epochs", metavar="X", type=float, help=_default("warmup_epochs"))
    p.add_argument("--label-smoothing", metavar="X", type=float, help=_default("label_smoothing"))
    p.add_argument(
        "--epochs",
        metavar="N",
        type=int,
        help=f"{_default('epochs')}; with --resume, more than the "
        "checkpoint's extends the run (docs: getting-started.md)",
    )
    p.add_argument("--batch-size", metavar="N", type=int, help=_default("batch_size"))
    p.add_argument("--seed", metavar="N", type=int, help=_default("seed"))
    p.add_argument(
        "--output",
        "-o",
        metavar="DIR",
        help="output folder (default: runs/train; with --resume the checkpoint's folder)",
    )
    p.add_argument("--overwrite", action="store_true", default=None, help="replace a run already in --output")
    p.add_argument(
        "--resume",
        metavar="PATH",
        help="continue the run of this checkpoint.pt or run folder, with its "
        "settings; options that would change what is already trained are refused",
    )
    p.add_argument(
        "--device", help=f"cpu, cuda, cuda:N or auto; under torchrun cuda means cuda:LOCAL_RANK {_default('device')}"
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    _add_scale_out(p)
    p.set_defaults(func=_train)


def _add_scale_out(p: argparse.ArgumentParser) -> None:
    """Mixed precision, mid-epoch checkpoints and data loading (docs: distributed.md)."""
    from .training.precision import AMP

    p.add_argument(
        "--amp", choices=AMP, help="mixed precision: bf16, or fp16 with a gradient scaler (default: float32)"
    )
    p.add_argument(
        "--checkpoint-every",
        metavar="STEPS",
        type=int,
        help="also save checkpoint.pt every STEPS optimizer steps, inside epochs",
    )
    p.add_argument(
        "--workers",
        metavar="N",
        type=int,
        help=f"data-loading processes per training process, for imagefolder: data {_default('workers')}",
    )
    p.add_argument(
        "--sync-batchnorm",
        action="store_true",
        default=None,
        help="with several CUDA processes, BatchNorm statistics over the whole global batch",
    )


def _add_checkpoint_command(sub, name: str, help_text: str, func) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
    p.add_argument("checkpoint", help="a run folder written by `grassmann-cls train`, or its checkpoint.pt")
    _add_data(p, default=None)
    p.add_argument("--split", default="test", choices=("test", "train"), help="(default: %(default)s)")
    p.add_argument("--device", default="cpu", help="(default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--reproject",
        action="store_true",
        help="re-orthonormalise class bases that are off their "
        "manifold (an edited file) with a warning, instead of refusing the checkpoint",
    )
    p.set_defaults(func=func)
    return p


def _add_transfer(sub) -> None:
    p = sub.add_parser(
        "transfer",
        help="linear probe of a checkpoint's frozen features on another data set",
        description="Fit a linear classifier on standardised frozen features of --target.",
    )
    p.add_argument("checkpoint", help="a run folder written by `grassmann-cls train`, or its checkpoint.pt")
    p.add_argument(
        "--target",
        metavar="NAME_OR_PATH",
        default="digits",
        help="data set name or path (default: %(default)s); images are "
        "resized to the model's input size, grey ones repeated to its colour channels",
    )
    p.add_argument(
        "--target-classes", metavar="LIST", type=_int_list, help="use only these classes of the target, e.g. 5,6,7,8,9"
    )
    p.add_argument("--data-dir", metavar="DIR", help="folder of the Fashion-MNIST IDX files")
    p.add_argument("--probe", default="logistic", choices=PROBES.names(), help="(default: %(default)s)")
    p.add_argument(
        "--regularization", "-C", metavar="C", type=float, default=1.0, help="inverse strength C (default: 1.0)"
    )
    p.add_argument("--seed", metavar="N", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--device", default="cpu", help="(default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_transfer)


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="softmax vs GCR over k and seeds, with analysis, transfer and a report",
        description="Train softmax, cosine softmax and GCR (k = 1, 2, 4, 8, 16) over several seeds, "
        "probe transfer, and write report.md, metrics.json and plots.",
    )
    p.add_argument("--quick", action="store_true", help="the under-a-minute version")
    p.add_argument("--output", "-o", metavar="DIR", default="runs/demo", help="report folder (default: %(default)s)")
    # type= maps the spelling fashion-mnist to fashion_mnist before the choices are checked: accepted, not listed.
    p.add_argument(
        "--dataset",
        default="auto",
        choices=("auto", "fashion_mnist", "digits"),
        type=_snake_case,
        help="(default: %(default)s: Fashion-MNIST when installed, else digits)",
    )
    p.add_argument("--data-dir", metavar="DIR", help="folder of the Fashion-MNIST IDX files")
    p.add_argument("--seeds", metavar="LIST", type=_int_list, help="e.g. 0,1,2")
    p.add_argument("--subspace-dims", metavar="LIST", type=_int_list, help="GCR k values, e.g. 1,2,4,8,16")
    p.add_argument("--epochs", metavar="N", type=int, help="epochs per run")
    p.add_argument("--probe", choices=PROBES.names(), help="transfer probe (default: logistic)")
    p.add_argument("--jobs", "-j", metavar="N", type=int, help="worker processes (default: up to 2)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=_demo)


def _add_sweep(sub) -> None:
    from .experiments.sweep_plan import AXES

    p = sub.add_parser(
        "sweep",
        help="train one GCR model over a grid of retractions, transports, momentum modes, "
        "logits, k, lr and seeds, and write a report",
        description="Train the same GCR model for every cell of a grid and write report.md, "
        "results.csv, sweep.json and plots. Finished cells are stored in OUTPUT/cells/ and not "
        "re-run. Default grid: every retraction x momentum transport,paper x k 1,8, 3 seeds; "
        "default data: Fashion-MNIST when installed, else digits.",
    )
    p.add_argument(
        "--grid",
        "-g",
        action="append",
        default=[],
        metavar="AXIS=V1,V2",
        help=f"an axis and its values, repeatable; axes: {', '.join(AXES)} (e.g. -g retraction=qr,polar "
        "-g k=1,8); replaces the default grid",
    )
    p.add_argument(
        "--config", metavar="FILE", help="grid file (.toml, or .yaml with PyYAML): tables grid and base, key seeds"
    )
    p.add_argument("--seeds", metavar="N", type=int, help="number of seeds 0..N-1 (default 3; or --grid seed=...)")
    p.add_argument("--quick", action="store_true", help="small data and few epochs: the default grid in minutes")
    p.add_argument("--output", "-o", metavar="DIR", default="runs/sweep", help="report folder (default: %(default)s)")
    _add_data(p, default=None)
    p.add_argument("--epochs", metavar="N", type=int, help="epochs per run")
    p.add_argument("--train-size", metavar="N", type=int, help="stratified subset of the training split")
    p.add_argument("--test-size", metavar="N", type=int, help="stratified subset of the test split")
    p.add_argument("--device", metavar="DEVICE", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--jobs", "-j", metavar="N", type=int, default=1, help="worker processes (default: %(default)s)")
    p.add_argument("--rerun", action="store_true", help="train every cell again, replacing stored results")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=_sweep)


def _add_ood(sub) -> None:
    p = sub.add_parser(
        "ood",
        help="out-of-distribution detection of a checkpoint: every applicable score "
        "against every OOD set, with a report",
        description="Fit every OOD score that applies to the model's head on its training "
        "features and compare in-distribution test images with each OOD set; writes report.md "
        "(AUROC, FPR95, in-distribution accuracy), metrics.json and plots to -o.",
    )
    p.add_argument(
        "checkpoint", metavar="RUN_OR_CHECKPOINT", help="a run folder of `grassmann-cls train` or its checkpoint.pt"
    )
    p.add_argument(
        "--ood-data",
        metavar="NAME[,NAME...]",
        required=True,
        help="heldout (the classes the model was not trained on), digits, noise (gaussian_noise and "
        "uniform_noise), or a data set name or .npz / image-folder path",
    )
    p.add_argument("--output", "-o", metavar="DIR", required=True, help="report folder")
    p.add_argument("--overwrite", action="store_true", help="replace a report already in -o")
    p.add_argument("--data-dir", metavar="DIR", help="folder of the Fashion-MNIST IDX files")
    p.add_argument("--seed", metavar="N", type=int, default=0, help="seed of the noise images (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="(default: %(default)s)")
    p.set_defaults(func=_ood)


def _add_ood_study(sub) -> None:
    p = sub.add_parser(
        "ood-study",
        help="the Fashion-MNIST OOD (open set, far OOD) and long-tail study of docs/ood.md",
        description="Train softmax, cosine and GCR models on 6 Fashion-MNIST classes and score "
        "them against the held-out classes, digits and noise; train softmax and GCR on long-tailed "
        "Fashion-MNIST; write report.md, study.json and plots.",
    )
    p.add_argument("--output", "-o", metavar="DIR", default="runs/ood-study", help="(default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="a smoke run: one seed, one epoch, a small subset")
    p.add_argument("--data-dir", metavar="DIR", help="folder of the Fashion-MNIST IDX files")
    p.add_argument("--seeds", metavar="LIST", type=_int_list, help="(default: 0,1,2)")
    p.add_argument("--epochs", metavar="N", type=int, help="epochs per run (default: 5)")
    p.add_argument("--jobs", "-j", metavar="N", type=int, help="worker processes (default: up to 2)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=_ood_study)


#: One worked example per subcommand, shown in the command-line reference of the docs.
EXAMPLES = {
    "train": "grassmann-cls train --dataset fashion_mnist --head gcr --subspace-dim 8 --epochs 10 -o runs/gcr-k8",
    "evaluate": "grassmann-cls evaluate runs/gcr-k8 --json",
    "analyze": "grassmann-cls analyze runs/gcr-k8 -o runs/gcr-k8/analysis",
    "transfer": "grassmann-cls transfer runs/gcr-k8 --target digits --probe logistic",
    "demo": "grassmann-cls demo --quick -o runs/demo-quick",
    "sweep": "grassmann-cls sweep -g retraction=qr,polar -g k=1,8 --seeds 2 -o runs/sweep",
    "ood": "grassmann-cls ood runs/gcr-k8 --ood-data heldout,digits,noise -o runs/gcr-k8/ood",
    "ood-study": "grassmann-cls ood-study --quick -o runs/ood-study-quick",
}


def _snake_case(text: str) -> str:
    return text.replace("-", "_")


def build_parser() -> argparse.ArgumentParser:
    """The ``grassmann-cls`` parser with its subcommands."""
    parser = _Parser(
        prog=PROG, description="Grassmann Class Representation: train, evaluate, analyze, transfer and the demo."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_checkpoint_command(sub, "evaluate", "top-1 / top-5 accuracy of a checkpoint", _evaluate)
    a = _add_checkpoint_command(
        sub,
        "analyze",
        "feature variability, class separation R^2 and principal angles between class subspaces of a checkpoint",
        _analyze,
    )
    a.add_argument("--output", "-o", help="also write analysis.json and principal_angles.png to this folder")
    _add_transfer(sub)
    _add_demo(sub)
    _add_sweep(sub)
    _add_ood(sub)
    _add_ood_study(sub)
    return parser


def _train(args) -> int:
    from tqdm.auto import tqdm

    from .training.distributed import environment
    from .training.train import resumed_config, train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if args.resume is not None:
        config = resumed_config(args.resume, given)
    else:
        config = TrainConfig.from_dict({"output": "runs/train"} | given, given=given)
    main_process = environment()[0] == 0  # under torchrun only rank 0 reports

    def report(record: dict) -> None:
        if not main_process:
            return
        tqdm.write(
            f"epoch {record['epoch']}/{config.epochs}  loss {record['train_loss']:.4f}  "
            f"train {record['train_top1']:.2f} %  test top-1 {record['test_top1']:.2f} %  "
            f"top-5 {record['test_top5']:.2f} %  ({record['seconds']:.1f} s)",
            file=sys.stdout,
        )

    result = train(config, on_epoch_end=report)
    if result.rank != 0:
        return 0
    print(
        f"trained on {result.data['name']}: test top-1 {result.metrics['test_top1']:.2f} %, "
        f"top-5 {result.metrics['test_top5']:.2f} %; wrote {result.checkpoint} and metrics.json"
    )
    if "train_counts" in result.data:
        groups = [(g, result.metrics[f"test_{g}_top1"]) for g in ("many", "medium", "few")]
        print(
            "long tail: training counts "
            + ",".join(map(str, result.data["train_counts"]))
            + "; top-1 "
            + ", ".join(f"{g}-shot {'-' if v is None else f'{v:.2f} %'}" for g, v in groups)
        )
    return 0


def _print(result: dict, as_json: bool, text: str) -> None:
    print(json.dumps(result, indent=2) if as_json else text)


def _evaluate(args) -> int:
    from .training.runs import evaluate

    r = evaluate(
        args.checkpoint,
        dataset=args.dataset,
        data_dir=args.data_dir,
        split=args.split,
        device=args.device,
        reproject=args.reproject,
    )
    _print(
        r,
        args.json,
        f"top-1 {r['top1']:.2f} %  top-5 {r['top5']:.2f} %  loss {r['loss']:.4f}  "
        f"({r['num_samples']} {r['split']} images of {r['dataset']}, epoch {r['epoch']})",
    )
    return 0


def _analyze(args) -> int:
    from pathlib import Path

    from .training.checkpoint import resolve_checkpoint, write_json
    from .training.runs import analyze

    r = analyze(
        args.checkpoint,
        dataset=args.dataset,
        data_dir=args.data_dir,
        split=args.split,
        device=args.device,
        reproject=args.reproject,
    )
    if args.output:
        from .experiments.demo_report import plot_principal_angles

        folder = Path(args.output)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "analysis.json", r)
        angles = [{"head": "gcr", "k": r["subspace_dim"], "seed": 0, "principal_angles": r["principal_angles"]}]
        run = resolve_checkpoint(args.checkpoint).resolve().parent.name  # the run folder names the run
        plot_principal_angles(angles, folder, title=f"all class pairs of {run}")
    summary = {k: v for k, v in r.items() if k != "principal_angles"}
    _print(
        summary,
        args.json,
        f"variability {r['variability']:.2f} deg  R^2 {r['r2']:.3f}  principal angles "
        f"(k={r['subspace_dim']}): min {r['min_principal_angle']:.2f}, mean {r['mean_principal_angle']:.2f}, "
        f"mean smallest {r['mean_smallest_principal_angle']:.2f} deg  ({r['split']} split of {r['dataset']})",
    )
    return 0


def _transfer(args) -> int:
    from .experiments.transfer import transfer_checkpoint

    r = transfer_checkpoint(
        args.checkpoint,
        args.target,
        data_dir=args.data_dir,
        classes=args.target_classes,
        probe=args.probe,
        regularization=args.regularization,
        seed=args.seed,
        device=args.device,
    )
    _print(
        r,
        args.json,
        f"transfer to {r['target']}{' (resized)' if r['resized'] else ''}: {r['probe']} probe "
        f"test accuracy {r['accuracy']:.2f} %  (train {r['train_accuracy']:.2f} %, {r['num_train']} / "
        f"{r['num_test']} images, {r['feature_dim']} features)",
    )
    return 0


def _demo(args) -> int:
    from .experiments.demo import demo

    overrides = {"seeds": args.seeds, "subspace_dims": args.subspace_dims, "epochs": args.epochs, "probe": args.probe}
    demo(
        args.output,
        quick=args.quick,
        dataset=args.dataset,
        data_dir=args.data_dir,
        jobs=args.jobs,
        progress=args.progress,
        **overrides,
    )
    return 0


def _sweep(args) -> int:
    from .experiments.sweep import sweep
    from .experiments.sweep_plan import grid_options
    from .experiments.sweep_report import table_markdown

    options = grid_options(args.grid, args.config, args.seeds)
    given = {
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "epochs": args.epochs,
        "train_size": args.train_size,
        "test_size": args.test_size,
        "device": args.device,
    }
    base = options["base"] | {k: v for k, v in given.items() if v is not None}
    result = sweep(
        args.output,
        grid=options["grid"],
        seeds=options["seeds"],
        quick=args.quick,
        base=base,
        jobs=args.jobs,
        rerun=args.rerun,
        progress=args.progress,
    )
    print(table_markdown(result["groups"], result["plan"]["axes"]))
    print(
        f"{len(result['runs'])} runs ({result['trained']} trained now) in {result['seconds']:.0f} s; "
        f"wrote {args.output}/report.md, results.csv and plots"
    )
    return 0


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as ``grassmann-cls: warning: ...``, without the Python source line (``warnings.formatwarning``)."""
    return f"{PROG}: warning: {' '.join(str(message).split())}\n"


def _ood(args) -> int:
    from .experiments.ood import ood_checkpoint
    from .experiments.ood_report import check_report_folder, metrics_table, write_ood_report

    check_report_folder(args.output, args.overwrite)  # before the work, so a refusal costs nothing
    result = ood_checkpoint(args.checkpoint, args.ood_data, data_dir=args.data_dir, seed=args.seed, device=args.device)
    write_ood_report(args.output, result, overwrite=args.overwrite)
    summary = result.summary
    print(metrics_table(summary))
    skipped = f"; skipped {', '.join(summary['skipped'])}" if summary["skipped"] else ""
    print(
        f"in-distribution top-1 {summary['id_top1']:.2f} %{skipped}; wrote {args.output}/report.md, "
        "metrics.json and plots"
    )
    return 0


def _ood_study(args) -> int:
    from .experiments.ood_study import ood_study

    result = ood_study(
        args.output,
        data_dir=args.data_dir,
        quick=args.quick,
        jobs=args.jobs,
        progress=args.progress,
        seeds=args.seeds,
        epochs=args.epochs,
    )
    print(
        f"{len(result['runs'])} runs in {result['seconds']:.0f} s; wrote {args.output}/report.md, study.json and plots"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 success, 2 bad input).

    Warnings print as one line on stderr (``grassmann-cls: warning: ...``).
    """
    args = build_parser().parse_args(argv)
    # A command-line user gets one line per warning, not the library's source line under it; only the
    # format changes, so filters (-W error) and callers that record warnings (pytest.warns) work as before.
    formatwarning, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:
        return args.func(args)
    except (GrassmannError, OSError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":
    sys.exit(main())
