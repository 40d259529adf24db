"""How numbers read in a report: one formatter per kind of number, shared by the HTML, Markdown and terminal."""

from __future__ import annotations

import math

MISSING = "n/a"


def _bad(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def decades(value: float) -> str:
    """log10 R with a sign and two decimals ("-0.62"); −∞ is an exact zero at the first iteration."""
    if _bad(value):
        return MISSING
    if math.isinf(value):
        return "-inf (dead)" if value < 0 else "+inf (non-finite)"
    return f"{value:+.2f}"


def factor(value: float) -> str:
    """ρ, R and other ratios: three significant digits."""
    return MISSING if _bad(value) else f"{value:.3g}"


def half_depth(depth: float, reached: float) -> str:
    """D½ (median over the steps where the gradient halves) and how often it does."""
    if _bad(reached) or reached == 0:
        return "not reached"
    text = f"{depth:g}"
    return text if reached >= 1 else f"{text} ({reached:.0%} of steps)"


def score(value: float) -> str:
    """mIoU, pixel accuracy: three decimals."""
    return MISSING if _bad(value) else f"{value:.3f}"


def loss(value: float) -> str:
    return MISSING if _bad(value) else f"{value:.4g}"


def interval(low: float, high: float, fmt=factor) -> str:
    """A confidence interval "[low, high]"; n/a when it could not be computed (fewer than two runs)."""
    if _bad(low) or _bad(high):
        return MISSING
    return f"[{fmt(low)}, {fmt(high)}]"


def step_range(first: float, last: float) -> str:
    if _bad(first) or _bad(last):
        return MISSING
    return f"{first:.0f}" if first == last else f"{first:.0f}–{last:.0f}"


def window(first: float, last: float, steps: float) -> str:
    """A window of training: "360–399 (40 steps)", "5 (1 step)"."""
    if _bad(steps):
        return MISSING
    return f"{step_range(first, last)} ({steps:.0f} step{'' if steps == 1 else 's'})"


def iterations(text: str) -> str:
    """"1-2" (analysis ranges) → "iterations 1–2"; "3" → "iteration 3"."""
    text = str(text).replace("-", "–")
    plural = any(c in text for c in "–,")
    return f"iteration{'s' if plural else ''} {text}"


def value(v: object) -> str:
    """A config value as TOML would show it: strings bare, booleans lower case."""
    if isinstance(v, bool):
        return str(v).lower()
    if _bad(v):
        return MISSING
    return str(v)
