"""gradlab/ablate/summary.py: the per-run table (OUT/runs.csv) holds exactly the numbers the summary pools."""

from __future__ import annotations

import pandas as pd
import pytest

from gradlab.ablate.summary import run_table, summary_table
from tests.analysis.synthetic import run_records


def _study() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two settings × three seeds of synthetic records (grad/x decaying by a per-run ρ) with their final mIoU."""
    frames, metrics = [], []
    for kind, base in (("em", 0.3), ("hem", 0.7)):
        for seed in range(3):
            run = f"{kind}-{seed}"
            frame = run_records(run, steps=10, T=4, rho=base + 0.05 * seed, seed=seed)
            mu = frame[frame["quantity"] == "grad/x"].assign(quantity="grad/mu")  # the summary reads both
            mu["value"] = mu["value"] ** 2
            frame = pd.concat([frame, mu], ignore_index=True)
            frames.append(frame.assign(**{"model.kind": kind, "seed": seed}))
            metrics.append(pd.DataFrame({"run": run, "step": [5, 9], "name": "miou",
                                         "value": [0.1, base / 2 + 0.01 * seed]}))
    return pd.concat(frames, ignore_index=True), pd.concat(metrics, ignore_index=True)


def pooled_q(runs: pd.DataFrame, column: str) -> list[float]:
    return runs.groupby("model.kind")[column].mean().tolist()


def test_the_per_run_rows_pool_to_the_summary_over_seeds():
    records, metrics = _study()
    runs, table = run_table(records, metrics, ["model.kind"]), summary_table(records, metrics, ["model.kind"])
    assert len(runs) == 6 and sorted(runs["seed"]) == [0, 0, 1, 1, 2, 2]
    assert runs.set_index("run").loc["hem-2", "miou"] == pytest.approx(0.37)  # the last validation, not the first
    pooled = runs.groupby("model.kind")[["miou"]].mean()
    table = table.set_index("model.kind").loc[pooled.index]
    assert pooled["miou"].tolist() == pytest.approx(table["miou"].tolist())
    for q in ("grad/x decades", "grad/mu decades"):
        assert pooled_q(runs, q) == pytest.approx(table[q].tolist())
    assert runs["grad/mu decades"].tolist() == pytest.approx((2 * runs["grad/x decades"]).tolist())  # g², per run
    assert (table["runs"] == 3).all()
    counts = runs.groupby("model.kind")["regime"].agg(lambda r: r.value_counts().to_dict())
    for kind, regimes in counts.items():
        assert table.loc[kind, "regimes"] == ", ".join(f"{name} {n}/3" for name, n in regimes.items())
