"""The interface between a model and the recorder: `tap`, its sinks, and the `TracedLayer` protocol.

It lives outside both `gradlab.layers` and `gradlab.instrument` and imports nothing of gradlab, so the layers
(which call `tap` and satisfy `TracedLayer`) and the recorder (a sink that finds traced layers) both import it
without importing each other.

A layer (or any user module) passes a state tensor through `tap(tensor, name, iteration, module=...)`.
With no recorder active this costs one truthiness check and returns the tensor itself. While a recorder
is active and the tensor is part of the autograd graph, the recorder registers a tensor hook that measures
‖∂L/∂tensor‖ when the backward pass reaches it (see `gradlab.instrument.recorder`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


class TapSink(Protocol):
    """What an active recorder offers to `tap` (implemented by `Recorder`); `diagnosing`: whether this step's
    diagnostics are recorded (the quantities that need more than a tap, such as the EMA unit's branch aliases)."""

    diagnosing: bool

    def owns(self, module: nn.Module | None) -> bool: ...

    def tap(
        self, tensor: torch.Tensor, name: str, iteration: int | None, module: nn.Module | None, leaf: bool
    ) -> torch.Tensor: ...


@runtime_checkable
class TracedLayer(Protocol):
    """A module that keeps the detached states of its last forward in `trace` while `tracing` is on
    (`gradlab.layers.UnrolledEM` and its `Trace`); the recorder diagnoses the forward of every such module."""

    tracing: bool
    trace: Any


_SINKS: list[TapSink] = []


def tap(
    tensor: torch.Tensor,
    name: str,
    iteration: int | None = None,
    *,
    module: nn.Module | None = None,
    leaf: bool = False,
) -> torch.Tensor:
    """Mark `tensor` as the state `name` of unrolled iteration `iteration` of `module`; return it.

    `leaf=True` is for a starting state that needs no gradient of its own (the bases μ^(0)): while recording
    with grad enabled, it is returned as a fresh leaf that requires grad, so the gradient that reaches it is
    measured. Without an active recorder the tensor is returned untouched.
    """
    if not _SINKS:
        return tensor
    for sink in reversed(_SINKS):
        if sink.owns(module):
            return sink.tap(tensor, name, iteration, module, leaf)
    return tensor


def recording() -> bool:
    """True while at least one recorder is active."""
    return bool(_SINKS)


def diagnosing() -> bool:
    """True while an active recorder records this step's diagnostics (its `diagnostics_every` schedule)."""
    return any(sink.diagnosing for sink in _SINKS)


def _activate(sink: TapSink) -> None:
    _SINKS.append(sink)


def _deactivate(sink: TapSink) -> None:
    if sink in _SINKS:
        _SINKS.remove(sink)
