"""The detached states of one forward pass of an unrolled EM layer."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Trace:
    """States of the last traced forward, indexed by iteration t (MATH.md §2–§3).

    mu[t]      μ^(t), (B, K, C), t = 0..T
    z[t]       Z^(t) as attention maps (B, K, H, W), t = 1..T (z[0] is None: no E-step before iteration 1)
    loglik[t]  ℓ(μ^(t)), a 0-dim tensor (mean over images and pixels), t = 0..T
    feature_norm  mean_n ‖x_n‖ of the layer input, a 0-dim tensor
    temperature   τ of the layer (for the E-step gain e_t of MATH.md §9)
    x          the layer input X as (B, C, N), detached (what the state Jacobians J_t hold fixed)
    Tensors stay on the layer's device; nothing here forces a host sync.
    """

    mu: list[torch.Tensor] = field(default_factory=list)
    z: list[torch.Tensor | None] = field(default_factory=lambda: [None])
    loglik: list[torch.Tensor] = field(default_factory=list)
    logits: list[torch.Tensor] = field(default_factory=list, repr=False)  # E-step logits while tracing
    feature_norm: torch.Tensor | None = None
    temperature: float = 1.0
    x: torch.Tensor | None = field(default=None, repr=False)

    @property
    def iterations(self) -> int:
        return len(self.mu) - 1
