"""Read run directories: records, metrics and configs, each joined with the run's config as dotted columns.

A path is a run directory (it holds config.toml) or a folder of run directories (every child that holds one).
Runs whose names collide (runs/em/seed0, runs/hem/seed0) are told apart by their path (`em/seed0`, `hem/seed0`).
Configs are read from config.toml as written (resolved: every key); nothing here imports torch models.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from gradlab.errors import RecordsError
from gradlab.records import SCHEMA, load_records, to_frame
from gradlab.run_dir import RECORDED_BY_WATCH, RunDirectory

Paths = str | os.PathLike | Iterable[str | os.PathLike]
CATEGORICAL = ("run", "layer", "quantity", "status")


def run_dirs(paths: Paths) -> list[Path]:
    """The run directories named by `paths` (folders of runs expanded), in the order given."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise RecordsError("no run directories given")
    found: list[Path] = []
    for item in map(Path, items):
        if not item.exists():
            raise RecordsError(f"no run directory at {item}: check the path (expected a folder with config.toml)")
        if RunDirectory(item).is_run:
            found.append(item)
            continue
        children = sorted(p for p in item.iterdir() if RunDirectory(p).is_run) if item.is_dir() else []
        if not children:
            raise RecordsError(f"{item} is not a run directory (no config.toml) and holds none: "
                               "give the folder that `gradlab train --out` wrote")
        found += children
    return found


def run_labels(dirs: list[Path]) -> list[str]:
    """Each run's name: its folder name, or as many trailing path parts as it takes to make names unique."""
    parts = [d.resolve().parts for d in dirs]
    for n in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-n:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    raise RecordsError(f"run directory given twice: {', '.join(map(str, dirs))}")


def load_configs(paths: Paths) -> pd.DataFrame:
    """One row per run: `run`, `run_dir` and every config key as a dotted column (`model.step_size`, `seed`)."""
    dirs = run_dirs(paths)
    rows = [{"run": label, "run_dir": str(d), **RunDirectory(d).flat_config()}
            for d, label in zip(dirs, run_labels(dirs))]
    return _tidy_config_columns(pd.DataFrame(rows))


def load_runs(paths: Paths, config: str | Sequence[str] = "all", missing: str = "raise") -> pd.DataFrame:
    """The records of every run (`gradlab.load_records` schema) with the run's config columns and `run_dir`.

    `config`: "all" keys, or the dotted keys to join (each joined key costs 1-8 bytes per record: at millions
    of records join the keys you group by). String columns become categoricals. `missing="skip"` leaves out a
    run with no readable records, with a warning (the frame may then be empty), instead of raising.
    """
    configs = _select(load_configs(paths), config)
    frames = []
    for row in configs.itertuples(index=False):
        records = _skippable(load_records, missing, row.run_dir, "records")
        if records is not None:
            frames.append(records.assign(run=row.run))
    records = pd.concat(frames, ignore_index=True) if frames else to_frame(SCHEMA.empty_table())
    return _categorical(records.merge(configs, on="run", how="left", validate="many_to_one"))


def load_metrics(paths: Paths, config: str | Sequence[str] = "all", missing: str = "raise") -> pd.DataFrame:
    """metrics.parquet of every run: `run`, `step`, `name`, `value` and the config columns (as in load_runs).
    `missing="skip"` leaves out a run without readable metrics, with a warning, instead of raising."""
    configs = _select(load_configs(paths), config)
    frames = []
    for row in configs.itertuples(index=False):
        metrics = _skippable(_read_metrics, missing, Path(row.run_dir), "metrics")
        if metrics is not None:
            frames.append(metrics.assign(run=row.run))
    empty = pd.DataFrame({"step": pd.Series(dtype="int64"), "name": pd.Series(dtype=object),
                          "value": pd.Series(dtype="float64"), "run": pd.Series(dtype=object)})
    metrics = pd.concat(frames, ignore_index=True) if frames else empty
    return _categorical(metrics[["run", "step", "name", "value"]].merge(configs, on="run", how="left",
                                                                         validate="many_to_one"))


def _read_metrics(run_dir: Path) -> pd.DataFrame:
    run = RunDirectory(run_dir)
    path = run.metrics_path
    if not path.is_file() and run.meta().get("recorder") == RECORDED_BY_WATCH:
        return pd.DataFrame({"step": pd.Series(dtype="int64"), "name": pd.Series(dtype=object),
                             "value": pd.Series(dtype="float64")})  # its loss is in the records
    if not path.is_file():
        raise RecordsError(f"no metrics in run {run_dir} (metrics.parquet is written at the first "
                           "checkpoint): train longer or leave this run out")
    try:
        return pd.read_parquet(path, columns=["step", "name", "value"])
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise RecordsError(f"cannot read {path}: {err}") from None


def _skippable(read, missing: str, run_dir, what: str):
    """read(run_dir); with missing="skip" a RecordsError becomes a warning and None."""
    if missing not in ("raise", "skip"):
        raise ValueError(f"missing={missing!r}: use 'raise' or 'skip'")
    try:
        return read(run_dir)
    except RecordsError as err:
        if missing == "raise":
            raise
        warnings.warn(f"{err} ({what} of this run left out)", stacklevel=3)
        return None


def _select(configs: pd.DataFrame, config: str | Sequence[str]) -> pd.DataFrame:
    if isinstance(config, str):
        if config != "all":
            raise ValueError(f"config={config!r}: use 'all' or a list of dotted keys such as ['model.kind']")
        return configs
    unknown = [k for k in config if k not in configs.columns]
    if unknown:
        raise KeyError(f"unknown config key(s) {', '.join(unknown)}; the runs have {', '.join(configs.columns[2:])}")
    return configs[["run", "run_dir", *config]]


def _tidy_config_columns(configs: pd.DataFrame) -> pd.DataFrame:
    """A key whose values mix types across runs (grad_iterations "all" and 1) becomes text, so it sorts. A key
    a run's config lacks stays missing (NaN): it is no value of the key."""
    for name in configs.columns:
        present = configs[name].notna()
        kinds = {type(v) for v in configs.loc[present, name]}
        if len(kinds) > 1 and not kinds <= {int, float}:
            configs[name] = configs[name].where(~present, configs.loc[present, name].map(str))
    return configs


def _categorical(frame: pd.DataFrame) -> pd.DataFrame:
    """Strings (names, statuses, string config values) as categoricals: one small code per row."""
    for name in frame.columns:
        if name in (*CATEGORICAL, "name", "run_dir") or pd.api.types.is_string_dtype(frame[name].dtype) \
                or frame[name].dtype == object:
            frame[name] = frame[name].astype("category")
    return frame
