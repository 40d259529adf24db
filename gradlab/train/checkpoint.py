"""Atomic, pickle-free checkpoints: `torch.save` to a temp file + `os.replace`; load with weights_only=True."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gradlab.atomic import atomic_path
from gradlab.errors import GradlabError, torch_load_reason


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Tensors, numbers, strings and containers only (no pickle): a corrupt file gives a clear error."""
    if not path.is_file():
        raise GradlabError(f"no checkpoint at {path}: the run has not saved one yet (to start afresh, train "
                           "without --resume)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise GradlabError(f"checkpoint {path} cannot be read ({type(err).__name__}): {torch_load_reason(err)}") \
            from None


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
