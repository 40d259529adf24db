"""Property tests of record loading on damaged parts (reliability issue #10, item 2).

Valid parts are written once by the recorder (a real training loop) and by `RecordBuffer` + `write_part`; each
example copies them and damages random parts: truncated at a random byte, emptied, replaced by random bytes,
or overwritten with random bytes at a random offset. `load_records` must warn about every part it skips, naming
it, return exactly the rows of the intact parts, and never raise anything but `RecordsError` (when no part is
readable). A report built on such a run directory is still written.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import gradlab
from gradlab.errors import RecordsError
from gradlab.records import KEY, SCHEMA, RecordBuffer, to_frame, write_part
from tests.instrument.conftest import make_net

STEPS = 6
MODES = ("truncate", "empty", "random", "overwrite")
ALWAYS_DETECTED = ("truncate", "empty", "random")  # no footer left: a reader cannot accept these
SORT = ["rank", "step", "layer", "iteration", "quantity"]


def synthetic_part(rank: int, step: int) -> RecordBuffer:
    buf = RecordBuffer()
    buf.extend([("synthetic", step, "layer", t, "grad/x", 10.0 ** -t, "ok", rank) for t in range(1, 4)]
               + [("synthetic", step, "layer", 0, "grad/mu", float("nan"), "no_grad", rank),
                  ("synthetic", step, "", None, "loss", 1.5, "ok", rank)])
    return buf


def make_batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 6, 5, generator=g), torch.randint(0, 3, (2, 6, 5), generator=g)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A run directory whose records/ holds 6 recorder parts (rank 0) and 3 RecordBuffer parts (rank 1)."""
    run = tmp_path_factory.mktemp("records-source") / "run"
    net = make_net()
    images, labels = make_batch()
    with gradlab.watch(net, run_dir=run, flush_every=1) as rec:
        for step in range(STEPS):
            F.cross_entropy(net(images), labels).backward()
            rec.step(step, loss=0.5)
    for i in range(3):
        write_part(synthetic_part(1, i).table(), run / "records" / f"part-r001-{i:06d}.parquet")
    (run / "records" / ".part-r000-000099.parquet.tmp").write_bytes(b"half-written")  # a killed write's leftover
    return run


def parts_of(run: Path) -> list[Path]:
    return sorted((run / "records").glob("part-*.parquet"))


def damage(part: Path, mode: str, where: float, noise: bytes) -> None:
    data = part.read_bytes()
    cut = int(where * (len(data) - 1))
    if mode == "truncate":
        part.write_bytes(data[:cut])
    elif mode == "empty":
        part.write_bytes(b"")
    elif mode == "random":
        part.write_bytes(noise)
    else:  # overwrite in place: the footer may survive, so a reader may accept the part with other values
        part.write_bytes(data[:cut] + noise + data[cut + len(noise):])


DAMAGE = st.tuples(st.sampled_from(MODES), st.floats(0, 1), st.binary(min_size=1, max_size=64))


def rows(parts: list[Path]) -> pd.DataFrame:
    frame = pd.concat([to_frame(pq.read_table(p, schema=SCHEMA)) for p in parts], ignore_index=True)
    return frame.sort_values(SORT, ignore_index=True)


def keys(frame: pd.DataFrame) -> set[tuple]:
    return set(frame[KEY].astype(object).itertuples(index=False, name=None))


def load_with_warnings(path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frame = gradlab.load_records(path)
        except RecordsError as err:
            frame = err
    return frame, [str(w.message) for w in caught]


def test_the_source_parts_load(source):
    frame, messages = load_with_warnings(source)
    assert not messages and len(parts_of(source)) == STEPS + 3
    assert sorted(frame.groupby("rank").step.nunique().items()) == [(0, STEPS), (1, 3)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_parts_are_skipped_with_a_warning_and_intact_rows_survive(source, data):
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        shutil.copytree(source, run)
        parts = parts_of(run)
        chosen = data.draw(st.lists(st.sampled_from(range(len(parts))), unique=True, max_size=len(parts)),
                           label="damaged parts")
        damaged = {}
        for i in chosen:
            mode, where, noise = data.draw(DAMAGE, label=f"damage of {parts[i].name}")
            damage(parts[i], mode, where, noise)
            damaged[parts[i]] = mode
        intact = [p for p in parts if p not in damaged]
        expected = rows(intact) if intact else None

        frame, messages = load_with_warnings(run)

        skipped = {p for p in parts if any(str(p) in m for m in messages)}
        assert all(m.startswith("skipping unreadable records part ") for m in messages), messages
        assert len(messages) == len(skipped)  # one warning per skipped part, each naming its part
        assert not skipped & set(intact)
        assert {p for p, mode in damaged.items() if mode in ALWAYS_DETECTED} <= skipped
        silently_read = set(damaged) - skipped  # an in-place overwrite the reader accepted
        event(f"damaged {len(damaged)}, skipped {len(skipped)}, read despite damage {len(silently_read)}")
        if isinstance(frame, RecordsError):
            assert not intact and not silently_read and "no readable records" in str(frame)
            return
        assert list(frame.columns) == list(SCHEMA.names) and str(frame.iteration.dtype) == "Int64"
        for column in ("run", "layer", "quantity", "status"):  # usable: valid text, as the analysis uses it
            frame[column].astype("category")
            frame[column].map(str.encode)
        if not silently_read:
            pd.testing.assert_frame_equal(frame.sort_values(SORT, ignore_index=True), expected)
        elif intact:  # every intact row's key is there (a silently altered row may share a key and replace it)
            assert keys(expected) <= keys(frame)


# -- the report of a run directory with damaged parts ------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from tests.report.runs import tiny_runs

    return tiny_runs(tmp_path_factory)["hem"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_report_is_written_whatever_parts_are_damaged(tiny_run, data):
    from gradlab.report import build_report
    from tests.report.runs import copy_run

    with tempfile.TemporaryDirectory() as folder:
        run = copy_run(tiny_run, Path(folder) / "damaged")
        parts = parts_of(run)
        chosen = data.draw(st.lists(st.sampled_from(range(len(parts))), unique=True, min_size=1,
                                    max_size=len(parts)), label="damaged parts")
        for i in chosen:
            damage(parts[i], *data.draw(DAMAGE, label=f"damage of {parts[i].name}"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            paths = build_report([run], Path(folder) / "report", dpi=30)
        html = paths.html.read_text()
        assert paths.markdown.is_file() and html.rstrip().endswith("</html>")
        messages = [str(w.message) for w in caught]
        skipped = [p for p in parts if any(str(p) in m for m in messages)]
        event(f"report with {len(skipped)} of {len(parts)} parts skipped")
        for part in skipped:  # the report says which part it skipped
            assert part.name in html
