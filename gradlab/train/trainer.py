"""The training loop, top to bottom as torchvision's references/segmentation/train.py: data, model, optimiser;
loop (train step, validation, checkpoint, record); the run directory's status at the end.
SIGINT (Ctrl-C) and SIGTERM stop it with meta.json "interrupted" and the last checkpoint kept (`TrainingInterrupted`).

    gradlab.train.train(load_config("demo"), "runs/demo-hem")

Poly learning rate and EMANet's SGD parameter groups; the recorder is on by default and writes records/
into the run directory beside metrics.parquet, config.toml, meta.json and checkpoints/last.pt.
"""

from __future__ import annotations

import contextlib
import math
import platform
import shlex
import signal
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from gradlab.atomic import write_text
from gradlab.data import splits_from_config
from gradlab.errors import ConfigError, GradlabError
from gradlab.instrument import Recorder, watch
from gradlab.models import model_from_config, optimizer_param_groups, parameter_groups
from gradlab.run_dir import RunDirectory, flat_keys, now, run_meta
from gradlab.train import distributed
from gradlab.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from gradlab.train.config import Config, to_toml
from gradlab.train.evaluate import evaluate
from gradlab.train.metrics_log import MetricsLog
from gradlab.train.sampler import StepBatches, shard_indices


class NonFiniteError(GradlabError):
    """A NaN or Inf loss or gradient under the policy train.nonfinite = "stop"."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped `train`: meta.json says "interrupted", the last checkpoint is kept, and
    `train(..., resume=True)` continues as from any checkpoint. `signum` is the signal; `main` is False on the
    ranks other than 0 of a distributed run, `hard_exit` True in one (see gradlab.cli's `_exit_now`)."""

    def __init__(self, message: str, signum: int, main: bool = True, hard_exit: bool = False):
        super().__init__(message)
        self.signum, self.main, self.hard_exit = signum, main, hard_exit


class _Signals:
    """While training, SIGINT and SIGTERM raise KeyboardInterrupt at once, except inside `held()` (a step's rows
    going to the recorder and the metrics, a checkpoint), which first runs to its end. Later signals, and any
    signal once `quiet()` (the clean-up), are only noted. Installed in the main thread only and not over an
    ignored signal; the previous handlers come back on exit. Under torchrun every rank gets the signal."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._held, self._quiet = 0, False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) not in (signal.SIG_IGN, None):
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def _handle(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
            if not (self._held or self._quiet):
                raise KeyboardInterrupt

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        if self.signum is not None and not (self._held or self._quiet):
            raise KeyboardInterrupt

    def quiet(self) -> None:
        self._quiet = True

    def caused(self, err: BaseException) -> bool:
        """Whether `err` ends the run as interrupted: a KeyboardInterrupt, or an error after a signal that is
        not gradlab's own verdict on the run (a peer rank or a DataLoader worker that stopped on the signal)."""
        return isinstance(err, KeyboardInterrupt) or self.signum is not None and (
            isinstance(err, distributed.LostPeerError) or not isinstance(err, GradlabError))

    @property
    def name(self) -> str:
        return signal.Signals(self.signum or signal.SIGINT).name


@dataclass
class Training:
    """What a run holds while it trains (torchvision's names: `model` is DDP-wrapped under DDP)."""

    config: Config
    run: RunDirectory
    ctx: distributed.Context
    model: nn.Module
    model_without_ddp: nn.Module
    optimizer: torch.optim.Optimizer
    train_loader: DataLoader
    val_loader: DataLoader
    metrics: MetricsLog
    recorder: Recorder | None
    num_classes: int
    ignore_index: int
    step: int = 0  # steps done
    saved: int = 0  # the step of the last checkpoint


