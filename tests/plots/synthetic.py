"""Small synthetic frames in the record schema (docs/recording.md) and the other tidy inputs of gradlab.plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg

LAYER = "head.ema.em"
RATES = {"em": 2.0, "hem": 0.3}  # decades of decay per iteration back from the output


def make_records(kinds=("em", "hem"), seeds=(0,), T=4, steps=range(0, 40, 4), layers=(LAYER,), *,
                 dead=(), no_grad_below=None, nonfinite=()) -> pd.DataFrame:
    """grad/x (t = 1..T), grad/mu (t = 0..T) and loglik (t = 0..T) per run, plus config columns.

    dead: steps at which EM's grad/x at t = 1 is an exact 0; no_grad_below: HEM iterations t < this carry
    status no_grad (value NaN); nonfinite: steps at which HEM's grad/x at t = T is NaN (status nonfinite).
    """
    rng = np.random.default_rng(0)
    rows = []
    for kind in kinds:
        for seed in seeds:
            run = f"{kind}-T{T}-s{seed}"
            for step in steps:
                for layer in layers:
                    rows += _step_rows(run, kind, step, layer, T, rng)
    frame = pd.DataFrame(rows, columns=["run", "step", "layer", "iteration", "quantity", "value", "status",
                                        "rank", "model.kind", "model.iterations"])
    frame = frame.astype({"step": "int64", "iteration": "Int64", "rank": "int64"})
    x = frame["quantity"] == "grad/x"
    em, hem = frame["model.kind"] == "em", frame["model.kind"] == "hem"
    frame.loc[x & em & (frame["iteration"] == 1) & frame["step"].isin(dead), "value"] = 0.0
    if no_grad_below is not None:
        cut = x & hem & (frame["iteration"] < no_grad_below)
        frame.loc[cut, ["value", "status"]] = [np.nan, "no_grad"]
    bad = x & hem & (frame["iteration"] == T) & frame["step"].isin(nonfinite)
    frame.loc[bad, ["value", "status"]] = [np.nan, "nonfinite"]
    return frame


def _step_rows(run: str, kind: str, step: int, layer: str, T: int, rng: np.random.Generator) -> list[tuple]:
    common = (0, kind, T)
    rows = []
    for t in range(0, T + 1):
        noise = 10 ** rng.normal(0, 0.2)
        g = 10 ** (-RATES[kind] * (T - t)) * noise
        if t > 0:
            rows.append((run, step, layer, t, "grad/x", g, "ok", *common))
        rows.append((run, step, layer, t, "grad/mu", 0.5 * g, "ok", *common))
        rows.append((run, step, layer, t, "loglik", -2.0 + 0.5 * (1 - np.exp(-t)) + rng.normal(0, 0.01), "ok",
                     *common))
    rows.append((run, step, "", None, "loss", 1.0, "ok", *common))  # a per-step row: no iteration
    return rows


def make_decay(kinds=("em", "hem"), seeds=(0, 1), steps=range(0, 100, 10), *, dead=(), undefined=()) -> pd.DataFrame:
    """A decay-metrics frame: run, step, layer, quantity, decades, model.kind; EM's decades drift down over
    training. dead: steps where EM's first run has −∞; undefined: steps where it has NaN."""
    rng = np.random.default_rng(1)
    rows = []
    for kind in kinds:
        for seed in seeds:
            for step in steps:
                base = -RATES[kind] * 3 * (1 + step / 200)
                rows.append((f"{kind}-s{seed}", step, LAYER, "grad/x", base + rng.normal(0, 0.2), kind))
    frame = pd.DataFrame(rows, columns=["run", "step", "layer", "quantity", "decades", "model.kind"])
    first = frame["run"] == f"{kinds[0]}-s{seeds[0]}"
    frame.loc[first & frame["step"].isin(dead), "decades"] = -np.inf
    frame.loc[first & frame["step"].isin(undefined), "decades"] = np.nan
    return frame


def make_summary(Ts=(1, 2, 3, 4, 6, 8)) -> pd.DataFrame:
    """An ablation summary: metric, model.iterations, model.kind, estimate, ci_low, ci_high."""
    rows = []
    for kind in ("em", "hem"):
        for T in Ts:
            decades = -RATES[kind] * (T - 1)
            miou = 0.6 - (0.02 * max(T - 3, 0) if kind == "em" else 0.0) + 0.01 * T / 8
            rows.append(("decades", T, kind, decades, decades - 0.3, decades + 0.3))
            rows.append(("miou", T, kind, miou, miou - 0.02, miou + 0.02))
    return pd.DataFrame(rows, columns=["metric", "model.iterations", "model.kind", "estimate", "ci_low", "ci_high"])


def make_metrics(runs=("em-T4", "hem-T4"), steps=200, every=50) -> pd.DataFrame:
    """metrics.parquet-like rows (run, step, name, value): loss every step, miou every `every` steps."""
    rows = []
    for i, run in enumerate(runs):
        for step in range(steps):
            rows.append((run, step, "loss", 2.0 * np.exp(-step / (80 + 40 * i)) + 0.1))
            if step % every == every - 1:
                rows.append((run, step, "miou", 0.3 + 0.3 * (1 - np.exp(-step / 100)) + 0.02 * i))
    return pd.DataFrame(rows, columns=["run", "step", "name", "value"])


def make_attention(T=3, K=5, H=8, W=8, seed=0) -> np.ndarray:
    """(T, K, H, W) responsibilities that sharpen over the iterations (softmax over K)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(K, H, W))
    z = [np.exp(t * logits) / np.exp(t * logits).sum(0) for t in range(1, T + 1)]
    return np.stack(z)


def artists(fig, gid: str) -> list:
    """Every line or collection with this gid in any of the figure's axes."""
    return [a for ax in fig.axes for a in [*ax.lines, *ax.collections] if a.get_gid() == gid]


def points(fig, gid: str) -> int:
    """The number of markers drawn by the lines with this gid."""
    return sum(len(line.get_xdata()) for line in artists(fig, gid))


def render(fig):
    """Draw the figure with Agg (as `save` does) and return the renderer: window extents are then in pixels."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def suptitle(fig):
    """The figure title's Text artist."""
    return next(t for t in fig.texts if t.get_text() == fig.get_suptitle())
