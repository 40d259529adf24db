"""The worked examples of examples/ (third-party-style modules, no gradlab inside) recorded with watch(loops=...).

Each recorded per-call norm is checked against an independent reference: the example's forward written out by
hand, with a fresh alias (`view_as`) of each call's input and the call's outputs kept, then `torch.autograd.grad`.
The EM layers watched as a loop are checked against their own taps, recorded at the same time.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import gradlab
from examples.slot_attention import SlotSegmenter
from examples.unrolled import LISTA, RecurrentClassifier
from gradlab.analysis import load_runs, regime
from gradlab.report import build_report
from gradlab.run_dir import RunDirectory, run_meta
from tests.instrument.conftest import make_net
from tests.report.parse import column, parse_html, section, table_rows, text_of

REL = 1e-9  # float64 throughout: the recorder and the reference see the same gradients


def per_call(frame, layer: str, quantity: str, step: int = 0) -> tuple[list[float], list[str]]:
    """The values and statuses of `quantity` of `layer` at `step`, in the order of the calls c = 1, 2, ..."""
    rows = frame[(frame["layer"] == layer) & (frame["quantity"] == quantity) & (frame["step"] == step)]
    rows = rows.sort_values("iteration")
    assert rows["iteration"].tolist() == list(range(1, len(rows) + 1)), rows
    return rows["value"].tolist(), rows["status"].tolist()


def norms(loss: torch.Tensor, tensors: list[torch.Tensor | None]) -> list[float]:
    """‖∂L/∂tensor‖ of each tensor (NaN for None, a tensor built without gradient); 0 when none reaches it."""
    live = [t for t in tensors if t is not None]
    grads = iter(torch.autograd.grad(loss, live, allow_unused=True, retain_graph=True))
    out = []
    for t in tensors:
        g = next(grads) if t is not None else None
        out.append(math.nan if t is None else 0.0 if g is None else float(g.norm()))
    return out


def alias(tensor: torch.Tensor, kept: list) -> torch.Tensor:
    """What the recorder does to a call's first tensor argument: an identity view of it, for that call only."""
    a = tensor.view_as(tensor) if tensor.requires_grad else tensor
    kept.append(a if tensor.requires_grad else None)
    return a


def keep(tensor: torch.Tensor, kept: list) -> torch.Tensor:
    kept.append(tensor)
    return tensor


def assert_matches(frame, layer: str, want_in: list[float], want_out: list[float], step: int = 0) -> None:
    got_in, status_in = per_call(frame, layer, "grad/in", step)
    got_out, status_out = per_call(frame, layer, "grad/out", step)
    assert status_in == ["no_grad" if math.isnan(w) else "ok" for w in want_in]
    assert status_out == ["ok"] * len(want_out)
    ok = [i for i, w in enumerate(want_in) if not math.isnan(w)]
    assert [got_in[i] for i in ok] == pytest.approx([want_in[i] for i in ok], rel=REL)
    assert got_out == pytest.approx(want_out, rel=REL)


# -- slot attention ---------------------------------------------------------------------------------------------
def slot_model(iterations: int = 3) -> SlotSegmenter:
    torch.manual_seed(0)
    return SlotSegmenter(classes=4, dim=8, slots=3, iterations=iterations, hidden=16).double()


def scenes(batch: int = 2, size: int = 16):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(batch, 3, size, size, generator=g, dtype=torch.float64),
            torch.randint(0, 4, (batch, size, size), generator=g))


def slot_step(model, images, masks, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)  # the slots' initial draw
    loss = F.cross_entropy(model(images), masks)
    loss.backward()
    return loss.detach()


def slot_reference(model: SlotSegmenter, images, masks, seed: int) -> tuple[float, dict[str, list[float]]]:
    """SlotSegmenter's forward written out, the GRU cell's and the MLP's inputs aliased per call and their outputs
    kept: the loss and the per-call norms {"gru_in": [...], "gru_out": ..., "mlp_in": ..., "mlp_out": ...}."""
    sa, kept = model.slot_attention, {k: [] for k in ("gru_in", "gru_out", "mlp_in", "mlp_out")}
    torch.manual_seed(seed)
    features = model.position(model.encoder(images))
    B, D, h, w = features.shape
    inputs = sa.norm_inputs(model.feature_mlp(features.flatten(2).transpose(1, 2)))
    k, v = sa.project_k(inputs), sa.project_v(inputs)
    slots = sa.slots_mu + sa.slots_log_sigma.exp() * torch.randn(B, sa.num_slots, D, dtype=images.dtype)
    for _ in range(sa.iterations):
        q = sa.project_q(sa.norm_slots(slots))
        attn = torch.softmax(q @ k.transpose(1, 2) * sa.scale, dim=1) + sa.eps
        updates = ((attn / attn.sum(-1, keepdim=True)) @ v).reshape(-1, D)
        new = keep(sa.gru(alias(updates, kept["gru_in"]), slots.reshape(-1, D)), kept["gru_out"]).view(B, -1, D)
        slots = new + keep(sa.mlp(alias(sa.norm_mlp(new), kept["mlp_in"])), kept["mlp_out"])
    probs = torch.einsum("bkn,bkc->bcn", attn, model.classifier(slots).softmax(-1))
    logits = F.interpolate(probs.clamp_min(1e-8).log().view(B, -1, h, w), size=images.shape[-2:], mode="bilinear",
                           align_corners=False)
    loss = F.cross_entropy(logits, masks)
    return float(loss.detach()), {name: norms(loss, tensors) for name, tensors in kept.items()}


