"""The run directory's metadata under damage: truncated, of the wrong JSON type, undecodable."""

from __future__ import annotations

import pytest

from gradlab.errors import RecordsError
from gradlab.run_dir import RunDirectory, flat_keys


@pytest.mark.parametrize("text", ['{"status": "complete"', "[]", "null", '"x"', "3", "", "\udcff"])
def test_damaged_meta_is_one_clear_error_and_an_unknown_status(tmp_path, text):
    run = RunDirectory(tmp_path)
    run.meta_path.write_text(text, encoding="utf-8", errors="surrogateescape")
    with pytest.raises(RecordsError, match="meta.json (is not readable JSON|holds a JSON)"):
        run.meta()
    assert run.status == "unknown" and not run.complete


def test_meta_round_trips_and_updates(tmp_path):
    run = RunDirectory(tmp_path / "r")
    run.create("seed = 0\n", {"seed": 0})
    run.update_meta(status="complete")
    assert run.meta() == {"seed": 0, "status": "complete"} and run.complete and run.flat_config() == {"seed": 0}


def test_flat_keys_are_the_dotted_keys_of_one_level_of_tables():
    assert flat_keys({"seed": 0, "model": {"kind": "hem", "bases": 4}}) == {
        "seed": 0, "model.kind": "hem", "model.bases": 4}
