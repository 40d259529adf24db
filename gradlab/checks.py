"""Argument checks whose errors name the argument, its value and what is allowed."""

from __future__ import annotations

from gradlab.errors import ConfigError


def require(ok: bool, name: str, value: object, allowed: str) -> None:
    """Raise ConfigError (a ValueError) "name=value is invalid: name must be allowed" unless `ok`."""
    if not ok:
        raise ConfigError(f"{name}={value!r} is invalid: {name} must be {allowed}")


def is_int(v: object, low: int = 1) -> bool:
    """An int (not a bool) of at least `low`."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= low
