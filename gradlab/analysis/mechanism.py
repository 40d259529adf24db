"""Where the gradient goes (MATH.md §9): the numbers that explain a regime, per step and over a window.

Per (run, rank, step, layer), from the recorded norms:
- `gain`          G = ‖∂L/∂X‖ / ‖∂L/∂X̃‖ (grad/x_total / grad/out): the layer's backward gain as a whole
- `call_gain`     of a watched loop (`watch(loops=...)`): the geometric mean over its calls c of the per-call gain
                  ‖∂L/∂input_c‖ / ‖∂L/∂output_c‖ (grad/in / grad/out at iteration c); NaN for the EM layers
- `branch_share`  s_EM = ‖∂L/∂u|_EM‖ / (‖∂L/∂u|_EM‖ + ‖∂L/∂u|_res‖) in the EMA unit
- `e_gain`        mean over iterations of e_t = (1/τ) mean_n (1 − Σ_k z_nk²)
- `c_rest`        cos(Σ_{t<T} g_t, g_T); `r_rest` = ‖Σ_{t<T} g_t‖ / ‖g_T‖ (g_t = ∂L/∂X^(t))
- `turn`          the angle (degrees) between the full gradient ∂L/∂X = Σ_t g_t and the one-step gradient g_T:
                  cos = (1 + r_rest c_rest) / √(1 + 2 r_rest c_rest + r_rest²); how far backpropagating through the
                  earlier iterations turns the gradient the backbone receives
- `grad_params`   the total parameter-gradient norm (root-sum-square of the groups' grad/params)
and on the Jacobian steps (record.jacobian_every), over the iterations t = 1..T−1 where ρ_t is measured:
- `sigma`         geometric mean of σ_t (max over the sampled images, the bound's factor); `sigma_em` for HEM
- `predicted`     Σ_t log10 σ_t, which bounds `measured` = Σ_t log10 ρ_t = log10(g^μ_{first} / g^μ_{T−1}) above
- `alignment`     10^((measured − predicted) / n): the geometric mean of α_t = ρ_t / σ_t (1: the gradient meets
                  the Jacobians' strongest direction; ≪ 1: a weak one, the loss is alignment, not contraction)
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from gradlab.analysis._codes import matching
from gradlab.analysis.aggregate import rows_with, window
from gradlab.records import LAYER_KEY, STEP_KEY

PER_LAYER = ("grad/x_total", "grad/out", "grad/unit_em", "grad/unit_res", "grad/x_rest", "grad/x_cos")
#: the window's numbers that `regime` reports with each verdict
MECHANISM_COLUMNS = ["gain", "call_gain", "branch_share", "e_gain", "c_rest", "r_rest", "turn", "grad_params", "sigma",
                     "sigma_em", "predicted", "measured", "alignment"]
#: the per-step numbers of every recorded step, and those of the diagnosed steps only (record.diagnostics_every)
EVERY_STEP = ("gain", "call_gain")
DIAGNOSED = ("branch_share", "e_gain", "c_rest", "r_rest", "turn", "grad_params")
#: at least this many Jacobian steps enter the window of σ_t (they are sparser than the recorded steps)
MIN_JACOBIAN_STEPS = 3


def _ok(frame: pd.DataFrame, quantities) -> pd.DataFrame:
    rows = frame[matching(frame["quantity"], lambda q: q in quantities) & (frame["status"] == "ok").to_numpy()]
    return rows.astype({"run": object, "layer": object, "quantity": object})


def _wide(rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """(STEP_KEY + `columns`) → one column per quantity (NaN where absent)."""
    if rows.empty:
        return pd.DataFrame(index=pd.MultiIndex.from_arrays([[]] * len(STEP_KEY), names=STEP_KEY))
    return rows.pivot_table(index=STEP_KEY, columns=columns[0] if len(columns) == 1 else columns, values="value",
                            aggfunc="first", observed=True)


def step_mechanism(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, rank, step, layer) with an EM layer's per-step mechanism numbers (module docstring)."""
    per_layer = _ok(frame, PER_LAYER)
    wide = _wide(per_layer[per_layer["iteration"].isna().to_numpy()], ["quantity"]).reindex(columns=list(PER_LAYER))
    calls = call_gain(frame)
    if len(calls):  # a watched loop has no per-layer rows: its steps come from its calls
        wide = wide.reindex(wide.index.union(calls.index))
    out = pd.DataFrame(index=wide.index)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["gain"] = wide["grad/x_total"] / wide["grad/out"]
        out["branch_share"] = wide["grad/unit_em"] / (wide["grad/unit_em"] + wide["grad/unit_res"])
        out["c_rest"] = wide["grad/x_cos"]
        out["r_rest"] = wide["grad/x_rest"] / _last_iteration(frame, "grad/x").reindex(out.index)
        out["turn"] = turn_angle(out["c_rest"], out["r_rest"])
    out["call_gain"] = calls.reindex(out.index)
    out["e_gain"] = _ok(frame, ("e_gain",)).groupby(STEP_KEY)["value"].mean().reindex(out.index)
    params = _ok(frame, ("grad/params",)).assign(sq=lambda f: f["value"] ** 2)
    total = np.sqrt(params.groupby(["run", "rank", "step"])["sq"].sum())
    out["grad_params"] = total.reindex(out.index.droplevel("layer")).to_numpy()
    return out.reset_index()


