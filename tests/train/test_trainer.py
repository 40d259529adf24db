"""End-to-end training on tiny configs: run directory, learning, exact resume, non-finite policies."""

from __future__ import annotations

import json
import shutil
import subprocess

import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

import gradlab
import gradlab.train
from gradlab.data import splits_from_config
from gradlab.models import model_from_config
from gradlab.run_dir import git_revision
from gradlab.train import NonFiniteError, run_config, train
from gradlab.train import trainer as trainer_module
from gradlab.train.evaluate import evaluate
from tests.train.conftest import tiny_config


def test_a_run_directory_holds_everything(tmp_path):
    run = train(tiny_config(), tmp_path / "run", progress=False)
    meta = json.loads(run.meta_path.read_text())
    assert meta["status"] == "complete" and meta["gradlab_version"] == gradlab.__version__
    assert run_config(run.path) == tiny_config()
    state = torch.load(run.checkpoint, weights_only=True)
    assert state["step"] == 6
    model, config = gradlab.train.load_model(run.path)
    assert config == tiny_config() and not model.training
    assert torch.equal(model.state_dict()["head.classifier.weight"], state["model"]["head.classifier.weight"])
    metrics = pd.read_parquet(run.metrics_path)
    assert set(metrics[metrics.name == "miou"].step) == {2, 5}
    records = gradlab.load_records(run.path)
    assert sorted(records.step.unique()) == list(range(6))
    assert set(records.query("quantity == 'grad/params'").layer) == {"backbone", "em", "head"}


def test_tiny_training_learns_its_scenes(tmp_path):
    """80 steps on 8 scenes: the pipeline memorises them (mIoU 0.63 when written; all background scores 0.07)."""
    config = tiny_config("data.size=64", "data.train_length=8", "train.batch_size=8", "train.steps=80", "train.lr=0.1",
                         "train.eval_every=80", "train.checkpoint_every=80", "model.dropout=0.0")
    run = train(config, tmp_path / "run", progress=False)
    metrics = pd.read_parquet(run.metrics_path)
    loss = metrics[metrics.name == "loss"].value.to_numpy()
    assert loss[-5:].mean() < 0.5 * loss[:5].mean()
    net = model_from_config(config.model, 11)
    net.load_state_dict(torch.load(run.checkpoint, weights_only=True)["model"])
    train_set = splits_from_config(config.data, config.seed)[0]
    assert evaluate(net, DataLoader(train_set, batch_size=8), 11, torch.device("cpu"))["miou"] > 0.4


class Killed(Exception):
    pass


def killed_after_its_first_checkpoint(run_dir, monkeypatch) -> None:
    """Train the tiny config into `run_dir` and kill it right after the checkpoint of step 3 (of 6)."""
    real_checkpoint = trainer_module._checkpoint

    def checkpoint_then_die(training, done):
        real_checkpoint(training, done)
        if done == 3:
            raise Killed

    monkeypatch.setattr(trainer_module, "_checkpoint", checkpoint_then_die)
    with pytest.raises(Killed):
        train(tiny_config(), run_dir, progress=False)
    monkeypatch.setattr(trainer_module, "_checkpoint", real_checkpoint)


def test_resume_equals_a_straight_run(tmp_path, monkeypatch):
    straight = train(tiny_config(), tmp_path / "straight", progress=False)
    killed_after_its_first_checkpoint(tmp_path / "resumed", monkeypatch)
    resumed = train(tiny_config(), tmp_path / "resumed", resume=True, progress=False)

    a, b = (torch.load(r.checkpoint, weights_only=True)["model"] for r in (straight, resumed))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)
    ra, rb = (gradlab.load_records(r.path).query("quantity != 'step_time'").drop(columns="run")
              for r in (straight, resumed))
    pd.testing.assert_frame_equal(ra.reset_index(drop=True), rb.reset_index(drop=True), rtol=1e-6)
    ma, mb = (pd.read_parquet(r.metrics_path) for r in (straight, resumed))
    pd.testing.assert_frame_equal(ma, mb, rtol=1e-6)


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0(tmp_path, monkeypatch):
    """Killed after some records were flushed but before the first checkpoint: --resume used to refuse (no
    checkpoint) while a fresh start refused the non-empty folder. It now starts over in the same directory."""
    straight = train(tiny_config(), tmp_path / "straight", progress=False)

    def die(*args):
        raise Killed

    monkeypatch.setattr(trainer_module, "_checkpoint", die)
    with pytest.raises(Killed):
        train(tiny_config(), tmp_path / "killed", progress=False)
    monkeypatch.undo()
    killed = gradlab.train.RunDirectory(tmp_path / "killed")
    assert not killed.checkpoint.exists() and list((killed.path / "records").glob("part-*.parquet"))
    (killed.path / "meta.json").unlink()  # killed while the meta was being written, too
    resumed = train(run_config(killed.path), killed.path, resume=True, progress=False)

    assert json.loads(resumed.meta_path.read_text())["status"] == "complete"
    assert torch.load(resumed.checkpoint, weights_only=True)["step"] == 6
    ra, rb = (gradlab.load_records(r.path).query("quantity != 'step_time'").drop(columns="run")
              for r in (straight, resumed))
    pd.testing.assert_frame_equal(ra.reset_index(drop=True), rb.reset_index(drop=True), rtol=1e-6)
    ma, mb = (pd.read_parquet(r.metrics_path) for r in (straight, resumed))
    pd.testing.assert_frame_equal(ma, mb, rtol=1e-6)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_meta_records_the_commit_of_the_users_working_directory(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    assert git_revision(project) is None  # a repository without commits
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "mine"], cwd=project, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(project)
    run = train(tiny_config(), tmp_path / "run", progress=False)
    meta = json.loads(run.meta_path.read_text())
    assert meta["git_revision"] == head and meta["gradlab_version"] == gradlab.__version__
    (tmp_path / "plain").mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # however tmp_path is placed
    monkeypatch.chdir(tmp_path / "plain")
    assert git_revision() is None


