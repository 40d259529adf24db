"""GradlabCallback in a real CPU `lightning.Trainer`: records once per optimizer step (also under gradient
accumulation, where an update's records equal a hand-written accumulation's), forwards the summary to the
trainer's logger, continues the step numbers of a resumed fit, and leaves no hook behind, also when the fit fails."""

from __future__ import annotations

import copy
import csv
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import gradlab
from gradlab.integrations.metrics import metric_key
from tests.integrations.conftest import assert_no_hooks

L = pytest.importorskip("lightning")
from gradlab.integrations.lightning import GradlabCallback  # noqa: E402
from gradlab.layers import EMAUnit, HEMLayer  # noqa: E402

LAYER = "net.1.em"  # the HEM layer's path in the LightningModule


class Segmenter(L.LightningModule):
    def __init__(self, fail_at: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), EMAUnit(HEMLayer(8, bases=4, iterations=3)),
                                 nn.Conv2d(8, 3, 1))
        self.fail_at = fail_at

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        if batch_idx == self.fail_at:
            raise RuntimeError("a failing training step")
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def loader(batches: int = 8, size: int = 2) -> DataLoader:
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(batches * size, 3, 6, 6, generator=g),
                         torch.randint(0, 3, (batches * size, 6, 6), generator=g))
    return DataLoader(data, batch_size=size, shuffle=False)


def trainer(tmp_path, callback, **kw) -> L.Trainer:
    options = dict(max_steps=4, accelerator="cpu", devices=1, logger=L.pytorch.loggers.CSVLogger(tmp_path, name="csv"),
                   enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                   default_root_dir=tmp_path, num_sanity_val_steps=0, log_every_n_steps=1)
    return L.Trainer(callbacks=[callback], **(options | kw))


def fit(trainer_, module, **kw):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers|LightningModule).*")
        trainer_.fit(module, loader(), **kw)


def logged(trainer_) -> list[dict[str, str]]:
    with open(f"{trainer_.logger.log_dir}/metrics.csv") as f:
        return list(csv.DictReader(f))


def test_records_every_optimizer_step_into_the_log_dir_and_forwards_the_summary(tmp_path):
    callback = GradlabCallback(every=1, jacobian_every=0)
    module = Segmenter()
    t = trainer(tmp_path, callback)
    fit(t, module)
    records = gradlab.load_records(f"{t.log_dir}/gradlab")
    assert sorted(records.step.unique()) == [0, 1, 2, 3]
    assert (records.query("quantity == 'grad/x'").layer == LAYER).all()
    rows = [r for r in logged(t) if r.get(metric_key(LAYER, "grad/x", "decades"))]
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]
    assert callback.recorder is None
    assert_no_hooks(module)


def test_gradient_accumulation_records_once_per_update_as_a_hand_written_loop_does(tmp_path):
    module = Segmenter()
    reference = copy.deepcopy(module)
    t = trainer(tmp_path, GradlabCallback(every=1, jacobian_every=0, log=False), max_steps=3, accumulate_grad_batches=2)
    fit(t, module)
    records = gradlab.load_records(f"{t.log_dir}/gradlab")
    assert sorted(records.step.unique()) == [0, 1, 2]  # 6 batches, 3 updates

    batches = iter(loader())  # the first update by hand: two micro-batches of loss / 2, one rec.step
    with gradlab.watch(reference, jacobian_every=0) as rec:
        losses = []
        for _ in range(2):
            x, y = next(batches)
            loss = F.cross_entropy(reference(x), y) / 2
            loss.backward()
            losses.append(loss.detach())
        rec.step(0, loss=sum(losses))
    mine = rec.frame().query("quantity.str.startswith('grad/') or quantity == 'loss'", engine="python")
    theirs = records[records.step == 0].set_index(["layer", "iteration", "quantity"])["value"]
    for row in mine.itertuples():
        assert theirs[(row.layer, row.iteration, row.quantity)] == pytest.approx(row.value, rel=1e-5), row


def test_under_fp16_mixed_precision_the_trainers_loss_scale_is_divided_out(tmp_path):
    from lightning.pytorch.plugins.precision import MixedPrecision

    plain = trainer(tmp_path / "32", GradlabCallback(every=1, jacobian_every=0, log=False), max_steps=1)
    fit(plain, Segmenter())
    fp16 = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=4096))  # CPU: by hand
    mixed = trainer(tmp_path / "16", GradlabCallback(every=1, jacobian_every=0, log=False), max_steps=1,
                    plugins=[fp16])
    fit(mixed, Segmenter())
    full, half = (gradlab.load_records(f"{t.log_dir}/gradlab") for t in (plain, mixed))
    assert half.query("quantity == 'amp/scale'").value.tolist() == [4096.0]
    grad_x = [f.query("quantity == 'grad/x'").sort_values("iteration").value.to_numpy() for f in (full, half)]
    assert grad_x[1] == pytest.approx(grad_x[0], rel=2e-2)  # fp16 rounding, not the scale of 4096


def test_a_resumed_fit_continues_the_step_numbers_and_the_records(tmp_path):
    first = trainer(tmp_path, GradlabCallback(every=1, run_dir=tmp_path / "rec", jacobian_every=0, log=False),
                    max_steps=2, enable_checkpointing=True)
    fit(first, Segmenter())
    ckpt = next((tmp_path / "csv").rglob("*.ckpt"))
    second = trainer(tmp_path, GradlabCallback(every=1, run_dir=tmp_path / "rec", jacobian_every=0, log=False),
                     max_steps=4)
    fit(second, Segmenter(), ckpt_path=str(ckpt))
    records = gradlab.load_records(tmp_path / "rec")
    assert sorted(records.step.unique()) == [0, 1, 2, 3]


def test_a_failing_fit_leaves_no_hook_and_keeps_the_steps_before_it(tmp_path):
    callback = GradlabCallback(every=1, jacobian_every=0)
    module = Segmenter(fail_at=2)
    t = trainer(tmp_path, callback)
    with pytest.raises(RuntimeError, match="a failing training step"):
        fit(t, module)
    assert callback.recorder is None
    assert_no_hooks(module)
    assert sorted(gradlab.load_records(f"{t.log_dir}/gradlab").step.unique()) == [0, 1]
    with gradlab.watch(module) as rec:  # nothing stays registered as watched either
        rec.step(0)
