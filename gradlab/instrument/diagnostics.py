"""Forward diagnostics of one traced EM forward (MATH.md §6), as 0-dim tensors on the layer's device."""

from __future__ import annotations

import torch

from gradlab.layers import Trace

Diagnostic = tuple[str, "int | None", torch.Tensor]


def entropy(z: torch.Tensor) -> torch.Tensor:
    """mean_n −Σ_k z_nk log z_nk of attention maps (B, K, H, W); ln K when uniform, 0 when one-hot."""
    return torch.special.entr(z.double()).sum(1).mean()


def similarity(mu: torch.Tensor) -> torch.Tensor:
    """Mean over images of the mean off-diagonal cosine between the K ≥ 2 bases (B, K, C)."""
    u = mu.double() / (torch.linalg.vector_norm(mu.double(), dim=-1, keepdim=True) + 1e-12)
    gram = torch.bmm(u, u.transpose(1, 2))
    k = mu.shape[1]
    off = gram.sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(-1)
    return (off / (k * (k - 1))).mean()


def shift(mu_prev: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """‖μ^(t) − μ^(t-1)‖_F / B."""
    return torch.linalg.vector_norm((mu - mu_prev).double()) / mu.shape[0]


def forward_diagnostics(trace: Trace) -> list[Diagnostic]:
    """loglik (t = 0..T), entropy and shift (t = 1..T), similarity (t = 0..T, when K ≥ 2), feature_norm."""
    out: list[Diagnostic] = [("feature_norm", None, trace.feature_norm.double())]
    for t, mu in enumerate(trace.mu):
        out.append(("loglik", t, trace.loglik[t].double()))
        if mu.shape[1] > 1:
            out.append(("similarity", t, similarity(mu)))
        if t > 0:
            out.append(("entropy", t, entropy(trace.z[t])))
            out.append(("shift", t, shift(trace.mu[t - 1], mu)))
    return out
