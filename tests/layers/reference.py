"""A straightforward per-image reference of MATH.md §2–§3, written independently of gradlab.layers."""

from __future__ import annotations

import torch

EPS = 1e-6


def P(v: torch.Tensor, normalize: bool) -> torch.Tensor:
    return v / (v.norm(dim=-1, keepdim=True) + EPS) if normalize else v


def logits(X: torch.Tensor, mu: torch.Tensor, kernel: str, tau: float) -> torch.Tensor:
    """a (N, K) exactly as MATH.md §2 writes it."""
    if kernel == "dot":
        return X @ mu.T / tau
    return -((X[:, None, :] - mu[None, :, :]) ** 2).sum(-1) / (2 * tau)


def reference_em(x, mu0, iterations, step_size, kernel="dot", tau=1.0, normalize=True):
    """x (B, C, H, W), mu0 (K, C) → (reconstruction (B, C, H, W), [μ^(t)] per image, [ℓ^(t)] batch means)."""
    B, C, H, W = x.shape
    outs, mus, lls = [], [], []
    for b in range(B):
        X = x[b].reshape(C, H * W).T  # (N, C)
        mu, mu_b, ll_b = mu0, [mu0], [torch.logsumexp(logits(X, mu0, kernel, tau), 1).mean()]
        for _ in range(iterations):
            Z = torch.softmax(logits(X, mu, kernel, tau), dim=1)
            m = (Z.T @ X) / (Z.sum(0)[:, None] + EPS)
            mu = P(m, normalize) if step_size == 1 else P((1 - step_size) * mu + step_size * P(m, normalize), normalize)
            mu_b.append(mu)
            ll_b.append(torch.logsumexp(logits(X, mu, kernel, tau), 1).mean())
        outs.append((Z @ mu).T.reshape(C, H, W))
        mus.append(mu_b)
        lls.append(torch.stack(ll_b))
    return torch.stack(outs), mus, torch.stack(lls).mean(0)