def call_gain(frame: pd.DataFrame) -> pd.Series:
    """Per STEP_KEY of a watched loop: the geometric mean over calls c of grad/in_c / grad/out_c."""
    rows = _ok(frame, ("grad/in", "grad/out")).dropna(subset=["iteration"])
    if rows["quantity"].nunique() < 2:
        return pd.Series(dtype=float, index=_wide(rows.iloc[:0], ["quantity"]).index)
    wide = _wide(rows, ["quantity", "iteration"])
    calls = wide.columns.get_level_values("iteration").unique()
    grad_in = wide.reindex(columns=pd.MultiIndex.from_product([["grad/in"], calls])).to_numpy()
    grad_out = wide.reindex(columns=pd.MultiIndex.from_product([["grad/out"], calls])).to_numpy()
    return pd.Series(geometric_gain(grad_in, grad_out), index=wide.index)


def geometric_gain(grad_in: np.ndarray, grad_out: np.ndarray) -> np.ndarray:
    """Per row, the geometric mean over calls (the last axis) of grad_in / grad_out, over the calls where both are
    positive and finite (NaN where there is none): a watched loop's per-call gain."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_gain = np.log10(grad_in) - np.log10(grad_out)
    log_gain = np.where(np.isfinite(log_gain), log_gain, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row without any such call: NaN, not a warning
        return 10.0 ** np.nanmean(log_gain, axis=-1)


def turn_angle(c_rest, r_rest):
    """Degrees between g_T + rest and g_T, for ‖rest‖ = r_rest ‖g_T‖ at cosine c_rest with g_T."""
    along = 1.0 + r_rest * c_rest
    across = r_rest * np.sqrt(np.clip(1.0 - c_rest ** 2, 0.0, None))
    return np.degrees(np.arctan2(across, along))


def _last_iteration(frame: pd.DataFrame, quantity: str) -> pd.Series:
    """g at the last ok iteration of `quantity`, per STEP_KEY."""
    rows = _ok(frame, (quantity,)).dropna(subset=["iteration"]).sort_values("iteration")
    return rows.groupby(STEP_KEY)["value"].last()


def jacobian_mechanism(frame: pd.DataFrame) -> pd.DataFrame:
    """Per Jacobian step and layer: `sigma`, `sigma_em`, `predicted`, `measured`, `alignment`, `bound_iterations`."""
    rows = _ok(frame, ("jac/sigma_max", "jac/sigma_em_max", "grad/mu")).dropna(subset=["iteration"])
    sigma_steps = rows[rows["quantity"] == "jac/sigma_max"][STEP_KEY].drop_duplicates()
    if sigma_steps.empty:
        return pd.DataFrame(columns=[*STEP_KEY, "sigma", "sigma_em", "predicted", "measured", "alignment",
                                     "bound_iterations"])
    rows = rows.merge(sigma_steps, on=STEP_KEY)
    wide = rows.pivot_table(index=STEP_KEY, columns=["quantity", "iteration"], values="value", aggfunc="first",
                            observed=True)
    T = int(rows["iteration"].max())
    ts = np.arange(1, T + 1)
    sigma = wide.reindex(columns=pd.MultiIndex.from_product([["jac/sigma_max"], ts])).to_numpy()
    sigma_em = wide.reindex(columns=pd.MultiIndex.from_product([["jac/sigma_em_max"], ts])).to_numpy()
    mu = wide.reindex(columns=pd.MultiIndex.from_product([["grad/mu"], np.arange(0, T + 1)])).to_numpy()
    last = np.isfinite(sigma).sum(axis=1)  # this layer's T
    with np.errstate(divide="ignore", invalid="ignore"):
        log_rho = np.log10(mu[:, :-1]) - np.log10(mu[:, 1:])  # ρ_t = g_{t−1} / g_t, t = 1..T
        covered = (ts[None, :] < last[:, None]) & np.isfinite(log_rho) & np.isfinite(sigma) & (sigma > 0)
        log_sigma = np.where(covered, np.log10(sigma), 0.0)
        n = covered.sum(axis=1)
        predicted = np.where(n > 0, log_sigma.sum(axis=1), np.nan)
        measured = np.where(n > 0, np.where(covered, log_rho, 0.0).sum(axis=1), np.nan)
        out = pd.DataFrame({
            "sigma": 10 ** (predicted / n),
            "sigma_em": 10 ** (np.where(covered, np.log10(sigma_em), 0.0).sum(axis=1) / n),
            "predicted": predicted, "measured": measured, "alignment": 10 ** ((measured - predicted) / n),
            "bound_iterations": n}, index=wide.index)
    return out.reset_index()


def mechanism(frame: pd.DataFrame, fraction: float = 0.1) -> pd.DataFrame:
    """One row per (run, rank, layer): MECHANISM_COLUMNS over the last `fraction` of steps (medians; the
    DIAGNOSED ones over the last `fraction` of the diagnosed steps, σ_t over the last `fraction` of the Jacobian
    steps, at least MIN_JACOBIAN_STEPS of them)."""
    steps = step_mechanism(frame)
    agg = window(steps, "last", fraction).groupby(LAYER_KEY)[list(EVERY_STEP)].median()
    agg = agg.join(window(rows_with(steps, DIAGNOSED), "last", fraction).groupby(LAYER_KEY)[list(DIAGNOSED)].median(),
                   how="left")
    jac = jacobian_mechanism(frame)
    if len(jac):
        n = jac.groupby(LAYER_KEY)["step"].transform("size")
        rank = jac.groupby(LAYER_KEY)["step"].rank(ascending=False)
        jac = jac[rank <= np.maximum(np.ceil(n * fraction), MIN_JACOBIAN_STEPS)]
        agg = agg.join(jac.groupby(LAYER_KEY)[["sigma", "sigma_em", "predicted", "measured", "alignment"]].median(),
                       how="left")
    return agg.reindex(columns=MECHANISM_COLUMNS).reset_index()


def sigma_rho(records: pd.DataFrame, *, by: str = "run") -> pd.DataFrame:
    """(by, layer, iteration t, sigma, rho): medians over the Jacobian steps of σ_t (max over the sampled images)
    and of ρ_t = ‖∂L/∂μ^(t−1)‖ / ‖∂L/∂μ^(t)‖ from grad/mu at the same steps; ρ_t only for t < T, where the bound
    ρ_t ≤ σ_t holds (what `gradlab.plots.sigma_and_rho` draws; empty without Jacobian steps)."""
    ok = records[(records["status"] == "ok").to_numpy() & records["iteration"].notna().to_numpy()]
    sigma = ok[(ok["quantity"] == "jac/sigma_max").to_numpy()]
    if sigma.empty:
        return pd.DataFrame(columns=[by, "layer", "iteration", "sigma", "rho"])
    key = ["run", "step", "layer"]  # the Jacobian steps
    mu = ok[(ok["quantity"] == "grad/mu").to_numpy()].merge(sigma[key].drop_duplicates(), on=key)
    mu = mu.sort_values("iteration")
    prev = mu.groupby(key, observed=True)["value"].shift(1)  # g_{t−1} beside g_t
    mu = mu.assign(rho=prev / mu["value"])
    sigma = sigma.assign(T=sigma.groupby(key, observed=True)["iteration"].transform("max"))
    rows = sigma.merge(mu[[*key, "iteration", "rho"]], on=[*key, "iteration"], how="left")
    rows.loc[rows["iteration"] >= rows["T"], "rho"] = np.nan
    return (rows.rename(columns={"value": "sigma"}).groupby([by, "layer", "iteration"], observed=True)
            [["sigma", "rho"]].median().reset_index())
