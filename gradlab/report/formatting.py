"""How numbers read in a report, shared by the HTML, the Markdown and the terminal (`gradlab demo`, `compare`).

Every measured number (scores, losses, ratios such as ρ and R, attribution values) goes through `number`: three
significant digits, trailing zeros kept, so that neighbours read alike ("0.592" beside "0.571", "0.500", "12.3").
Decades of decay (a signed log10) have their own form with two decimals; counts, steps and iterations are
integers.
"""

from __future__ import annotations

import math

MISSING = "n/a"


def _bad(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: float, digits: int = 3) -> str:
    """`digits` significant digits, trailing zeros kept: "0.571", "0.500", "12.3", "1234"; scientific notation
    outside [0.001, 10000): "1.20e-05"; "0" for zero, "inf"/"-inf" for infinities, n/a for missing and NaN."""
    try:
        value = float(value)
    except (TypeError, ValueError):  # None, pd.NA
        return MISSING
    if math.isnan(value):
        return MISSING
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(float(f"{value:.{digits - 1}e}"))))  # after rounding: 9.996 -> 10.0
    if -3 <= exponent < 4:
        return f"{value:.{max(0, digits - 1 - exponent)}f}"
    return f"{value:.{digits - 1}e}"


#: ρ, R and other ratios; mIoU and pixel accuracy; losses: all the same formatter, so a table never mixes styles.
factor = score = loss = number


def decades(value: float) -> str:
    """log10 R with a sign and two decimals ("-0.62"); −∞ is an exact zero at the first iteration."""
    if _bad(value):
        return MISSING
    if math.isinf(value):
        return "-inf (dead)" if value < 0 else "+inf (non-finite)"
    return f"{value:+.2f}"


def half_depth(depth: float, reached: float) -> str:
    """D½ (median over the steps where the gradient halves) and how often it does."""
    if _bad(reached) or reached == 0:
        return "not reached"
    text = f"{depth:g}"
    return text if reached >= 1 else f"{text} ({reached:.0%} of steps)"


def interval(low: float, high: float, fmt=number) -> str:
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
