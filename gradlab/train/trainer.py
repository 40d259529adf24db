"""The training loop, top to bottom: data, model, optimiser; loop; evaluate; checkpoint; record.

    gradlab.train.train(load_config("demo"), "runs/demo-hem")

Poly learning rate and EMANet's SGD parameter groups; the recorder is on by default and writes records/
into the run directory beside metrics.parquet, config.toml, meta.json and checkpoints/last.pt.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from gradlab.data import build_dataset
from gradlab.errors import ConfigError, GradlabError
from gradlab.instrument import watch
from gradlab.models import build_model, optimizer_param_groups, parameter_groups
from gradlab.train import distributed
from gradlab.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from gradlab.train.config import Config
from gradlab.train.evaluate import evaluate
from gradlab.train.metrics_log import MetricsLog
from gradlab.train.run_dir import RunDirectory, run_meta
from gradlab.train.sampler import StepBatches, shard_indices


class NonFiniteError(GradlabError):
    """A NaN or Inf loss or gradient under the policy train.nonfinite = "stop"."""


def train(config: Config, run_dir: str | Path, *, resume: bool = False, progress: bool = True) -> RunDirectory:
    """Train one model into `run_dir` (resuming from its last checkpoint when `resume`)."""
    ctx = distributed.setup(config.train.device)
    try:
        with distributed.lost_peers(ctx):  # a dead or hung rank: one line, not gloo's traceback
            run = _train(config, RunDirectory(run_dir), resume, progress, ctx)
    except BaseException:
        distributed.teardown(wait_for_all=False)
        raise
    with distributed.lost_peers(ctx):
        distributed.teardown()
    return run


def build_data(config: Config):
    d = config.data
    opts = {"root": d.root or None, "size": d.size, "seed": config.seed}
    if d.source == "voc":
        return build_dataset("voc", "train", **opts), build_dataset("voc", "val", **opts)
    opts.update(min_sprites=d.min_sprites, max_sprites=d.max_sprites, scale=(d.scale_min, d.scale_max),
                threshold=d.threshold)
    return (build_dataset(d.source, "train", length=d.train_length, **opts),
            build_dataset(d.source, "val", length=d.val_length, **opts))


def build_net(config: Config, num_classes: int) -> torch.nn.Module:
    m = config.model
    return build_model(m.kind, num_classes, channels=m.channels or None, bases=m.bases, iterations=m.iterations,
                       step_size=m.step_size, kernel=m.kernel, temperature=m.temperature, normalize=m.normalize,
                       grad_iterations=m.grad_iterations, backbone=m.backbone, output_stride=m.output_stride,
                       pretrained=m.pretrained or None, dropout=m.dropout)


def poly_lr(base: float, step: int, steps: int, power: float) -> float:
    return base * (1 - step / steps) ** power


def _train(config: Config, run: RunDirectory, resume: bool, progress: bool, ctx: distributed.Context):
    if config.train.amp and ctx.device.type != "cuda":
        raise ConfigError("train.amp=true needs a CUDA device (bfloat16 autocast): set train.amp=false on CPU")
    torch.manual_seed(config.seed)
    train_set, val_set = build_data(config)
    net = build_net(config, train_set.num_classes).to(ctx.device)
    opt = torch.optim.SGD(optimizer_param_groups(net, config.train.lr, config.train.weight_decay),
                          lr=config.train.lr, momentum=config.train.momentum)
    for group in opt.param_groups:
        group["initial_lr"] = group["lr"]
    # the batch size against the split: its ConfigError must come before the run directory is written
    StepBatches(len(train_set), config.train.batch_size, 1, config.seed, 0, ctx.rank, ctx.world)
    start = _start(config, run, net, opt, resume, ctx)
    model = _wrap(net, config, ctx)
    loaders = _loaders(config, train_set, val_set, start, ctx)
    metrics = MetricsLog(run.metrics_path, start)
    rec = _recorder(config, model, run, start, ctx)
    try:
        with distributed.lost_peers(ctx):  # so that meta.json's error is the one-line message too
            _loop(config, model, net, opt, loaders, metrics, rec, run, start, progress, ctx)
    except Exception as err:
        if ctx.main and run.meta().get("status") == "running":
            run.update_meta(status="failed", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        if rec is not None:
            rec.close()
    agree = distributed.parameters_agree(net)
    if ctx.main:
        run.update_meta(status="complete", steps=config.train.steps, ranks_agree=agree,
                        finished=run_meta(config, ctx.device, ctx.world)["started"])
    return run


def _start(config: Config, run: RunDirectory, net, opt, resume: bool, ctx: distributed.Context) -> int:
    """The first step: the checkpoint's when resuming, else 0 in a new run directory. A run killed before its
    first checkpoint has nothing to resume from (and its folder is not empty): `resume` starts it over from
    step 0 in the same directory; rows it had recorded are superseded by the new ones (`load_records`)."""
    if resume and (run.checkpoint.is_file() or not run.config_path.is_file()):
        return _restore(run, net, opt)
    if ctx.main and resume:
        run.write_meta({**run_meta(config, ctx.device, ctx.world), "status": "running"})
    elif ctx.main:
        run.create(config, run_meta(config, ctx.device, ctx.world))
    return 0


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


def _recorder(config: Config, model, run: RunDirectory, start: int, ctx: distributed.Context):
    r = config.record
    if r.every == 0:
        return None
    return watch(model, run.path, every=r.every, groups=parameter_groups, flush_every=r.flush_every,
                 all_ranks=r.all_ranks, start_step=start, jacobian_every=r.jacobian_every,
                 jacobian_images=r.jacobian_images)


def _loop(config, model, net, opt, loaders, metrics, rec, run, start, progress, ctx):
    t = config.train
    train_loader, val_loader = loaders
    num_classes, ignore = train_loader.dataset.num_classes, 255
    bar = tqdm(total=t.steps, initial=start, disable=not (progress and ctx.main), desc=run.path.name,
               dynamic_ncols=True)
    for step, (images, masks) in zip(range(start, t.steps), train_loader):
        for group in opt.param_groups:
            group["lr"] = poly_lr(group["initial_lr"], step, t.steps, t.poly_power)
        loss, grad_norm = _train_step(config, model, opt, images.to(ctx.device), masks.to(ctx.device), ignore)
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            _on_nonfinite(config, opt, rec, metrics, run, step, loss, grad_norm)
        else:
            opt.step()
        lr = opt.param_groups[0]["lr"]
        if rec is not None:
            rec.step(step, loss=loss, lr=lr)
        metrics.add(step, loss=loss, lr=lr, grad_norm=grad_norm)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", miou=f"{metrics.latest.get('miou', math.nan):.3f}")
        done = step + 1
        if done % t.eval_every == 0 or done == t.steps:
            metrics.add(step, **evaluate(model, val_loader, num_classes, ctx.device, ignore))
        if done % t.checkpoint_every == 0 or done == t.steps:
            _checkpoint(net, opt, rec, metrics, run, done, ctx)
    bar.close()


def _train_step(config, model, opt, images, masks, ignore) -> tuple[float, float]:
    """Forward, backward, optional clipping. Returns (loss, total gradient norm) with one host sync."""
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.train.amp):
        loss = F.cross_entropy(model(images), masks, ignore_index=ignore)
    loss.backward()
    params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
    if config.train.clip_grad > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, config.train.clip_grad)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    loss_value, norm_value = torch.stack([loss.detach().float(), norm.float()]).tolist()
    return loss_value, norm_value


def _on_nonfinite(config, opt, rec, metrics, run, step, loss, grad_norm) -> None:
    """Policy "skip": drop the update. Policy "stop": record the step, keep the last checkpoint, raise."""
    opt.zero_grad(set_to_none=True)
    metrics.add(step, nonfinite=1.0)
    if config.train.nonfinite == "skip":
        return
    if rec is not None:
        rec.step(step, loss=loss, lr=opt.param_groups[0]["lr"])
        rec.close()
    metrics.write()
    run.update_meta(status="stopped", stopped_at_step=step)
    raise NonFiniteError(f"non-finite {'loss' if not math.isfinite(loss) else 'gradient'} at step {step} "
                         f"(loss={loss}, grad norm={grad_norm}): stopped; {run.checkpoint} holds the last good "
                         "state (set train.nonfinite=skip to drop such steps instead)")


def _checkpoint(net, opt, rec, metrics, run: RunDirectory, done: int, ctx: distributed.Context) -> None:
    """Records and metrics first, then the checkpoint: whatever the checkpoint covers is on disk."""
    if rec is not None:
        rec.flush()
    if not ctx.main:
        return
    metrics.write()
    save_checkpoint({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": done, "rng": rng_state()},
                    run.checkpoint)

