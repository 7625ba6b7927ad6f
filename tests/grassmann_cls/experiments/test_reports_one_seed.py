"""Reports of one seed: a standard deviation of one value measures nothing, so it reads n/a."""

from __future__ import annotations

from grassmann_cls.experiments import demo_report, sweep_report


def demo_runs(seeds: int) -> list[dict]:
    return [
        {
            "head": head,
            "k": k,
            "seed": seed,
            "top1": top1 + seed,
            "top5": 99.0,
            "variability": 50.0,
            "r2": 0.5,
            "transfer": 80.0,
        }
        for head, k, top1 in (("softmax", 0, 90.0), ("gcr", 4, 91.0))
        for seed in range(seeds)
    ]


def sweep_rows(seeds: int) -> list[dict]:
    return [
        {
            "retraction": name,
            "label": name,
            "step_map": name,
            "seeds": seeds,
            "top1": top1,
            "top1_std": 0.0 if seeds == 1 else 0.3,
            "top5": 99.0,
            "bases_step_ms": 0.1,
            "step_ms": 1.0,
            "drift": 1e-7,
            "order_bases": 2,
            "order_subspaces": 2,
            "signature": name,
        }
        for name, top1 in (("qr", 90.0), ("polar", 91.0))
    ]


def test_demo_table_and_reading_print_na_for_one_seed():
    rows = demo_report.aggregate(demo_runs(seeds=1))
    table = demo_report.table_markdown(rows)
    assert "| Softmax | 90.00 ± n/a | 99.00 ± n/a | 50.00 | 0.500 | 80.00 ± n/a |" in table and "± 0.00" not in table
    assert "seed spread is n/a" in demo_report.reading(rows)[0]


def test_demo_table_keeps_the_std_of_several_seeds():
    table = demo_report.table_markdown(demo_report.aggregate(demo_runs(seeds=2)))
    assert "| Softmax | 90.50 ± 0.71 | 99.00 ± 0.00 |" in table


def test_sweep_table_and_reading_print_na_for_one_seed():
    rows = sweep_rows(seeds=1)
    axes = [("retraction", ("qr", "polar")), ("seed", (0,))]
    assert "| qr | qr | 90.00 ± n/a |" in sweep_report.table_markdown(rows, axes)
    first = sweep_report.reading(rows, axes)[0]
    assert first.endswith("the pooled standard deviation over seeds is n/a (one seed per group).")


def test_sweep_table_keeps_the_std_of_several_seeds():
    rows = sweep_rows(seeds=3)
    axes = [("retraction", ("qr", "polar")), ("seed", (0, 1, 2))]
    assert "| qr | qr | 90.00 ± 0.30 |" in sweep_report.table_markdown(rows, axes)
    assert "pooled standard deviation over seeds is 0.30 points" in sweep_report.reading(rows, axes)[0]
