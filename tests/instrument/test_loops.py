"""watch(loops=...): every call of a reused submodule is one iteration (gradlab/instrument/loops.py).

The per-call norms are checked against references that alias each call's input by hand and take
`torch.autograd.grad`; the worked examples (slot attention, RNN cells, LISTA, the EM layers) are in
test_loop_examples.py.
"""

from __future__ import annotations

import math
import warnings
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import gradlab
from gradlab.errors import ConfigError


class Repeat(nn.Module):
    """z ← step(x, z) T times with the same x at every call (the pattern of an unrolled solver)."""

    def __init__(self, T: int = 4, width: int = 5):
        super().__init__()
        self.T = T
        self.enc = nn.Linear(3, width)
        self.step = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))
        self.head = nn.Linear(width, 1)

    def forward(self, x, keep: int | None = None):
        x = self.enc(x)
        z, outputs = x, []
        for _ in range(self.T):
            z = self.step(z + x)
            outputs.append(z)
        return self.head(outputs[keep if keep is not None else -1]).sum()


def reference(model: Repeat, x: torch.Tensor, keep: int | None = None) -> tuple[list[float], list[float]]:
    """‖∂L/∂input_c‖ and ‖∂L/∂output_c‖ of model.step's calls, with hand-made aliases."""
    e = model.enc(x)
    z, inputs, outputs = e, [], []
    for _ in range(model.T):
        a = (z + e).view_as(z + e)
        inputs.append(a)
        z = model.step(a)
        outputs.append(z)
    loss = model.head(outputs[keep if keep is not None else -1]).sum()
    grads = torch.autograd.grad(loss, inputs + outputs, allow_unused=True)
    norms = [math.nan if g is None else float(g.norm()) for g in grads]
    return norms[:model.T], norms[model.T:]


def per_call(frame, layer: str, quantity: str) -> tuple[list[float], list[str]]:
    rows = frame[(frame["layer"] == layer) & (frame["quantity"] == quantity)].sort_values("iteration")
    return rows["value"].tolist(), rows["status"].tolist()


