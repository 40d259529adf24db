"""Property tests of config parsing (reliability issue #10, item 2).

Strategies come from the config's own metadata: each key's type and its `allowed` text (">= 1", "in (0, 2)",
"em, hem or none", ...), so a new key is covered as soon as it is declared. For random valid values, the
`--set` parse round-trips through `to_toml` and back exactly; random invalid values, unknown keys and malformed
`--set` items always raise `ConfigError` (a ValueError) that names the key, never another exception type.
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import asdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradlab.errors import ConfigError
from gradlab.run_dir import flat_keys
from gradlab.train.config import key_fields, load_config, to_toml

FIELDS = {k: f for k, (_, f) in key_fields().items()}
KEYS = sorted(FIELDS)
BIG = 2**62
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies derived from the metadata --------------------------------------------------------------------
NUMBER = r"-?\d+(?:\.\d+)?"
TEXT = st.text(max_size=30)  # any text (hypothesis leaves out lone surrogates, which no file can hold)


def _number(text: str, type_: str):
    return float(text) if type_ == "float" else int(text)


def _floats(lo=None, hi=None, exclude_lo=False, exclude_hi=False):
    lo = -1e12 if lo is None else lo
    hi = 1e12 if hi is None else hi
    return st.floats(lo, hi, exclude_min=exclude_lo, exclude_max=exclude_hi, allow_nan=False,
                     allow_infinity=False)


def parse_allowed(dotted: str) -> tuple[st.SearchStrategy, st.SearchStrategy | None]:
    """(valid values, out-of-range values of the right type or None) from the key's type and `allowed` text."""
    f = FIELDS[dotted]
    allowed, type_ = f.metadata["allowed"], f.type
    if m := re.fullmatch(rf"(>=|>) ({NUMBER})", allowed):
        op, bound = m[1], _number(m[2], type_)
        if type_ == "int":
            lo = bound if op == ">=" else bound + 1
            return st.integers(lo, BIG), st.integers(-BIG, lo - 1)
        return _floats(bound, None, exclude_lo=op == ">"), _floats(None, bound, exclude_hi=op == ">=")
    if type_ == "int" and (m := re.fullmatch(rf"in \[({NUMBER}), ({NUMBER})\]", allowed)):
        lo, hi = int(m[1]), int(m[2])
        return st.integers(lo, hi), st.integers(-BIG, lo - 1) | st.integers(hi + 1, BIG)
    if m := re.fullmatch(rf"in ([(\[])({NUMBER}), ({NUMBER})([)\]])", allowed):
        lo, hi = float(m[2]), float(m[3])
        open_lo, open_hi = m[1] == "(", m[4] == ")"
        valid = _floats(lo, hi, exclude_lo=open_lo, exclude_hi=open_hi)
        invalid = _floats(None, lo, exclude_hi=not open_lo) | _floats(hi, None, exclude_lo=not open_hi)
        return valid, invalid
    if m := re.fullmatch(r'"all" or >= (\d+)', allowed):  # str | int: model.grad_iterations
        lo = int(m[1])
        return st.just("all") | st.integers(lo, 50), st.integers(-BIG, lo - 1) | TEXT.filter(lambda s: s != "all")
    if m := re.fullmatch(r"(.+) or (.+)", allowed):  # "em, hem or none", "8 or 16"
        choices = [c.strip() for c in m[1].split(",")] + [m[2].strip()]
        if type_ == "int":
            ints = [int(c) for c in choices]
            return st.sampled_from(ints), st.integers(-BIG, BIG).filter(lambda v: v not in ints)
        return st.sampled_from(choices), TEXT.filter(lambda s: s not in choices)
    if allowed == "":
        return {"bool": st.booleans(), "str": TEXT}[type_], None
    raise AssertionError(f"{dotted}: allowed text {allowed!r} is not understood by this test: teach parse_allowed")


VALID = {k: parse_allowed(k)[0] for k in KEYS}
OUT_OF_RANGE = {k: s for k in KEYS if (s := parse_allowed(k)[1]) is not None}
LISTS = st.lists(st.integers(0, 9), max_size=3)
TABLES = st.dictionaries(st.sampled_from("abc"), st.integers(0, 9), max_size=2)


