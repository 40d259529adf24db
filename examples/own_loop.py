"""Your own training loop, recorded: plain PyTorch with mixed precision, gradient accumulation, a tracker fed
through `log=`, and `loops=` on a module gradlab knows nothing of (a GRU cell unrolled by the model's forward).

    python examples/own_loop.py --steps 40 --amp bf16 --accumulate 2 --out runs/own-loop
    python examples/own_loop.py --amp fp16 --tensorboard runs/own-loop-tb      # GradScaler; TensorBoard as tracker

The model reads scikit-learn's 8x8 handwritten digits as 8 rows: a GRU cell takes one row per call and the
classifier reads its last state, so the cell's calls are the unrolled iterations whose gradient gradlab records
(grad/in: the row each call gets, grad/out: the state it returns). What this shows:

- `--amp bf16`: autocast to bfloat16 (on CPU too); no loss scaling.
- `--amp fp16`: autocast to float16 with a `torch.amp.GradScaler`; the hooks see the scaled backward, so the step
  is closed with `grad_scale=scaler.get_scale()` (read before `scaler.update()` changes it), and a step whose
  gradients overflowed, which the scaler skips, is recorded with amp/skipped = 1.
- `--accumulate k`: k micro-batches per update, `rec.step` once per update (their norms add in quadrature).
- the tracker: a dict per step here (written to tracker.json), or TensorBoard with `--tensorboard DIR`; any
  `log(metrics, step)` callable fits (wandb.log needs a lambda: docs/integrations.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import gradlab


class RowReader(nn.Module):
    """(B, 8, 8) digits → 10 logits: a GRU cell called once per image row (8 calls: the unrolled loop)."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.embed = nn.Linear(8, hidden)
        self.cell = nn.GRUCell(hidden, hidden)
        self.classify = nn.Linear(hidden, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = images.new_zeros(images.shape[0], self.cell.hidden_size)
        for row in self.embed(images).unbind(1):
            h = self.cell(row, h)
        return self.classify(h)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=60, help="optimizer updates (default 60)")
    p.add_argument("--accumulate", type=int, default=2, help="micro-batches per update (default 2)")
    p.add_argument("--batch", type=int, default=32, help="images per micro-batch (default 32)")
    p.add_argument("--amp", choices=["bf16", "fp16", "off"], default="bf16", help="autocast dtype (default bf16)")
    p.add_argument("--every", type=int, default=5, help="record every k-th update (default 5)")
    p.add_argument("--out", type=Path, default=Path("runs/own-loop"), help="run directory of the records")
    p.add_argument("--tensorboard", type=Path, default=None, help="log the summary to TensorBoard event files here")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def tracker(args: argparse.Namespace):
    """(log, close): TensorBoard with --tensorboard, else a dict of each logged step's metrics."""
    if args.tensorboard is not None:
        from gradlab.integrations.tensorboard import TensorBoardLog, summary_writer

        writer = summary_writer(args.tensorboard)
        log = TensorBoardLog(writer)
        return log, lambda: (log.close(), writer.close())
    history: dict[int, dict[str, float]] = defaultdict(dict)

    def log(metrics: dict[str, float], step: int) -> None:
        history[step].update(metrics)

    def close() -> None:
        (args.out / "tracker.json").write_text(json.dumps(history, indent=1, sort_keys=True))

    return log, close


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.manual_seed(args.seed)
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0
    labels = torch.tensor(digits.target)
    model = RowReader()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[args.amp]
    autocast = (lambda: torch.autocast("cpu", dtype=dtype)) if dtype is not None else nullcontext
    scaler = torch.amp.GradScaler("cpu", enabled=args.amp == "fp16")
    args.out.mkdir(parents=True, exist_ok=True)
    log, close_tracker = tracker(args)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))
    batches = order.split(args.batch)

    with gradlab.watch(model, args.out, every=args.every, loops=["cell"], log=log, log_iterations=True) as rec:
        for step in range(args.steps):
            opt.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for micro in range(args.accumulate):
                idx = batches[(step * args.accumulate + micro) % len(batches)]
                with autocast():
                    loss = F.cross_entropy(model(images[idx]), labels[idx]) / args.accumulate
                scaler.scale(loss).backward()  # without fp16 the scaler is disabled: a plain backward
                loss_sum += loss.detach()
            scaler.step(opt)  # unscales .grad, skips the update when they overflowed
            scale = scaler.get_scale() if scaler.is_enabled() else None  # the scale the backward passes used
            rec.step(step, loss=loss_sum, grad_scale=scale)
            scaler.update()
    close_tracker()

    frame = rec.frame()
    skipped = frame[frame.quantity == "amp/skipped"].value.sum() if args.amp == "fp16" else 0
    summary = frame[(frame.quantity == "grad/in") & (frame.layer == "cell")].pivot_table(
        index="step", columns="iteration", values="value")
    print(f"recorded {frame.step.nunique()} of {args.steps} updates ({args.accumulate} micro-batches each, "
          f"amp {args.amp}, {int(skipped)} skipped by the scaler) in {args.out}")
    print("‖∂L/∂row_c‖ per call c of the GRU cell (grad/in):")
    print(summary.to_string(float_format=lambda v: f"{v:.2e}"))
    print(f"final loss {float(loss_sum):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
