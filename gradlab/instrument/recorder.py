"""The Recorder: per-iteration gradient norms and forward diagnostics of a model's unrolled layers.

    with gradlab.watch(model, run_dir="runs/x") as rec:
        for step, batch in enumerate(loader):
            loss = ...; loss.backward(); opt.step()
            rec.step(step, loss=loss)
    rec.frame()   # tidy DataFrame: run, step, layer, iteration, quantity, value, status, rank

Gradient norms are measured by tensor hooks that `tap` registers, and stay on the device until the step
closes: one host sync per recorded step (per device), none inside hooks. Unscheduled steps cost a flag check.
The per-iteration gradient norms, the layer gain's two norms and the loss are recorded on every recorded step;
the rest, the *diagnostics* (the forward diagnostics of MATH.md §6, the mechanism quantities of §9 that need more
than one norm: the agreement c_t, c_rest, ‖rest‖ and the EMA unit's branch norms, and the parameter-group norms,
a pass over every parameter's gradient), on the diagnosed steps: the first recorded step of each block of
`diagnostics_every` steps (default 1: every recorded step).
`log=` hands each recorded step's summary to a tracker after that sync (gradlab.integrations.metrics).
"""

from __future__ import annotations

import math
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from torch import nn

from gradlab import records as records_module
from gradlab import taps as tap_module
from gradlab.checks import is_int, require
from gradlab.errors import ConfigError, RecordsError
from gradlab.instrument.diagnostics import DIAGNOSTICS_EVERY, forward_diagnostics
from gradlab.instrument.groups import GroupSpec, group_grad_norms, resolve_groups
from gradlab.instrument.jacobian import JACOBIAN_EVERY, JACOBIAN_IMAGES, state_jacobian_norms
from gradlab.instrument.loops import Loops
from gradlab.instrument.norms import cosine_to, l2_norm, unit, wide_norm, widened
from gradlab.instrument.schedules import Schedule, as_schedule
from gradlab.parallel import current_rank, is_compiled, unwrap, wrappers
from gradlab.records import ADJOINT, AGREEMENT, RecordBuffer, write_part
from gradlab.run_dir import RECORDS, RunDirectory, now, part_name, rank_parts, run_meta
from gradlab.taps import TracedLayer

Key = tuple[str, str, "int | None"]  # (layer, quantity, iteration)
#: per-step rows of a step closed with `rec.step(grad_scale=...)`: the loss scale, and 1 when the scaler skips it
AMP_SCALE, AMP_SKIPPED = ("", records_module.AMP_SCALE, None), ("", records_module.SKIPPED_STEP, None)
_WATCHED: weakref.WeakSet[nn.Module] = weakref.WeakSet()