def wrong_types(dotted: str) -> st.SearchStrategy:
    """Values whose TOML type the key does not accept."""
    finite = st.floats(allow_nan=False, allow_infinity=False)
    non_integral = finite.filter(lambda v: not v.is_integer())
    by_type = {
        "int": finite | st.booleans() | TEXT | LISTS | TABLES,
        "float": st.booleans() | TEXT | LISTS | TABLES | st.sampled_from([math.inf, -math.inf, math.nan]),
        "bool": st.integers() | non_integral | TEXT | LISTS | TABLES,
        "str": st.integers() | finite | st.booleans() | LISTS | TABLES,
        "str | int": finite | st.booleans() | LISTS | TABLES,
    }
    return by_type[FIELDS[dotted].type]


# -- TOML text of a value (written independently of gradlab's to_toml) ---------------------------------------
def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        out = []
        for ch in v:
            if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    return repr(v)


def repair(values: dict) -> dict:
    """Make a set of individually valid values consistent with the checks that span keys (`validate`)."""
    values = dict(values)
    its, gi = values.get("model.iterations", 3), values.get("model.grad_iterations", "all")
    if isinstance(gi, int) and gi > its:
        values["model.iterations"] = gi
    for lo, hi, defaults in (("data.min_sprites", "data.max_sprites", (2, 5)),
                             ("data.scale_min", "data.scale_max", (0.35, 0.6))):
        a, b = values.get(lo, defaults[0]), values.get(hi, defaults[1])
        if a > b:
            values[lo], values[hi] = b, a
    if values.get("model.grad_mode") == "implicit":
        values["model.grad_iterations"] = "all"
        values["model.iterations"] = max(values.get("model.iterations", 3), 2)
    if values.get("data.source") == "voc" and not values.get("data.root"):
        values["data.root"] = "/data/VOC2012"
    return values


def roundtrip(config):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.toml"
        path.write_text(to_toml(config), encoding="utf-8")
        return load_config(path)


def expected(dotted: str, value, values: dict):
    if dotted == "model.step_size" and values.get("model.kind") == "em":
        return 1.0  # EM resolves η to 1
    return float(value) if FIELDS[dotted].type == "float" else value


# -- valid values round-trip ---------------------------------------------------------------------------------
def test_every_key_has_a_strategy():
    assert set(VALID) == set(KEYS) and len(KEYS) >= 30


@SETTINGS
@given(data=st.data())
def test_one_valid_value_round_trips(data):
    dotted = data.draw(st.sampled_from(KEYS), label="key")
    value = data.draw(VALID[dotted], label="value")
    values = repair({dotted: value})
    config = load_config(None, [f"{k}={toml_value(v)}" for k, v in values.items()])
    flat = flat_keys(asdict(config))
    assert flat[dotted] == expected(dotted, values[dotted], values)
    assert type(flat[dotted]) is type(expected(dotted, values[dotted], values))
    back = roundtrip(config)
    assert back == config and to_toml(back) == to_toml(config)


@SETTINGS
@given(values=st.fixed_dictionaries({}, optional={k: VALID[k] for k in KEYS}))
def test_many_valid_values_round_trip_through_to_toml(values):
    values = repair(values)
    config = load_config(None, [f"{k}={toml_value(v)}" for k, v in values.items()])
    flat = flat_keys(asdict(config))
    for dotted, value in values.items():
        assert flat[dotted] == expected(dotted, value, values), dotted
    back = roundtrip(config)
    assert back == config and to_toml(back) == to_toml(config)


@SETTINGS
@given(dotted=st.sampled_from([k for k in KEYS if FIELDS[k].type == "str" and FIELDS[k].metadata["allowed"]]),
       data=st.data())
def test_bare_strings_parse_like_quoted_ones(dotted, data):
    """--set data.source=idx (no TOML quotes) means the string."""
    value = data.draw(VALID[dotted])
    values = repair({dotted: value})
    bare = load_config(None, [f"{k}={v}" if k == dotted else f"{k}={toml_value(v)}" for k, v in values.items()])
    quoted = load_config(None, [f"{k}={toml_value(v)}" for k, v in values.items()])
    assert bare == quoted


