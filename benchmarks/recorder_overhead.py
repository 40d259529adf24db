"""Recorder overhead: training-step time with the recorder on (every step, every 10th) vs off, at the recorder's
defaults (everything on every recorded step) and with the diagnostics on their own schedule (every step recorded,
the forward diagnostics, agreement and branch norms on every 10th: diagnostics_every=10).

The modes alternate round by round in one process, so drift in machine load hits all of them alike. A round is
`--steps` consecutive steps of one mode; its mean step time (so that "every 10th" pays for its recorded step) is
compared with the "off" round next to it. Reported: the median over rounds of that ratio, with its quartiles.
Targets (issue 21): <= 1.03 every step, <= 1.005 every 10th. "every step" rounds are 10 steps from step 0: with
diagnostics_every=10 the first of each round is diagnosed, one step in ten.

    python -m benchmarks.recorder_overhead                 # full run (~1 min on 2 CPU cores)
    python -m benchmarks.recorder_overhead --model small   # four conv blocks + HEM T=5: about half the step time
    python -m benchmarks.recorder_overhead --smoke         # seconds; checks that it runs
    python -m benchmarks.recorder_overhead --device cuda
    python -m benchmarks.recorder_overhead --breakdown     # + trace only, no diagnostics, no group norms,
        # log=; the ledger of the EMA unit's parts, the parts of closing a step, one σ_t estimate
"""

from __future__ import annotations

import contextlib
import statistics
import time
from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn

import gradlab
from benchmarks.common import median, ratio_text, round_ratios, smoke_sized, step_parser, sync, timed_steps, write_json
from gradlab.analysis import regime
from gradlab.instrument import recorder as recorder_module
from gradlab.instrument.groups import group_grad_norms
from gradlab.instrument.jacobian import state_jacobian_norms
from gradlab.instrument.recorder import _to_host
from gradlab.integrations.metrics import REGIME_WINDOW
from gradlab.layers import EMSpec, HEMLayer
from gradlab.models import SegmentationNet, build_model, parameter_groups

#: the recorder's defaults, and every step with the diagnostics (forward diagnostics, agreement, branch norms) on
#: every 10th step
MODES = ("off", "every step", "every 10th", "every step, diag. 10th")
#: --breakdown: which part costs what ("no diagnostics": diagnostics_every=0, the gradient norms alone)
BREAKDOWN = ("trace only", "no diagnostics", "no group norms", "log=")


