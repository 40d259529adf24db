"""Gradient norms that neither underflow nor force a host sync (MATH.md §6)."""

from __future__ import annotations

import torch


def l2_norm(g: torch.Tensor) -> torch.Tensor:
    """‖g‖₂ as a float64 0-dim tensor on g's device; entries of 1e-25 give ~1e-25, an exact 0 gives 0.

    Below float64 the squares are accumulated in float64 (one pass). A float64 gradient is scaled by its
    max-abs entry first, so even entries near 1e-300 keep their norm. Inf or NaN entries give a non-finite norm.
    """
    if g.dtype != torch.float64:
        return torch.linalg.vector_norm(g, dtype=torch.float64)
    scale = g.abs().amax()
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return safe * torch.linalg.vector_norm(g / safe)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos(a, b) = ⟨a, b⟩ / (‖a‖ ‖b‖) as a float64 0-dim tensor, underflow-safe (each side scaled by its norm
    first); 0 when either side is exactly zero (no direction to agree with)."""
    na, nb = l2_norm(a), l2_norm(b)
    one = torch.ones_like(na)
    ua = a.double() / torch.where(na > 0, na, one)
    ub = b.reshape(a.shape).double() / torch.where(nb > 0, nb, one)
    return torch.sum(ua * ub)