@SETTINGS
@given(values=st.fixed_dictionaries({}, optional={k: VALID[k] for k in KEYS}))
def test_a_toml_file_of_valid_values_loads_to_the_same_config_as_set(values):
    values = repair(values)
    sections: dict[str, list[str]] = {}
    for dotted, v in values.items():
        section, _, name = dotted.rpartition(".")
        sections.setdefault(section, []).append(f"{name} = {toml_value(v)}")
    text = "\n".join(sections.pop("", [])) + "\n" + "".join(
        f"\n[{s}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.toml"
        path.write_text(text, encoding="utf-8")
        from_file = load_config(path)
    assert from_file == load_config(None, [f"{k}={toml_value(v)}" for k, v in values.items()])


# -- invalid input: always ConfigError, naming the key -------------------------------------------------------
def raises_naming(items: list[str], name: str) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(None, items)
    assert isinstance(err.value, ValueError)
    message = str(err.value)
    assert name in message or repr(name) in message, (name, message)
    return message


@SETTINGS
@given(data=st.data())
def test_out_of_range_values_raise_config_error_naming_the_key(data):
    dotted = data.draw(st.sampled_from(sorted(OUT_OF_RANGE)), label="key")
    value = data.draw(OUT_OF_RANGE[dotted], label="value")
    message = raises_naming([f"{dotted}={toml_value(value)}"], dotted)
    assert "out of range" in message or "wrong type" in message  # a non-"all" string for grad_iterations


@SETTINGS
@given(data=st.data())
def test_wrong_types_raise_config_error_naming_the_key(data):
    dotted = data.draw(st.sampled_from(KEYS), label="key")
    value = data.draw(wrong_types(dotted), label="value")
    item = f"{dotted}={toml_value(value)}"
    message = raises_naming([item], dotted)
    assert "wrong type" in message or "out of range" in message  # a bare text may parse as a number in range


@SETTINGS
@given(name=st.text(st.sampled_from("abcdelmorstx._- 0123456789"), min_size=0, max_size=25),
       value=st.integers() | TEXT.map(toml_value))
def test_unknown_keys_raise_config_error_naming_the_key(name, value):
    if name.strip() in FIELDS:
        return
    message = raises_naming([f"{name}={value}"], name.strip())
    assert message.startswith("unknown config key") and "valid keys: seed, data.source" in message


@SETTINGS
@given(item=st.text(max_size=40).filter(lambda s: "=" not in s))
def test_set_items_without_an_equals_sign_raise_config_error(item):
    message = raises_naming([item], item)
    assert "is not key=value" in message


@SETTINGS
@given(dotted=st.sampled_from(KEYS), junk=st.text(max_size=20))
def test_any_text_after_the_equals_sign_is_accepted_or_refused_cleanly(dotted, junk):
    """A --set value that is neither valid TOML nor a valid bare string: ConfigError or a valid config."""
    try:
        config = load_config(None, [f"{dotted}={junk}"])
    except ConfigError as err:
        assert dotted in str(err)
    else:
        assert roundtrip(config) == config


@SETTINGS
@given(data=st.data())
def test_invalid_values_in_a_toml_file_raise_config_error_naming_the_key(data):
    dotted = data.draw(st.sampled_from(KEYS), label="key")
    value = data.draw(wrong_types(dotted) | OUT_OF_RANGE.get(dotted, wrong_types(dotted)), label="value")
    section, _, name = dotted.rpartition(".")
    text = f"{name} = {toml_value(value)}\n" if not section else f"[{section}]\n{name} = {toml_value(value)}\n"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bad.toml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as err:
            load_config(path)
    assert dotted in str(err.value)


@SETTINGS
@given(iterations=st.integers(1, 20), extra=st.integers(1, 20))
def test_grad_iterations_above_iterations_is_refused_naming_both_keys(iterations, extra):
    message = raises_naming([f"model.iterations={iterations}", f"model.grad_iterations={iterations + extra}"],
                            "model.grad_iterations")
    assert "model.iterations" in message


@SETTINGS
@given(content=st.binary(max_size=60) | st.text(max_size=60).map(str.encode))
def test_a_config_file_of_random_bytes_raises_config_error_or_loads(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "random.toml"
        path.write_bytes(content)
        try:
            config = load_config(path)
        except ConfigError as err:
            assert str(path) in str(err) or "config key" in str(err) or "=" in str(err)
        else:
            assert roundtrip(config) == config
