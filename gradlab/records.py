"""The tidy record, the one home of its schema: columns, statuses, kinds of quantity, the Arrow schema; its
in-memory buffer, atomic Parquet parts and `load_records`. Torch-free: the recorder writes it, analysis, plots
and reports read it.

One row per (run, step, layer, iteration, quantity, rank). `iteration` is null for per-layer and per-step
quantities; per-step quantities (loss, lr, step_time) have an empty `layer`; `value` is NaN unless
`status` is "ok" or "nonfinite".
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gradlab.atomic import atomic_path
from gradlab.errors import RecordsError
from gradlab.run_dir import PARTS, RECORDS

COLUMNS = ("run", "step", "layer", "iteration", "quantity", "value", "status", "rank")
#: statuses that mean "no gradient reached this state" (never shown as a zero norm): no_grad when the state was
#: not differentiable, unused when it was but the backward never reached it
NO_GRAD_STATUSES = ("no_grad", "unused")
#: every status, in the order of analysis' status codes 0, 1, 2, 3
STATUSES = ("ok", "nonfinite", *NO_GRAD_STATUSES)
SCHEMA = pa.schema(
    [
        ("run", pa.string()),
        ("step", pa.int64()),
        ("layer", pa.string()),
        ("iteration", pa.int64()),
        ("quantity", pa.string()),
        ("value", pa.float64()),
        ("status", pa.string()),
        ("rank", pa.int64()),
    ]
)
#: columns that every row fills (iteration is null for per-layer and per-step quantities)
REQUIRED = ("run", "step", "layer", "quantity", "status", "rank")
#: one row per KEY; one series over the iterations t per SERIES_KEY
KEY = ["run", "rank", "step", "layer", "iteration", "quantity"]
SERIES_KEY = ["run", "rank", "step", "layer", "quantity"]
#: one layer at one step (per-step evidence); one layer over a run (verdicts over a window)
STEP_KEY = ["run", "rank", "step", "layer"]
LAYER_KEY = ["run", "rank", "layer"]

#: the per-iteration gradient reaching a layer's input, by which its decay and regime are judged (MATH.md §7):
#: ‖∂L/∂X^(t)‖ of an EM layer, ‖∂L/∂input_c‖ of call c of a watched loop (`watch(loops=...)`)
INPUT_GRADIENT = ("grad/x", "grad/in")
#: `grad/*` quantities that are not norms: the agreement cosines c_t and c_rest of MATH.md §9
AGREEMENT = ("grad/x_cos",)
#: per-step quantities of a layer in grad_mode "implicit": its adjoint solve (fixed-point steps taken, final relative
#: residual, 1 when it diverged and the gradient fell back to the two-iteration JFB gradient; docs/layers.md)
ADJOINT = ("implicit/iterations", "implicit/residual", "implicit/diverged")
#: per-step quantities of a step closed with `rec.step(grad_scale=...)`: the GradScaler's loss scale, and 1 on a
#: step it skipped (its scaled backward overflowed: the norms are the overflow's, and the step trained nothing)
AMP_SCALE, SKIPPED_STEP = "amp/scale", "amp/skipped"


class RecordBuffer:
    """Rows kept column by column; cheap to append, turned into Arrow or pandas on demand."""

    def __init__(self) -> None:
        self.columns: dict[str, list] = {c: [] for c in COLUMNS}

    def __len__(self) -> int:
        return len(self.columns["step"])

    def extend(self, rows: list[tuple]) -> None:
        """Append rows given as (run, step, layer, iteration, quantity, value, status, rank) tuples."""
        if rows:
            for column, items in zip(self.columns.values(), zip(*rows)):
                column.extend(items)

    def table(self, start: int = 0) -> pa.Table:
        return pa.table({c: v[start:] for c, v in self.columns.items()}, schema=SCHEMA)

    def frame(self) -> pd.DataFrame:
        return to_frame(self.table())


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow → pandas with a nullable integer `iteration`."""
    frame = table.to_pandas()
    frame["iteration"] = frame["iteration"].astype("Int64")
    return frame


def write_part(table: pa.Table, path: Path) -> None:
    """Write one Parquet part atomically (temp file + `os.replace`)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def part_files(path: str | os.PathLike) -> list[Path]:
    """The record parts of a run directory, a records folder, or one Parquet file, in write order."""
    p = Path(path)
    if not p.exists():
        raise RecordsError(f"no records at {p}: expected a run directory, its records/ folder or a .parquet file")
    if p.is_file():
        return [p]
    folder = p / RECORDS if (p / RECORDS).is_dir() else p
    return sorted(folder.glob(PARTS))


def _read_part(part: Path) -> pa.Table:
    """A part's table, if it holds records: every column of the schema (a Parquet file from elsewhere with a
    part's name does not), valid UTF-8 (a damaged page can decode to invalid text without an error) and no null
    outside `iteration` (nullable by design) and `value`."""
    lacking = [c for c in COLUMNS if c not in pq.read_schema(part).names]
    if lacking:
        raise pa.ArrowInvalid(f"not a gradlab records part (no column {', '.join(lacking)})")
    table = pq.read_table(part, schema=SCHEMA)
    table.validate(full=True)
    for name in REQUIRED:
        if table.column(name).null_count:
            raise pa.ArrowInvalid(f"column {name} holds nulls")
    return table


def load_records(paths: str | os.PathLike | list) -> pd.DataFrame:
    """Read the records of one run or many into one tidy frame.

    Corrupt or truncated parts are reported with a warning and skipped. When a step was recorded twice (a
    resumed run repeats the steps after its last checkpoint), the row written last wins.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    tables = []
    for path in paths:
        for part in part_files(path):
            try:
                tables.append(_read_part(part))
            except (pa.ArrowException, OSError, UnicodeDecodeError) as err:  # a damaged footer's names: not UTF-8
                warnings.warn(f"skipping unreadable records part {part}: {err}", stacklevel=2)
    if not tables:
        raise RecordsError(f"no readable records in {', '.join(map(str, paths))}")
    frame = to_frame(pa.concat_tables(tables))
    if frame.duplicated(KEY).any():
        frame = frame.drop_duplicates(KEY, keep="last").reset_index(drop=True)
    return frame
