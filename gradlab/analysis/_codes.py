"""Integer codes for grouping millions of records without Python loops (private)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def codes(column: pd.Series) -> tuple[np.ndarray, int]:
    """Dense int64 codes of a column and their count; categoricals are free, NaN is a group of its own."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        c = column.cat.codes.to_numpy().astype(np.int64)
        return c + 1, len(column.cat.categories) + 1  # code 0 is NaN
    if pd.api.types.is_integer_dtype(column.dtype) and not column.hasnans:
        v = column.to_numpy(dtype=np.int64)
        if len(v) == 0:
            return v, 1
        low, high = int(v.min()), int(v.max())
        if high - low < 1 << 32:
            return v - low, high - low + 1
    c, uniques = pd.factorize(column, use_na_sentinel=False)
    return c.astype(np.int64), max(len(uniques), 1)


def group_ids(frame: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(group id per row, index of each group's first row); groups are numbered in key order."""
    key = np.zeros(len(frame), dtype=np.int64)
    span = 1
    for name in keys:
        c, n = codes(frame[name])
        if span * n >= 1 << 62:  # mixed radix would overflow: renumber what we have so far
            key, _ = pd.factorize(key, sort=True)
            key, span = key.astype(np.int64), int(key.max()) + 1 if len(key) else 1
        key = key * n + c
        span *= n
    gid, uniques = pd.factorize(key, sort=True)
    first = np.full(len(uniques), len(frame), dtype=np.int64)
    np.minimum.at(first, gid, np.arange(len(frame), dtype=np.int64))
    return gid.astype(np.int64), first


def status_codes(status: pd.Series, statuses: tuple[str, ...]) -> np.ndarray:
    """int8 index of each row's status in `statuses` (−1 for anything else)."""
    if isinstance(status.dtype, pd.CategoricalDtype):
        lookup = np.array([statuses.index(s) if s in statuses else -1 for s in status.cat.categories] + [-1],
                          dtype=np.int8)
        return lookup[status.cat.codes.to_numpy()]  # code −1 (NaN) takes the trailing −1
    return pd.Categorical(status, categories=list(statuses)).codes.astype(np.int8)


def of_quantity(frame: pd.DataFrame, quantity: str | tuple[str, ...]) -> np.ndarray:
    """Boolean mask of the rows of `quantity`: one name, or a tuple of names (e.g. records.INPUT_GRADIENT)."""
    wanted = of_names(quantity)
    return matching(frame["quantity"], lambda q: q in wanted)


def of_names(quantity: str | tuple[str, ...]) -> tuple[str, ...]:
    return (quantity,) if isinstance(quantity, str) else tuple(quantity)


def matching(column: pd.Series, predicate) -> np.ndarray:
    """Boolean mask of rows whose value satisfies `predicate(str)`, evaluated once per distinct value."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        hit = np.array([bool(predicate(v)) for v in column.cat.categories] + [False])
        return hit[column.cat.codes.to_numpy()]
    c, uniques = pd.factorize(column)
    hit = np.array([bool(predicate(v)) for v in uniques] + [False])
    return hit[c]


def ranges(iterations) -> str:
    """[1, 2, 3, 5] → "1-3, 5" (how no_grad iterations and near-zero iterations are written)."""
    out, items = [], sorted(int(i) for i in iterations)
    for i in items:
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out)


def iteration_sets(mask: np.ndarray) -> pd.Categorical:
    """Per row of a (rows × iteration) mask, its True iterations as "1-2, 5" ("" when none).

    Each row becomes one integer (its bits; bytes beyond 63 iterations) and is formatted once per distinct
    pattern, so a million rows cost one hash pass.
    """
    width = mask.shape[1]
    if width <= 63:
        bits = np.left_shift(np.int64(1), np.arange(width, dtype=np.int64))
        inverse, patterns = pd.factorize(mask.astype(np.int64) @ bits)
        sets = [np.flatnonzero(np.int64(p) & bits) for p in patterns]
    else:
        patterns, inverse = np.unique(np.packbits(mask, axis=1), axis=0, return_inverse=True)
        sets = [np.flatnonzero(np.unpackbits(p)[:width]) for p in patterns]
    labels = [ranges(s) for s in sets]
    if not labels:
        return pd.Categorical([], categories=[""])
    return pd.Categorical.from_codes(inverse.reshape(-1), categories=labels)  # distinct sets, distinct labels


def dense_mask(gid: np.ndarray, iteration: np.ndarray, groups: int) -> np.ndarray:
    """(groups × iteration) boolean matrix, True at each (gid, iteration) given; iterations < 0 are skipped."""
    keep = iteration >= 0
    width = int(iteration[keep].max()) + 1 if keep.any() else 1
    mask = np.zeros((groups, width), dtype=bool)
    mask[gid[keep], iteration[keep]] = True
    return mask
