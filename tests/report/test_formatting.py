"""Numbers read the same way everywhere; dead and undefined values say so instead of crashing."""

from __future__ import annotations

import math

from gradlab.report import formatting as fmt
from gradlab.report.diagnosis import no_gradient_reason


def test_decades_show_sign_and_say_dead_or_undefined():
    assert fmt.decades(-1.234) == "-1.23" and fmt.decades(0.5) == "+0.50"
    assert fmt.decades(-math.inf) == "-inf (dead)" and fmt.decades(math.nan) == "n/a"


def test_every_measured_number_has_three_significant_digits_with_its_zeros():
    assert [fmt.number(v) for v in (0.5921, 0.571, 0.5, 12.345, 1234.5, 0.00123)] == [
        "0.592", "0.571", "0.500", "12.3", "1234", "0.00123"]
    assert fmt.number(1.2e-5) == "1.20e-05" and fmt.number(99999.0) == "1.00e+05" and fmt.number(0.9996) == "1.00"
    assert fmt.number(0) == "0" and fmt.number(-math.inf) == "-inf" and fmt.number(math.nan) == "n/a"
    assert fmt.number(None) == "n/a"
    assert fmt.score is fmt.number and fmt.loss is fmt.number and fmt.factor is fmt.number  # one formatter
    assert fmt.interval(0.25, 0.5) == "[0.250, 0.500]"


def test_half_depth_says_when_the_gradient_never_halves():
    assert fmt.half_depth(2.0, 1.0) == "2"
    assert fmt.half_depth(1.0, 0.25) == "1 (25% of steps)"
    assert fmt.half_depth(math.nan, 0.0) == "not reached"


def test_iteration_ranges_read_as_words():
    assert fmt.iterations("1-2") == "iterations 1–2" and fmt.iterations("3") == "iteration 3"
    assert fmt.window(5, 5, 1) == "5 (1 step)" and fmt.window(54, 59, 6) == "54–59 (6 steps)"


def testno_gradient_reason_says_why():
    assert no_gradient_reason("1", {"no_grad"}, "all") == "iteration 1 receives no gradient: run under no_grad"
    assert no_gradient_reason("1-3", {"no_grad"}, 2) == (
        "iterations 1–3 receive no gradient: run under no_grad (model.grad_iterations = 2: only the last 2 "
        "iterations carry gradient)")
    assert "status unused" in no_gradient_reason("2", {"unused"}, None)
