from __future__ import annotations

import pytest

from gradlab.ablate import expand, parse_axis
from gradlab.ablate.grid import QUICK_STEPS, grid_keys, short_names
from gradlab.errors import ConfigError
from tests.train.conftest import TINY


def test_parse_axis_reads_toml_values():
    assert parse_axis("model.iterations=1, 3,8").values == (1, 3, 8)
    assert parse_axis("model.kind=em,hem").values == ("em", "hem")
    assert parse_axis("model.step_size=0.5,1.0").values == (0.5, 1.0)
    assert parse_axis('model.grad_iterations="all",1,0').values == ("all", 1, 0)


@pytest.mark.parametrize("text, fragment", [
    ("model.iterations", "is not KEY=V1,V2"),
    ("model.iterations=", "is not KEY=V1,V2"),
    ("model.iterations=1,,3", "is not KEY=V1,V2"),
    ("=1,2", "is not KEY=V1,V2"),
    ("model.iteratons=1,2", "unknown config key 'model.iteratons'"),
    ("model.iterations=1,1", "repeats a value"),
    # linked axes
    ("model.grad_mode:model.grad_iterations=unrolled:0,implicit", "'implicit' is not one value per linked key"),
    ("model.grad_mode:model.grad_iterations=unrolled:0:1", "is not one value per linked key"),
    ("model.grad_mode:model.grad_iterations=unrolled:,implicit:all", "is not one value per linked key"),
    ("model.grad_mode:=unrolled:0", "is not KEY=V1,V2"),
    ("model.grad_mode:model.bogus=unrolled:0", "unknown config key 'model.bogus'"),
    ("model.kind:model.kind=em:em", "links a key to itself"),
    ("model.kind:model.iterations=em:1,em:1", "repeats a value"),
])
def test_parse_axis_rejects(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_axis(text)


def test_expand_is_the_product_times_seeds_in_grid_order():
    axes = [parse_axis("model.kind=em,hem"), parse_axis("model.iterations=1,3")]
    trials, dropped = expand("demo", axes, seeds=2, overrides=TINY)
    assert dropped == 0
    assert [t.name for t in trials] == [
        f"kind-{k}_iterations-{T}_seed-{s}" for k in ("em", "hem") for T in (1, 3) for s in (0, 1)]
    first = trials[0].config
    assert (first.model.kind, first.model.iterations, first.seed, first.data.size) == ("em", 1, 0, 32)
    assert trials[-1].overrides[-3:] == ('model.kind="hem"', "model.iterations=3", "seed=1")


def test_expand_runs_configs_that_resolve_alike_once_and_names_the_resolved_value():
    """EM resolves η to 1: em × {0.5, 0.25} is one configuration, named step_size-1.0."""
    axes = [parse_axis("model.kind=em,hem"), parse_axis("model.step_size=0.5,0.25")]
    trials, dropped = expand("demo", axes, seeds=1, overrides=TINY)
    assert dropped == 1
    assert [t.name for t in trials] == ["kind-em_step_size-1.0_seed-0", "kind-hem_step_size-0.5_seed-0",
                                        "kind-hem_step_size-0.25_seed-0"]


def test_seeds_start_at_the_base_seed():
    trials, _ = expand("demo", [parse_axis("model.iterations=2,3")], seeds=2, overrides=[*TINY, "seed=7"])
    assert [t.config.seed for t in trials] == [7, 8, 7, 8]


def test_quick_shrinks_every_trial():
    trials, _ = expand("demo", [parse_axis("model.iterations=2,3")], seeds=1, quick=True)
    for t in trials:
        assert t.config.train.steps == QUICK_STEPS
        assert t.config.train.eval_every == t.config.train.checkpoint_every == QUICK_STEPS
        assert t.config.data.val_length == 64


@pytest.mark.parametrize("kwargs, fragment", [
    ({"axes": [parse_axis("model.iterations=2,3"), parse_axis("model.iterations=4")]}, "names a key twice"),
    ({"axes": [parse_axis("seed=1,2")]}, "seed is not a grid axis"),
    ({"seeds": 0}, "--seeds 0 is out of range"),
    ({"axes": [parse_axis("model.iterations=0,2")]}, "model.iterations=0 is out of range"),
    ({"axes": [parse_axis("model.grad_iterations=3")]}, "model.grad_iterations=3 is out of range"),
])
def test_expand_validates_every_trial_before_anything_runs(kwargs, fragment):
    args = {"axes": [parse_axis("model.iterations=2")], "seeds": 1} | kwargs
    with pytest.raises(ConfigError, match=fragment):
        expand("demo", args["axes"], args["seeds"], overrides=TINY)


def test_names_cannot_leave_the_output_folder():
    trials, _ = expand("demo", [parse_axis('data.root="../../evil/x","/etc"')], seeds=1, overrides=TINY)
    assert [t.name for t in trials] == ["root-evil-x_seed-0", "root-etc_seed-0"]
    assert all("/" not in t.name and ".." not in t.name for t in trials)


def test_values_that_sanitise_alike_are_refused():
    with pytest.raises(ConfigError, match="same run-directory name"):
        expand("demo", [parse_axis('data.root="a/b","a b"')], seeds=1, overrides=TINY)


def test_short_names_fall_back_to_the_full_key_on_a_clash():
    assert short_names(["model.iterations", "data.size"]) == {"model.iterations": "iterations", "data.size": "size"}
    assert short_names(["a.size", "b.size"]) == {"a.size": "a-size", "b.size": "b-size"}


def test_a_linked_axis_sets_its_keys_together_and_names_each():
    axes = [parse_axis("model.kind=em,hem"),
            parse_axis('model.grad_mode:model.grad_iterations=unrolled:0, unrolled:1,implicit:"all"')]
    assert axes[1].keys == ("model.grad_mode", "model.grad_iterations")
    assert axes[1].values == (("unrolled", 0), ("unrolled", 1), ("implicit", "all"))
    trials, dropped = expand("demo", axes, seeds=2, overrides=TINY)
    assert dropped == 0 and len(trials) == 2 * 3 * 2  # the product with the other axis, not with each linked key
    got = [(t.config.model.kind, t.config.model.grad_mode, t.config.model.grad_iterations, t.config.seed)
           for t in trials]
    want = [(k, m, g, s) for k in ("em", "hem")
            for m, g in (("unrolled", 0), ("unrolled", 1), ("implicit", "all")) for s in (0, 1)]
    assert got == want
    assert trials[4].name == "kind-em_grad_mode-implicit_grad_iterations-all_seed-0"
    assert grid_keys(axes) == ["model.kind", "model.grad_mode", "model.grad_iterations"]


def test_a_key_both_linked_and_on_its_own_axis_is_refused():
    with pytest.raises(ConfigError, match="names a key twice"):
        expand("demo", [parse_axis("model.kind=em,hem"), parse_axis("model.kind:model.iterations=em:1")], seeds=1,
               overrides=TINY)
