"""Load a backbone's weights from a local state_dict file; nothing is ever downloaded."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from gradlab.errors import ConfigError, torch_load_reason

# An ImageNet classifier that a backbone (which has none) drops silently: torchvision state_dicts carry `fc.*`.
CLASSIFIER_PREFIXES = ("fc.",)
SHOWN_KEYS = 5


def _few(keys: list[str]) -> str:
    more = f" (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else ""
    return ", ".join(keys[:SHOWN_KEYS]) + more


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state_dict (a mapping of names to tensors) with `torch.load(weights_only=True)` on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pretrained={str(path)!r} does not exist: pass the path of a local state_dict file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise ConfigError(
            f"pretrained={str(path)!r} cannot be read as a state_dict with weights_only=True: {torch_load_reason(e)}"
        ) from e
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(
            f"pretrained={str(path)!r} holds a {type(state).__name__}, not a state_dict: "
            "save `module.state_dict()` (a mapping of names to tensors)"
        )
    return dict(state)


def load_local_weights(module: nn.Module, path: str | Path, strict: bool = True) -> nn.Module:
    """Load `path` into `module`; ConfigError names a few missing, unexpected or wrongly shaped keys.

    Shape mismatches always fail. With `strict`, missing and unexpected keys fail too; `fc.*` keys (an ImageNet
    classifier) are dropped when the module has no `fc`.
    """
    state = read_state_dict(path)
    own = module.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(CLASSIFIER_PREFIXES)}
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
              for k, v in state.items() if k in own and v.shape != own[k].shape]
    if shapes:
        raise ConfigError(f"pretrained={str(path)!r} does not fit this backbone: shape mismatch in {_few(shapes)}")
    result = module.load_state_dict(state, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"missing keys {_few(result.missing_keys)}")
    if result.unexpected_keys:
        problems.append(f"unexpected keys {_few(result.unexpected_keys)}")
    if strict and problems:
        raise ConfigError(
            f"pretrained={str(path)!r} does not fit this backbone: {'; '.join(problems)} "
            "(check the backbone name and deep_stem, or pass strict=False)"
        )
    return module
