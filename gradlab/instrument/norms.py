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


#: the floor a norm is divided by: exact for every norm above 1e-284 (1e-300 is below half an ulp of it), and
#: x / TINY = 0 for the exact zero of an all-zero gradient; one clamp instead of a comparison and a select
TINY = 1e-300


def unit(g: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """g / ‖g‖ in float64, given ‖g‖ (of `l2_norm`); 0 where g is exactly zero. O(1) entries at any scale of g."""
    return g.double() / norm.clamp_min(TINY)


def cosine_to(g: torch.Tensor, norm: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """cos(g, u) = ⟨g, u⟩ / ‖g‖ for a unit vector u of `unit`, given ‖g‖: a float64 0-dim tensor, products
    in float64 (an entry of 1e-25 times one of 1e-3 does not underflow), 0 when g is exactly zero."""
    return (g.reshape(u.shape) * u).sum() / norm.clamp_min(TINY)
