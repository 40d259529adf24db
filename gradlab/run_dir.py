"""The run directory: the one home of the name of every file in it, and of reading its metadata (no torch).

    RUN/config.toml          the resolved config, every key (written once, at the start)
    RUN/meta.json            versions, seed, git revision, device, world size; `status` (RUN_STATUSES)
    RUN/metrics.parquet      loss, lr, val mIoU per step
    RUN/records/part-r{rank:03d}-{index:06d}.parquet   the recorder's parts (gradlab.records)
    RUN/checkpoints/last.pt  the last checkpoint
    RUN/attribution.parquet  `gradlab attribute`'s table
    RUN/report/              report.html, report.md, figures, attribution figures
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gradlab._toml import tomllib
from gradlab.atomic import write_text
from gradlab.errors import ConfigError, RecordsError

CONFIG = "config.toml"
META = "meta.json"
METRICS = "metrics.parquet"
RECORDS = "records"
CHECKPOINT = "checkpoints/last.pt"
ATTRIBUTION = "attribution.parquet"
REPORT = "report"
REPORT_HTML, REPORT_MD = "report.html", "report.md"
ATTRIBUTION_PROFILE, ATTRIBUTION_INPUTS = "attribution_profile.png", "attribution_inputs.png"  # in RUN/report/
ATTRIBUTION_FIGURES = "attribution*.png"  # what a report includes from RUN/report/
PARTS = "part-*.parquet"

#: meta.json's `status`: running (or killed while running), complete, stopped (a non-finite loss), failed,
#: interrupted (SIGINT or SIGTERM; the last checkpoint is kept, `gradlab train --resume` continues it)
RUN_STATUSES = ("running", "complete", "stopped", "failed", "interrupted")
#: meta.json's `recorder` in a run directory that `gradlab.watch` made (a user's own loop: no metrics.parquet,
#: its loss and lr are per-step records)
RECORDED_BY_WATCH = "gradlab.watch"


def part_name(rank: int, index: int) -> str:
    """The file name of records part `index` written by `rank`."""
    return f"part-r{rank:03d}-{index:06d}.parquet"


def rank_parts(rank: int) -> str:
    """The glob of every records part of `rank`."""
    return f"part-r{rank:03d}-*.parquet"


class RunDirectory:
    """A run directory's paths, its metadata and its config as written; `gradlab.train` creates and fills it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / CONFIG
        self.meta_path = self.path / META
        self.metrics_path = self.path / METRICS
        self.records_path = self.path / RECORDS
        self.checkpoint = self.path / CHECKPOINT
        self.attribution_path = self.path / ATTRIBUTION
        self.report_path = self.path / REPORT

    @property
    def is_run(self) -> bool:
        """True when the folder holds a config.toml (what makes a folder a run directory)."""
        return self.config_path.is_file()

    def create(self, config_toml: str, meta: dict[str, Any]) -> None:
        """Start a new run; an existing non-empty folder is refused (resume it or choose another)."""
        if self.path.exists() and any(self.path.iterdir()):
            raise ConfigError(f"run directory {self.path} already exists and is not empty: "
                              "add --resume to continue it, or choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.config_path, config_toml)
        self.write_meta({**meta, "status": "running"})

    def start_recorded(self, settings: Mapping[str, Any], meta: Callable[[], dict[str, Any]]) -> bool:
        """Make the folder that `gradlab.watch(model, run_dir)` records a user's own training loop into a run
        directory, so that `gradlab report` and `load_runs` read it: config.toml of the recorder's `settings`
        (dotted keys), meta.json "running" with the fields `meta()` gives. Only a new or empty folder is made one;
        False, and nothing written, for a run directory already (`gradlab train` made it) or a folder that holds
        other files."""
        if self.is_run or (self.path.exists() and any(self.path.iterdir())):
            return False
        self.create("# recorded by gradlab.watch in the user's training loop (not a gradlab train config)\n"
                    + tables_toml(settings), {**meta(), "recorder": RECORDED_BY_WATCH})
        return True

    def require_run(self) -> None:
        if not self.is_run:
            raise ConfigError(f"{self.path} is not a run directory (no {CONFIG}): check the path or drop --resume")

    def meta(self) -> dict[str, Any]:
        """meta.json as a dict ({} when there is none); a truncated or foreign file is a RecordsError."""
        if not self.meta_path.is_file():
            return {}
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise RecordsError(f"{self.meta_path} is not readable JSON ({err}): restore it, or delete it to let "
                               "gradlab write a new one") from None
        if not isinstance(meta, dict):
            raise RecordsError(f"{self.meta_path} holds a JSON {type(meta).__name__}, not an object: restore it, "
                               "or delete it to let gradlab write a new one")
        return meta

    def write_meta(self, meta: dict[str, Any]) -> None:
        write_text(self.meta_path, json.dumps(meta, indent=2, default=str))

    def update_meta(self, **changes: Any) -> None:
        self.write_meta({**self.meta(), **changes})

    @property
    def status(self) -> str:
        """meta.json's status, "unknown" without a readable one."""
        try:
            return str(self.meta().get("status", "unknown"))
        except RecordsError:
            return "unknown"

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def flat_config(self) -> dict[str, Any]:
        """config.toml as {"seed": 0, "model.kind": "hem", ...} (the dotted keys of `gradlab train --set`)."""
        try:
            return flat_keys(tomllib.loads(self.config_path.read_text()))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise RecordsError(f"cannot read the config of run {self.path}: {err}") from None


def toml_value(v: Any) -> str:
    """A value as TOML text (what config.toml and `--set` read back as the same value)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return _toml_string(v)
    return repr(v)


def _toml_string(text: str) -> str:
    """A TOML basic string in ASCII: quote, backslash, control characters (DEL included) and every non-ASCII
    character escaped as \\uXXXX or \\UXXXXXXXX (json.dumps would write a surrogate pair, which TOML refuses)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif code < 0x20 or code >= 0x7F:
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def tables_toml(flat: Mapping[str, Any]) -> str:
    """Dotted keys {"record.every": 1, "seed": 0} as TOML text: top-level keys first, then one table per prefix."""
    top = [f"{k} = {toml_value(v)}" for k, v in flat.items() if "." not in k]
    tables: dict[str, list[str]] = {}
    for key, value in flat.items():
        if "." in key:
            table, name = key.split(".", 1)
            tables.setdefault(table, []).append(f"{name} = {toml_value(value)}")
    blocks = (["\n".join(top)] if top else []) + [f"[{t}]\n" + "\n".join(lines) for t, lines in tables.items()]
    return "\n\n".join(blocks) + "\n"


def flat_keys(table: Mapping[str, Any]) -> dict[str, Any]:
    """A config's tables as dotted keys: {"seed": 0, "model": {"kind": "hem"}} → {"seed": 0, "model.kind": "hem"}.
    One level of tables, as in config.toml; for a `Config` pass `dataclasses.asdict(config)`."""
    flat: dict[str, Any] = {}
    for name, value in table.items():
        if isinstance(value, Mapping):
            flat.update({f"{name}.{key}": v for key, v in value.items()})
        else:
            flat[name] = value
    return flat


def run_meta(*, seed: int | None, device: str, world: int) -> dict[str, Any]:
    """Versions, seed, the git revision of the user's working directory and the device: what it takes to
    reproduce the run (torch's version is added by the trainer, which imports it)."""
    import gradlab

    return {
        "gradlab_version": gradlab.__version__,
        "python": platform.python_version(),
        "seed": seed,
        "git_revision": git_revision(),
        "device": device,
        "world_size": world,
        "started": now(),
    }


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


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