class NaNImages(torch.utils.data.Dataset):
    def __init__(self, base):
        self.base, self.num_classes, self.ignore_index = base, base.num_classes, base.ignore_index

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        image, mask = self.base[i]
        return image * float("nan"), mask


def nan_data(monkeypatch):
    real = trainer_module.splits_from_config
    monkeypatch.setattr(trainer_module, "splits_from_config", lambda d, seed: (NaNImages(real(d, seed)[0]),
                                                                               real(d, seed)[1]))


def test_nonfinite_stop_keeps_no_bad_checkpoint_and_says_where(tmp_path, monkeypatch):
    nan_data(monkeypatch)
    with pytest.raises(NonFiniteError, match="non-finite loss at step 0.*no checkpoint was written before it"):
        train(tiny_config(), tmp_path / "run", progress=False)
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["status"] == "stopped" and not (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    records = gradlab.load_records(tmp_path / "run")
    assert (records.query("quantity == 'loss'").status == "nonfinite").all()


def test_nonfinite_skip_drops_the_updates(tmp_path, monkeypatch):
    nan_data(monkeypatch)
    torch.manual_seed(0)
    run = train(tiny_config("train.nonfinite='skip'"), tmp_path / "run", progress=False)
    metrics = pd.read_parquet(run.metrics_path)
    assert (metrics.name == "nonfinite").sum() == 6
    assert json.loads(run.meta_path.read_text())["status"] == "complete"


class NaNAtStep(torch.utils.data.Dataset):
    """The training scenes, with NaN images in the batch of one step (and nowhere else)."""

    def __init__(self, base, indices):
        self.base, self.indices = base, set(indices)
        self.num_classes, self.ignore_index = base.num_classes, base.ignore_index

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        image, mask = self.base[i]
        return (image * float("nan") if i in self.indices else image), mask


def test_nonfinite_at_a_later_step_is_recorded_there_kept_out_of_the_checkpoint_and_flagged_in_the_report(
        tmp_path, monkeypatch):
    from gradlab.report import build_report
    from gradlab.train.sampler import StepBatches

    config = tiny_config()  # 6 steps, a checkpoint every 3
    real = trainer_module.splits_from_config
    step4 = list(StepBatches(config.data.train_length, config.train.batch_size, config.train.steps, config.seed))[4]
    monkeypatch.setattr(trainer_module, "splits_from_config",
                        lambda d, seed: (NaNAtStep(real(d, seed)[0], step4), real(d, seed)[1]))
    with pytest.raises(NonFiniteError, match="non-finite loss at step 4"):
        train(config, tmp_path / "run", progress=False)
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
    records = gradlab.load_records(tmp_path / "run")
    bad = records[records.status == "nonfinite"]
    assert set(bad.step) == {4} and {"loss", "grad/x"} <= set(bad.quantity)
    assert (records[records.step < 4].status.isin(["ok", "no_grad"])).all()
    with pytest.warns(UserWarning, match="did not finish .*status: stopped"):
        report = build_report([tmp_path / "run"], tmp_path / "report").markdown.read_text()
    assert "NaN/Inf" in report and "nonfinite" in report


@pytest.mark.parametrize("override", ["model.iterations=5", "train.lr=0.5", "data.size=48", "seed=3",
                                      "train.steps=12", "record.every=2"])
def test_resume_refuses_an_override_that_would_change_what_the_run_trains(tmp_path, capsys, override):
    from gradlab.cli import main

    run = train(tiny_config(), tmp_path / "run", progress=False)
    before = run.config_path.read_text()
    assert main(["train", "--resume", "--out", str(run.path), "--set", override, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gradlab: error: --resume cannot change " + override.split("=")[0])
    assert run.config_path.read_text() == before


def test_an_allowed_resume_override_is_written_to_config_and_meta(tmp_path, monkeypatch):
    from gradlab.cli import main

    killed_after_its_first_checkpoint(tmp_path / "run", monkeypatch)
    assert main(["train", "--resume", "--out", str(tmp_path / "run"), "--set", "train.eval_every=2", "--quiet"]) == 0
    run = gradlab.train.RunDirectory(tmp_path / "run")
    assert run_config(run.path).train.eval_every == 2
    meta = json.loads(run.meta_path.read_text())
    assert meta["status"] == "complete" and meta["resumed_at_step"] == 3
    assert meta["resumed_with"] == {"train.eval_every": [3, 2]}