class Recorder:
    """Records one model. Build it with `gradlab.watch`; close it (or leave its `with` block) to detach."""

    def __init__(
        self,
        model: nn.Module,
        run_dir: str | Path | None = None,
        every: int | Schedule = 1,
        *,
        groups: GroupSpec | None = None,
        flush_every: int = 50,
        run: str | None = None,
        all_ranks: bool = False,
        start_step: int = 0,
        append: bool = False,
        diagnostics_every: int = DIAGNOSTICS_EVERY,
        jacobian_every: int = JACOBIAN_EVERY,
        jacobian_images: int = JACOBIAN_IMAGES,
        loops: str | Sequence[str | nn.Module] | Mapping[str | nn.Module, int | str | None] | None = None,
        log: Callable[[dict[str, float], int], object] | None = None,
        log_iterations: bool = False,
    ):
        require(is_int(flush_every), "flush_every", flush_every, "an integer >= 1 (recorded steps per Parquet part)")
        require(is_int(diagnostics_every, 0), "diagnostics_every", diagnostics_every,
                "an integer >= 0 (diagnose the first recorded step of each block of this many steps; 0 = never)")
        require(is_int(jacobian_every, 0), "jacobian_every", jacobian_every,
                "an integer >= 0 (steps between state-Jacobian estimates; 0 = off)")
        require(is_int(jacobian_images), "jacobian_images", jacobian_images, "an integer >= 1")
        require(log is None or callable(log), "log", log, "a callable log(metrics: dict[str, float], step: int), "
                "e.g. wandb.log or a Lightning logger's log_metrics")
        self._refuse_if_compiled(model)
        model = unwrap(model)
        self._refuse_if_watched(model)
        self.model = model
        self.names = {m: name or type(m).__name__ for name, m in model.named_modules()}
        self.layers = [m for m in self.names if isinstance(m, TracedLayer)]
        self.groups = resolve_groups(model, groups)
        self.schedule = as_schedule(every)
        self.rank = current_rank()
        self.enabled = all_ranks or self.rank == 0
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.run = run or (self.run_dir.name if self.run_dir is not None else "run")
        self.flush_every = flush_every
        self.diagnostics_every = diagnostics_every
        self.jacobian_every, self.jacobian_images = jacobian_every, jacobian_images
        self.records = RecordBuffer()
        self.nonfinite = 0  # gradient norms that came back NaN or Inf
        self._flushed, self._recorded_steps = 0, 0
        self._part = self._next_part_index(append)
        self._user_tracing = {layer: layer.tracing for layer in self.layers}
        #: layers in grad_mode "implicit": their adjoint solve is recorded (records.ADJOINT)
        self._implicit = [layer for layer in self.layers if getattr(layer, "grad_mode", None) == "implicit"]
        self._recording = self.diagnosing = False
        self._last_recorded: int | None = None  # the last recorded step this recorder opened
        self._loops = Loops(self, model, loops)  # checks its entries before it attaches a hook
        self._log = _step_log(log, log_iterations) if log is not None and self.rank == 0 else None
        self._handles = [layer.register_forward_hook(self._on_forward) for layer in self.layers]
        self._reset_pending()
        self._closed = False
        _WATCHED.update([model, *self.layers])
        #: run_dir made a run directory by this recorder (its meta.json status is ours to finish)
        self._own_run = self.enabled and self.run_dir is not None and RunDirectory(self.run_dir).start_recorded(
            self._settings(every, loops), self._meta)
        self._open(start_step)

    def _settings(self, every, loops) -> dict:
        """What this recorder records, as the config.toml of a run directory it makes (RunDirectory.start_recorded)."""
        def names(items) -> str:  # a list as one text value: config columns hold scalars
            return ", ".join(items)

        return {"model.class": type(self.model).__name__, "record.layers": names(self.names[m] for m in self.layers),
                "record.loops": "auto" if isinstance(loops, str) else names(self._loops.described),
                "record.every": every if isinstance(every, int) else "custom", "record.groups": names(self.groups),
                "record.diagnostics_every": self.diagnostics_every}

    def _meta(self) -> dict:
        device = next((str(p.device) for p in self.model.parameters()), "cpu")
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        return {**run_meta(seed=None, device=device, world=world), "torch": torch.__version__}

    @property
    def loops(self) -> list[str]:
        """The paths of the watched loops (`loops=`; with "auto", what the first recorded forward found)."""
        return list(self._loops.paths)

    @property
    def recording(self) -> bool:
        """True while the open step is recorded (the schedule chose it, on a recording rank)."""
        return self._recording

    def _diagnosed(self, step: int) -> bool:
        """Whether recorded step `step` is diagnosed: the first recorded step of its block of `diagnostics_every`
        steps. A function of the step and the schedule alone, so a resumed run diagnoses the steps that a
        straight run does: before the first step this recorder sees, the schedule itself says what was recorded."""
        k = self.diagnostics_every
        if k == 0:
            return False
        block = step - step % k
        last = self._last_recorded
        if last is not None and last < step:
            return last < block
        return not any(self.schedule(s) for s in range(block, step))

    # -- the TapSink protocol -------------------------------------------------------------------------
    def owns(self, module: nn.Module | None) -> bool:
        return module is None or module in self.names

    def tap(self, tensor: torch.Tensor, name: str, iteration: int | None, module: nn.Module | None, leaf: bool):
        if not self._recording:
            return tensor
        key = (self.names[module] if module is not None else "tap", name, iteration)
        if leaf and torch.is_grad_enabled() and not tensor.requires_grad:
            tensor = tensor.detach().requires_grad_()  # a starting state: measure the gradient reaching it
        self._expected[key] = self._expected.get(key, False) or tensor.requires_grad
        if tensor.requires_grad:
            if name == "grad/x" and self.diagnosing:  # T, the last differentiable iteration: the agreement's g_T
                self._last_x[key[0]] = max(self._last_x.get(key[0], 0), iteration)
            tensor.register_hook(partial(self._on_grad, key))
        return tensor

    # -- hooks: device work only, never a host sync ------------------------------------------------------
    def _on_grad(self, key: Key, grad: torch.Tensor) -> None:
        compared = key[0] in self._last_x and key[1] in ("grad/x", "grad/x_total")  # part of the agreement
        wide, norm = widened(grad) if compared else (None, l2_norm(grad))
        prev = self._norms.get(key)
        self._norms[key] = norm if prev is None else torch.hypot(prev, norm)  # several backwards: root-sum-square
        if compared:
            self._agreement(key, wide, norm, grad.dtype)

    def _agreement(self, key: Key, wide: torch.Tensor, norm: torch.Tensor, source: torch.dtype) -> None:
        """c_t = cos(g_t, g_T), and at ∂L/∂X = Σ_t g_t: c_rest = cos(Σ_{t<T} g_t, g_T) and ‖Σ_{t<T} g_t‖
        (`grad/x_cos`, `grad/x_rest`; MATH.md §9), from each gradient widened once to float64 (`widened`). g_T
        arrives first (iteration T is nearest the output): it is kept, with its unit vector u_T, until ∂L/∂X
        arrives, so that each c_t is one dot product with u_T. Under several backwards the last one's is kept."""
        layer, quantity, t = key
        if quantity == "grad/x":
            if t == self._last_x[layer]:
                self._g_last[layer] = (wide, unit(wide, norm))
            elif layer in self._g_last:
                self._norms[(layer, "grad/x_cos", t)] = cosine_to(wide, norm, self._g_last[layer][1])
        elif layer in self._g_last and self._live_iterations(layer) >= 2:
            g_last, u_last = self._g_last.pop(layer)
            rest = wide.view(g_last.shape) - g_last
            rest_norm = wide_norm(rest, source)
            self._norms[(layer, "grad/x_rest", None)] = rest_norm
            self._norms[(layer, "grad/x_cos", None)] = cosine_to(rest, rest_norm, u_last)

    def _live_iterations(self, layer: str) -> int:
        return sum(live for (name, q, _), live in self._expected.items() if name == layer and q == "grad/x")

    def _on_forward(self, layer: TracedLayer, args, output) -> None:
        if not (self._recording and torch.is_grad_enabled() and layer.trace is not None):
            return  # only training forwards (those that build a graph) are diagnosed
        name = self.names[layer]
        if self.diagnosing:
            for quantity, first, values in forward_diagnostics(layer.trace):
                self._diagnostics[(name, quantity, first)].append(values)
        if self._jacobian_due() and (name, "jac/sigma", 1) not in self._diagnostics:  # first forward of the step
            for quantity, first, values in state_jacobian_norms(layer, layer.trace, self.jacobian_images,
                                                                seed=self._step):
                self._diagnostics[(name, quantity, first)].append(values)
        if not self._user_tracing[layer]:
            layer.trace = None

    def _jacobian_due(self) -> bool:
        """σ_t on its own sparser schedule: recorded steps that are multiples of `jacobian_every`."""
        return self.jacobian_every > 0 and self._step % self.jacobian_every == 0

    # -- steps -------------------------------------------------------------------------------------------
    def step(self, step: int | None = None, *, loss: torch.Tensor | float | None = None, lr: float | None = None,
             grad_scale: torch.Tensor | float | None = None):
        """Close training step `step` (default: the next one) and open the following one.

        `grad_scale`: the loss scale of a `torch.amp.GradScaler` (`scaler.get_scale()`, before `scaler.update()`)
        whose scaled backward the hooks saw; the step's gradient norms are divided by it, and a step whose
        gradients are not finite is recorded as one the scaler skips (`amp/skipped` = 1, not counted in
        `nonfinite`). With gradient accumulation call `step` once per update."""
        if self._closed:
            raise RuntimeError("this Recorder is closed: start a new one with gradlab.watch(...)")
        require(grad_scale is None or isinstance(grad_scale, torch.Tensor) or (
            isinstance(grad_scale, (int, float)) and not isinstance(grad_scale, bool) and 0 < grad_scale < math.inf),
            "grad_scale", grad_scale, "a positive finite number (GradScaler.get_scale()) or a tensor holding one")
        step = self._step if step is None else int(step)
        rows = None
        if self._recording:
            rows = self._close_step(step, loss, lr, grad_scale)
            self._recorded_steps += 1
            if self.run_dir is not None and self._recorded_steps % self.flush_every == 0:
                self.flush()
        self._open(step + 1)
        if rows is not None and self._log is not None:  # the recorder is consistent whatever the logger does
            self._log(rows, step)

    def _open(self, step: int) -> None:
        self._step = step
        self._recording = self.enabled and bool(self.schedule(step))
        self.diagnosing = self._recording and self._diagnosed(step)
        if self._recording:
            self._last_recorded = step
        traced = self.diagnosing or (self._recording and self._jacobian_due())  # the states σ_t starts from
        for layer in self.layers:
            tracing = traced or self._user_tracing[layer]
            if layer.tracing != tracing:  # nn.Module.__setattr__ is slow: only on a change
                layer.tracing = tracing
        tap_module._deactivate(self)
        if self._recording:
            tap_module._activate(self)
            for layer in self._implicit:  # only this step's adjoint solve is recorded
                layer.last_adjoint = None
        self._t0 = time.perf_counter()

    def _reset_pending(self) -> None:
        self._expected: dict[Key, bool] = {}
        self._norms: dict[Key, torch.Tensor] = {}
        self._diagnostics: dict[Key, list] = defaultdict(list)  # (layer, quantity, first t) → per-forward vectors
        self._rows: list[tuple] = []  # the closing step's rows, appended to the buffer at once
        self._step_nonfinite = 0  # of them, gradient norms that came back NaN or Inf
        self._last_x: dict[str, int] = {}  # layer → its last differentiable iteration T (grad/x taps)
        self._g_last: dict[str, tuple] = {}  # layer → (g_T = ∂L/∂X^(T) in float64, u_T), until ∂L/∂X arrives

    def _close_step(self, step: int, loss, lr, grad_scale) -> list[tuple]:
        """Turn the step's device values into rows (one host sync); returns the rows it added to `records`."""
        keys, tensors = self._device_values(loss, grad_scale)
        values = dict(zip(keys, _to_host(tensors)))  # the one host sync of this step
        skipped = self._unscale(values, grad_scale) if grad_scale is not None else None
        for key, live in self._expected.items():
            if key in values:
                self._add(step, key, values[key])
            else:
                self._add(step, key, math.nan, "unused" if live else "no_grad")
        for key, value in values.items():
            if key not in self._expected and key[1] != "loss" and key != AMP_SCALE:
                self._add(step, key, value)
        for name in self.groups if self.diagnosing else ():
            if (name, "grad/params", None) not in values:
                self._add(step, (name, "grad/params", None), math.nan, "no_grad")
        step_values = {"loss": values.get(("", "loss", None), loss), "lr": lr,
                       "step_time": time.perf_counter() - self._t0}
        if skipped is not None:
            step_values |= {AMP_SCALE[1]: values[AMP_SCALE], AMP_SKIPPED[1]: float(skipped)}
        for quantity, value in step_values.items():
            if value is not None:
                self._add(step, ("", quantity, None), float(value))
        if not skipped:  # the non-finite norms of a step the scaler skips are its overflow, not training's
            self.nonfinite += self._step_nonfinite
        rows = self._rows
        self.records.extend(rows)
        self._reset_pending()
        return rows

    def _unscale(self, values: dict[Key, float], grad_scale) -> bool:
        """Divide the norms the hooks measured in the scaled backward by the loss scale (host values, after the
        sync; not the agreement cosines, nor grad/params, read from the .grad that scaler.step unscaled), and
        say whether the step's gradients overflowed (the scaler skips such a step)."""
        if not isinstance(grad_scale, torch.Tensor):  # a tensor's value came with the step's transfer
            values[AMP_SCALE] = float(grad_scale)
        scale = values[AMP_SCALE]
        for key in self._norms:
            if key[1] not in AGREEMENT:
                values[key] /= scale
        return any(not math.isfinite(v) for k, v in values.items() if k[1].startswith("grad/"))

    def _device_values(self, loss, grad_scale=None) -> tuple[list[Key], list[torch.Tensor]]:
        """Every number of the step as (keys, 1-D device tensors): norms, diagnostics, groups, loss."""
        keys, norms = list(self._norms), list(self._norms.values())
        on_one_device = len({n.device for n in norms}) == 1
        tensors = [torch.stack(norms)] if on_one_device else [n.reshape(1) for n in norms]  # 0-dim norms → 1-D
        for (layer, quantity, first), samples in self._diagnostics.items():
            v = torch.stack(samples).mean(0) if len(samples) > 1 else samples[0]  # several forwards: their mean
            keys += [(layer, quantity, None if first is None else first + i) for i in range(len(v))]
            tensors.append(v)
        for layer in self._implicit:  # the last adjoint solve of the step, where one ran (iteration null)
            if layer.last_adjoint is not None:
                name = self.names[layer]
                keys += [(name, q, None) for q in ADJOINT]
                tensors.append(torch.stack(layer.last_adjoint).double())
        names, norms = group_grad_norms(self.groups) if self.diagnosing else ([], None)  # a pass over every .grad
        if norms is not None:
            keys += [(name, "grad/params", None) for name in names]
            tensors.append(norms)
        if isinstance(loss, torch.Tensor):
            keys.append(("", "loss", None))
            tensors.append(loss.detach().double().reshape(1))
        if isinstance(grad_scale, torch.Tensor):  # a device scale comes with the step's one transfer
            keys.append(AMP_SCALE)
            tensors.append(grad_scale.detach().double().reshape(1))
        return keys, tensors

    def _add(self, step: int, key: Key, value: float, status: str | None = None) -> None:
        layer, quantity, iteration = key
        if status is None:
            status = "ok" if math.isfinite(value) else "nonfinite"
            if status == "nonfinite" and quantity.startswith("grad/"):
                self._step_nonfinite += 1
        self._rows.append((self.run, step, layer, iteration, quantity, value, status, self.rank))

    # -- output --------------------------------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        """Every row recorded so far, as a tidy DataFrame (see `gradlab.records`)."""
        return self.records.frame()

    def flush(self) -> None:
        """Write the rows not yet on disk as one atomic Parquet part under run_dir/records/."""
        if self.run_dir is None or len(self.records) == self._flushed:
            return
        path = self.run_dir / RECORDS / part_name(self.rank, self._part)
        write_part(self.records.table(self._flushed), path)
        self._flushed, self._part = len(self.records), self._part + 1

    def _next_part_index(self, append: bool) -> int:
        """0 in a run directory without records; after the last part with `append` (a resumed run); a folder
        that holds records already is refused otherwise, so that two runs never mix in one."""
        if self.run_dir is None:
            return 0
        existing = sorted((self.run_dir / RECORDS).glob(rank_parts(self.rank)))
        if existing and not append:
            raise RecordsError(f"{self.run_dir} already holds records ({len(existing)} parts): give another "
                               "run_dir (or delete its records/), or pass append=True to continue that run")
        return int(existing[-1].stem.rsplit("-", 1)[1]) + 1 if existing else 0

    def close(self, status: str = "complete") -> None:
        """Flush, remove every hook, restore the layers' tracing flags; in a run directory that this recorder
        made, meta.json gets `status` (the `with` block sets "failed" or "interrupted" when an exception, or
        Ctrl-C, leaves it). Safe to call twice."""
        if self._closed:
            return
        self._closed, self._recording, self.diagnosing = True, False, False
        tap_module._deactivate(self)
        for handle in self._handles:
            handle.remove()
        self._loops.remove()
        for layer, tracing in self._user_tracing.items():
            layer.tracing = tracing
        _WATCHED.difference_update([self.model, *self.layers])
        self.flush()
        if self._own_run:
            RunDirectory(self.run_dir).update_meta(status=status, finished=now())

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.close("complete" if kind is None else "interrupted" if issubclass(kind, KeyboardInterrupt) else "failed")

    @staticmethod
    def _refuse_if_compiled(model: nn.Module) -> None:
        """Recording fails inside torch.compile's graphs (torch 2.13, a small EM net: the recorded step
        stops with an AttributeError inside torch._dynamo, and σ_t's double backward is not
        supported there): refuse before any hook, with what to do instead."""
        if any(is_compiled(m) for m in wrappers(model)):
            raise ConfigError("gradlab.watch: this model is compiled (torch.compile), and recording fails inside "
                              "compiled graphs: watch and train the eager module (model._orig_mod) while "
                              "recording, and compile when you are not recording")

    @staticmethod
    def _refuse_if_watched(model: nn.Module) -> None:
        if any(m in _WATCHED for m in model.modules()):
            raise RuntimeError(
                "this model (or one of its EM layers) is already watched by an open Recorder: close that "
                "Recorder (rec.close() or leave its with-block) before watching again"
            )


