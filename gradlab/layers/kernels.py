"""The E-step kernels and the bases normalisation P of MATH.md §1–§3.

Layouts: features X as (B, C, N), bases μ as (B, K, C), logits and responsibilities as (B, K, N).
"""

from __future__ import annotations

import torch

EPS = 1e-6
KERNELS = ("dot", "gaussian")


def project(v: torch.Tensor, normalize: bool) -> torch.Tensor:
    """P(v) = v / (‖v‖₂ + ε) over the channel (last) axis when `normalize`, else the identity."""
    if not normalize:
        return v
    return v / (torch.linalg.vector_norm(v, dim=-1, keepdim=True) + EPS)


def logits(x: torch.Tensor, mu: torch.Tensor, kernel: str, temperature: float) -> torch.Tensor:
    """E-step logits a (B, K, N), up to a per-pixel constant that the softmax over K ignores.

    dot:      a_nk = x_n·μ_k / τ
    gaussian: a_nk = −‖x_n − μ_k‖² / (2τ), computed without the −‖x_n‖²/(2τ) term (see `objective`).
    """
    a = torch.bmm(mu, x)
    if kernel == "gaussian":
        a = a - 0.5 * mu.square().sum(-1, keepdim=True)
    return a / temperature


def objective(a: torch.Tensor, x: torch.Tensor, kernel: str, temperature: float) -> torch.Tensor:
    """ℓ(μ) = mean over images and pixels of logsumexp_k a_nk (MATH.md §3), from `logits` output.

    `a` is (B, K, N), or (S, B, K, N) for S sets of bases at once (then ℓ has shape (S,)).
    """
    ll = torch.logsumexp(a, dim=-2).mean((-2, -1))
    if kernel == "gaussian":
        ll = ll - x.square().sum(1).mean() / (2 * temperature)
    return ll
