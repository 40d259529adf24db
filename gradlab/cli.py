"""`gradlab` command line: a thin shell over the library. User errors print one line and exit with status 2."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator

from gradlab.errors import GradlabError


def _demo(args: argparse.Namespace) -> int:
    from gradlab.demo import run_demo

    run_demo(args.out, steps=args.steps)
    return 0


def _train(args: argparse.Namespace) -> int:
    from gradlab.train import RunDirectory, load_config, train

    if args.resume:
        if args.out is None:
            raise GradlabError("--resume needs --out RUN_DIR: the run directory to continue")
        config = RunDirectory(args.out).config(args.set)
    else:
        config = load_config(args.config, args.set)
    out = args.out or f"runs/{config.model.kind}-T{config.model.iterations}-seed{config.seed}"
    run = train(config, out, resume=args.resume, progress=not args.quiet)
    print(f"run directory: {run.path}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from gradlab.report import build_report

    with _warnings_on_stderr():
        paths = build_report(args.runs, args.out, title=args.title)
    print(paths.html)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from gradlab.report import compare_runs, format_comparison

    with _warnings_on_stderr():
        table = compare_runs(args.runs, by=args.by, quantity=args.quantity, metric=args.metric,
                             fraction=args.fraction)
    print(format_comparison(table, fraction=args.fraction))
    return 0


def _attribute(args: argparse.Namespace) -> int:
    from gradlab.attribution import attribute_run

    files = attribute_run(args.run, images=args.images, methods=args.method or None, out=args.out)
    for path in files.paths:
        print(path)
    return 0


@contextlib.contextmanager
def _warnings_on_stderr() -> Iterator[None]:
    """Warnings (a skipped records part, a partial run) as one line each: `gradlab: warning: ...`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for message in dict.fromkeys(str(w.message) for w in caught):
                print(f"gradlab: warning: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    from gradlab.train.config import describe_keys

    parser = argparse.ArgumentParser(prog="gradlab", description="Gradient-flow diagnostics for unrolled EM / HEM.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train an EM and an HEM model briefly and compare their gradient decay")
    demo.add_argument("--out", default="runs/demo", help="folder for the two run directories (default runs/demo)")
    demo.add_argument("--steps", type=int, default=None, help="training steps per model (default: the demo preset)")
    demo.set_defaults(func=_demo)

    tr = sub.add_parser("train", help="train a segmentation model with an EM/HEM head",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="config keys (name, default, meaning [allowed]):\n" + describe_keys())
    tr.add_argument("config", nargs="?", default=None, help="TOML file or preset name in configs/ (e.g. demo)")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key (repeatable)")
    tr.add_argument("--out", default=None, help="run directory (default runs/<kind>-T<iterations>-seed<seed>)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_train)

    rep = sub.add_parser("report", help="write a self-contained HTML report (and a Markdown summary) of runs")
    rep.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories, or folders of them")
    rep.add_argument("--out", default=None,
                     help="report folder (default RUN_DIR/report for one run, ./report for several)")
    rep.add_argument("--title", default=None, help="the report's title")
    rep.set_defaults(func=_report)

    cmp = sub.add_parser("compare", help="print a table comparing groups of runs (estimate, 95%% CI, mIoU)")
    cmp.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories, or folders of them")
    cmp.add_argument("--by", action="append", default=[], metavar="KEY",
                     help="config key to group by, e.g. model.kind (repeatable; default: the keys that differ)")
    cmp.add_argument("--quantity", default="grad/x", help="per-iteration gradient to compare (default grad/x)")
    cmp.add_argument("--metric", default="decades", help="decay metric: decades, retention, rho, half_depth, ...")
    cmp.add_argument("--fraction", type=float, default=0.1, help="last fraction of each run's steps (default 0.1)")
    cmp.set_defaults(func=_compare)

    att = sub.add_parser("attribute", help="captum attributions of a trained run: the depth profile over the "
                         "unrolled iterations and input maps, for the report")
    att.add_argument("run", metavar="RUN_DIR", help="a trained run directory (uses checkpoints/last.pt)")
    att.add_argument("--images", type=int, default=4, help="how many validation images (default 4)")
    att.add_argument("--method", action="append", default=[], metavar="NAME",
                     help="integrated-gradients, gradient-x-activation, conductance (depth profile) or saliency "
                          "(input maps; integrated-gradients does both); repeatable, default all")
    att.add_argument("--out", default=None,
                     help="folder for the table and figures (default: RUN_DIR/attribution.parquet and "
                          "RUN_DIR/report/attribution_*.png, where gradlab report looks)")
    att.set_defaults(func=_attribute)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GradlabError as err:
        print(f"gradlab: error: {one_line(err)}", file=sys.stderr)
        return 2


def one_line(err: Exception) -> str:
    """The message on one line. A DataLoader worker re-raises "Caught DataError in DataLoader worker …" with
    the worker's traceback: its last line, "gradlab.errors.DataError: <message>", holds the message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    name, sep, message = lines[-1].partition(": ")
    return message if len(lines) > 1 and sep and name.endswith(type(err).__name__) else " ".join(lines)
