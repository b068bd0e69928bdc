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
        ray_address=args.ray_address,
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
    _print_claims(table, out, float(cfg.get("target_fraction", 0.95)))
    report = (
        None
        if args.no_report
        else E.make_report(out, target_fraction=float(cfg.get("target_fraction", 0.95)))
    )
    print(f"\nrun folder: {out.resolve()}")
    print(f"executed notebooks: {out.resolve() / 'runs'}/<run>/executed.ipynb")
    print(f"results table: {(out / 'results.csv').resolve()}")
    if report:
        print(f"report: {report.resolve()}  (figures: {(out / 'figures').resolve()})")
    if failed:
        print(f"{len(failed)} run(s) failed; see their status.json:", file=sys.stderr)
        for s in failed:
            print(f"  {s['run_id']}: {s['error']}", file=sys.stderr)
        return 1
    return 0


def _print_claims(table, out: Path, target_fraction: float) -> None:
    """Write ``claims.csv`` beside the results and print the claims table."""
    from .claims import claims_table, format_claims

    claims = claims_table(table, target_fraction=target_fraction)
    claims.to_csv(out / "claims.csv", index=False)
    print(
        "\nThe design texts' claims (value [95% interval over seeds, paired by seed]; "
        f"{(out / 'claims.csv').resolve()}):"
    )
    print(format_claims(claims))


def _cmd_report(args: argparse.Namespace) -> int:
    from . import experiments as E

    html = E.make_report(
        args.out_dir,
        html_path=args.html,
        figures_dir=args.figures,
        target_fraction=args.target_fraction,
        baseline=args.baseline,
    )
    figures = Path(args.figures) if args.figures else Path(args.out_dir) / "figures"
    print(f"report: {html.resolve()}")
    print(f"figures: {figures.resolve()}")
    return 0


def _has_option(args: list[str], *names: str) -> bool:
    """Whether ``args`` set one of the options ``names`` (``--x v``, ``--x=v``)."""
    return any(a == n or a.startswith(n + "=") for a in args for n in names)


def lab_command(extra: list[str]) -> list[str]:
    """The JupyterLab command line of ``gapscope lab`` with the user's options ``extra``.

    Unknown options pass through to JupyterLab (a ``--`` separator is dropped). The
    server binds 127.0.0.1 unless ``extra`` names an address (``--ip``,
    ``--ServerApp.ip``); run as root (euid 0), ``--allow-root`` is added, since JupyterLab
    otherwise refuses to start.
    """
    extra = [a for a in extra if a != "--"]  # a separator, never a path for JupyterLab
    from .experiments import NOTEBOOK_DIR

    cmd = [sys.executable, "-m", "jupyterlab"]
    if not _has_option(extra, "--notebook-dir", "--ServerApp.root_dir", "--ServerApp.notebook_dir"):
        cmd.append(f"--notebook-dir={NOTEBOOK_DIR}")
    if not _has_option(extra, "--ip", "--ServerApp.ip"):
        cmd.append("--ServerApp.ip=127.0.0.1")
    geteuid = getattr(os, "geteuid", None)
    if geteuid is not None and geteuid() == 0:
        if not _has_option(extra, "--allow-root", "--ServerApp.allow_root", "--no-allow-root"):
            cmd.append("--allow-root")
    return cmd + extra


def _run_forwarding_signals(cmd: list[str]) -> int:
    """Run ``cmd`` and wait for it; SIGTERM / SIGHUP to this process are passed on to it.

    Without that, stopping ``gapscope lab`` with a plain terminate (a service manager, a
    test's ``proc.terminate()``) ended only this wrapper and left JupyterLab running,
    re-parented to init. Ctrl-C reaches both already (it goes to the process group).
    """
    import signal

    proc = subprocess.Popen(cmd)
    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    old = {}
    for n in names:
        sig = getattr(signal, n)
        old[sig] = signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:  # the server got it too; wait for its shutdown
                continue
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _cmd_lab(args: argparse.Namespace) -> int:
    return _run_forwarding_signals(lab_command(args.extra))


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
    p.add_argument(
        "--ray-address",
        default=None,
        help="with --engine ray: a running cluster, e.g. ray://head:10001 "
        "(default: $RAY_ADDRESS, else a local Ray on 127.0.0.1)",
    )
    p.add_argument("--no-resume", action="store_true", help="re-run finished runs too")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.set_defaults(fn=_cmd_run)
    p = sub.add_parser("report", help="render the HTML report of a run folder")
    p.add_argument("out_dir")
    p.add_argument("--html", default=None, help="the HTML file (default: OUT_DIR/report.html)")
    p.add_argument(
        "--figures", default=None, help="PNG and SVG figures folder (default: OUT_DIR/figures)"
    )
    p.add_argument("--baseline", default="random", help="strategy to measure savings against")
    p.add_argument(
        "--target-fraction",
        type=float,
        default=0.95,
        help="labels to target: this share of the full-data model's accuracy (default 0.95)",
    )
    p.set_defaults(fn=_cmd_report)
    p = sub.add_parser(
        "lab",
        help="open JupyterLab on the notebooks (other options go to JupyterLab)",
        description="Open JupyterLab on the shipped notebooks, bound to 127.0.0.1 unless an "
        "--ip is given. Every other option passes through to JupyterLab, e.g. "
        "`gapscope lab --no-browser --port 8890`.",
    )
    p.set_defaults(fn=_cmd_lab)
    args, unknown = parser.parse_known_args(argv)
    if args.command == "lab":
        args.extra = unknown
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
