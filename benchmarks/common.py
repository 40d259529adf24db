"""Shared by the benchmark scripts: machine details and JSON output. Benchmarks never assert on time."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gradlab.atomic import write_text
from gradlab.parallel import available_cpus

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": available_cpus(),  # the CPUs this process may use (its affinity), not the machine's
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_steps(model, opt, batch, steps: int, recording, device: torch.device, **step_options) -> list[float]:
    """Seconds of each of `steps` training steps (zero_grad, cross-entropy forward, backward, optimizer step and,
    when `recording` yields a recorder, rec.step(step, loss=..., **step_options)) inside the `recording` context."""
    x, y = batch
    times = []
    with recording as rec:
        for step in range(steps):
            sync(device)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            if rec is not None:
                rec.step(step, loss=loss, **step_options)
            sync(device)
            times.append(time.perf_counter() - t0)
    return times


def step_parser(doc: str) -> argparse.ArgumentParser:
    """The options every training-step overhead benchmark takes (rounds, steps, size, batch, device, threads,
    --smoke, --breakdown); `smoke_sized` applies --smoke after parsing."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=10, help="steps per mode per round")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="2 rounds of 2 steps at 32x32")
    parser.add_argument("--breakdown", action="store_true", help="also time the recorder with parts switched off")
    return parser


def smoke_sized(args: argparse.Namespace) -> argparse.Namespace:
    if args.smoke:
        args.rounds, args.steps, args.size, args.batch = 2, 2, 32, 2
    return args


def median(values: list[float]) -> float:
    return statistics.median(values)


def round_ratios(rounds: dict, base) -> dict:
    """Per mode, from the step times of each of its rounds (`rounds[mode]` = a list of rounds, each a list of
    seconds per step; the modes alternate round by round): ms per step (the median over rounds of a round's mean,
    so that a mode recording one step in ten pays for it) and the ratio to mode `base`, as the median over
    rounds of round mean / the base's round mean of the same round, with its quartiles q1, q3."""
    means = {mode: [statistics.fmean(r) for r in per_round] for mode, per_round in rounds.items()}
    rows = {}
    for mode, per_round in means.items():
        ratios = [t / b for t, b in zip(per_round, means[base])]
        q1, q2, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
        rows[mode] = {"median_ms": 1e3 * statistics.median(per_round), "ratio": q2, "ratio_q1": q1, "ratio_q3": q3,
                      "rounds": len(per_round), "steps_per_round": len(rounds[mode][0])}
    return rows


def ratio_text(row: dict) -> str:
    """'1.023 (1.010-1.041)': the median per-round ratio and its quartiles."""
    return f"{row['ratio']:.3f} ({row['ratio_q1']:.3f}-{row['ratio_q3']:.3f})"


def write_json(name: str, payload: dict) -> Path:
    """Write benchmarks/results/NAME.json atomically."""
    path = RESULTS / f"{name}.json"
    write_text(path, json.dumps({"machine": machine(), **payload}, indent=2))
    return path


def layer_parser(doc: str, sizes: dict, rounds_help: str) -> argparse.ArgumentParser:
    """The options the layer benchmarks share: sizes, rounds, device, threads, breakdown, allocator, smoke."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=list(sizes), default=list(sizes))
    parser.add_argument("--rounds", type=int, default=None, help=rounds_help)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--breakdown", action="store_true", help="also profile where the time goes")
    parser.add_argument("--system-malloc", action="store_true", help="leave glibc's allocator as it is (noisy)")
    parser.add_argument("--smoke", action="store_true", help="a few rounds at a tiny size")
    return parser
