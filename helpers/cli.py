"""The ``gapscope`` command: ``run`` a grid from YAML, ``report`` a run folder, open ``lab``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["main"]


def _cmd_run(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import experiments as E

    cfg = E.load_grid_config(args.config)
    out = Path(args.out)
    workers = args.workers or int(cfg.get("workers", 0)) or max(1, (os.cpu_count() or 2))
    print(
        f"grid: {len(E.expand_grid(cfg['grid']))} runs of {cfg['notebook']} -> {out}  (workers={workers})"
    )
    statuses = E.run_grid(
        cfg["notebook"],
        cfg["grid"],
        out_dir=out,
        workers=workers,
        engine=args.engine or cfg.get("engine", "local"),
        resume=not args.no_resume,
        pythonpath=cfg["pythonpath"],
    )
    failed = [s for s in statuses if s["status"] == "failed"]
    table = E.collect(out)
    table.to_csv(out / "results.csv", index=False)
    tables = E.report_tables(table, target_fraction=float(cfg.get("target_fraction", 0.95)))
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 3):
        cols = [
            c
            for c in (
                "dataset",
                "strategy",
                "n_runs",
                "labels",
                "accuracy",
                "accuracy_ci95",
                "macro_f1",
                "ece",
                "minority_recall",
                "shifted_accuracy",
                "coverage",
            )
            if c in tables["final"].columns
        ]
        print("\nFinal round, mean over seeds (ci95 = half-width of the 95% t-interval):")
        print(tables["final"][cols].to_string(index=False))
        print("\nLabels to reach the target, saving against random (paired by seed):")
        print(tables["savings"].to_string(index=False))
    report = None if args.no_report else E.make_report(out)
    print(f"\nrun folder: {out.resolve()}")
    print(f"executed notebooks: {out.resolve() / 'runs'}/<run>/executed.ipynb")
    print(f"results table: {(out / 'results.csv').resolve()}")
    if report:
        print(f"report: {report.resolve()}")
    if failed:
        print(f"{len(failed)} run(s) failed; see their status.json:", file=sys.stderr)
        for s in failed:
            print(f"  {s['run_id']}: {s['error']}", file=sys.stderr)
        return 1
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from . import experiments as E

    html = E.make_report(args.out_dir, html_path=args.html)
    print(f"report: {html.resolve()}")
    return 0


def _cmd_lab(args: argparse.Namespace) -> int:
    from .experiments import NOTEBOOK_DIR

    return subprocess.call(
        [sys.executable, "-m", "jupyterlab", f"--notebook-dir={NOTEBOOK_DIR}", *args.extra]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gapscope", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="execute a notebook over a parameter grid from a YAML file")
    p.add_argument("--config", required=True, help="grid YAML (see notebooks/grids/default.yaml)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="concurrent runs (default: from the YAML or CPU count)",
    )
    p.add_argument("--engine", choices=("local", "ray"), default=None)
    p.add_argument("--no-resume", action="store_true", help="re-run finished runs too")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.set_defaults(fn=_cmd_run)
    p = sub.add_parser("report", help="render the HTML report of a run folder")
    p.add_argument("out_dir")
    p.add_argument("--html", default=None)
    p.set_defaults(fn=_cmd_report)
    p = sub.add_parser("lab", help="open JupyterLab on the notebooks")
    p.add_argument("extra", nargs=argparse.REMAINDER)
    p.set_defaults(fn=_cmd_lab)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
