"""How much the trained networks of a study rest on their EM units: each finished run's val mIoU as trained and
with the EM branch of its EMA unit knocked out (`gradlab.train.em_branch_knockout`: the branch BN(W_out y)
replaced by its mean per channel over the validation split), from the run's last checkpoint.

    python analyses/knockout.py plateau_t_train      # the run directories of runs/studies/plateau_t_train

Run directories do not outlive their machine, so the numbers are banked where the study's are: the runs already
in BANK/knockout.csv (default analyses/results/STUDY) are kept and not evaluated again, each finished run of
the study's folder not in it is added, and BANK/knockout.md gives per setting the mean over runs of both mIoU and
of their difference (knocked out − trained) with a Student-t 95% CI. A run whose checkpoint this checkout's code
does not score at the val mIoU the run logged is refused. A few seconds per run on one CPU core.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch
from _study import RESULTS, STUDY_ROOT
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from gradlab.ablate.ablation import MANIFEST
from gradlab.ablate.grid import grid_keys
from gradlab.analysis.intervals import INTERVAL_LABEL, mean_interval
from gradlab.analysis.wording import signed
from gradlab.atomic import write_text
from gradlab.cli import one_line
from gradlab.data import splits_from_config
from gradlab.errors import GradlabError
from gradlab.report import tables as fmt
from gradlab.run_dir import RunDirectory
from gradlab.train import em_branch_knockout, load_model
from gradlab.train.metrics_log import final_value

TABLE, SUMMARY = "knockout.csv", "knockout.md"
COLUMNS = ("miou", "miou_em_ablated", "knockout")  # knockout = miou_em_ablated − miou, per run


def knockout_run(run_dir: Path) -> dict[str, float]:
    """Both val mIoU of one run, on its own validation split, from its last checkpoint; GradlabError where this
    checkout's code does not give the val mIoU the run logged at its end (the code it was trained with differs)."""
    model, config = load_model(run_dir)
    val = splits_from_config(config.data, config.seed)[1]
    loader = DataLoader([val[i] for i in range(len(val))], batch_size=config.train.batch_size)
    result = em_branch_knockout(model, loader, val.num_classes, torch.device("cpu"))
    logged = final_value(run_dir / "metrics.parquet", "miou")
    if abs(result["miou"] - logged) > 1e-9:
        raise GradlabError(f"{run_dir}: this checkout's code scores its checkpoint at val mIoU {result['miou']:.6f}, "
                           f"the run logged {logged:.6f}: not the code it was trained with")
    return result | {"knockout": result["miou_em_ablated"] - result["miou"]}


def banked_knockouts(bank: Path, plan: dict, keys: list[str]) -> pd.DataFrame:
    """BANK/knockout.csv (checked: the study's columns, only its trials), or an empty table."""
    if not (bank / TABLE).is_file():
        return pd.DataFrame(columns=["run", *keys, "seed", *COLUMNS])
    table = pd.read_csv(bank / TABLE)
    missing = [c for c in ("run", *keys, "seed", *COLUMNS) if c not in table.columns]
    foreign = sorted(set(table["run"].astype(str)) - set(plan["trials"])) if "run" in table.columns else []
    if missing or foreign:
        raise GradlabError(f"{bank / TABLE} is not this study's: " + (f"no column {', '.join(missing)}" if missing
                           else f"runs {', '.join(foreign[:3])} are not its trials"))
    return table


def knockout_study(runs: Path, bank: Path) -> pd.DataFrame:
    """BANK/knockout.csv extended by every finished run with an EM unit in `runs` (an ablation folder) that it
    lacks, written again after each run (an interruption keeps the runs done); its rows."""
    plan = json.loads((runs / MANIFEST).read_text())
    keys = grid_keys(plan["grid"])
    table = banked_knockouts(bank, plan, keys)
    todo = [runs / name for name in plan["trials"] if name not in set(table["run"]) and
            RunDirectory(runs / name).complete and RunDirectory(runs / name).flat_config()["model.kind"] != "none"]
    for run_dir in tqdm(todo, desc="knockout", unit="run", disable=not todo):
        config = RunDirectory(run_dir).flat_config()
        row = {"run": run_dir.name, **{k: config[k] for k in keys}, "seed": config["seed"], **knockout_run(run_dir)}
        table = pd.concat([table.astype({"run": str}), pd.DataFrame([row])], ignore_index=True)
        write_text(bank / TABLE, table.sort_values("run", ignore_index=True).to_csv(index=False))
    return table.sort_values("run", ignore_index=True)


def to_markdown(table: pd.DataFrame, keys: list[str], trials: int) -> str:
    """Per setting: runs, both mIoU and their difference, each the mean over runs with its Student-t 95% CI;
    then how many of the study's trials that is."""
    heads = ["val mIoU", "EM branch knocked out", "difference"]
    lines = ["| " + " | ".join([*keys, "runs", *(f"{h} [{INTERVAL_LABEL}]" for h in heads)]) + " |",
             "|" + "---|" * (len(keys) + 1 + len(heads))]
    for setting, g in table.groupby(keys, sort=True):
        cells = [f"{v:g}" if isinstance(v, float) else str(v) for v in setting] + [str(len(g))]
        for column in COLUMNS:
            mean, low, high = mean_interval(g[column])
            form = (lambda v: signed(v, 3)) if column == "knockout" else fmt.number
            bounds = fmt.interval(low, high, form)
            cells.append(form(mean) if bounds == fmt.MISSING else f"{form(mean)} {bounds}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + (f"\n\n{len(table)} of the study's {trials} runs: those whose checkpoints were on the "
                               "machine that banked them.\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help="a study of analyses/ (its runs in runs/studies/STUDY)")
    parser.add_argument("--runs", default=None, help="the study's folder (default runs/studies/STUDY)")
    parser.add_argument("--bank", default=None, help="where knockout.csv is kept (default analyses/results/STUDY)")
    args = parser.parse_args(argv)
    runs = Path(args.runs) if args.runs else STUDY_ROOT / "runs" / "studies" / args.study
    bank = Path(args.bank) if args.bank else RESULTS / args.study
    torch.set_num_threads(1)
    try:
        if not (runs / MANIFEST).is_file():
            raise GradlabError(f"{runs} holds no {MANIFEST}: give the folder of a study (--runs)")
        bank.mkdir(parents=True, exist_ok=True)
        table = knockout_study(runs, bank)
        if table.empty:  # e.g. a study of baselines (model.kind = none), or none finished yet
            print(f"knockout: no finished run with an EM unit in {runs}, none banked in {bank / TABLE}")
            return 0
        plan = json.loads((runs / MANIFEST).read_text())
        write_text(bank / SUMMARY, to_markdown(table, grid_keys(plan["grid"]), len(plan["trials"])))
    except (GradlabError, OSError, ValueError) as err:
        print(f"knockout: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"knockout: interrupted; {bank / TABLE} keeps the runs done, the same command goes on",
              file=sys.stderr)
        return 130
    print((bank / SUMMARY).read_text())
    print(f"knockout: {len(table)} runs in {bank / TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
