"""TensorBoard: the `log=` adapter over a real SummaryWriter and `gradlab export tensorboard`, both read back with
TensorBoard's own EventAccumulator (scalars and the custom-scalars layout)."""

from __future__ import annotations

import sys

import pytest
import torch

import gradlab
from gradlab.cli import main
from gradlab.integrations.metrics import metric_key, summary
from tests.instrument.conftest import make_net
from tests.integrations.conftest import em_loss

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.custom_scalar import layout_pb2  # noqa: E402

from gradlab.integrations.tensorboard import TensorBoardLog, summary_writer  # noqa: E402

LAYOUT_TAG = "custom_scalars__config__"


def events(folder) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def layout_of(acc: EventAccumulator) -> dict[str, dict[str, list[str]]]:
    """{category: {chart: [tag regexes]}} of the first layout (the one TensorBoard shows)."""
    proto = layout_pb2.Layout()
    proto.ParseFromString(acc.Tensors(LAYOUT_TAG)[0].tensor_proto.string_val[0])
    return {c.title: {chart.title: list(chart.multiline.tag) for chart in c.chart} for c in proto.category}


def test_the_adapter_writes_every_key_as_a_scalar_and_a_layout_of_iteration_charts(tmp_path, batch):
    logged = {}

    def both(metrics, step):
        logged[step] = metrics
        adapter(metrics, step)

    writer = summary_writer(tmp_path / "tb")
    adapter = TensorBoardLog(writer)
    net = make_net()
    with gradlab.watch(net, log=both, log_iterations=True, jacobian_every=0) as rec:
        for step in range(3):
            em_loss(net, batch).backward()
            rec.step(step)
    adapter.close()
    writer.close()
    acc = events(tmp_path / "tb")
    assert set(acc.Tags()["scalars"]) == set(logged[0])
    for key in logged[0]:
        points = acc.Scalars(key)
        assert [p.step for p in points] == [0, 1, 2]
        assert [p.value for p in points] == pytest.approx([logged[s][key] for s in range(3)], rel=1e-6, nan_ok=True)
    assert acc.Scalars(metric_key("ema.em", "grad/x", "t2"))[1].value == pytest.approx(
        rec.frame().query("step == 1 and quantity == 'grad/x' and iteration == 2").value.item(), rel=1e-6)
    layout = layout_of(acc)
    assert len(acc.Tensors(LAYOUT_TAG)) == 1
    assert set(layout) == {"gradlab ema.em"}
    charts = layout["gradlab ema.em"]
    assert set(charts) == {"grad/x per iteration", "grad/mu per iteration", "grad/z per iteration", "decades"}
    import re

    grad_x = [t for t in acc.Tags()["scalars"] if re.match(charts["grad/x per iteration"][0], t)]
    assert sorted(grad_x) == [metric_key("ema.em", "grad/x", f"t{t}") for t in range(1, 5)]  # the T curves together


def test_the_layout_waits_for_loops_that_auto_finds_in_the_first_step(tmp_path):
    from tests.integrations.conftest import Refiner

    model = torch.nn.Sequential(torch.nn.Linear(6, 6), Refiner())
    writer = summary_writer(tmp_path)
    adapter = TensorBoardLog(writer)
    with gradlab.watch(model, loops="auto", log=adapter, log_iterations=True) as rec:
        for step in range(3):
            model(torch.randn(2, 6)).sum().backward()
            rec.step(step)
    writer.close()
    assert rec.loops == ["1.cell"]
    assert "grad/in per iteration" in layout_of(events(tmp_path))["gradlab 1.cell"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from tests.report.runs import tiny_runs

    return tiny_runs(tmp_path_factory)


def test_export_writes_each_run_as_a_tensorboard_run(runs, tmp_path, capsys):
    logdir = tmp_path / "tb"
    assert main(["export", "tensorboard", str(runs["em"]), str(runs["hem"]), "--logdir", str(logdir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [str(logdir / "em"), str(logdir / "hem"), f"tensorboard --logdir {logdir}"]
    records = gradlab.load_records(runs["em"])
    expected = summary(records, iterations=True)
    acc = events(logdir / "em")
    key = metric_key("head.ema.em", "grad/x", "decades")
    assert key in expected["key"].values, sorted(expected["key"].unique())[:8]
    rows = expected[expected.key == key]
    assert [p.step for p in acc.Scalars(key)] == list(rows.step)
    assert [p.value for p in acc.Scalars(key)] == pytest.approx(list(rows.value), rel=1e-6, nan_ok=True)
    assert set(expected["key"]) <= set(acc.Tags()["scalars"])
    assert {"metrics/loss", "metrics/miou"} <= set(acc.Tags()["scalars"])
    assert "gradlab head.ema.em" in layout_of(acc)


@pytest.mark.parametrize("case", ["missing", "not a run", "logdir under a file", "unwritable logdir", "twice",
                                  "no tensorboard"])
def test_export_errors_end_with_one_line_and_exit_2(runs, tmp_path, capsys, monkeypatch, case):
    run, logdir = str(runs["em"]), str(tmp_path / "tb")
    if case == "missing":
        run = str(tmp_path / "nowhere")
    elif case == "not a run":
        (tmp_path / "empty").mkdir()
        run = str(tmp_path / "empty")
    elif case == "logdir under a file":
        (tmp_path / "file").write_text("x")
        logdir = str(tmp_path / "file" / "tb")
    elif case == "unwritable logdir":
        logdir = "/proc/gradlab-tb"  # not writable, even for root
    elif case == "twice":
        assert main(["export", "tensorboard", run, "--logdir", logdir]) == 0
    elif case == "no tensorboard":
        monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    capsys.readouterr()
    try:
        code = main(["export", "tensorboard", run, "--logdir", logdir])
    except SystemExit as stop:  # argparse's type check of --logdir
        code = stop.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("gradlab: error: "), (case, err)
    message = {"missing": "no run directory at", "not a run": "is not a run directory", "logdir under a file":
               "is a file", "unwritable logdir": "/proc/gradlab-tb", "twice": "already holds TensorBoard event files",
               "no tensorboard": "pip install 'gradlab[tensorboard]'"}[case]
    assert message in err[0]
