"""Hand-built record frames with known answers (the real schema, no training)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gradlab.records import COLUMNS


def rows_frame(rows: list[tuple]) -> pd.DataFrame:
    """Records from (run, step, layer, iteration, quantity, value, status, rank) tuples."""
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["iteration"] = frame["iteration"].astype("Int64")
    return frame.astype({"value": float, "step": "int64", "rank": "int64"})


def series(values, quantity: str = "grad/x", start: int = 1, run: str = "r", step: int = 0, layer: str = "em",
           statuses=None) -> pd.DataFrame:
    """One (run, step, layer, quantity) series g_start..g_T; None values or a status other than ok give NaN."""
    statuses = statuses or ["ok"] * len(values)
    return rows_frame([(run, step, layer, start + i, quantity, math.nan if v is None else v, s, 0)
                       for i, (v, s) in enumerate(zip(values, statuses, strict=True))])


def geometric(rho: float, T: int, start: int = 1) -> list[float]:
    """g_t = ρ^(T − t), t = start..T."""
    return [rho ** (T - t) for t in range(start, T + 1)]


def run_records(run: str, steps: int = 20, T: int = 4, rho=0.5, similarity=0.3, entropy_ratio=0.6, bases: int = 8,
                no_grad: tuple[int, ...] = (), seed: int = 0) -> pd.DataFrame:
    """A run of `steps` steps: grad/x decaying by ρ per iteration (a number or a per-step array), forward
    diagnostics with the given similarity and entropy / ln K (numbers or per-step arrays)."""
    rng = np.random.default_rng(seed)
    rho, sim, ratio = (np.broadcast_to(np.asarray(v, dtype=float), steps) for v in (rho, similarity, entropy_ratio))
    rows = []
    for s in range(steps):
        noise = math.exp(rng.normal(0, 0.01))
        for t in range(1, T + 1):
            dead = t in no_grad
            rows.append((run, s, "em", t, "grad/x", math.nan if dead else noise * rho[s] ** (T - t),
                         "no_grad" if dead else "ok", 0))
            rows.append((run, s, "em", t, "entropy", ratio[s] * math.log(bases), "ok", 0))
        rows += [(run, s, "em", t, "similarity", sim[s], "ok", 0) for t in range(T + 1)]
        rows.append((run, s, "", None, "loss", 1.0, "ok", 0))
    return rows_frame(rows)


def with_mechanism(frame: pd.DataFrame, gain: float = 0.08, branch_share: float = 0.6, c_rest: float = 0.5,
                   r_rest: float = 0.4) -> pd.DataFrame:
    """`frame` plus the per-layer norms of MATH.md §9 at every step, built so that the layer gain, the EM-branch
    share, c_rest and r_rest (against g_T of grad/x) take the given values."""
    grad_x = frame[frame["quantity"] == "grad/x"].sort_values("iteration").groupby(["run", "step", "layer"]).last()
    rows = []
    for (run, step, layer), g in grad_x.iterrows():
        out, em = 1.0, branch_share
        rows += [(run, step, layer, None, "grad/out", out, "ok", 0),
                 (run, step, layer, None, "grad/x_total", gain * out, "ok", 0),
                 (run, step, layer, None, "grad/unit_em", em, "ok", 0),
                 (run, step, layer, None, "grad/unit_res", 1 - em, "ok", 0),
                 (run, step, layer, None, "grad/x_cos", c_rest, "ok", 0),
                 (run, step, layer, None, "grad/x_rest", r_rest * g["value"], "ok", 0)]
    return pd.concat([frame, rows_frame(rows)], ignore_index=True)


def jacobian_records() -> pd.DataFrame:
    """σ_t (max over images) at three Jacobian steps, grad/mu at those and at one step without σ_t."""
    frames = []
    for step, scale in ((0, 1.0), (100, 3.0), (200, 2.0)):
        frames += [series([2.0 * scale, 0.5, 7.0], "jac/sigma_max", step=step),
                   series([1.0, 4.0, 2.0, 3.0], "grad/mu", start=0, step=step)]
    frames.append(series([9.0, 9.0, 9.0, 9.0], "grad/mu", start=0, step=50))  # not a Jacobian step: left out
    return pd.concat(frames, ignore_index=True)


def implicit_records(run: str, steps: int = 20, T: int = 4, diverged: float = 0.0, similarity=0.3,
                     entropy_ratio=0.6, bases: int = 8, nonfinite: float = 0.0) -> pd.DataFrame:
    """A run of a layer in grad_mode "implicit": no per-iteration gradients, its adjoint solve per step (diverged
    at the first `diverged` share of the steps, residual 0.5 there and 1e-8 elsewhere), ∂L/∂X and ∂L/∂X̃ (not
    finite at the first `nonfinite` share), and the forward diagnostics of `run_records`."""
    rows = []
    for s in range(steps):
        bad, bad_x = s < diverged * steps, s < nonfinite * steps
        rows += [(run, s, "em", None, "implicit/iterations", 50.0 if bad else 12.0, "ok", 0),
                 (run, s, "em", None, "implicit/residual", 0.5 if bad else 1e-8, "ok", 0),
                 (run, s, "em", None, "implicit/diverged", float(bad), "ok", 0),
                 (run, s, "em", None, "grad/x_total", math.inf if bad_x else 0.3, "nonfinite" if bad_x else "ok", 0),
                 (run, s, "em", None, "grad/out", 1.0, "ok", 0),
                 (run, s, "", None, "loss", 1.0, "ok", 0)]
        rows += [(run, s, "em", t, "entropy", entropy_ratio * math.log(bases), "ok", 0) for t in range(1, T + 1)]
        rows += [(run, s, "em", t, "similarity", similarity, "ok", 0) for t in range(T + 1)]
    return rows_frame(rows)
