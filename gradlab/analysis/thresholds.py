"""The thresholds of every flag (MATH.md §7), in one place so that decay, flags, regime and docs agree.

Change them here (e.g. `gradlab.analysis.thresholds.SPIKE_FACTOR = 5`) and every function picks them up.
"""

from __future__ import annotations

import numpy as np

#: dead: a norm at or below the smallest normal float32 (1.2e-38) is an exact 0 or an underflow; the recorder
#: accumulates in float64, so a real gradient of 1e-25 stays 1e-25 and is not dead
DEAD_NORM = float(np.finfo(np.float32).tiny)

#: vanishing: retention R = g_first / g_last below this (3 decades of decay)
VANISHING_RETENTION = 1e-3

#: exploding: R above this, or a per-iteration factor ρ above EXPLODING_RHO (grows toward early iterations)
EXPLODING_RETENTION = 1e3
EXPLODING_RHO = 1.0

#: spike: a norm above SPIKE_FACTOR × the median of the previous SPIKE_WINDOW recorded steps of the same series
#: (only once SPIKE_MIN_STEPS earlier steps exist, and only when that median is positive)
SPIKE_FACTOR = 10.0
SPIKE_WINDOW = 50
SPIKE_MIN_STEPS = 5

#: collapse: similarity of μ^(T) above COLLAPSE_SIMILARITY and mean entropy above COLLAPSE_ENTROPY · ln K
COLLAPSE_SIMILARITY = 0.95
COLLAPSE_ENTROPY = 0.95

#: saturation: mean entropy below SATURATION_ENTROPY · ln K (attention close to one-hot)
SATURATION_ENTROPY = 0.05

#: regime: a regime holds when at least this fraction of the window's steps show it
REGIME_MAJORITY = 0.5

#: misdirected (MATH.md §9): the earlier iterations add a part (r_rest = ‖Σ_{t<T} g_t‖ / ‖g_T‖) that barely
#: agrees with g_T (c_rest), so large that the full gradient ∂L/∂X turns at least MISDIRECTED_TURN degrees away
#: from the one-step gradient g_T (the window median of `turn`, gradlab.analysis.mechanism.turn_angle). Set on
#: real runs before the regime zoo's held-out seeds were diagnosed: EM at τ = 1 turns 17–20° (the demo, T = 6),
#: EM at τ = 0.25, T ≥ 3 turns 30–47° per run and loses accuracy (the T_train study's seeds 0–2; a saturated and a
#: nearly collapsed run turn 13° and 18°; docs/diagnosis.md)
MISDIRECTED_TURN = 30.0

#: attenuated (MATH.md §9): the layer passes little of the gradient it receives, G = ‖∂L/∂X‖ / ‖∂L/∂X̃‖ below
#: ATTENUATED_GAIN, or the EMA unit's EM branch carries less than ATTENUATED_SHARE of ∂L/∂u
ATTENUATED_GAIN = 0.02
ATTENUATED_SHARE = 0.2