def test_slot_attention_gru_and_mlp_per_call_norms_equal_the_reference():
    model, (images, masks) = slot_model(), scenes()
    with gradlab.watch(model, loops=["slot_attention.gru", model.slot_attention.mlp]) as rec:
        loss = slot_step(model, images, masks, seed=5)
        rec.step(0, loss=loss)
    assert rec.loops == ["slot_attention.gru", "slot_attention.mlp"]
    want_loss, want = slot_reference(model, images, masks, seed=5)
    assert float(loss) == pytest.approx(want_loss, rel=1e-12)  # the hand-written forward is the example's
    frame = rec.frame()
    assert_matches(frame, "slot_attention.gru", want["gru_in"], want["gru_out"])
    assert_matches(frame, "slot_attention.mlp", want["mlp_in"], want["mlp_out"])
    assert len(set(want["gru_in"])) == 3  # three calls, three different gradients


def test_auto_finds_the_gru_cell_of_slot_attention_and_records_it_from_the_next_forward():
    model, (images, masks) = slot_model(iterations=4), scenes()
    with gradlab.watch(model, loops="auto") as rec:
        for step in range(3):
            slot_step(model, images, masks, seed=step)
            rec.step(step)
    assert "slot_attention.gru" in rec.loops and "slot_attention.mlp.0" in rec.loops
    assert not {"slot_attention", "slot_attention.mlp", "encoder.0", "classifier.0"} & set(rec.loops)
    frame = rec.frame()
    assert frame[frame["step"] == 0]["layer"].isin(rec.loops).sum() == 0  # step 0's forward found them
    for step in (1, 2):  # calls 1..T at each forward
        _, want = slot_reference(model, images, masks, seed=step)
        assert_matches(frame, "slot_attention.gru", want["gru_in"], want["gru_out"], step=step)


# -- recurrent cells ----------------------------------------------------------------------------------------------
def rnn_reference(model: RecurrentClassifier, x, y) -> tuple[list[float], list[float]]:
    """The per-step norms of ‖∂L/∂x_t‖ (the embedded input of step t) and ‖∂L/∂state_t‖ (h and c together)."""
    inputs, outputs, state = [], [], None
    for x_t in model.embed(x).unbind(1):
        state = model.cell(alias(x_t, inputs), state)
        outputs.append(state if isinstance(state, tuple) else (state,))
    h = state[0] if isinstance(state, tuple) else state
    loss = F.cross_entropy(model.readout(h), y)
    parts = [norms(loss, list(pair)) for pair in outputs]  # an LSTM's last c reaches no loss: 0
    return norms(loss, inputs), [math.hypot(*p) for p in parts]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_cell_unrolled_by_a_python_loop_is_recorded_per_time_step(cell):
    torch.manual_seed(0)
    model = RecurrentClassifier(features=3, hidden=5, classes=4, cell=cell).double()
    x, y = torch.randn(2, 6, 3, dtype=torch.float64), torch.tensor([1, 3])
    with gradlab.watch(model, loops=["cell"]) as rec:
        F.cross_entropy(model(x), y).backward()
        rec.step(0)
    want_in, want_out = rnn_reference(model, x, y)
    assert_matches(rec.frame(), "cell", want_in, want_out)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_auto_finds_the_cell_of_an_rnn(cell):
    torch.manual_seed(0)
    model = RecurrentClassifier(features=3, hidden=5, classes=4, cell=cell).double()
    x, y = torch.randn(2, 6, 3, dtype=torch.float64), torch.tensor([1, 3])
    with gradlab.watch(model, loops="auto") as rec:
        for step in range(2):
            F.cross_entropy(model(x), y).backward()
            rec.step(step)
    assert rec.loops == ["cell"]  # not the embedding or the read-out, each called once
    assert per_call(rec.frame(), "cell", "grad/in", step=1)[1] == ["ok"] * 6


