"""Parquet parts, load_records, and damaged parts."""

from __future__ import annotations

import pandas as pd
import pytest
import torch.nn.functional as F

import gradlab
from gradlab.errors import RecordsError
from tests.instrument.conftest import make_net


def train(net, batch, steps, run_dir=None, start=0, **kw):
    x, y = batch
    with gradlab.watch(net, run_dir=run_dir, start_step=start, **kw) as rec:
        for step in range(start, start + steps):
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            rec.step(step, loss=loss)
    return rec


def test_parts_round_trip_through_load_records(batch, tmp_path):
    rec = train(make_net(), batch, 5, run_dir=tmp_path, flush_every=2)
    parts = sorted((tmp_path / "records").glob("*"))
    assert [p.name for p in parts] == [f"part-r000-{i:06d}.parquet" for i in range(3)]  # 2 + 2 + 1 at close
    loaded = gradlab.load_records(tmp_path)
    pd.testing.assert_frame_equal(loaded, rec.frame())
    assert list(loaded.columns) == ["run", "step", "layer", "iteration", "quantity", "value", "status", "rank"]
    assert str(loaded.iteration.dtype) == "Int64"


def test_load_many_runs(batch, tmp_path):
    train(make_net(), batch, 2, run_dir=tmp_path / "a")
    train(make_net(kind="em"), batch, 3, run_dir=tmp_path / "b")
    frame = gradlab.load_records([tmp_path / "a", tmp_path / "b" / "records"])
    assert frame.groupby("run").step.nunique().to_dict() == {"a": 2, "b": 3}


def test_a_resumed_run_keeps_the_last_rows_without_duplicates(batch, tmp_path):
    net = make_net()
    train(net, batch, 4, run_dir=tmp_path)
    train(net, batch, 4, run_dir=tmp_path, start=2, append=True)  # steps 2, 3 again, then 4, 5
    frame = gradlab.load_records(tmp_path)
    assert sorted(frame.step.unique()) == list(range(6))
    assert not frame.duplicated(["step", "layer", "iteration", "quantity"]).any()
    assert len(list((tmp_path / "records").glob("*.parquet"))) == 2


def test_corrupt_part_is_skipped_with_a_warning(batch, tmp_path):
    train(make_net(), batch, 4, run_dir=tmp_path, flush_every=2)
    part = tmp_path / "records" / "part-r000-000000.parquet"
    part.write_bytes(part.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="skipping unreadable records part"):
        frame = gradlab.load_records(tmp_path)
    assert sorted(frame.step.unique()) == [2, 3]


@pytest.mark.parametrize("foreign", [
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),                        # another table altogether
    pd.DataFrame({"run": ["r"], "step": [0], "value": [1.0]}),          # some of the columns
    pd.DataFrame({c: [None] for c in ("run", "step", "layer", "iteration", "quantity", "value", "status", "rank")}),
])
def test_a_foreign_parquet_file_named_like_a_part_is_skipped_with_a_warning_naming_it(batch, tmp_path, foreign):
    train(make_net(), batch, 4, run_dir=tmp_path, flush_every=2)
    intruder = tmp_path / "records" / "part-r000-000099.parquet"
    foreign.to_parquet(intruder)
    with pytest.warns(UserWarning, match=f"skipping unreadable records part {intruder}"):
        frame = gradlab.load_records(tmp_path)
    assert sorted(frame.step.unique()) == [0, 1, 2, 3] and frame["run"].notna().all()
    intruder.rename(tmp_path / "only.parquet")
    with pytest.warns(UserWarning, match="not a gradlab records part|holds nulls"), \
            pytest.raises(RecordsError, match="no readable records"):
        gradlab.load_records(tmp_path / "only.parquet")


def test_watching_into_a_folder_that_holds_records_is_refused_unless_appending(batch, tmp_path):
    """Rerunning a tour into the same run_dir must not mix two runs' records."""
    train(make_net(), batch, 2, run_dir=tmp_path)
    parts = sorted((tmp_path / "records").iterdir())
    with pytest.raises(RecordsError, match="already holds records .*append=True"):
        gradlab.watch(make_net(kind="em"), run_dir=tmp_path)
    assert sorted((tmp_path / "records").iterdir()) == parts
    train(make_net(), batch, 2, run_dir=tmp_path, start=2, append=True)
    assert sorted(gradlab.load_records(tmp_path).step.unique()) == [0, 1, 2, 3]


def test_missing_or_empty_records_raise_a_records_error(tmp_path):
    with pytest.raises(RecordsError, match="no records at"):
        gradlab.load_records(tmp_path / "nope")
    (tmp_path / "records").mkdir()
    with pytest.raises(RecordsError, match="no readable records"):
        gradlab.load_records(tmp_path)


def test_no_temp_file_is_left_behind(batch, tmp_path):
    train(make_net(), batch, 3, run_dir=tmp_path, flush_every=1)
    assert not [p for p in (tmp_path / "records").iterdir() if p.name.startswith(".")]


def test_flush_every_must_be_positive():
    with pytest.raises(ValueError, match="^flush_every=0"):
        gradlab.watch(make_net(), flush_every=0)