def train(config: Config, run_dir: str | Path, *, resume: bool = False, progress: bool = True) -> RunDirectory:
    """Train one model into `run_dir` (resuming from its last checkpoint when `resume`). SIGINT or SIGTERM
    raises `TrainingInterrupted` (a KeyboardInterrupt) once meta.json says "interrupted"."""
    with _Signals() as stop:
        ctx = None
        try:
            ctx = distributed.setup(config.train.device)
            with distributed.lost_peers(ctx):  # a dead or hung rank: one line, not gloo's traceback
                run = _main(config, RunDirectory(run_dir), resume, progress, ctx, stop)
        except BaseException as err:
            stop.quiet()
            distributed.teardown(wait_for_all=False)
            if isinstance(err, TrainingInterrupted) or not stop.caused(err):
                raise
            raise _before_training(RunDirectory(run_dir), stop, ctx) from None
        with distributed.lost_peers(ctx):
            distributed.teardown()
    return run


def _main(config: Config, run: RunDirectory, resume: bool, progress: bool, ctx: distributed.Context,
          stop: _Signals):
    if config.train.amp and ctx.device.type != "cuda":
        raise ConfigError("train.amp=true needs a CUDA device (bfloat16 autocast): set train.amp=false on CPU")
    torch.manual_seed(config.seed)
    train_set, val_set = splits_from_config(config.data, config.seed)
    model_without_ddp = model_from_config(config.model, train_set.num_classes).to(ctx.device)
    optimizer = torch.optim.SGD(optimizer_param_groups(model_without_ddp, config.train.lr, config.train.weight_decay),
                                lr=config.train.lr, momentum=config.train.momentum)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    # the batch size against the split: its ConfigError must come before the run directory is written
    StepBatches(len(train_set), config.train.batch_size, 1, config.seed, 0, ctx.rank, ctx.world)
    start = _start(config, run, model_without_ddp, optimizer, resume, ctx)
    t = None
    try:
        model = _wrap(model_without_ddp, config, ctx)
        t = Training(config, run, ctx, model, model_without_ddp, optimizer,
                     *_loaders(config, train_set, val_set, start, ctx), MetricsLog(run.metrics_path, start),
                     _recorder(config, model, run, start, resume), train_set.num_classes, train_set.ignore_index,
                     start, start)
        with distributed.lost_peers(ctx):  # so that meta.json's error is the one-line message too
            _loop(t, start, progress, stop)
            agree = distributed.parameters_agree(model_without_ddp)
    except BaseException as err:
        stop.quiet()
        if stop.caused(err):
            cause = None if isinstance(err, KeyboardInterrupt) else err
            raise _interrupted(t, config, run, ctx, stop, start) from cause
        if t is not None and isinstance(err, Exception) and ctx.main and run.status == "running":
            run.update_meta(status="failed", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        if t is not None and t.recorder is not None:
            t.recorder.close()
    if ctx.main:
        run.update_meta(status="complete", steps=config.train.steps, ranks_agree=agree, finished=now())
    return run


def _interrupted(t: Training | None, config: Config, run: RunDirectory, ctx: distributed.Context, stop: _Signals,
                 start: int) -> TrainingInterrupted:
    """After a signal: the recorder's rows and the metrics of the steps done on disk (a resume supersedes those
    after the checkpoint), meta.json "interrupted"; never a checkpoint, which is only written between steps."""
    step, saved = (t.step, t.saved) if t is not None else (start, start)
    if t is not None and t.recorder is not None:
        t.recorder.close()
    checkpoint = run.checkpoint.is_file()
    if ctx.main:
        if t is not None:
            t.metrics.write()
        run.update_meta(status="interrupted", interruption={"signal": stop.name, "step": step, "checkpoint_step":
                        saved if checkpoint else None, "at": now()})
    kept = f"{run.checkpoint} holds step {saved}" if checkpoint else "no checkpoint yet, a resume starts at step 0"
    return TrainingInterrupted(f"{stop.name} after {step} of {config.train.steps} steps; {kept} (resume with "
                               f"gradlab train --resume --out {shlex.quote(str(run.path))})",
                               stop.signum or signal.SIGINT, ctx.main, ctx.distributed)


def _before_training(run: RunDirectory, stop: _Signals, ctx: distributed.Context | None) -> TrainingInterrupted:
    """A signal before the first step (start-up, the data, the model): meta.json is as it was."""
    how = (f"resume with gradlab train --resume --out {shlex.quote(str(run.path))}" if run.is_run
           else "nothing was written; run the command again")
    return TrainingInterrupted(f"{stop.name} before training started ({how})", stop.signum or signal.SIGINT,
                               ctx is None or ctx.main, ctx is not None and ctx.distributed)


def poly_lr(base: float, step: int, steps: int, power: float) -> float:
    return base * (1 - step / steps) ** power


def _meta(config: Config, ctx: distributed.Context) -> dict:
    device = torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else platform.processor() or "cpu"
    return {**run_meta(seed=config.seed, device=device, world=ctx.world), "torch": torch.__version__}


def _start(config: Config, run: RunDirectory, net, opt, resume: bool, ctx: distributed.Context) -> int:
    """The first step: the checkpoint's when resuming, else 0 in a new run directory. A run killed before its
    first checkpoint has nothing to resume from (and its folder is not empty): `resume` starts it over from
    step 0 in the same directory; rows it had recorded are superseded by the new ones (`load_records`)."""
    if not resume:
        if ctx.main:
            run.create(to_toml(config), _meta(config, ctx))
        return 0
    step = _restore(run, net, opt) if run.checkpoint.is_file() or not run.is_run else 0
    if ctx.main:
        _mark_resumed(run, config, step, ctx)
    return step


def _mark_resumed(run: RunDirectory, config: Config, step: int, ctx: distributed.Context) -> None:
    """meta.json says the run goes on from `step`; keys `--resume --set` changed (train.config.RESUME_KEYS) are
    written to config.toml and listed in meta.json as `resumed_with` {key: [before, now]}, so the folder says
    what ran."""
    before, current = run.flat_config(), flat_keys(asdict(config))
    changed = {key: [before.get(key), value] for key, value in current.items() if before.get(key) != value}
    if changed:
        write_text(run.config_path, to_toml(config))
    meta = run.meta() if step else _meta(config, ctx)  # from step 0 (killed before a checkpoint): a new start
    resumed = {"resumed_at_step": step, **({"resumed_with": changed} if changed else {})}
    run.write_meta({**meta, "status": "running", **resumed})


def _restore(run: RunDirectory, net, opt) -> int:
    state = load_checkpoint(run.checkpoint)
    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return int(state["step"])


def _wrap(net, config: Config, ctx: distributed.Context):
    if not ctx.distributed:
        return net
    if config.model.sync_bn:
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=ids)