# -- LISTA --------------------------------------------------------------------------------------------------------
def test_a_lista_step_is_recorded_per_iteration_and_its_first_input_has_no_gradient():
    torch.manual_seed(0)
    A = torch.randn(10, 20, dtype=torch.float64) / math.sqrt(10)
    code = torch.zeros(4, 20, dtype=torch.float64).scatter_(1, torch.randint(0, 20, (4, 3)), 1.0)
    signal = code @ A.T
    model = LISTA(A, iterations=6).double()
    with gradlab.watch(model, loops=[model.step]) as rec:
        (model(signal) - code).square().sum().backward()
        rec.step(0)
    assert rec.loops == ["step"]
    inputs, outputs = [], []
    z = signal.new_zeros(4, 20)
    for _ in range(model.iterations):
        z = keep(model.step(alias(z, inputs), signal), outputs)
    loss = (z - code).square().sum()
    want_in = norms(loss, inputs)
    assert math.isnan(want_in[0])  # z^(0) = 0 is built without gradient: status no_grad, never a zero
    assert_matches(rec.frame(), "step", want_in, norms(loss, outputs))


# -- the EM layers as a loop --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, grad_iterations", [("em", None), ("hem", None), ("hem", 2)])
def test_em_iterations_watched_as_a_loop_agree_with_the_em_taps(kind, grad_iterations, batch):
    T = 4
    model = make_net(kind=kind, iterations=T, grad_iterations=grad_iterations).double()
    x, y = batch
    with gradlab.watch(model, loops=["ema.em.iterations"]) as rec:  # the ModuleList of EMIteration modules
        F.cross_entropy(model(x.double()), y).backward()
        rec.step(0)
    assert rec.loops == ["ema.em.iterations"]
    frame = rec.frame()
    got_in, status_in = per_call(frame, "ema.em.iterations", "grad/in")
    got_out, status_out = per_call(frame, "ema.em.iterations", "grad/out")
    grad_x, status_x = per_call(frame, "ema.em", "grad/x")
    grad_z, status_z = per_call(frame, "ema.em", "grad/z")
    rows = frame[(frame["layer"] == "ema.em") & (frame["quantity"] == "grad/mu") & (frame["iteration"] >= 1)]
    grad_mu = rows.sort_values("iteration")["value"].tolist()
    first = 1 if grad_iterations is None else T - grad_iterations + 1  # iterations before it run under no_grad
    expected = ["no_grad"] * (first - 1) + ["ok"] * (T - first + 1)
    assert status_in == status_x == status_out == status_z == expected
    live = slice(first - 1, T)
    assert got_in[live] == pytest.approx(grad_x[live], rel=REL)  # grad/in of call t is grad/x at t
    assert got_out[live] == pytest.approx([math.hypot(m, z) for m, z in zip(grad_mu, grad_z)][live], rel=REL)


# -- a report of a run recorded this way --------------------------------------------------------------------------
def test_report_of_a_slot_attention_run_shows_the_loop_regime_and_its_decay_figures(tmp_path):
    run = tmp_path / "slot"
    RunDirectory(run).create('seed = 0\n\n[model]\nkind = "slot_attention"\niterations = 3\n',
                             run_meta(seed=0, device="cpu", world=1))  # what makes a folder a run directory
    model, (images, masks) = slot_model(), scenes(batch=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with gradlab.watch(model, run_dir=run, loops=["slot_attention.gru"]) as rec:
        for step in range(8):
            opt.zero_grad()
            loss = slot_step(model, images, masks, seed=step)
            opt.step()
            rec.step(step, loss=loss)
    RunDirectory(run).update_meta(status="complete")
    with pytest.warns(UserWarning, match="metrics"):  # this run wrote no metrics.parquet: a note, not an error
        paths = build_report([run], tmp_path / "report", dpi=40)
    assert {"decay_curves_loops.png", "heatmap_loops.png"} <= {p.name for p in paths.figures}
    assert "decay_curves.png" not in {p.name for p in paths.figures}  # no EM layer, so no grad/x figures
    root = parse_html(paths.html)
    header, rows = table_rows(section(root, "summary"))
    assert column(header, rows, "layer") == ["slot_attention.gru"]
    assert column(header, rows, "kind") == ["slot_attention"] and column(header, rows, "T") == ["3"]
    header, rows = table_rows(section(root, "diagnosis"))
    assert column(header, rows, "layer") == ["slot_attention.gru"]
    want = regime(load_runs(run)).set_index("layer").loc["slot_attention.gru"]
    assert column(header, rows, "regime") == [want["regime"]] and want["regime"] != "no_grad"
    assert "per-call gain" in text_of(section(root, "diagnosis"))
    alts = [img.get("alt") for img in root.findall(".//img")]
    assert "Gradient reaching each iteration (watched loops)" in alts
    assert "Step × iteration heatmap (watched loops)" in alts
