"""How analysis verdicts and reports write a signed number and a set of iterations: one formatter each."""

from __future__ import annotations

import math


def signed(value: float, digits: int = 1) -> str:
    """"+1.3", "-0.4" with `digits` decimals; a value that rounds to zero is "+0.0", never "-0.0"."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value:+}"
    return f"{round(value, digits) + 0.0:+.{digits}f}"  # + 0.0 turns a rounded -0.0 into 0.0


def iterations(spec: object) -> str:
    """An iteration set of `gradlab.analysis` ("1-2", "1-2, 5", "3") in words: "iterations 1–2", "iteration 3"."""
    text = str(spec).replace("-", "–")
    plural = any(c in text for c in "–,")
    return f"iteration{'s' if plural else ''} {text}"