def attached(model: nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Repeat().double()


def test_per_call_norms_equal_the_aliased_reference(model):
    x = torch.randn(6, 3, dtype=torch.float64)
    with gradlab.watch(model, loops=["step"]) as rec:
        model(x).backward()
        rec.step(0)
    want_in, want_out = reference(model, x)
    got_in, status = per_call(rec.frame(), "step", "grad/in")
    got_out, _ = per_call(rec.frame(), "step", "grad/out")
    assert status == ["ok"] * 4
    assert got_in == pytest.approx(want_in, rel=1e-10) and got_out == pytest.approx(want_out, rel=1e-10)
    assert len(set(got_in)) == 4  # the same x at every call, yet each call's own share of its gradient


def test_a_module_object_names_the_same_loop_and_the_count_restarts_each_forward(model):
    x = torch.randn(6, 3, dtype=torch.float64)
    with gradlab.watch(model, loops=[model.step]) as rec:
        model(x).backward()
        model(x).backward()  # two forwards in one step: per call, the norms add in quadrature
        rec.step(0)
    assert rec.loops == ["step"]
    got, _ = per_call(rec.frame(), "step", "grad/in")
    want, _ = reference(model, x)
    assert got == pytest.approx([math.sqrt(2) * w for w in want], rel=1e-10)


def test_a_call_whose_output_reaches_no_loss_is_unused_and_a_no_grad_call_is_no_grad(model):
    x = torch.randn(6, 3, dtype=torch.float64)
    with gradlab.watch(model, loops=["step"]) as rec:
        model(x, keep=1).backward()  # calls 3 and 4 run but their outputs never reach the loss
        rec.step(0)
    values, status = per_call(rec.frame(), "step", "grad/out")
    assert status == ["ok", "ok", "unused", "unused"] and math.isnan(values[2])
    want_in, want_out = reference(model, x, keep=1)
    assert values[:2] == pytest.approx(want_out[:2], rel=1e-10)


def test_calls_outside_a_forward_of_the_model_are_not_recorded(model):
    x = torch.randn(6, 3, dtype=torch.float64)
    with gradlab.watch(model, loops=["step"]) as rec:
        model(x).backward()
        model.step(model.enc(x)).sum().backward()  # the submodule on its own: not an iteration of the loop
        rec.step(0)
    assert per_call(rec.frame(), "step", "grad/in")[0] == pytest.approx(reference(model, x)[0], rel=1e-10)


def test_calls_under_no_grad_inside_the_forward_are_recorded_as_no_grad():
    class Warmup(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.Linear(4, 4)

        def forward(self, x):
            with torch.no_grad():
                x = self.cell(x)  # call 1: no graph
            return self.cell(x).sum()  # call 2

    net = Warmup()
    with gradlab.watch(net, loops=["cell"]) as rec:
        net(torch.randn(2, 4)).backward()
        rec.step(0)
    assert per_call(rec.frame(), "cell", "grad/out")[1] == ["no_grad", "ok"]
    assert per_call(rec.frame(), "cell", "grad/in")[1] == ["no_grad", "no_grad"]  # x never requires grad


def test_keyword_inputs_and_tuple_outputs():
    class RNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.LSTMCell(3, 4)

        def forward(self, xs):
            h = c = torch.zeros(2, 4, dtype=xs.dtype)
            for x in xs:
                h, c = self.cell(input=x, hx=(h, c))  # keyword input; a tuple output
            return h.sum() + c.pow(2).sum()

    torch.manual_seed(1)
    rnn = RNN().double()
    cell = rnn.cell
    xs = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    with gradlab.watch(rnn, loops=["cell"]) as rec:
        rnn(xs).backward()
        rec.step(0)
    h = c = torch.zeros(2, 4, dtype=torch.float64)
    inputs, outs = [], []
    for x in xs:
        a = x.view_as(x)
        inputs.append(a)
        h, c = cell(a, (h, c))
        outs.append((h, c))
    grads = torch.autograd.grad(h.sum() + c.pow(2).sum(), inputs + [t for pair in outs for t in pair])
    want_in = [float(g.norm()) for g in grads[:5]]
    pairs = grads[5:]
    want_out = [math.hypot(float(pairs[2 * i].norm()), float(pairs[2 * i + 1].norm())) for i in range(5)]
    assert per_call(rec.frame(), "cell", "grad/in")[0] == pytest.approx(want_in, rel=1e-10)
    assert per_call(rec.frame(), "cell", "grad/out")[0] == pytest.approx(want_out, rel=1e-10)


class Refiner(nn.Module):
    """h ← GRUCell(u, h) T times with the same u: the recurrence runs through the cell's second argument."""

    def __init__(self, T: int = 4, keyword: bool = False, start_none: bool = False):
        super().__init__()
        self.T, self.keyword, self.start_none = T, keyword, start_none
        self.encode = nn.Linear(3, 4)
        self.gru = nn.GRUCell(4, 4)

    def forward(self, x, alias=None):
        u = self.encode(x)
        h = None if self.start_none else torch.zeros_like(u)
        for _ in range(self.T):
            if h is not None and alias is not None:
                h = alias(h)
            h = self.gru(input=u, hx=h) if self.keyword else self.gru(u, h)
        return h.pow(2).sum()


def state_reference(model: Refiner, x) -> list[float]:
    """‖∂L/∂h_(c-1)‖ through call c alone, c = 1..T (nan where h_(c-1) carries no gradient), by hand-made aliases."""
    aliases = []

    def alias(h):
        aliases.append(h.view_as(h) if h.requires_grad else h)
        return aliases[-1]

    loss = model(x, alias)
    live = [a for a in aliases if a.requires_grad]
    grads = dict(zip(map(id, live), torch.autograd.grad(loss, live)))
    return [float(grads[id(a)].norm()) if id(a) in grads else math.nan for a in aliases]


@pytest.mark.parametrize("argument", ["hx", 1])
@pytest.mark.parametrize("keyword", [False, True])
def test_grad_in_on_the_argument_a_mapping_names(argument, keyword):
    torch.manual_seed(2)
    model = Refiner(keyword=keyword).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    with gradlab.watch(model, loops={"gru": argument}) as rec:
        model(x).backward()
        rec.step(0)
    got, status = per_call(rec.frame(), "gru", "grad/in")
    want = state_reference(model, x)
    assert status == ["no_grad", "ok", "ok", "ok"]  # h_0 = zeros is built without gradient
    assert got[1:] == pytest.approx(want[1:], rel=1e-10)
    out, _ = per_call(rec.frame(), "gru", "grad/out")
    assert got[1:] == pytest.approx(out[:-1], rel=1e-10)  # h_(c-1) goes on only to call c: its grad/out


def test_a_call_that_does_not_pass_the_chosen_argument_records_no_grad_in():
    torch.manual_seed(3)
    model = Refiner(start_none=True).double()  # GRUCell(u) at the first call: hx = None
    with gradlab.watch(model, loops={"gru": "hx"}) as rec:
        model(torch.randn(5, 3, dtype=torch.float64)).backward()
        rec.step(0)
    rows = rec.frame().query("layer == 'gru' and quantity == 'grad/in'")
    assert sorted(rows.iteration) == [2, 3, 4] and (rows.status == "ok").all()


@pytest.mark.parametrize("loops, message", [
    ({"step": "hx"}, "'step' has no argument 'hx' for grad/in; its forward takes input"),
    ({"step": 1}, "'step' takes 1 positional argument(s) (input): position 1 for grad/in is out of range"),
    ({"step": -1}, "the argument for 'step' is -1"),
    ({"step": True}, "the argument for 'step' is True"),
    ({"step": 0.5}, "the argument for 'step' is 0.5"),
    ({"stepp": 0}, "'stepp' is not a submodule of the model"),
])
def test_a_bad_argument_is_refused_before_any_hook_is_attached(model, loops, message):
    before = attached(model)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        gradlab.watch(model, loops=loops)
    assert attached(model) == before


def test_a_mapping_to_none_or_position_zero_is_the_default(model):
    x = torch.randn(6, 3, dtype=torch.float64)
    frames = []
    for loops in (["step"], {"step": None}, {"step": 0}, {model.step: "input"}):
        with gradlab.watch(model, loops=loops) as rec:
            model(x).backward()
            rec.step(0)
        frames.append(per_call(rec.frame(), "step", "grad/in")[0])
    assert all(f == pytest.approx(frames[0], rel=1e-12) for f in frames[1:])


def test_nested_tuple_outputs_count_all_their_tensors():
    class Stack(nn.Module):  # nn.LSTM returns (out, (h, c)); the state goes on to the next call
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 4, batch_first=True)

        def forward(self, x):
            state, outs = None, []
            for _ in range(3):
                out, state = self.lstm(x, state)
                outs.append(out)
            return state[0].sum() + outs[-1].pow(2).sum()

    torch.manual_seed(3)
    net = Stack().double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    with gradlab.watch(net, loops=["lstm"]) as rec:
        net(x).backward()
        rec.step(0)
    got, status = per_call(rec.frame(), "lstm", "grad/out")
    state, produced = None, []
    for _ in range(3):
        out, state = net.lstm(x, state)
        produced.append((out, *state))
    loss = state[0].sum() + out.pow(2).sum()
    grads = torch.autograd.grad(loss, [t for call in produced for t in call], allow_unused=True)
    want = [math.sqrt(sum(float(g.norm()) ** 2 for g in grads[3 * c:3 * c + 3] if g is not None)) for c in range(3)]
    assert status == ["ok"] * 3 and got == pytest.approx(want, rel=1e-10)


def test_a_module_list_is_one_loop_of_untied_iterations():
    torch.manual_seed(2)

    class Untied(nn.Module):
        def __init__(self):
            super().__init__()
            self.steps = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))

        def forward(self, x):
            for step in self.steps:
                x = torch.tanh(step(x))
            return x.sum()

    model = Untied().double()
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    with gradlab.watch(model, loops=["steps"]) as rec:
        model(x).backward()
        rec.step(0)
    assert rec.loops == ["steps"] and set(rec.frame()["layer"]) >= {"steps"}
    z, inputs = x, []
    for step in model.steps:
        a = z.view_as(z)
        inputs.append(a)
        z = torch.tanh(step(a))
    want = [float(g.norm()) for g in torch.autograd.grad(z.sum(), inputs)]
    assert per_call(rec.frame(), "steps", "grad/in")[0] == pytest.approx(want, rel=1e-10)


