"""Lightning: record a LightningModule's unrolled layers from `Trainer(callbacks=[GradlabCallback()])`.

    trainer = lightning.Trainer(max_steps=1000, callbacks=[GradlabCallback(every=10)])
    trainer.fit(module, loader)     # records in <trainer.log_dir>/gradlab, the summary in the trainer's loggers

One recorded step per optimizer step: under `accumulate_grad_batches=k` the k backward passes of an update add
up in one step (their norms in quadrature), numbered by `trainer.global_step` as Lightning's own logs are. Under
`precision="16-mixed"` the loss scale of the trainer's GradScaler is divided out (`rec.step(grad_scale=...)`).
Needs the extra `gradlab[lightning]`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the standalone package of the same library
    try:
        from pytorch_lightning.callbacks import Callback
    except ImportError as err:
        from gradlab.errors import GradlabError

        raise GradlabError(f"Lightning is not installed ({err}): pip install 'gradlab[lightning]'") from None

from gradlab.instrument.recorder import Recorder, watch
from gradlab.instrument.schedules import Schedule

#: the folder of the records under the trainer's log dir (run_dir=None)
RUN_DIR = "gradlab"


class GradlabCallback(Callback):
    """`gradlab.watch` for a Lightning fit.

    - attaches when training starts (`on_train_start`: after Lightning restored a checkpoint, so a resumed fit
      numbers its steps from `trainer.global_step` and appends to the records it left); `run_dir` defaults to
      `<trainer.log_dir>/gradlab`
    - closes a recorded step once per optimizer step, with the mean loss of its micro-batches
    - `log=True` hands each recorded step's summary to the trainer's loggers (`logger.log_metrics(metrics,
      step)`); a callable takes it instead; False logs nothing
    - detaches at the end of training, and when the fit fails (`on_exception`: no hook stays on the model)

    `options` go to `gradlab.watch` (groups, jacobian_every, log_iterations, ...); `recorder` is the open
    Recorder while training runs (None otherwise).
    """

    def __init__(self, every: int | Schedule = 10, run_dir: str | Path | None = None,
                 loops: str | Sequence[str] | Mapping[str, int | str | None] | None = None,
                 log: bool | Callable[[dict[str, float], int], object] = True, **options):
        super().__init__()
        self.every, self.run_dir, self.loops, self.options = every, run_dir, loops, options
        self.log_to = log  # not `self.log`: Lightning sets every callback's `log` to the module's log method
        self.recorder: Recorder | None = None
        self._loss: torch.Tensor | None = None  # the update's micro-batch losses, summed (each is loss / k)
        self._update: tuple[int, float | None] | None = None  # (step, loss scale) of an optimizer step to close
        self._next = 0  # trainer.global_step after the last closed step: a larger one means an optimizer step ran

    # -- attach / detach -------------------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        run_dir = Path(self.run_dir) if self.run_dir is not None else Path(trainer.log_dir) / RUN_DIR
        start = trainer.global_step
        log = _to_loggers(trainer) if self.log_to is True else (self.log_to or None)
        self.recorder = watch(pl_module, run_dir, self.every, start_step=start, append=start > 0, loops=self.loops,
                              log=log, **self.options)
        self._loss, self._update, self._next = None, None, start

    def on_train_end(self, trainer, pl_module) -> None:
        self._detach()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._detach("interrupted" if isinstance(exception, KeyboardInterrupt) else "failed")

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._detach()

    def _detach(self, status: str = "complete") -> None:
        if self.recorder is not None:
            self.recorder.close(status)
            self.recorder = None

    # -- steps -----------------------------------------------------------------------------------------------
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        """Once per optimizer step, after the update's last backward, while the loss scale is still the one its
        backward passes used (the scaler updates it after the step)."""
        if self.recorder is None or not self.recorder.recording or self._update is not None:
            return  # a second optimizer in the same batch adds nothing: the step is the first one's
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        scale = scaler.get_scale() if scaler is not None and scaler.is_enabled() else None
        self._update = (trainer.global_step, scale)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Sum the micro-batch losses (Lightning hands each as loss / accumulate_grad_batches) and close the step
        at the batch whose optimizer step ended an update."""
        if self.recorder is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._loss = loss.detach() if self._loss is None else self._loss + loss.detach()
        if trainer.global_step == self._next:
            return  # accumulating: no optimizer step in this batch
        step, scale = self._update if self._update is not None else (self._next, None)
        self.recorder.step(step, loss=self._loss, lr=_lr(trainer), grad_scale=scale)
        self._loss, self._update, self._next = None, None, trainer.global_step


def _to_loggers(trainer) -> Callable[[dict[str, float], int], None] | None:
    """log(metrics, step) into each of the trainer's loggers (None without loggers: no summary to compute)."""
    if not trainer.loggers:
        return None

    def log(metrics: dict[str, float], step: int) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step)

    return log


def _lr(trainer) -> float | None:
    """The learning rate of the first optimizer's first parameter group (what gradlab's own trainer records)."""
    if not trainer.optimizers:
        return None
    lr = trainer.optimizers[0].param_groups[0].get("lr")
    return float(lr) if isinstance(lr, (int, float)) and math.isfinite(lr) else None
