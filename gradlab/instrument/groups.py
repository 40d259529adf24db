"""Parameter groups whose gradient norms are recorded per step (e.g. backbone, EM unit, head)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

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
