"""`gradlab` command line: a thin shell over the library. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import sys

from gradlab.errors import GradlabError


def _demo(args: argparse.Namespace) -> int:
    from gradlab.demo import run_demo

    run_demo(iterations=args.iterations, step_size=args.step_size, steps=args.steps)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="EM vs HEM: gradient reaching each unrolled iteration")
    demo.add_argument("--iterations", type=int, default=8, help="unrolled iterations T (default 8)")
    demo.add_argument("--step-size", type=float, default=0.5, help="HEM step size η (default 0.5)")
    demo.add_argument("--steps", type=int, default=30, help="training steps per model (default 30)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (GradlabError, ValueError) as err:
        print(f"gradlab: error: {err}", file=sys.stderr)
        return 2