def small_backbone(width: int = 64) -> nn.Module:
    """Four conv blocks (3×3 conv, BN, ReLU; strides 2, 2, 2, 1): a segmentation-like model whose steps are about
    half as long as the tiny ResNet's, where the recorder's fixed per-step cost weighs the most."""
    blocks, channels = [], 3
    for stride in (2, 2, 2, 1):
        blocks += [nn.Conv2d(channels, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        channels = width
    backbone = nn.Sequential(*blocks)
    backbone.out_channels = width
    return backbone


def build(args) -> nn.Module:
    """The benchmark's model: `--model tiny` (tiny dilated ResNet + HEM unit) or `small` (small_backbone + HEM)."""
    if args.model == "small":
        return SegmentationNet(11, small_backbone(), em=HEMLayer(64, args.bases, args.iterations or 5))
    return build_model(11, EMSpec("hem", bases=args.bases, iterations=args.iterations or 6),
                       backbone=args.backbone, channels=args.channels)


@contextlib.contextmanager
def recording(model, mode: str):
    """The recorder (or the part of it) that `mode` switches on; yields it or None."""
    layer = model.head.ema.em
    if mode == "off":
        yield None
    elif mode == "trace only":
        layer.tracing = True
        yield None
        layer.tracing = False
    else:
        groups = {} if mode == "no group norms" else parameter_groups
        every = 10 if mode == "every 10th" else 1
        diagnostics = {"every step, diag. 10th": {"diagnostics_every": 10}, "no diagnostics": {"diagnostics_every": 0}}
        # σ_t has its own sparse schedule, timed on its own below (jacobian_cost)
        log = (lambda metrics, step: None) if mode == "log=" else None  # the tracker itself costs nothing
        with gradlab.watch(model, every=every, groups=groups, jacobian_every=0, log=log,
                           **diagnostics.get(mode, {})) as rec:
            yield rec


def run_round(model, opt, batch, steps: int, mode: str, device) -> list[float]:
    return timed_steps(model, opt, batch, steps, recording(model, mode), device, lr=0.01)


def jacobian_cost(model, batch, calls: int) -> float:
    """Median seconds of one σ_t estimate (all T iterations, HEM's EM part too, default images and power steps)."""
    layer = model.head.ema.em
    layer.tracing = True
    model(batch[0])
    trace, layer.tracing = layer.trace, False
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        [v.sum().item() for _, _, v in state_jacobian_norms(layer, trace)]
        times.append(time.perf_counter() - t0)
    return median(times)


def regime_window_cost(model, opt, batch, device, calls: int) -> float:
    """Median seconds of the regime verdict that `log=` computes once per REGIME_WINDOW recorded steps."""
    with gradlab.watch(model, groups=parameter_groups, jacobian_every=0) as rec:
        timed_steps(model, opt, batch, REGIME_WINDOW, contextlib.nullcontext(rec), device)
    frame = rec.frame()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        regime(frame, fraction=1.0)
        times.append(time.perf_counter() - t0)
    return median(times)


#: --breakdown's ledger: the EMA unit's forward + backward with parts of the recording switched on one at a time,
#: each paired step by step with an unrecorded one (the difference of neighbours cancels this machine's drift)
LEDGER = {
    "tracing (states kept, no taps)": dict(recording=False, tracing=True),
    "hooks, doing nothing": dict(recording=True, patches=lambda: [
        mock.patch.object(recorder_module.Recorder, "_on_grad", lambda self, key, grad: None)]),
    "hooks + norms": dict(recording=True, patches=lambda: [
        mock.patch.object(recorder_module.Recorder, "_on_grad",
                          lambda self, key, grad: self._norms.__setitem__(key, recorder_module.l2_norm(grad)))]),
    "hooks + norms + agreement": dict(recording=True),
    "all (+ tracing, diagnostics)": dict(recording=True, tracing=True),
}


def unit_ledger(model, device, pairs: int) -> dict[str, dict]:
    """Extra ms of the EMA unit's forward + backward per LEDGER entry (median and quartiles over `pairs` pairs)."""
    unit = model.head.ema
    x = torch.randn(8, unit.em.channels, 8, 8, device=device, requires_grad=True)
    grad_y = torch.randn_like(x)
    rec = gradlab.watch(model, every=lambda step: step % 2 == 0, groups={}, jacobian_every=0)

    def forward_backward(recording: bool, tracing: bool) -> float:
        rec._open(0 if recording else 1)  # the schedule records even steps
        unit.em.tracing = tracing
        sync(device)
        t0 = time.perf_counter()
        unit(x).backward(grad_y)
        sync(device)
        rec._reset_pending()
        return time.perf_counter() - t0

    extra = {name: [] for name in LEDGER}
    for _ in range(max(pairs // 5, 2)):
        for name, spec in LEDGER.items():
            with contextlib.ExitStack() as stack:
                for patch in spec.get("patches", list)():
                    stack.enter_context(patch)
                for _ in range(5):
                    on = forward_backward(spec["recording"], spec.get("tracing", False))
                    extra[name].append(on - forward_backward(False, False))
    rec.close()
    rows = {}
    for name, values in extra.items():
        q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
        rows[name] = {"extra_ms": 1e3 * q2, "q1_ms": 1e3 * q1, "q3_ms": 1e3 * q3, "pairs": len(values)}
    return rows


def step_part_costs(model, opt, batch, device, calls: int) -> dict[str, float]:
    """Median ms of the parts of closing a recorded step, timed on a real step's state: the parameter-group norms,
    and turning the step's device values into rows (the one transfer, ~60 rows)."""
    with gradlab.watch(model, groups=parameter_groups, jacobian_every=0) as rec:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(batch[0]), batch[1]).backward()
        pending = (dict(rec._expected), dict(rec._norms), dict(rec._diagnostics))

        def close() -> None:
            rec._expected, rec._norms = dict(pending[0]), dict(pending[1])
            rec._diagnostics.update(pending[2])
            rec._close_step(0, None, None, None)

        def groups() -> None:
            _to_host([group_grad_norms(rec.groups)[1]])

        costs = {}
        for name, fn in (("group norms", groups), ("closing the step (incl. group norms)", close)):
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            costs[name] = 1e3 * median(times)
        rec._reset_pending()
    return costs


def main() -> None:
    parser = step_parser(__doc__)
    parser.add_argument("--model", choices=("tiny", "small"), default="tiny",
                        help="tiny: the tiny dilated ResNet + HEM T=6; small: four conv blocks + HEM T=5")
    parser.add_argument("--iterations", type=int, default=None, help="T (default 6 for tiny, 5 for small)")
    parser.add_argument("--bases", type=int, default=16)
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--channels", type=int, default=None, help="head / EM width (default: the backbone's)")
    args = smoke_sized(parser.parse_args())
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build(args).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batch = (torch.randn(args.batch, 3, args.size, args.size, device=device),
             torch.randint(0, 11, (args.batch, args.size, args.size), device=device))
    run_round(model, opt, batch, 3, "off", device)  # warm-up
    modes = MODES + BREAKDOWN if args.breakdown else MODES
    rounds: dict[str, list[list[float]]] = {m: [] for m in modes}
    for _ in range(args.rounds):
        for mode in modes:
            rounds[mode].append(run_round(model, opt, batch, args.steps, mode, device))
    rows = round_ratios(rounds, "off")
    name = args.backbone if args.model == "tiny" else "small (4 conv blocks)"
    print(f"recorder overhead: {name} + HEM T={model.em.num_iterations} K={args.bases}, {args.size}x{args.size}, "
          f"batch {args.batch}, {args.device}, {torch.get_num_threads()} threads, {args.rounds} rounds of "
          f"{args.steps} steps per mode")
    print(f"{'mode':<22} {'ms/step':>8}  ratio (per-round quartiles)")
    for mode, row in rows.items():
        print(f"{mode:<22} {row['median_ms']:>8.2f}  {ratio_text(row)}")
    if args.breakdown:
        window = regime_window_cost(model, opt, batch, device, 3 if args.smoke else 5)
        rows["log= regime window"] = {"median_ms": 1e3 * window, "per_recorded_step_ms": 1e3 * window / REGIME_WINDOW}
        print(f"log=: the regime of one window of {REGIME_WINDOW} recorded steps: {1e3 * window:.0f} ms, "
              f"{1e3 * window / REGIME_WINDOW:.2f} ms per recorded step (the 'log=' row above is the rest)")
        ledger = unit_ledger(model, device, 20 if args.smoke else 300)
        print("ledger: extra ms of the EMA unit's forward + backward (8 images, 8x8), paired with unrecorded ones:")
        for part, row in ledger.items():
            print(f"  {part:<36} {row['extra_ms']:6.3f} ms  (q1-q3 {row['q1_ms']:.3f}-{row['q3_ms']:.3f})")
        parts = step_part_costs(model, opt, batch, device, 5 if args.smoke else 200)
        for part, ms in parts.items():
            print(f"  {part:<36} {ms:6.3f} ms  (median of direct calls)")
        rows |= {f"ledger: {k}": v for k, v in ledger.items()}
        rows |= {f"step: {k}": {"median_ms": v} for k, v in parts.items()}
        cost = jacobian_cost(model, batch, 3 if args.smoke else 20)
        rows["σ_t estimate"] = {"median_ms": 1e3 * cost, "per_step_at_100_ms": 10 * cost}
        print(f"one σ_t estimate (T = {model.em.num_iterations}, {gradlab.instrument.jacobian.JACOBIAN_IMAGES} images, "
              f"{gradlab.instrument.jacobian.POWER_STEPS} power steps): {1e3 * cost:.1f} ms, "
              f"{10 * cost:.3f} ms per step at record.jacobian_every = 100")
    if not args.smoke:
        model_name = args.backbone if args.model == "tiny" else "small"
        name = f"recorder_overhead_{device.type}_{model_name}_{args.size}" + ("_breakdown" if args.breakdown else "")
        path = write_json(name, {"args": vars(args), "results": rows})
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
