from __future__ import annotations

import math

from gradlab.analysis.wording import iterations, signed


def test_iteration_ranges_read_as_words():
    assert iterations("1-2") == "iterations 1–2" and iterations("3") == "iteration 3"
    assert iterations("1-2, 5") == "iterations 1–2, 5"


def test_signed_numbers_never_read_minus_zero():
    assert signed(-0.04) == "+0.0" and signed(-0.0) == "+0.0" and signed(-0.06) == "-0.1"
    assert signed(1.234, 2) == "+1.23" and signed(-math.inf) == "-inf"