def _loaders(config: Config, train_set, val_set, start: int, ctx: distributed.Context):
    t = config.train
    batches = StepBatches(len(train_set), t.batch_size, t.steps, config.seed, start, ctx.rank, ctx.world)
    # own generators: a loader's iterator otherwise draws from the global RNG, which would shift dropout on resume
    opts = {"num_workers": config.data.workers, "pin_memory": ctx.device.type == "cuda"}
    train_loader = DataLoader(train_set, batch_sampler=batches, generator=_generator(config.seed, 0), **opts)
    val_shard = Subset(val_set, shard_indices(len(val_set), ctx.rank, ctx.world))
    val_batch = 1 if config.data.source == "voc" else t.batch_size  # VOC val images keep their own sizes
    val_loader = DataLoader(val_shard, batch_size=val_batch, generator=_generator(config.seed, 1), **opts)
    return train_loader, val_loader


def _generator(seed: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + salt)


def _recorder(config: Config, model, run: RunDirectory, start: int, resume: bool) -> Recorder | None:
    r = config.record
    if r.every == 0:
        return None
    return watch(model, run.path, every=r.every, groups=parameter_groups, flush_every=r.flush_every,
                 all_ranks=r.all_ranks, start_step=start, append=resume, diagnostics_every=r.diagnostics_every,
                 jacobian_every=r.jacobian_every,
                 jacobian_images=r.jacobian_images)


