"""Loop recording overhead: a training step of the slot-attention example with `watch(loops=...)` on vs off.

The segmenter of examples/slot_attention.py (plain PyTorch, no gradlab inside) at T = 3 and T = 7 iterations,
trained on random 64 x 64 batches. Modes, per T: "off" (a plain step), the recorder with loops=["the GRU cell"]
recording every step and every 10th step, and loops="auto" every step (the six submodules slot attention calls T
times: GRU cell, LayerNorms, query projection, the MLP's layers). The modes and the two T alternate round by round
in one process, so drift in machine load hits all of them alike. Reported per mode: the ratio of a round's mean
step time to the "off" round of the same T next to it, median over rounds with quartiles (common.round_ratios).
Target (issue 17): <= 1.05 every step, <= 1.01 every 10th.

    python -m benchmarks.loops_overhead            # full run (~2-3 min on 2 CPU cores)
    python -m benchmarks.loops_overhead --smoke    # seconds; checks that it runs
    python -m benchmarks.loops_overhead --device cuda
    python -m benchmarks.loops_overhead --breakdown   # + the recorder without loops (its per-step cost alone)
                                                      #   and the loop without parameter-group norms
"""

from __future__ import annotations

import contextlib

import torch

import gradlab
from benchmarks.common import ratio_text, round_ratios, smoke_sized, step_parser, timed_steps, write_json
from examples.slot_attention import SlotSegmenter

CLASSES = 11
GRU = "slot_attention.gru"
MODES = ("off", "every step", "every 10th", "auto, every step")
#: --breakdown: the recorder with no loop (group norms and the per-step sync only), the loop without group norms
BREAKDOWN = ("no loops", "loop, no group norms")


@contextlib.contextmanager
def recording(model, mode: str):
    """The recorder that `mode` switches on; yields it, or None for "off"."""
    if mode == "off":
        yield None
        return
    options = {
        "every step": {"loops": [GRU]},
        "every 10th": {"loops": [GRU], "every": 10},
        "auto, every step": {"loops": "auto"},
        "no loops": {},
        "loop, no group norms": {"loops": [GRU], "groups": {}},
    }[mode]
    with gradlab.watch(model, **options) as rec:
        yield rec


def run_round(model, opt, batch, steps: int, mode: str, device) -> list[float]:
    return timed_steps(model, opt, batch, steps, recording(model, mode), device)


def main() -> None:
    parser = step_parser(__doc__)
    parser.add_argument("--iterations", type=int, nargs="+", default=[3, 7], help="slot-attention iterations T")
    args = smoke_sized(parser.parse_args())
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    setups = {}
    for T in args.iterations:
        torch.manual_seed(0)
        model = SlotSegmenter(CLASSES, iterations=T).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        batch = (torch.randn(args.batch, 3, args.size, args.size, device=device),
                 torch.randint(0, CLASSES, (args.batch, args.size, args.size), device=device))
        run_round(model, opt, batch, 3, "off", device)  # warm-up
        setups[T] = (model, opt, batch)
    modes = MODES + BREAKDOWN if args.breakdown else MODES
    rounds: dict[tuple[int, str], list[list[float]]] = {(T, m): [] for T in setups for m in modes}
    for _ in range(args.rounds):
        for T, (model, opt, batch) in setups.items():
            for mode in modes:
                rounds[(T, mode)].append(run_round(model, opt, batch, args.steps, mode, device))
    rows = {}
    for T in setups:
        per_T = round_ratios({mode: rounds[(T, mode)] for mode in modes}, "off")
        rows |= {f"T={T}, {mode}": {"T": T, "mode": mode, **row} for mode, row in per_T.items()}
    print(f"loop recording overhead: examples/slot_attention.py SlotSegmenter, {args.size}x{args.size}, batch "
          f"{args.batch}, {args.device}, {torch.get_num_threads()} threads; loops=[{GRU!r}] unless auto; "
          f"{args.rounds} rounds of {args.steps} steps per mode")
    print(f"{'T':>2} {'mode':<22} {'ms/step':>8}  ratio (per-round quartiles)")
    for row in rows.values():
        print(f"{row['T']:>2} {row['mode']:<22} {row['median_ms']:>8.2f}  {ratio_text(row)}")
    if not args.smoke:
        name = f"loops_overhead_{device.type}_{args.size}" + ("_breakdown" if args.breakdown else "")
        path = write_json(name, {"args": vars(args), "results": rows})
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
