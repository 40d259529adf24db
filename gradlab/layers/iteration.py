"""One unrolled (highway) EM iteration as its own parameter-free module (MATH.md §2).

Being a module lets forward hooks and captum's layer methods address a single iteration t.
"""

from __future__ import annotations

import torch
from torch import nn

from gradlab.layers.kernels import EPS, logits, project
from gradlab.layers.trace import Trace


class EMIteration(nn.Module):
    """Iteration t: Z^(t) = softmax_k a(μ^(t-1)); μ^(t) = P((1 − η) μ^(t-1) + η P(m^(t))).

    With η = 1 the update is exactly EM, μ^(t) = P(m^(t)), computed by the same code path for EM and HEM.
    """

    def __init__(self, t: int, step_size: float, kernel: str, temperature: float, normalize: bool):
        super().__init__()
        self.t = t
        self.step_size = step_size
        self.kernel = kernel
        self.temperature = temperature
        self.normalize = normalize

    def forward(
        self, x: torch.Tensor, mu: torch.Tensor, trace: Trace | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, N), μ^(t-1) (B, K, C) → (μ^(t) (B, K, C), Z^(t) (B, K, N)). Keeps a(μ^(t-1)) in trace."""
        a = logits(x, mu, self.kernel, self.temperature)
        if trace is not None:
            trace.logits.append(a.detach())  # ℓ(μ^(t-1)) of all iterations is computed at once from these
        z = torch.softmax(a, dim=1)
        m = torch.bmm(z, x.transpose(1, 2)) / (z.sum(-1, keepdim=True) + EPS)  # m_k = Σ_n z_nk x_n / (N_k + ε)
        m = project(m, self.normalize)
        if self.step_size == 1.0:
            return m, z
        return project(torch.lerp(mu, m, self.step_size), self.normalize), z  # the highway (1 − η) μ^(t-1)

    def em_part(self) -> EMIteration:
        """The same iteration with η = 1: the EM part μ ↦ P(m(μ)) of a HEM step (its σ_t^EM, MATH.md §9)."""
        return EMIteration(self.t, 1.0, self.kernel, self.temperature, self.normalize)

    def extra_repr(self) -> str:
        return f"t={self.t}, step_size={self.step_size}, kernel={self.kernel!r}"
