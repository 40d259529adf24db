"""A trained model back from its run directory, for evaluation, attribution and notebooks."""

from __future__ import annotations

from pathlib import Path

import torch

from gradlab.errors import GradlabError
from gradlab.models import model_from_config
from gradlab.run_dir import RunDirectory
from gradlab.train.checkpoint import load_checkpoint
from gradlab.train.config import Config, run_config


def load_model(run_dir: str | Path, device: str | torch.device = "cpu",
               overrides: list[str] | None = None) -> tuple[torch.nn.Module, Config]:
    """(model in eval mode with the weights of checkpoints/last.pt, the run's resolved config). `overrides`
    change the architecture where the weights allow it, e.g. ["model.iterations=8"] to evaluate at T_eval = 8
    (the iterations hold no parameters)."""
    run = RunDirectory(run_dir)
    config = run_config(run_dir, overrides)
    state = load_checkpoint(run.checkpoint)["model"]
    try:
        net = model_from_config(config.model, state["head.classifier.weight"].shape[0])
        net.load_state_dict(state)
    except (KeyError, RuntimeError) as err:
        raise GradlabError(f"checkpoint {run.checkpoint} does not fit the run's config.toml: "
                           f"{str(err).splitlines()[0]}") from None
    return net.to(device).eval(), config
