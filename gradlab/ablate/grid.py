"""An ablation grid: axes of config values × seeds → one trial (a run directory) per resolved configuration.

    axes = [parse_axis("model.kind=em,hem"), parse_axis("model.iterations=1,3,8")]
    trials = expand("demo", axes, seeds=3)        # 18 trials, named kind-em_iterations-1_seed-0, ...

A linked axis varies several keys together, one value of each per grid point (LINK joins them), for variants
that are not a product: parse_axis("model.grad_mode:model.grad_iterations=unrolled:0,unrolled:1,implicit:all").

Every trial's config is resolved and validated before anything runs, so a bad axis fails at once. Trials whose
resolved configs coincide (EM ignores model.step_size: it resolves η to 1) are run once.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gradlab.errors import ConfigError
from gradlab.run_dir import flat_keys
from gradlab.train.config import Config, key_fields, load_config, parse_value, to_toml, toml_value

QUICK_STEPS = 120
QUICK_VAL = 64
PART_CHARS = 40  # a grid value's share of a run-directory name


#: joins the keys of a linked axis, and the values of one of its points
LINK = ":"


@dataclass(frozen=True)
class Axis:
    """One axis of the grid: `key` and its `values`; of a linked axis, its keys joined by LINK and per value a
    tuple with one value per key."""

    key: str
    values: tuple[Any, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        """The config keys this axis sets."""
        return tuple(self.key.split(LINK))

    def settings(self, value) -> list[tuple[str, Any]]:
        """(config key, value) of each key for one of this axis's values."""
        return list(zip(self.keys, value)) if len(self.keys) > 1 else [(self.key, value)]


def grid_keys(axes: Sequence[Axis] | dict) -> list[str]:
    """The config keys a grid sets, in order (a linked axis's each): its axes, or the "grid" of an ablation.json."""
    names = [a.key for a in axes] if not isinstance(axes, dict) else list(axes)
    return [k for name in names for k in name.split(LINK)]


@dataclass(frozen=True)
class Trial:
    name: str
    overrides: tuple[str, ...]  # the --set items that make this trial from the base config
    config: Config = field(compare=False, repr=False)


def parse_axis(text: str) -> Axis:
    """"model.iterations=1,2,3" → Axis("model.iterations", (1, 2, 3)); values are TOML values or bare strings.
    "k1:k2=a:1,b:2" → a linked axis of the points (a, 1) and (b, 2)."""
    name, sep, values = text.partition("=")
    keys = [k.strip() for k in name.split(LINK)]
    items = [v.strip() for v in values.split(",")]
    if not sep or not all(keys) or not all(items):
        raise ConfigError(f"--grid {text!r} is not KEY=V1,V2,... (e.g. --grid model.iterations=1,3,8)")
    unknown = [k for k in keys if k not in key_fields()]
    if unknown:
        raise ConfigError(f"--grid {text!r}: unknown config key {unknown[0]!r}; valid keys: {', '.join(key_fields())}")
    if len(set(keys)) != len(keys):
        raise ConfigError(f"--grid {text!r} links a key to itself")
    if len(keys) == 1:
        values_ = tuple(parse_value(v) for v in items)
    else:
        points = [[v.strip() for v in item.split(LINK)] for item in items]
        bad = next((item for item, p in zip(items, points) if len(p) != len(keys) or not all(p)), None)
        if bad is not None:
            raise ConfigError(f"--grid {text!r}: {bad!r} is not one value per linked key ({len(keys)} values "
                              f"joined by {LINK!r}, e.g. {LINK.join(['V'] * len(keys))})")
        values_ = tuple(tuple(parse_value(v) for v in p) for p in points)
    if len(set(map(repr, values_))) != len(values_):
        raise ConfigError(f"--grid {text!r} repeats a value")
    return Axis(LINK.join(keys), values_)


def expand(config: str | None, axes: Sequence[Axis], seeds: int = 1, overrides: Sequence[str] = (),
           quick: bool = False) -> tuple[list[Trial], int]:
    """(the trials in grid order, how many grid points were dropped as duplicates after resolution)."""
    keys = grid_keys(axes)
    if len(set(keys)) != len(keys):
        raise ConfigError(f"--grid names a key twice: {', '.join(keys)}")
    if "seed" in keys:
        raise ConfigError("seed is not a grid axis: use --seeds N (seeds base, base+1, ...)")
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds} is out of range: allowed >= 1")
    base = load_config(config, list(overrides))
    short = short_names(keys)
    trials, seen, dropped = [], set(), 0
    for values in itertools.product(*(a.values for a in axes)):
        point = [kv for a, v in zip(axes, values) for kv in a.settings(v)]
        for s in range(base.seed, base.seed + seeds):
            sets = [*overrides, *(f"{k}={toml_value(v)}" for k, v in point), f"seed={s}"]
            resolved = load_config(config, sets)
            if quick:
                resolved = load_config(config, sets := [*sets, *quick_overrides(resolved)])
            text = to_toml(resolved)
            if text in seen:
                dropped += 1
                continue
            seen.add(text)
            flat = flat_keys(asdict(resolved))  # names show what ran (EM's η resolves to 1)
            parts = [f"{short[k]}-{_safe(flat[k])}" for k in keys] + [f"seed-{s}"]
            trials.append(Trial(_capped("_".join(parts)), tuple(sets), resolved))
    names = [t.name for t in trials]
    if len(set(names)) != len(names):
        raise ConfigError("two grid values give the same run-directory name after removing characters other than "
                          "letters, digits, '.' and '-': make the values differ in those")
    return trials, dropped


def quick_overrides(config: Config) -> list[str]:
    """A smoke-sized version of a trial: at most QUICK_STEPS steps, validated once at the end on QUICK_VAL scenes."""
    steps = min(config.train.steps, QUICK_STEPS)
    out = [f"train.steps={steps}", f"train.eval_every={steps}", f"train.checkpoint_every={steps}",
           f"record.every={max(1, min(config.record.every, steps // 20))}"]
    if config.data.source != "voc":
        out.append(f"data.val_length={min(config.data.val_length, QUICK_VAL)}")
    return out


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """The last part of each key (model.iterations → iterations), or the whole key where two would clash."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k.replace(".", "-")) for k, s in zip(keys, last)}


def _capped(name: str, limit: int = 200) -> str:
    """A run-directory name within `limit` characters (file names may have 255 bytes): start + hash."""
    return name if len(name) <= limit else f"{name[:limit - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _safe(value: Any) -> str:
    """A value as part of a folder name: letters, digits, '.', '-' only (a value like '../x' cannot escape), at
    most PART_CHARS characters (a longer one keeps its start and a hash of the whole value)."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    safe = re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip(".-") or "x"
    if len(safe) > PART_CHARS:
        safe = f"{safe[:PART_CHARS - 9]}-{hashlib.sha1(text.encode('utf-8', 'replace')).hexdigest()[:8]}"
    return safe