def _to_host(tensors: list[torch.Tensor]) -> list[float]:
    """Concatenate 1-D tensors and move them to the host with one transfer per device."""
    by_device: dict[torch.device, list[int]] = defaultdict(list)
    for i, t in enumerate(tensors):
        by_device[t.device].append(i)
    parts: list[list[float]] = [[] for _ in tensors]
    for idx in by_device.values():
        here = [tensors[i] if tensors[i].dtype == torch.float64 else tensors[i].double() for i in idx]
        flat = (torch.cat(here) if len(here) > 1 else here[0]).cpu().tolist()
        start = 0
        for i in idx:
            parts[i], start = flat[start:start + len(tensors[i])], start + len(tensors[i])
    return [v for part in parts for v in part]


def _step_log(log: Callable[[dict[str, float], int], object], iterations: bool):
    """The hook that turns a step's rows into `log(metrics, step)`: gradlab.integrations builds the summary from
    the records and the analysis, which the recorder must not import at module import time (they import it)."""
    from gradlab.integrations.metrics import StepLog

    return StepLog(log, iterations=iterations)


def watch(model: nn.Module, run_dir: str | Path | None = None, every: int | Schedule = 1, **options) -> Recorder:
    """Start recording `model` (see `Recorder` for the options); use as a context manager or call close()."""
    return Recorder(model, run_dir, every, **options)
