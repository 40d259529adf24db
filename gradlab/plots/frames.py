"""Input checks and selections shared by the plots: every plot takes a plain tidy DataFrame.

A bad frame raises `PlotInputError` (a ValueError) whose message names what is missing and what is there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from gradlab.errors import GradlabError

NO_GRADIENT = ("no_grad", "unused")  # statuses that mean "no gradient reached this state" (never a zero)
Steps = tuple[int, int] | range | Sequence[int] | None


class PlotInputError(GradlabError, ValueError):
    """A frame given to a plot lacks a column, has no rows, or holds values the plot cannot draw."""


def require_columns(frame: pd.DataFrame, columns: Iterable[str | None], what: str) -> None:
    """Raise unless `frame` is a DataFrame with every named column (None entries are skipped)."""
    if not isinstance(frame, pd.DataFrame):
        raise PlotInputError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c is not None and c not in frame.columns]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        raise PlotInputError(f"{what} is missing column(s) {names}; it has columns {list(frame.columns)}")


def require_rows(frame: pd.DataFrame, what: str) -> None:
    """Raise when `frame` has no rows, saying what selected them."""
    if frame.empty:
        raise PlotInputError(f"{what}: no rows to plot")


def select(frame: pd.DataFrame, column: str, value: object, what: str) -> pd.DataFrame:
    """Rows where `column == value`, or a PlotInputError listing the values there are."""
    rows = frame[frame[column] == value]
    if rows.empty:
        there = sorted(map(str, frame[column].dropna().unique()))
        raise PlotInputError(f"{what} has no rows with {column}={value!r}; it has {column} in {there}")
    return rows


def select_steps(frame: pd.DataFrame, steps: Steps, what: str) -> pd.DataFrame:
    """Keep a window of training steps: None (all), (first, last) inclusive, or a range / list of steps."""
    if steps is None:
        return frame
    if isinstance(steps, tuple) and len(steps) == 2:
        keep = frame["step"].between(*steps)
    else:
        keep = frame["step"].isin(list(steps))
    rows = frame[keep]
    require_rows(rows, f"{what} with steps={steps!r} (recorded steps {_span(frame['step'])})")
    return rows


def records_for(records: pd.DataFrame, quantity: str, what: str, *, layer: str | None = None,
                steps: Steps = None, extra: Iterable[str | None] = ()) -> pd.DataFrame:
    """The rows of one quantity (and layer, and step window) of a records frame, with a `status` column."""
    require_columns(records, ["run", "step", "layer", "iteration", "quantity", "value", *extra], what)
    require_rows(records, what)
    rows = select(records, "quantity", quantity, what)
    if layer is not None:
        rows = select(rows, "layer", layer, what)
    rows = rows[rows["iteration"].notna()]
    require_rows(rows, f"{what}: quantity {quantity!r} has no per-iteration rows")
    rows = select_steps(rows, steps, what)
    return with_status(rows)


def with_status(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with float `value`, int `iteration` and a `status` (derived from the value when absent)."""
    out = frame.copy()
    out["value"] = pd.to_numeric(out["value"]).astype(float)
    out["iteration"] = out["iteration"].astype("int64")
    if "status" not in out.columns:
        out["status"] = np.where(np.isfinite(out["value"]), "ok", "nonfinite")
    return out


def categorize(frame: pd.DataFrame, *, log: bool) -> pd.Series:
    """Each row's drawing category: "ok", "dead" (an exact 0, log axes only), "no_grad", "nonfinite".

    no_grad covers the statuses `no_grad` and `unused`; an `ok` row whose value is NaN/Inf counts as nonfinite.
    A negative value on a log axis is an error: norms are never negative.
    """
    value = frame["value"].to_numpy(dtype=float)
    status = frame["status"].astype(str).to_numpy()
    no_grad = np.isin(status, NO_GRADIENT)
    nonfinite = ~no_grad & ((status == "nonfinite") | ~np.isfinite(value))
    if log and np.any(~no_grad & ~nonfinite & (value < 0)):
        raise PlotInputError("negative values cannot be drawn on a log axis (norms are never negative); "
                             "plot this quantity on a linear axis")
    dead = log & ~no_grad & ~nonfinite & (value == 0)
    category = np.select([no_grad, nonfinite, dead], ["no_grad", "nonfinite", "dead"], "ok")
    return pd.Series(category, index=frame.index, name="category")


def hue_groups(frame: pd.DataFrame, hue: str) -> tuple[pd.DataFrame, list]:
    """The frame with missing `hue` values shown as "n/a" (never dropped), and its groups in a stable order
    (numbers ascending, anything else alphabetical)."""
    if frame[hue].isna().any():
        frame = frame.assign(**{hue: frame[hue].astype(object).where(frame[hue].notna(), "n/a")})
    values = frame[hue].unique().tolist()
    try:
        return frame, sorted(values)
    except TypeError:
        return frame, sorted(values, key=str)


def to_numpy(array: object) -> np.ndarray:
    """A float numpy array from a numpy array, a list, or a torch tensor (detached, moved to the CPU)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().float()
    return np.asarray(array, dtype=float)


def _span(steps: pd.Series) -> str:
    return f"{steps.min()}..{steps.max()}" if len(steps) else "none"