def _loop(t: Training, start: int, progress: bool, stop: _Signals) -> None:
    """Steps start..steps−1: poly lr, train step, record, validate every eval_every, checkpoint every
    checkpoint_every (the last step always does both). A signal stops it at once, but never inside the step's
    bookkeeping or a checkpoint (`stop.held()`)."""
    cfg = t.config.train
    bar = tqdm(total=cfg.steps, initial=start, disable=not (progress and t.ctx.main), desc=t.run.path.name,
               dynamic_ncols=True)
    for step, (images, masks) in zip(range(start, cfg.steps), t.train_loader):
        for group in t.optimizer.param_groups:
            group["lr"] = poly_lr(group["initial_lr"], step, cfg.steps, cfg.poly_power)
        loss, grad_norm = _train_step(t, images.to(t.ctx.device), masks.to(t.ctx.device))
        with stop.held():  # the step's rows reach the recorder and the metrics together, or not at all
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                _on_nonfinite(t, step, loss, grad_norm)
            else:
                t.optimizer.step()
            lr = t.optimizer.param_groups[0]["lr"]
            if t.recorder is not None:
                t.recorder.step(step, loss=loss, lr=lr)
            t.metrics.add(step, loss=loss, lr=lr, grad_norm=grad_norm)
            t.step = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", miou=f"{t.metrics.latest.get('miou', math.nan):.3f}")
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            t.metrics.add(step, **evaluate(t.model, t.val_loader, t.num_classes, t.ctx.device, t.ignore_index))
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            with stop.held():  # a checkpoint once begun is finished
                _checkpoint(t, done)
    bar.close()


def _train_step(t: Training, images: torch.Tensor, masks: torch.Tensor) -> tuple[float, float]:
    """Forward, backward, optional clipping. Returns (loss, total gradient norm) with one host sync."""
    t.optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=t.config.train.amp):
        loss = F.cross_entropy(t.model(images), masks, ignore_index=t.ignore_index)
    loss.backward()
    params = [p for g in t.optimizer.param_groups for p in g["params"] if p.grad is not None]
    if t.config.train.clip_grad > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, t.config.train.clip_grad)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    loss_value, norm_value = torch.stack([loss.detach().float(), norm.float()]).tolist()
    return loss_value, norm_value


def _on_nonfinite(t: Training, step: int, loss: float, grad_norm: float) -> None:
    """Policy "skip": drop the update. Policy "stop": record the step, keep the last checkpoint, raise."""
    t.optimizer.zero_grad(set_to_none=True)
    t.metrics.add(step, nonfinite=1.0)
    if t.config.train.nonfinite == "skip":
        return
    if t.recorder is not None:
        t.recorder.step(step, loss=loss, lr=t.optimizer.param_groups[0]["lr"])
        t.recorder.close()
    t.metrics.write()
    t.run.update_meta(status="stopped", stopped_at_step=step)
    kept = (f"{t.run.checkpoint} holds the last good state" if t.run.checkpoint.is_file() else
            "no checkpoint was written before it (lower train.lr, or check the data)")
    raise NonFiniteError(f"non-finite {'loss' if not math.isfinite(loss) else 'gradient'} at step {step} "
                         f"(loss={loss}, grad norm={grad_norm}): stopped; {kept} (set train.nonfinite=skip to "
                         "drop such steps instead)")


def _checkpoint(t: Training, done: int) -> None:
    """Records and metrics first, then the checkpoint: whatever the checkpoint covers is on disk."""
    if t.recorder is not None:
        t.recorder.flush()
    if not t.ctx.main:
        return
    t.metrics.write()
    save_checkpoint({"model": t.model_without_ddp.state_dict(), "optimizer": t.optimizer.state_dict(),
                     "step": done, "rng": rng_state()}, t.run.checkpoint)
    t.saved = done