def test_auto_watches_the_innermost_repeated_modules_with_parameters(model):
    x = torch.randn(6, 3, dtype=torch.float64)
    with gradlab.watch(model, loops="auto") as rec:
        for step in range(2):
            model(x).backward()
            rec.step(step)
    assert rec.loops == ["step.0", "step.2"]  # not the Sequential that holds them, not the parameterless Tanh
    frame = rec.frame()
    assert set(frame[frame["step"] == 0]["layer"]) & set(rec.loops) == set()  # discovered during step 0
    assert per_call(frame[frame["step"] == 1], "step.0", "grad/in")[1] == ["ok"] * 4


def test_auto_discovery_after_a_forward_that_raised_counts_afresh(model):
    x = torch.randn(6, 3, dtype=torch.float64)
    with gradlab.watch(model, loops="auto") as rec:
        with pytest.raises(RuntimeError, match="out of memory"):
            with mock.patch.object(model.head, "forward", side_effect=RuntimeError("out of memory")):
                model(x)  # the discovery forward dies after the loop's calls
        model(x).backward()  # discovers again, counting this forward alone
        rec.step(0)
        model(x).backward()
        rec.step(1)
    assert rec.loops == ["step.0", "step.2"]
    assert per_call(rec.frame().query("step == 1"), "step.0", "grad/in")[1] == ["ok"] * 4


