"""T_eval vs T_train: evaluate the trained models of the T_train study (τ = 1) with more and fewer unrolled
iterations than they were trained with (the iterations hold no parameters, so any T_eval loads the same weights).
EMANet evaluates with T_eval > T_train; whether accuracy holds up shows whether training reached a fixed point.

    python analyses/t_eval.py [--runs runs/studies/t_train] [--t-eval 1,2,3,5,8,12,16]

Writes OUT/t_eval.csv (run, settings, T_train, T_eval, val mIoU), OUT/t_eval.md (mean over seeds with a 95%
Student-t CI) and OUT/t_eval.png (one panel per setting: a line per T_train, val mIoU vs T_eval).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from gradlab.analysis import load_configs, t_interval
from gradlab.atomic import write_text
from gradlab.data import splits_from_config
from gradlab.plots import save
from gradlab.plots.common import house_style, new_figure, palette
from gradlab.train import evaluate, load_model


def evaluate_at(run_dir: Path, t_eval: list[int]) -> list[dict]:
    """val mIoU of one trained run at each T_eval, on its own validation split (built once)."""
    rows, loader = [], None
    for t in t_eval:
        model, config = load_model(run_dir, overrides=[f"model.iterations={t}"])
        if loader is None:
            val = splits_from_config(config.data, config.seed)[1]
            loader = DataLoader([val[i] for i in range(len(val))], batch_size=config.train.batch_size)
        miou = evaluate(model, loader, val.num_classes, torch.device("cpu"))["miou"]
        rows.append({"run": run_dir.name, "T_eval": t, "miou": miou})
    return rows


def setting(row) -> str:
    return "EM" if row["model.kind"] == "em" else f"HEM η = {row['model.step_size']:g}"


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (name, t_train, t_eval), g in table.groupby(["setting", "T_train", "T_eval"]):
        low, high = t_interval(g["miou"].to_numpy())
        out.append({"setting": name, "T_train": t_train, "T_eval": t_eval, "seeds": len(g),
                    "miou": g["miou"].mean(), "low": low, "high": high})
    return pd.DataFrame(out)


def figure(summary: pd.DataFrame):
    names = sorted(summary["setting"].unique())
    with house_style():
        fig, axes = new_figure(1, len(names), width=4.2)
        colors = palette(sorted(summary["T_train"].unique()), "model.iterations")
        for ax, name in zip(axes[0], names):
            for t_train, g in summary[summary["setting"] == name].groupby("T_train"):
                ax.plot(g["T_eval"], g["miou"], marker="o", color=colors[t_train], label=f"T_train = {t_train}")
                ax.fill_between(g["T_eval"], g["low"], g["high"], color=colors[t_train], alpha=0.15)
            ax.set(title=name, xlabel=r"$T_{\mathrm{eval}}$", ylabel="val mIoU", xscale="log")
            ax.set_xticks(sorted(summary["T_eval"].unique()), labels=sorted(summary["T_eval"].unique()))
        axes[0, -1].legend(fontsize="small")
    return fig


def markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * frame.shape[1]]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/studies/t_train", help="the T_train study's folder")
    parser.add_argument("--t-eval", default="1,2,3,5,8,12,16", help="comma-separated T_eval values")
    parser.add_argument("--temperature", type=float, default=1.0, help="which τ of the study (default 1)")
    parser.add_argument("--out", default=None, help="output folder (default RUNS/t_eval)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: more than the free cores slows evaluation many times)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_eval = [int(t) for t in args.t_eval.split(",")]
    configs = load_configs(args.runs)
    configs = configs[np.isclose(configs["model.temperature"], args.temperature)]
    configs = configs[[(Path(d) / "checkpoints" / "last.pt").is_file() for d in configs["run_dir"]]]
    rows = []
    for run_dir in tqdm(list(configs["run_dir"]), desc="T_eval", unit="run"):
        rows += evaluate_at(Path(run_dir), t_eval)
    table = pd.DataFrame(rows).merge(configs, on="run")
    table["setting"] = table.apply(setting, axis=1)
    table["T_train"] = table["model.iterations"]
    out = Path(args.out or Path(args.runs) / "t_eval")
    write_text(out / "t_eval.csv", table[["run", "setting", "T_train", "T_eval", "miou", "seed"]].to_csv(index=False))
    summary = summarize(table)
    wide = summary.assign(cell=[f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in
                                zip(summary["miou"], summary["low"], summary["high"])])
    wide = wide.pivot(index=["setting", "T_train"], columns="T_eval", values="cell")
    wide.columns = [f"T_eval={t}" for t in wide.columns]
    write_text(out / "t_eval.md", markdown(wide.reset_index()))
    save(figure(summary), out / "t_eval.png")
    print((out / "t_eval.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
