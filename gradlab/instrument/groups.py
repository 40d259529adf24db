"""Parameter groups whose gradient norms are recorded per step (e.g. backbone, EM unit, head)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

GroupSpec = Mapping[str, "nn.Module | Iterable[nn.Parameter]"] | Callable[[nn.Module], Mapping]


def resolve_groups(model: nn.Module, groups: GroupSpec | None) -> dict[str, list[nn.Parameter]]:
    """Name → trainable parameters. Default: one group per top-level child module (or the whole model)."""
    if groups is None:
        groups = dict(model.named_children()) or {"model": model}
    elif callable(groups):
        groups = groups(model)
    resolved = {}
    for name, spec in groups.items():
        params = spec.parameters() if isinstance(spec, nn.Module) else spec
        trainable = [p for p in params if p.requires_grad]
        if trainable:
            resolved[name] = trainable
    return resolved


def group_grad_norms(groups: dict[str, list[nn.Parameter]]) -> tuple[list[str], torch.Tensor | None]:
    """‖∇‖ of each group that has gradients, as (names, a float64 vector on the parameters' device).

    One fused multi-tensor norm over all parameters, then per-group root-sum-squares: a few kernels per step
    however many parameters there are. Parameter gradients are accumulated in their own dtype.
    """
    names, grads, owner = [], [], []
    for name, params in groups.items():
        found = [p.grad for p in params if p.grad is not None]
        if found:
            owner += [len(names)] * len(found)
            names.append(name)
            grads += found
    if not grads:
        return [], None
    device = grads[0].device
    if any(g.device != device for g in grads):  # model parallel: one group at a time
        return names, torch.stack([torch.nn.utils.get_total_norm([g for g, o in zip(grads, owner) if o == i])
                                   .double().to(device) for i in range(len(names))])
    squares = torch.stack(torch._foreach_norm(grads)).double().square()
    return names, torch.zeros(len(names), dtype=torch.float64, device=device).index_add_(
        0, _owner_index(tuple(owner), device), squares).sqrt()


@functools.lru_cache(maxsize=64)
def _owner_index(owner: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The group of each gradient as a device tensor, made once per layout (no host-to-device copy per step)."""
    return torch.tensor(owner, device=device)
