"""`gradlab` command line: a thin shell over the library. User errors print one line and exit with status 2."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from gradlab.errors import GradlabError


def _demo(args: argparse.Namespace) -> int:
    from gradlab.demo import run_demo

    run_demo(args.out, steps=args.steps)
    return 0


def _train(args: argparse.Namespace) -> int:
    from gradlab.train import load_config, train
    from gradlab.train.config import resume_config
    from gradlab.train.trainer import TrainingInterrupted

    if args.list_presets:
        return _list_presets(args)
    if args.resume:
        if args.out is None:
            raise GradlabError("--resume needs --out RUN_DIR: the run directory to continue")
        config = resume_config(args.out, args.set)
    else:
        config = load_config(args.config, args.set)
    out = args.out or f"runs/{config.model.kind}-T{config.model.iterations}-seed{config.seed}"
    try:
        run = train(config, out, resume=args.resume, progress=not args.quiet)
    except TrainingInterrupted as err:  # meta.json says "interrupted"; the line is rank 0's alone
        if err.main:
            print(f"gradlab: interrupted: {err}", file=sys.stderr)
        if err.hard_exit:
            _exit_now(128 + err.signum)
        return 128 + err.signum
    print(f"run directory: {run.path}")
    return 0


def _list_presets(args: argparse.Namespace) -> int:
    """`gradlab train --list-presets`: each preset's name and the first sentence of its leading comment."""
    from gradlab.train.config import preset_names, preset_text

    given = [name for name, on in ((f"a config ({args.config})", args.config is not None), ("--set", args.set),
                                   ("--out", args.out is not None), ("--resume", args.resume)) if on]
    if given:
        raise GradlabError(f"--list-presets cannot be combined with {', '.join(given)}: it only prints the presets")
    for name in preset_names():
        comment = []
        for line in preset_text(name).splitlines():
            if not line.startswith("#"):
                break
            comment.append(line.lstrip("#").strip())
        print(f"{name:<10} {' '.join(comment).split('. ')[0].removesuffix('.')}".rstrip())
    return 0


def _ablate(args: argparse.Namespace) -> int:
    from gradlab.ablate import parse_axis, run_ablation

    axes = [parse_axis(text) for text in args.grid]
    if not axes:
        raise GradlabError("give at least one --grid KEY=V1,V2 (e.g. --grid model.iterations=1,3,8)")
    jobs = {}
    if args.executor == "slurm":
        from gradlab.ablate import executors

        out = Path(args.out)
        jobs = {"executor": executors.slurm_executor(
            out, partition=args.slurm_partition, gpus_per_trial=args.slurm_gpus_per_trial, minutes=args.slurm_time,
            array_parallelism=args.slurm_array_parallelism), "job_state": partial(executors.slurm_state, out),
            "wait": args.wait, "processes": args.slurm_gpus_per_trial}  # one DDP process per GPU of a trial
    try:
        with _warnings_on_stderr():
            result = run_ablation(args.config, axes, args.seeds, args.out, overrides=args.set, workers=args.workers,
                                  threads=args.threads, quick=args.quick, report=not args.no_report,
                                  gpus=args.gpus, earlier=args.earlier, **jobs)
    except KeyboardInterrupt as err:  # the running trials were stopped and marked "interrupted" (ablate.runner)
        signum = getattr(err, "signum", signal.SIGINT)
        print(f"gradlab: interrupted: {str(err) or signal.Signals(signum).name}; run the same command again to "
              f"continue {args.out}", file=sys.stderr)
        return 128 + signum
    if result.summary is not None:
        print(f"summary: {result.out / 'summary.md'}" + (f"\nreport: {result.report}" if result.report else ""))
    elif result.pending:
        done = sum(o.state in ("done", "skipped", "earlier") for o in result.outcomes)
        print(f"ablation: {done} of {len(result.trials)} runs done, {len(result.pending)} with the scheduler; "
              f"run the same command again to see where they stand (the summary comes once all are done)")
    if result.failed:
        names = ", ".join(o.trial.name for o in result.failed)
        print(f"gradlab: error: {len(result.failed)} of {len(result.trials)} runs failed ({names}): see "
              f"{result.out / 'logs'}", file=sys.stderr)
        return 1
    return 0


