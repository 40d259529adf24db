from __future__ import annotations

from dataclasses import asdict

import pytest

from gradlab._toml import tomllib
from gradlab.errors import ConfigError
from gradlab.run_dir import flat_keys
from gradlab.train.config import Config, describe_keys, from_dict, load_config, to_toml


def test_defaults_round_trip_through_toml():
    config = load_config("demo", ["model.iterations=5", "model.grad_iterations=2", "data.source=idx"])
    assert from_dict(tomllib.loads(to_toml(config))) == config
    assert config.model.iterations == 5 and config.model.grad_iterations == 2 and config.data.source == "idx"


def test_flat_dict_has_dotted_keys():
    flat = flat_keys(asdict(Config()))
    assert flat["model.step_size"] == 0.5 and flat["seed"] == 0 and "record.every" in flat


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.itrations=3", "unknown config key 'model.itrations'; valid keys: seed, data.source"),
        ("model.iterations=three", "model.iterations='three' has the wrong type: expected int"),
        ("model.iterations=0", "model.iterations=0 is out of range: allowed >= 1"),
        ("model.step_size=2.5", "model.step_size=2.5 is out of range: allowed in (0, 2)"),
        ("model.normalize=1", "model.normalize=1 has the wrong type: expected bool"),
        ("model.kind=gmm", "model.kind='gmm' is out of range: allowed em, hem or none"),
        ("model.grad_iterations=9", "model.grad_iterations=9 is out of range"),
        ("data.source=voc", "data.source='voc' needs data.root"),
        ("train.lr=nan", "train.lr=nan has the wrong type"),
        ("model.iterations", "is not key=value"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("demo", [override])
    assert message in str(err.value)


def test_floats_accept_integers_and_missing_files_are_named(tmp_path):
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0
    with pytest.raises(ConfigError, match="no config file 'nope.toml'.*demo"):
        load_config("nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_every_key_is_described():
    text = describe_keys()
    for dotted in flat_keys(asdict(Config())):
        assert f"  {dotted} " in text


def test_every_preset_loads(tmp_path):
    from gradlab.train.config import preset_names

    assert preset_names() == ["ablation", "demo", "voc"]
    for preset in preset_names():
        config = load_config(preset, [f"data.root='{tmp_path}'"])
        assert config == from_dict(tomllib.loads(to_toml(config)))


def test_em_resolves_its_step_size_to_one():
    assert load_config("demo", ["model.kind=em", "model.step_size=0.25"]).model.step_size == 1.0
    assert load_config("demo", ["model.kind=hem", "model.step_size=0.25"]).model.step_size == 0.25


def test_a_folder_named_like_a_preset_does_not_hide_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    assert load_config("demo").model.iterations == 6


def test_a_file_wins_over_a_preset_of_the_same_name_and_unknown_presets_name_the_real_ones(tmp_path, monkeypatch):
    from gradlab.train.config import preset_text

    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").write_text("[model]\niterations = 2\n")
    assert load_config("demo").model.iterations == 2
    assert "[model]" in preset_text("demo")
    with pytest.raises(ConfigError, match=r"no preset 'demoo': the presets are ablation, demo, voc"):
        preset_text("demoo")
    with pytest.raises(ConfigError, match=r"no config file 'demoo': give a TOML path or a preset \(ablation, demo"):
        load_config("demoo")


@pytest.mark.parametrize("text", [str(2**63), str(-(2**63) - 1), "9" * 40])
def test_integers_past_64_bits_are_refused_where_they_are_parsed(text):
    with pytest.raises(ConfigError, match="out of range: an integer must fit in 64 bits"):
        load_config(None, [f"train.steps={text}"])


@pytest.mark.parametrize("sets", [["model.grad_iterations=1"], ["model.iterations=1"]])
def test_the_implicit_gradient_mode_is_checked_with_the_keys_it_depends_on(sets):
    with pytest.raises(ConfigError, match="model.grad_mode='implicit' needs model.grad_iterations='all'"):
        load_config(None, ["model.grad_mode=implicit", *sets])
    assert load_config(None, ["model.grad_mode=implicit"]).model.grad_mode == "implicit"
