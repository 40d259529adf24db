"""Recorded gradient norms against torch.autograd.grad, statuses, steps and diagnostics."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import gradlab
import gradlab.parallel
from gradlab.analysis.decay import is_gradient_norm
from gradlab.errors import ConfigError
from gradlab.run_dir import RunDirectory
from tests.instrument.conftest import make_net


def capture_states(layer):
    """The tensors the layer taps, captured independently through forward hooks on its modules."""
    states = {}

    def on_cell(cell, args, out):
        if cell.t == 1:
            states[("grad/mu", 0)] = args[1]
        states[("grad/x", cell.t)], states[("grad/mu", cell.t)], states[("grad/z", cell.t)] = args[0], *out

    handles = [c.register_forward_hook(on_cell) for c in layer.iterations]
    handles.append(layer.register_forward_pre_hook(lambda m, args: states.__setitem__(("grad/x_total", None), args[0])))
    return states, handles


def recorded(frame, quantity, iteration, step=0):
    row = frame[(frame.step == step) & (frame.quantity == quantity)]
    row = row[row.iteration.isna()] if iteration is None else row[row.iteration == iteration]
    assert len(row) == 1, (quantity, iteration, row)
    return row.value.iloc[0], row.status.iloc[0]


@pytest.mark.parametrize("kind", ["em", "hem"])
@pytest.mark.parametrize("grad_iterations", [None, 2, 0])
def test_recorded_norms_equal_autograd(kind, grad_iterations, batch):
    net = make_net(kind=kind, grad_iterations=grad_iterations)
    x, y = batch
    layer = net.ema.em
    states, handles = capture_states(layer)
    rec = gradlab.watch(net)
    loss = F.cross_entropy(net(x), y)
    loss.backward(retain_graph=True)
    rec.step(0, loss=loss)
    frame = rec.frame()
    live = {k: v for k, v in states.items() if v.requires_grad}
    grads = torch.autograd.grad(loss, list(live.values()), allow_unused=True)
    rec.close()
    for h in handles:
        h.remove()
    expected = {k: g for k, g in zip(live, grads)}
    T, k = 4, 4 if grad_iterations is None else grad_iterations
    for (quantity, t), _ in states.items():
        value, status = recorded(frame, quantity, t)
        # states of iterations run under no_grad have none; μ^(0) follows iteration 1
        in_graph = (k > 0) if t is None else (t > T - k or t == 0 and k == T)
        if in_graph:
            assert status == "ok", (quantity, t, status)
            truth = expected[(quantity, t)].double().norm().item()
            assert value == pytest.approx(truth, rel=1e-5), (quantity, t)
        else:
            assert status == "no_grad" and math.isnan(value), (quantity, t, status, value)


def test_tiny_gradients_do_not_underflow_and_zero_stays_zero(batch):
    x, y = batch
    net = make_net(kind="hem")
    with gradlab.watch(net) as rec:
        for step, scale in enumerate([1.0, 1e-25, 0.0]):
            net.zero_grad()
            (F.cross_entropy(net(x), y) * scale).backward()
            rec.step(step)
    frame = rec.frame()
    grads = frame[frame.quantity.map(is_gradient_norm) & (frame.quantity != "grad/params")]
    base, tiny, zero = (grads[grads.step == s].value.to_numpy() for s in range(3))
    assert (base > 0).all()
    assert tiny == pytest.approx(base * 1e-25, rel=1e-5)
    assert (zero == 0).all() and (grads[grads.step == 2].status == "ok").all()


def test_nonfinite_gradient_is_flagged_and_counted(batch):
    x, y = batch
    net = make_net()
    with gradlab.watch(net) as rec:
        (F.cross_entropy(net(x), y) * math.inf).backward()
        rec.step(0)
    frame = rec.frame()
    assert (frame[frame.quantity == "grad/x"].status == "nonfinite").all()
    assert rec.nonfinite >= 4


def test_unused_branch_is_reported_unused_not_zero(batch):
    x, _ = batch
    net = make_net()
    with gradlab.watch(net) as rec:
        net.ema.em(net.stem(x))  # forward through the layer, output never used in the loss
        net.classifier(net.stem(x)).sum().backward()
        rec.step(0)
    grads = rec.frame().query("quantity.str.startswith('grad/') and layer == 'ema.em'")
    assert len(grads) == 3 * 4 + 3  # x, z, mu at t = 1..4, mu at 0, grad/x_total, grad/out
    assert (grads.status == "unused").all() and grads.value.isna().all()


def test_detached_input_is_reported_no_grad(batch):
    x, _ = batch
    net = make_net()
    with gradlab.watch(net) as rec:
        net.ema.em(net.stem(x).detach()).sum().backward()
        rec.step(0)
    frame = rec.frame()
    assert recorded(frame, "grad/x_total", None)[1] == "no_grad"
    assert recorded(frame, "grad/x", 2)[1] == "no_grad"
    assert recorded(frame, "grad/mu", 4)[1] == "ok"  # the bases still receive gradient


def test_step_rows_and_parameter_groups(batch):
    x, y = batch
    net = make_net()
    groups = {"features": net.stem, "rest": [*net.ema.parameters(), *net.classifier.parameters()]}
    with gradlab.watch(net, groups=groups) as rec:
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        rec.step(7, loss=loss, lr=0.01)
    frame = rec.frame()
    assert recorded(frame, "loss", None, step=7)[0] == pytest.approx(loss.item())
    assert recorded(frame, "lr", None, step=7)[0] == 0.01
    assert recorded(frame, "step_time", None, step=7)[0] > 0
    feats = frame[(frame.quantity == "grad/params") & (frame.layer == "features")].value.item()
    truth = torch.cat([p.grad.flatten() for p in net.stem.parameters()]).norm().item()
    assert feats == pytest.approx(truth, rel=1e-5)
    assert set(frame[frame.quantity == "grad/params"].layer) == {"features", "rest"}


def test_schedule_records_only_scheduled_steps(batch):
    x, y = batch
    net = make_net()
    with gradlab.watch(net, every=3) as rec:
        for step in range(7):
            traced = net.ema.em.tracing
            F.cross_entropy(net(x), y).backward()
            assert traced == (step % 3 == 0)
            rec.step(step)
    assert sorted(rec.frame().step.unique()) == [0, 3, 6]


def test_gradient_accumulation_combines_backwards_root_sum_square(batch):
    x, y = batch
    net = make_net().eval()  # eval: the bases stay put, so both forwards are the same function
    with gradlab.watch(net) as rec:
        F.cross_entropy(net(x), y).backward()
        rec.step(0)
        F.cross_entropy(net(x), y).backward()
        F.cross_entropy(net(x), y).backward()
        rec.step(1)
    frame = rec.frame().query("quantity == 'grad/x'")
    one, two = frame[frame.step == 0].value.to_numpy(), frame[frame.step == 1].value.to_numpy()
    assert two == pytest.approx(one * math.sqrt(2), rel=1e-5)


def test_rank_and_run_columns(batch, tmp_path):
    x, y = batch
    net = make_net()
    inner = torch.nn.Linear(2, 2)  # DataParallel moves its module to the GPU when there is one
    assert gradlab.parallel.unwrap(torch.nn.DataParallel(inner)) is inner
    with gradlab.watch(net, run_dir=tmp_path / "my-run") as rec:
        F.cross_entropy(net(x), y).backward()
        rec.step(0)
    frame = rec.frame()
    assert set(frame.run) == {"my-run"} and set(frame["rank"]) == {0}
    assert set(frame.layer) >= {"ema.em", "stem", "ema", "classifier", ""}


class _Loop(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = torch.nn.GRUCell(3, 3)

    def forward(self, x):
        h = torch.zeros(x.shape[1], 3)
        for x_t in x:
            h = self.cell(x_t, h)
        return h.pow(2).sum()


def _record(run_dir, steps: int = 12, fail: type[BaseException] | None = None, status: str = "running"):
    torch.manual_seed(0)
    model, x = _Loop(), torch.randn(4, 2, 3, requires_grad=True)
    with gradlab.watch(model, run_dir, loops=["cell"]) as rec:
        for step in range(steps):
            model(x).backward()
            rec.step(step)
            assert RunDirectory(run_dir).status == status  # while it records
        if fail is not None:
            raise fail("stop")


def test_a_new_run_dir_becomes_a_run_directory_that_the_report_reads(tmp_path):
    from gradlab.report import build_report

    run = tmp_path / "own-loop"
    _record(run)
    meta = RunDirectory(run).meta()
    assert meta["status"] == "complete" and meta["recorder"] == "gradlab.watch" and meta["torch"] == torch.__version__
    config = RunDirectory(run).flat_config()
    assert config == {"model.class": "_Loop", "record.layers": "", "record.loops": "cell", "record.every": 1,
                      "record.groups": "cell", "record.diagnostics_every": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no metrics" warning: a watched run keeps its loss in the records
        html = build_report([run], tmp_path / "report").html.read_text()
    assert "cell" in html and "Gradient reaching each iteration (watched loops)" in html


@pytest.mark.parametrize("error, status", [(ValueError, "failed"), (KeyboardInterrupt, "interrupted")])
def test_an_exception_leaving_the_with_block_is_the_run_s_status(tmp_path, error, status):
    with pytest.raises(error):
        _record(tmp_path / "run", steps=2, fail=error)
    assert RunDirectory(tmp_path / "run").status == status


def test_a_run_directory_of_gradlab_train_or_a_foreign_folder_is_left_as_it_is(tmp_path):
    made = tmp_path / "made"
    RunDirectory(made).create("seed = 0\n", {"seed": 0})  # as gradlab train does before it watches
    _record(made, steps=2)
    assert RunDirectory(made).status == "running" and RunDirectory(made).flat_config() == {"seed": 0}
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    _record(foreign, steps=2, status="unknown")
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt", "records"]


#: what only the diagnosed steps have: forward diagnostics, the agreement, the EMA unit's branch norms, the
#: parameter-group norms
DIAGNOSED_ONLY = ("entropy", "similarity", "e_gain", "loglik", "grad/x_cos", "grad/x_rest", "grad/unit_em",
                  "grad/params")


def _diagnosed_steps(recorded: list[int], k: int) -> list[int]:
    """The rule, written out: the first recorded step of each block of k steps (kb .. kb + k − 1)."""
    return [] if k == 0 else [s for i, s in enumerate(recorded) if i == 0 or recorded[i - 1] < s - s % k]


@settings(max_examples=12, deadline=None)
@given(every=st.sampled_from([1, 2, 3, 7]), k=st.sampled_from([0, 1, 3, 10]), steps=st.integers(1, 22))
def test_diagnostics_schedule_diagnoses_the_first_recorded_step_of_each_block_and_norms_every_step(every, k, steps):
    x, y = torch.randn(2, 3, 6, 5), torch.randint(0, 3, (2, 6, 5))
    net = make_net()
    with gradlab.watch(net, every=every, diagnostics_every=k, jacobian_every=0) as rec:
        for step in range(steps):
            F.cross_entropy(net(x), y).backward()
            rec.step(step)
    frame = rec.frame()
    recorded = list(range(0, steps, every))
    expected = _diagnosed_steps(recorded, k)
    for quantity in DIAGNOSED_ONLY:
        assert sorted(frame[frame.quantity == quantity].step.unique()) == expected, quantity
    for quantity in ("grad/x", "grad/mu", "grad/z", "grad/x_total", "grad/out", "step_time"):
        assert sorted(frame[frame.quantity == quantity].step.unique()) == recorded, quantity
    assert (frame.status[frame.quantity.str.startswith("grad/")] == "ok").all()
    assert not net.ema.em.tracing and net.ema.em.trace is None  # restored, nothing kept


@pytest.mark.parametrize("every,k,start", [(1, 10, 15), (3, 10, 14), (1, 4, 8), (2, 5, 7)])
def test_a_resumed_recorder_diagnoses_the_steps_of_a_straight_run(every, k, start, batch):
    """Exact resume: a recorder that starts at `start_step` (as a resumed run's does) diagnoses the steps that one
    recording from step 0 diagnoses, from its first step on."""
    x, y = batch
    diagnosed = []
    for first in (0, start):
        net = make_net()
        with gradlab.watch(net, every=every, diagnostics_every=k, jacobian_every=0, start_step=first) as rec:
            for step in range(first, 30):
                F.cross_entropy(net(x), y).backward()
                rec.step(step)
        frame = rec.frame()
        diagnosed.append(sorted(s for s in frame[frame.quantity == "entropy"].step.unique() if s >= start))
    assert diagnosed[0] == diagnosed[1] and diagnosed[0]


def test_diagnosed_steps_record_what_every_step_recording_records(batch):
    """The diagnostics of a diagnosed step, and the norms of any recorded step, equal those of a recorder that
    diagnoses every step (diagnostics_every=1): the schedule changes which steps, never the numbers."""
    x, y = batch
    frames = []
    for k in (1, 3):
        net = make_net()
        with gradlab.watch(net, diagnostics_every=k, jacobian_every=0) as rec:
            for step in range(4):
                net.zero_grad()
                F.cross_entropy(net(x), y).backward()
                rec.step(step)
        frames.append(rec.frame())
    every, sparse = (f.set_index(["step", "layer", "iteration", "quantity"])["value"] for f in frames)
    shared = sparse.index[sparse.index.get_level_values("quantity") != "step_time"]
    assert len(shared) < len(every.index)  # steps 1 and 2 lost their diagnostics
    assert sparse[shared].to_numpy() == pytest.approx(every[shared].to_numpy(), rel=1e-12, nan_ok=True)


@pytest.mark.parametrize("value", [-1, 1.5, True, "10", None])
def test_a_bad_diagnostics_schedule_is_refused_before_any_hook(value):
    net = make_net()
    with pytest.raises(ConfigError, match="diagnostics_every"):
        gradlab.watch(net, diagnostics_every=value)
    gradlab.watch(net).close()  # nothing was left attached