def _device_list(text: str) -> tuple[str, ...]:
    devices = tuple(d.strip() for d in text.split(","))
    if not all(d.isdigit() for d in devices):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of GPU indices such as 0,1,2")
    return devices


def _report(args: argparse.Namespace) -> int:
    from gradlab.report import build_report

    with _warnings_on_stderr():
        paths = build_report(args.runs, args.out, title=args.title)
    print(paths.html)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from gradlab.records import INPUT_GRADIENT
    from gradlab.report import compare_runs, format_comparison

    with _warnings_on_stderr():
        table = compare_runs(args.runs, by=args.by, quantity=args.quantity or INPUT_GRADIENT, metric=args.metric,
                             fraction=args.fraction)
    print(format_comparison(table, fraction=args.fraction))
    return 0


def _attribute(args: argparse.Namespace) -> int:
    from gradlab.attribution import attribute_run

    files = attribute_run(args.run, images=args.images, methods=args.method or None, out=args.out)
    for path in files.paths:
        print(path)
    return 0


def _export(args: argparse.Namespace) -> int:
    from gradlab.integrations.tensorboard import export_runs

    with _warnings_on_stderr():
        folders = export_runs(args.runs, args.logdir)
    for folder in folders:
        print(folder)
    print(f"tensorboard --logdir {args.logdir}")
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


class _Terminated(KeyboardInterrupt):
    """SIGTERM while a command runs: it stops as on Ctrl-C (one line, exit status 143)."""

    signum = signal.SIGTERM


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM raises `_Terminated` (in the main thread, unless SIGTERM is ignored); the
    previous handler comes back after it. `gradlab train` and `ablate` handle both signals themselves inside."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) in (
            signal.SIG_IGN, None):
        yield
        return

    def terminate(signum, frame):
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(err: KeyboardInterrupt, command: str) -> int:
    """Ctrl-C or SIGTERM: one line and exit status 128 + the signal. Every file is written atomically, so what
    the command had not finished is absent, never half-written."""
    signum = getattr(err, "signum", signal.SIGINT)
    what = str(err) or f"{signal.Signals(signum).name} before gradlab {command} finished (no file is left half-written)"
    print(f"gradlab: interrupted: {what}", file=sys.stderr)
    return 128 + signum


