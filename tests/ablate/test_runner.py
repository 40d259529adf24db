from __future__ import annotations

import sys

import pytest

from gradlab.ablate import expand, parse_axis
from gradlab.ablate.runner import command, prepare
from gradlab.errors import ConfigError
from gradlab.train import RunDirectory, to_toml
from gradlab.train.checkpoint import save_checkpoint
from tests.train.conftest import TINY


@pytest.fixture
def trial():
    return expand("demo", [parse_axis("model.iterations=2")], seeds=1, overrides=TINY)[0][0]


def _started(path, trial, status="running", checkpoint=False):
    run = RunDirectory(path)
    run.create(to_toml(trial.config), {})
    run.update_meta(status=status)
    if checkpoint:
        save_checkpoint({"step": 3}, run.checkpoint)
    return run


def test_prepare_tells_fresh_resume_and_complete(tmp_path, trial):
    assert prepare(tmp_path / "new", trial) == "fresh"
    assert prepare(_started(tmp_path / "a", trial, checkpoint=True).path, trial) == "resume"
    assert prepare(_started(tmp_path / "b", trial, status="complete", checkpoint=True).path, trial) == "complete"


def test_prepare_resumes_an_interrupted_trial_and_restarts_one_without_a_checkpoint(tmp_path, trial):
    run = _started(tmp_path / "a", trial, status="interrupted", checkpoint=True)
    assert prepare(run.path, trial) == "resume" and run.checkpoint.is_file()
    assert prepare(_started(tmp_path / "b", trial, status="interrupted").path, trial) == "fresh"


def test_prepare_clears_a_trial_killed_before_its_first_checkpoint(tmp_path, trial):
    run = _started(tmp_path / "a", trial)
    assert prepare(run.path, trial) == "fresh"
    assert not run.path.exists()


def test_prepare_refuses_a_foreign_folder_and_a_run_of_another_config(tmp_path, trial):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not a run directory"):
        prepare(tmp_path / "a", trial)
    assert (tmp_path / "a" / "notes.txt").read_text() == "mine"
    other = expand("demo", [parse_axis("model.iterations=3")], seeds=1, overrides=TINY)[0][0]
    run = _started(tmp_path / "b", other, checkpoint=True)
    with pytest.raises(ConfigError, match="another config"):
        prepare(run.path, trial)
    assert run.checkpoint.is_file()


def test_command_starts_or_resumes_with_gradlab_train(tmp_path, trial):
    fresh = command(trial, "fresh", tmp_path / "r", "demo")
    assert fresh[:4] == [sys.executable, "-m", "gradlab", "train"]
    assert fresh[fresh.index("--out") + 1] == str(tmp_path / "r")
    assert "demo" in fresh and fresh.count("--set") == len(trial.overrides)
    assert command(trial, "resume", tmp_path / "r", "demo")[-1] == "--resume"


def test_a_trial_of_several_processes_runs_under_torchrun(tmp_path, trial):
    cmd = command(trial, "fresh", tmp_path / "r", "demo", processes=2)
    assert cmd[:7] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                       "gradlab"]
    assert command(trial, "resume", tmp_path / "r", "demo", processes=2)[-1] == "--resume"
