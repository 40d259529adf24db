"""metrics.parquet: tidy (step, name, value) rows of loss, lr and validation scores."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gradlab.atomic import atomic_path


class MetricsLog:
    """Rows in memory, written atomically on `write()`; a resumed run drops rows from its restart step on."""

    def __init__(self, path: Path, start_step: int = 0):
        self.path = path
        self.rows: list[tuple[int, str, float]] = []
        self.latest: dict[str, float] = {}
        if start_step > 0 and path.is_file():
            old = pd.read_parquet(path)
            for row in old[old.step < start_step].itertuples(index=False, name=None):
                self.add(*row[:1], **{row[1]: row[2]})

    def add(self, step: int, **values: float) -> None:
        self.rows += [(step, name, float(v)) for name, v in values.items()]
        self.latest.update(values)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["step", "name", "value"]).astype({"step": "int64"})

    def write(self) -> None:
        with atomic_path(self.path) as tmp:
            self.frame().to_parquet(tmp, index=False)


def final_value(path: Path, name: str = "miou") -> float:
    """The value of metric `name` at its last step in a metrics.parquet (NaN when the metric is absent)."""
    metrics = pd.read_parquet(path)
    rows = metrics[metrics.name == name].sort_values("step")
    return float(rows.value.iloc[-1]) if len(rows) else float("nan")
