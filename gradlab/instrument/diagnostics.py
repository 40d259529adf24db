"""Forward diagnostics of one traced EM forward (MATH.md §6), batched over iterations, on the layer's device.

Each function reduces the trailing (image, basis, ...) axes and keeps any leading axis, so that all iterations
are measured by one call: a handful of kernels per layer and step instead of a handful per iteration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from gradlab.layers import Trace

Diagnostic = tuple[str, "int | None", torch.Tensor]  # (quantity, first iteration, values over iterations)
#: the recorder's default diagnostics schedule (record.diagnostics_every): the first recorded step of each block of
#: this many steps is diagnosed; 1 diagnoses every recorded step, 10 with record.every = 1 every 10th step
DIAGNOSTICS_EVERY = 1


def entropy(z: torch.Tensor) -> torch.Tensor:
    """mean_n −Σ_k z_nk log z_nk of attention maps (..., B, K, H, W) → (...): ln K uniform, 0 one-hot."""
    # −z log z with z log z = 0 at z = 0 (log of the clamp: exact for z ≥ the smallest normal, < 1e-35 below it);
    # 2.6× faster on the CPU than torch.special.entr, which is not vectorised there (torch 2.13)
    z_log_z = z.clamp_min(torch.finfo(z.dtype).tiny).log_().mul_(z)  # one temporary
    return -z_log_z.sum(-3).mean((-3, -2, -1), dtype=torch.float64)  # the K terms in z's dtype, the means in float64


def e_gain(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """E-step gain e = (1/τ) mean_n (1 − Σ_k z_nk²) of attention maps (..., B, K, H, W) → (...) (MATH.md §9):
    0 at one-hot attention, (1 − 1/K)/τ at uniform attention; it bounds ‖softmax Jacobian‖₂ / τ per pixel."""
    return (1.0 - z.square().sum(-3).mean((-3, -2, -1), dtype=torch.float64)) / temperature


def similarity(mu: torch.Tensor) -> torch.Tensor:
    """Mean over images of the mean off-diagonal cosine between the K ≥ 2 bases (..., B, K, C) → (...)."""
    u = mu.float()
    u = u / (torch.linalg.vector_norm(u, dim=-1, keepdim=True) + 1e-12)
    gram = (u @ u.transpose(-1, -2)).double()  # cosines in float32, their means in float64
    k = mu.shape[-2]
    off = gram.sum((-2, -1)) - gram.diagonal(dim1=-2, dim2=-1).sum(-1)
    return (off / (k * (k - 1))).mean(-1)


def shift(mu: torch.Tensor) -> torch.Tensor:
    """‖μ^(t) − μ^(t-1)‖_F / B for a sequence of states (T+1, B, K, C) → (T,), t = 1..T."""
    return torch.linalg.vector_norm(torch.diff(mu, dim=0).flatten(1), dim=1, dtype=torch.float64) / mu.shape[1]


def forward_diagnostics(trace: Trace) -> list[Diagnostic]:
    """loglik and similarity (t = 0..T; similarity when K ≥ 2), entropy, e_gain and shift (t = 1..T),
    feature_norm."""
    mu, z = torch.stack(trace.mu), torch.stack(trace.z[1:])
    loglik_and_norm = torch.stack([*trace.loglik, trace.feature_norm]).double()  # one vector: ℓ^(0..T), then ‖x‖
    out: list[Diagnostic] = [
        ("feature_norm", None, loglik_and_norm[-1:]),
        ("loglik", 0, loglik_and_norm[:-1]),
        ("entropy", 1, entropy(z)),
        ("e_gain", 1, e_gain(z, trace.temperature)),
        ("shift", 1, shift(mu)),
    ]
    if mu.shape[-2] > 1:
        out.append(("similarity", 0, similarity(mu)))
    return out
