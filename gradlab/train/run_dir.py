"""A run directory: config.toml (resolved), meta.json, records/, metrics.parquet, checkpoints/, report/."""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from gradlab.atomic import write_text
from gradlab.errors import ConfigError
from gradlab.train.config import Config, load_config, to_toml


class RunDirectory:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.toml"
        self.meta_path = self.path / "meta.json"
        self.metrics_path = self.path / "metrics.parquet"
        self.checkpoint = self.path / "checkpoints" / "last.pt"

    def create(self, config: Config, meta: dict[str, Any]) -> None:
        """Start a new run; an existing non-empty folder is refused (resume it or choose another)."""
        if self.path.exists() and any(self.path.iterdir()):
            raise ConfigError(f"run directory {self.path} already exists and is not empty: "
                              "add --resume to continue it, or choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.config_path, to_toml(config))
        self.write_meta({**meta, "status": "running"})

    def config(self, overrides: list[str] | None = None) -> Config:
        if not self.config_path.is_file():
            raise ConfigError(f"{self.path} is not a run directory (no config.toml): check the path or drop --resume")
        return load_config(self.config_path, overrides)

    def meta(self) -> dict[str, Any]:
        return json.loads(self.meta_path.read_text()) if self.meta_path.is_file() else {}

    def write_meta(self, meta: dict[str, Any]) -> None:
        write_text(self.meta_path, json.dumps(meta, indent=2, default=str))

    def update_meta(self, **changes: Any) -> None:
        self.write_meta({**self.meta(), **changes})

    @property
    def complete(self) -> bool:
        return self.meta().get("status") == "complete"


def run_meta(config: Config, device: torch.device, world: int) -> dict[str, Any]:
    """Versions, seed, the git revision of the user's working directory and device: what it takes to reproduce
    the run."""
    import gradlab

    return {
        "gradlab_version": gradlab.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "seed": config.seed,
        "git_revision": git_revision(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "world_size": world,
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def git_revision(cwd: str | Path | None = None) -> str | None:
    """The commit checked out where the user runs gradlab (`cwd`, default the current directory): the code and
    configs of their project, not gradlab's own source tree (gradlab_version says which gradlab ran). None
    outside a git repository, in one without commits, or without git."""
    try:
        out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=cwd or Path.cwd())
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None