class _Parser(argparse.ArgumentParser):
    """Usage errors (an unknown option, `--seeds abc`) as one line and exit status 2, like every other error."""

    def error(self, message: str):
        print(f"gradlab: error: {one_line(message)} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def in_path(text: str) -> str:
    """A path argument: any text a file name can be (not empty, no NUL byte)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path: give a file or folder name")
    if "\x00" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a path: it holds a NUL byte")
    return text


def out_path(text: str) -> str:
    """An --out folder: a path whose existing part is a folder (not a file, nor under one), checked before any
    work is done, so that a bad --out never costs a run."""
    path = Path(in_path(text))
    try:
        blocked = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    except OSError as err:  # a name too long for the file system
        raise argparse.ArgumentTypeError(f"{text[:60]!r}... cannot be a folder: {err.strerror}") from None
    if blocked is not None:
        raise argparse.ArgumentTypeError(f"{text!r} cannot be a folder: {blocked} is a file")
    return text


def build_parser() -> argparse.ArgumentParser:
    from gradlab.train.config import describe_keys, preset_names

    presets = ", ".join(preset_names())

    parser = _Parser(prog="gradlab", description="Gradient-flow diagnostics for unrolled EM / HEM.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train an EM and an HEM model briefly and compare their gradient decay")
    demo.add_argument("--out", type=out_path, default="runs/demo",
                      help="folder for the two run directories (default runs/demo)")
    demo.add_argument("--steps", type=int, default=None, help="training steps per model (default: the demo preset)")
    demo.set_defaults(func=_demo)

    tr = sub.add_parser("train", help="train a segmentation model with an EM/HEM head",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=f"presets: {presets} (gradlab train --list-presets)\n\n"
                               "config keys (name, default, meaning [allowed]):\n" + describe_keys())
    tr.add_argument("config", nargs="?", type=in_path, default=None,
                    help=f"a TOML file, or the name of a preset shipped with gradlab ({presets})")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key (repeatable)")
    tr.add_argument("--out", type=out_path, default=None,
                    help="run directory (default runs/<kind>-T<iterations>-seed<seed>)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.add_argument("--list-presets", action="store_true", help="print the presets with a line on each, and exit")
    tr.set_defaults(func=_train)

    abl = sub.add_parser("ablate", help="run a grid of configurations x seeds (resumable) and summarise it",
                         description="Each grid point and seed is its own run directory under --out. Finished "
                         "runs are skipped and unfinished ones resumed, so rerunning the same command continues "
                         "an interrupted ablation. Writes summary.md / summary.csv (CIs over seeds), "
                         "runs.csv, curves.csv, contrast.md (EM and HEM), ablation.png, curves.png and report/.")
    abl.add_argument("config", nargs="?", type=in_path, default=None, help=f"base TOML file or preset ({presets})")
    abl.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                     help="an axis of the grid, any config key (repeatable), e.g. model.iterations=1,3,8; keys "
                          "linked by ':' vary together, e.g. model.grad_mode:model.grad_iterations="
                          "unrolled:1,implicit:all")
    abl.add_argument("--seeds", type=int, default=1, help="seeds per grid point: seed, seed+1, ... (default 1)")
    abl.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    abl.add_argument("--out", type=out_path, default="runs/ablation", help="folder of the runs (default runs/ablation)")
    abl.add_argument("--workers", type=int, default=1, help="runs trained at once (default 1)")
    abl.add_argument("--threads", type=int, default=None,
                     help="torch threads per run (default: the CPUs this process may use / workers)")
    abl.add_argument("--quick", action="store_true",
                     help="smoke-sized runs (few steps, one small validation): checks a grid end to end in "
                          "minutes; its numbers mean nothing")
    abl.add_argument("--no-report", action="store_true", help="skip the combined HTML report")
    abl.add_argument("--earlier", type=in_path, default=None, metavar="DIR",
                     help="the folder of an earlier run of this ablation elsewhere (its ablation.json and runs.csv, "
                          "e.g. committed from another machine): its trials are not run again and their rows join "
                          "the summary and OUT/runs.csv")
    abl.add_argument("--gpus", type=_device_list, default=(), metavar="0,1,...",
                     help="give each running trial its own GPU of this list (CUDA_VISIBLE_DEVICES)")
    cluster = abl.add_argument_group("on a cluster (SLURM through submitit: pip install 'gradlab[slurm]')")
    cluster.add_argument("--executor", choices=("local", "slurm"), default="local",
                         help="local: subprocesses on this machine (default); slurm: one job array, and the "
                              "command returns once it is submitted (run it again to see where every trial "
                              "stands; the summary comes once all are done)")
    cluster.add_argument("--slurm-partition", default=None, metavar="P", help="the partition to submit to")
    cluster.add_argument("--slurm-gpus-per-trial", type=int, default=1, metavar="N", help="GPUs per trial (default 1)")
    cluster.add_argument("--slurm-time", type=int, default=240, metavar="MIN",
                         help="time limit per job in minutes (default 240); a timed-out or preempted trial is "
                              "requeued and resumes from its last checkpoint")
    cluster.add_argument("--slurm-array-parallelism", type=int, default=None, metavar="N",
                         help="at most N trials of the array at once")
    cluster.add_argument("--wait", action="store_true", help="with --executor slurm: wait for every trial")
    abl.set_defaults(func=_ablate)

    rep = sub.add_parser("report", help="write a self-contained HTML report (and a Markdown summary) of runs")
    rep.add_argument("runs", nargs="+", type=in_path, metavar="RUN_DIR", help="run directories, or folders of them")
    rep.add_argument("--out", type=out_path, default=None,
                     help="report folder (default RUN_DIR/report for one run, ./report for several)")
    rep.add_argument("--title", default=None, help="the report's title")
    rep.set_defaults(func=_report)

    cmp = sub.add_parser("compare", help="print a table comparing groups of runs (estimate, 95%% CI, mIoU)")
    cmp.add_argument("runs", nargs="+", type=in_path, metavar="RUN_DIR", help="run directories, or folders of them")
    cmp.add_argument("--by", action="append", default=[], metavar="KEY",
                     help="config key to group by, e.g. model.kind (repeatable; default: the keys that differ)")
    cmp.add_argument("--quantity", default=None, help="per-iteration gradient to compare (default: each "
                     "layer's input gradient, grad/x of an EM layer or grad/in of a watched loop)")
    cmp.add_argument("--metric", default="decades", help="decay metric: decades, retention, rho, half_depth, ...")
    cmp.add_argument("--fraction", type=float, default=0.1, help="last fraction of each run's steps (default 0.1)")
    cmp.set_defaults(func=_compare)

    att = sub.add_parser("attribute", help="captum attributions of a trained run: the depth profile over the "
                         "unrolled iterations and input maps, for the report")
    att.add_argument("run", type=in_path, metavar="RUN_DIR", help="a trained run directory (uses checkpoints/last.pt)")
    att.add_argument("--images", type=int, default=4, help="how many validation images (default 4)")
    att.add_argument("--method", action="append", default=[], metavar="NAME",
                     help="integrated-gradients, gradient-x-activation, conductance (depth profile) or saliency "
                          "(input maps; integrated-gradients does both); repeatable, default all")
    att.add_argument("--out", type=out_path, default=None,
                     help="folder for the table and figures (default: RUN_DIR/attribution.parquet and "
                          "RUN_DIR/report/attribution_*.png, where gradlab report looks)")
    att.set_defaults(func=_attribute)

    exp = sub.add_parser("export", help="write run directories in a tracker's format (tensorboard: event files)",
                         description="Each run directory becomes a TensorBoard run under --logdir: the per-step "
                         "summary of its records (decades, rho, gain, regime per layer, the per-iteration norms) "
                         "with a custom-scalars layout, and metrics.parquet. Needs gradlab[tensorboard].")
    exp.add_argument("format", choices=["tensorboard"], help="the format (tensorboard)")
    exp.add_argument("runs", nargs="+", type=in_path, metavar="RUN_DIR", help="run directories, or folders of them")
    exp.add_argument("--logdir", type=out_path, required=True, help="folder of the event files, one subfolder per run")
    exp.set_defaults(func=_export)
    return parser


#: what a user's input can cause beyond gradlab's own checks (a path that cannot be written, an allocation too
#: large for the machine, undecodable text): one line and exit 2, like a GradlabError. Anything else is a bug and
#: keeps its traceback; GRADLAB_DEBUG=1 shows the traceback of these too.
USER_ERRORS = (GradlabError, OSError, MemoryError, OverflowError, UnicodeError)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)  # builds the key table (imports torch): a second or more
    except KeyboardInterrupt as err:
        return _interrupted(err, "start-up")
    try:
        with _sigterm_as_interrupt():
            return args.func(args)
    except USER_ERRORS as err:
        if os.environ.get("GRADLAB_DEBUG"):
            raise
        print(f"gradlab: error: {one_line(describe(err))}", file=sys.stderr)
        if getattr(err, "hard_exit", False):
            _exit_now(2)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (_sigterm_as_interrupt): one line, 130 / 143
        return _interrupted(err, args.command)


def describe(err: BaseException) -> str:
    """One line for a user's error: a GradlabError's own message; for an OS error what failed on which path."""
    if isinstance(err, OSError) and not isinstance(err, GradlabError) and err.strerror:
        paths = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
        return f"{err.strerror}: {paths}" if paths else err.strerror
    if isinstance(err, MemoryError):
        return f"out of memory ({one_line(err) or 'a size too large for this machine'}): use smaller sizes"
    return one_line(err)


def _exit_now(status: int) -> None:
    """Leave without the interpreter's shutdown: after a peer rank died, gloo's threads can abort it (SIGABRT,
    "terminate called without an active exception"), turning the one-line exit 2 into a crash. The message is
    printed, records are flushed and meta.json says "failed" by now."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def one_line(err: Exception | str) -> str:
    """The message on one line. A DataLoader worker re-raises "Caught DataError in DataLoader worker …" with
    the worker's traceback: its last line, "gradlab.errors.DataError: <message>", holds the message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    if isinstance(err, str):
        return " ".join(lines)
    name, sep, message = lines[-1].partition(": ")
    return message if len(lines) > 1 and sep and name.endswith(type(err).__name__) else " ".join(lines)
