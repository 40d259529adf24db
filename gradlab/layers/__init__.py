"""Unrolled EM / highway EM layers and the EMA unit that hosts them."""

from gradlab.layers.ema_unit import EMAUnit
from gradlab.layers.iteration import EMIteration
from gradlab.layers.trace import Trace
from gradlab.layers.unrolled import EMLayer, HEMLayer, UnrolledEM, make_layer

__all__ = ["EMAUnit", "EMIteration", "EMLayer", "HEMLayer", "Trace", "UnrolledEM", "make_layer"]
