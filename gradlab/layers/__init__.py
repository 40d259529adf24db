"""Unrolled EM / highway EM layers and the EMA unit that hosts them."""

from gradlab.layers.ema_unit import EMAUnit
from gradlab.layers.iteration import EMIteration
from gradlab.layers.trace import Trace
from gradlab.layers.unrolled import GRAD_MODES, LAYER_KINDS, EMLayer, EMSpec, HEMLayer, UnrolledEM

__all__ = ["GRAD_MODES", "LAYER_KINDS", "EMAUnit", "EMIteration", "EMLayer", "EMSpec", "HEMLayer", "Trace",
           "UnrolledEM"]