def test_auto_warns_once_when_nothing_repeats():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    with pytest.warns(UserWarning, match="no submodule with parameters was called more than once"):
        with gradlab.watch(net, loops="auto") as rec:
            for step in range(3):
                net(torch.randn(1, 2)).sum().backward()
                rec.step(step)
    assert rec.loops == []


def test_unscheduled_steps_and_no_grad_forwards_record_nothing(model):
    x = torch.randn(6, 3, dtype=torch.float64)
    with gradlab.watch(model, every=2, loops=["step"]) as rec:
        for step in range(4):
            model(x).backward()
            with torch.no_grad():
                model(x)  # validation: not a recorded forward, and it must not shift the call count
            rec.step(step)
    frame = rec.frame()
    loop = frame[(frame["layer"] == "step") & (frame["quantity"] == "grad/in")]
    assert sorted(loop["step"].unique()) == [0, 2]
    assert sorted(loop["iteration"].unique()) == [1, 2, 3, 4]


@pytest.mark.parametrize("loops, message", [
    (["stepp"], "'stepp' is not a submodule of the model; did you mean 'step'"),
    (["step", "step"], "'step' is listed twice"),
    ([""], "the watched model itself cannot be a loop"),
    ([nn.Linear(1, 1)], "is not part of the watched model"),
    (3, "expected 'auto' or a list"),
    ([["step"]], "is not a submodule"),
])
def test_bad_loops_are_refused_before_any_hook_is_attached(model, loops, message):
    before = attached(model)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        gradlab.watch(model, loops=loops)
    assert attached(model) == before
    gradlab.watch(model, loops=["step"]).close()  # the failed watch left the model free


def test_the_model_itself_is_not_a_loop(model):
    with pytest.raises(ConfigError, match="the watched model itself cannot be a loop"):
        gradlab.watch(model, loops=[model])


def test_nothing_stays_attached_after_close_or_an_exception(model):
    x = torch.randn(6, 3, dtype=torch.float64)
    for loops in (["step"], "auto"):
        before = attached(model)
        with pytest.raises(RuntimeError, match="boom"):
            with warnings.catch_warnings(), gradlab.watch(model, loops=loops) as rec:
                model(x).backward()
                rec.step(0)
                model(x)
                raise RuntimeError("boom")
        assert attached(model) == before
        model(x).backward()  # the model still runs, unrecorded


def test_a_run_directory_says_which_argument_grad_in_is_taken_on(tmp_path):
    torch.manual_seed(4)
    model = Refiner().double()
    with gradlab.watch(model, tmp_path / "run", loops={"gru": "hx"}) as rec:
        model(torch.randn(5, 3, dtype=torch.float64)).backward()
        rec.step(0)
    assert 'loops = "gru (grad/in on hx)"' in (tmp_path / "run" / "config.toml").read_text()


_ARGUMENTS = st.one_of(st.none(), st.booleans(), st.integers(-3, 5), st.floats(allow_nan=True), st.text(max_size=6),
                       st.sampled_from(["input", "hx", "x", "self"]), st.lists(st.integers(0, 2), max_size=2))


@settings(max_examples=80, deadline=None)
@given(argument=_ARGUMENTS, path=st.sampled_from(["gru", "encode"]))
def test_any_argument_is_taken_or_refused_with_one_config_error(argument, path):
    """A family of `loops={path: argument}` values: each one is either watched (and records) or refused with a
    ConfigError before any hook is attached, never another exception. GRUCell.forward(input, hx), Linear(input)."""
    torch.manual_seed(5)
    model = Refiner().double()
    before = attached(model)
    names, positions = {"gru": (("input", "hx"), (0, 1)), "encode": (("input",), (0,))}[path]
    valid = argument is None or (type(argument) is str and argument in names) or (
        type(argument) is int and argument in positions)
    try:
        rec = gradlab.watch(model, loops={path: argument})
    except ConfigError:
        assert attached(model) == before and not valid
        return
    assert valid
    with rec:
        model(torch.randn(5, 3, dtype=torch.float64)).backward()
        rec.step(0)
    assert (rec.frame().query("quantity == 'grad/in'").status.isin(["ok", "no_grad"])).all()
