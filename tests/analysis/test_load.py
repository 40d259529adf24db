from __future__ import annotations

import shutil

import pytest

import gradlab
from gradlab.analysis import decay, flags, load_configs, load_metrics, load_runs, regime


def test_load_runs_joins_each_runs_config_to_its_records(run_folder):
    runs = load_runs([run_folder / "em", run_folder / "hem"])
    records = gradlab.load_records([run_folder / "em", run_folder / "hem"])
    assert len(runs) == len(records)
    kinds = runs.groupby("run", observed=True)["model.kind"].unique().map(list).to_dict()
    assert kinds == {"em": ["em"], "hem": ["hem"]}
    assert {"seed", "model.step_size", "model.iterations", "run_dir"} <= set(runs.columns)
    assert runs["run_dir"].astype(str).str.endswith(("em", "hem")).all()


def test_a_folder_of_runs_is_expanded_and_analyses_run_on_it(run_folder):
    runs = load_runs(run_folder)
    assert set(runs["run"]) == {"em", "hem"}
    d = decay(runs)
    assert set(d["model.kind"]) == {"em", "hem"} and d["rho"].notna().all()
    assert set(regime(runs)["run"]) == {"em", "hem"}
    assert "evidence" in flags(runs).columns


def test_load_configs_and_metrics(run_folder):
    configs = load_configs(run_folder)
    assert configs["run"].tolist() == ["em", "hem"] and configs["model.bases"].tolist() == [4, 4]
    metrics = load_metrics(run_folder)
    assert {"miou", "loss"} <= set(metrics["name"]) and "model.kind" in metrics.columns


def test_load_runs_can_join_only_some_config_keys(run_folder):
    runs = load_runs(run_folder, config=["model.kind"])
    assert "model.kind" in runs.columns and "model.bases" not in runs.columns
    with pytest.raises(KeyError, match="model.nope"):
        load_runs(run_folder, config=["model.nope"])


def test_runs_with_the_same_folder_name_are_told_apart_by_their_path(run_folder, tmp_path):
    for group in ("a", "b"):
        shutil.copytree(run_folder / "em", tmp_path / group / "seed0")
    runs = load_runs([tmp_path / "a" / "seed0", tmp_path / "b" / "seed0"])
    assert set(runs["run"]) == {"a/seed0", "b/seed0"}


def test_missing_or_corrupt_run_directories_raise_records_error(run_folder, tmp_path):
    with pytest.raises(gradlab.RecordsError, match="no run directory at"):
        load_runs(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(gradlab.RecordsError, match="not a run directory"):
        load_runs(tmp_path / "empty")
    broken = tmp_path / "broken"
    shutil.copytree(run_folder / "em", broken)
    (broken / "config.toml").write_text("model = [")
    with pytest.raises(gradlab.RecordsError, match="cannot read the config"):
        load_runs(broken)
    (broken / "config.toml").write_text((run_folder / "em" / "config.toml").read_text())
    (broken / "metrics.parquet").write_bytes(b"not parquet")
    with pytest.raises(gradlab.RecordsError, match="cannot read"):
        load_metrics(broken)
    shutil.rmtree(broken / "records")
    with pytest.raises(gradlab.RecordsError, match="no readable records"):
        load_runs(broken)
