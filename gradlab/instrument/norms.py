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


def widened(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(g as a contiguous float64 tensor, ‖g‖ as `l2_norm` gives it): for a gradient that is also compared with
    others (`cosine_to`), so that the one cast serves both its norm and its dot products."""
    # one copy at most: `to` keeps a float64 g itself, whatever its strides
    wide = g.contiguous() if g.dtype == torch.float64 else g.to(torch.float64, memory_format=torch.contiguous_format)
    return wide, wide_norm(wide, g.dtype)


def wide_norm(wide: torch.Tensor, source: torch.dtype) -> torch.Tensor:
    """‖·‖ of a float64 tensor whose entries came from `source` (`widened`, or a difference of such): one plain
    float64 pass when `source` is narrower (the squares of its values cannot underflow float64), l2_norm's
    scaled one when it is float64 itself."""
    return l2_norm(wide) if source == torch.float64 else torch.linalg.vector_norm(wide)


def unit(wide: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """g / ‖g‖ from `widened` g; 0 where g is exactly zero. O(1) entries at any scale of g."""
    return wide / norm.clamp_min(TINY)


def cosine_to(wide: torch.Tensor, norm: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """cos(g, u) = ⟨g, u⟩ / ‖g‖ for `widened` g and a unit vector u of `unit` (the same number of entries, in
    the same order): a float64 0-dim tensor, one float64 dot product, 0 when g is exactly zero."""
    return torch.dot(wide.view(-1), u.view(-1)) / norm.clamp_min(TINY)
