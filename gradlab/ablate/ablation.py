"""`gradlab ablate`: expand a grid, run every trial (skipping finished ones, resuming unfinished ones), then write
what was found: OUT/summary.csv and summary.md (estimates with CIs over seeds), OUT/ablation.png and a combined
report of all runs in OUT/report/.

    run_ablation("demo", [parse_axis("model.kind=em,hem"), parse_axis("model.iterations=1,3,8")], seeds=3,
                 out="runs/ablate-T", workers=2)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from gradlab.ablate.executors import SUBMITIT
from gradlab.ablate.grid import Axis, Trial, expand
from gradlab.ablate.runner import Outcome, run_trials
from gradlab.ablate.summary import contrast_markdown, panel_frame, run_table, summary_table, to_markdown
from gradlab.analysis import load_metrics, load_runs
from gradlab.atomic import write_text
from gradlab.errors import ConfigError
from gradlab.run_dir import RunDirectory

MANIFEST = "ablation.json"


@dataclass
class AblationResult:
    out: Path
    trials: list[Trial]
    outcomes: list[Outcome]
    dropped: int  # grid points identical to an earlier one after resolution
    summary: pd.DataFrame | None = None
    report: Path | None = None

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state == "failed"]

    @property
    def pending(self) -> list[Outcome]:
        """Trials that jobs still have (running or just submitted)."""
        return [o for o in self.outcomes if o.state in ("running", "submitted")]


def run_ablation(config: str | None, axes: Sequence[Axis], seeds: int = 1, out: str | Path = "runs/ablation", *,
                 overrides: Sequence[str] = (), workers: int = 1, threads: int | None = None, quick: bool = False,
                 report: bool = True, progress: bool = True, gpus: Sequence[str] = (), executor: Any = None,
                 job_state: Callable[[str], str] | None = None, wait: bool = True,
                 processes: int = 1) -> AblationResult:
    """Run the grid into `out` (see the module docstring); rerunning the same call continues it. `executor`,
    `job_state` and `wait` send the trials out as jobs (gradlab.ablate.runner, gradlab.ablate.executors): the
    summary is written once every trial is complete; `processes` > 1 runs each job's trial under torchrun."""
    if workers < 1:
        raise ConfigError(f"--workers {workers} is out of range: allowed >= 1")
    out = Path(out)
    trials, dropped = expand(config, axes, seeds, overrides, quick)
    claim(out, manifest(config, axes, seeds, overrides, quick, trials))
    if progress:
        extra = f" ({dropped} grid points coincide after resolution and run once)" if dropped else ""
        print(f"ablation: {len(trials)} runs into {out}{extra}; logs in {out / 'logs'}")
    outcomes = run_trials(trials, out, config, workers, threads, progress, gpus=gpus, executor=executor,
                          job_state=job_state, wait=wait, processes=processes)
    result = AblationResult(out, trials, outcomes, dropped)
    done = [out / t.name for t in trials if RunDirectory(out / t.name).complete]
    if done and (executor is None or len(done) == len(trials)):
        result.summary = write_summary(done, [a.key for a in axes], out)
        if report:
            from gradlab.report import build_report

            result.report = build_report(done, out / "report", title=f"Ablation: {', '.join(a.key for a in axes)}").html
    return result


def manifest(config, axes, seeds, overrides, quick, trials) -> dict:
    return {"config": config, "set": list(overrides), "grid": {a.key: list(a.values) for a in axes}, "seeds": seeds,
            "quick": quick, "trials": [t.name for t in trials]}


def claim(out: Path, plan: dict) -> None:
    """Write OUT/ablation.json, or check that OUT holds this same ablation (so a rerun continues it)."""
    path = out / MANIFEST
    if path.is_file():
        old = json.loads(path.read_text())
        differ = [k for k in plan if old.get(k) != plan[k]]
        if differ:
            raise ConfigError(f"{out} holds another ablation ({', '.join(differ)} differ from {path}): "
                              "rerun it with its own arguments, or choose another --out")
        return
    if out.exists() and any(p.name != SUBMITIT for p in out.iterdir()):  # submitit makes its folder at once
        raise ConfigError(f"{out} exists, is not empty and holds no {MANIFEST}: choose another --out")
    write_text(path, json.dumps(plan, indent=2))


def write_summary(run_dirs: list[Path], keys: list[str], out: Path) -> pd.DataFrame:
    """OUT/summary.csv, OUT/summary.md, OUT/runs.csv (the per-run numbers the summary pools), OUT/ablation.png
    (metrics vs the first numeric axis) and, with EM and HEM in the grid, OUT/contrast.md (HEM − EM with Welch
    intervals)."""
    from gradlab.plots import ablation_panel, save

    records, metrics = load_runs(run_dirs), load_metrics(run_dirs)
    table = summary_table(records, metrics, keys)
    write_text(out / "summary.md", to_markdown(table, keys))
    effect = contrast_markdown(records, metrics, keys)
    if effect is not None:
        write_text(out / "contrast.md", effect)
    write_text(out / "summary.csv", table.to_csv(index=False))
    write_text(out / "runs.csv", run_table(records, metrics, keys).to_csv(index=False))
    x = "model.iterations" if "model.iterations" in keys else next(
        (k for k in keys if pd.api.types.is_numeric_dtype(table[k])), keys[0])
    long = panel_frame(table, x, keys)
    save(ablation_panel(long, x=x, hue="setting", metrics=tuple(long["metric"].unique())), out / "ablation.png")
    return table
