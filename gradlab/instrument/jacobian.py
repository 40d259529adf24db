"""Spectral norms σ_t = ‖J_t‖₂ of the state Jacobians J_t = ∂μ^(t)/∂μ^(t−1) (MATH.md §9), never formed densely.

Per image, power iteration on J_tᵀ J_t: each power step is one Jacobian-vector product (forward mode) and one
vector-Jacobian product (reverse mode) through one EM iteration with X held fixed. Images are independent (J_t
is block-diagonal over the batch), so all sampled images and their power steps run batched, on the layer's
device, without a host sync. For HEM, σ_t^EM = ‖J_t^EM‖₂ of the EM part μ ↦ P(m(μ)) alone is measured too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from gradlab.layers import EMIteration, Trace, UnrolledEM

#: defaults of the recorder's Jacobian schedule: every JACOBIAN_EVERY steps, on JACOBIAN_IMAGES images of the
#: batch, POWER_STEPS power steps (σ's relative error shrinks like (σ₂/σ₁)^(2·steps))
JACOBIAN_EVERY = 100
JACOBIAN_IMAGES = 2
POWER_STEPS = 20


def _per_image_norm(v: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(v.flatten(1), dim=1).clamp_min(1e-30).view(-1, *([1] * (v.dim() - 1)))


def spectral_norm(cell: EMIteration, x: torch.Tensor, mu: torch.Tensor, steps: int = POWER_STEPS,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """σ of ∂cell(x, μ)_μ / ∂μ per image: x (B, C, N), μ (B, K, C) → (B,) float64, a lower bound that the power
    steps tighten (‖J v‖ at the last unit vector v).

    Plain reverse mode twice, with one graph kept: Jᵀu is built once as a function of a dummy u
    (create_graph), so J v = ∂⟨Jᵀu, v⟩/∂u and Jᵀ(J v) are one small backward each; no forward-mode AD."""
    x = x.detach()
    v = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)  # no host transfer
    v = v / _per_image_norm(v)
    with torch.enable_grad():
        m = mu.detach().clone().requires_grad_()  # μ^(0) is an expanded view of the bases: a real tensor here
        y = cell.forward(x, m)[0]  # .forward: no module hooks fire (a user's, captum's) for these extra calls
        u = torch.zeros_like(y, requires_grad=True)
        jt_u = torch.autograd.grad(y, m, u, create_graph=True)[0]  # Jᵀ u, linear in u
        for _ in range(steps):
            jv = torch.autograd.grad(jt_u, u, v, retain_graph=True)[0]  # J v
            w = torch.autograd.grad(y, m, jv, retain_graph=True)[0]  # Jᵀ J v
            v = w / _per_image_norm(w)
        jv = torch.autograd.grad(jt_u, u, v)[0]
    return torch.linalg.vector_norm(jv.flatten(1), dim=1, dtype=torch.float64)


def state_jacobian_norms(layer: UnrolledEM, trace: Trace, images: int = JACOBIAN_IMAGES,
                         steps: int = POWER_STEPS, seed: int = 0) -> list[tuple[str, int, torch.Tensor]]:
    """(quantity, first iteration 1, values over t = 1..T) for `jac/sigma` and `jac/sigma_max` (mean and max
    over the first `images` images of the traced batch), and for HEM `jac/sigma_em` / `jac/sigma_em_max`."""
    T, cell = layer.num_iterations, layer.iterations[0]  # the T cells differ only in their index t
    x = trace.x[:images]
    n = x.shape[0]
    x = x.repeat(T, 1, 1)  # all iterations at once: row t·n + b is image b at μ^(t)
    mu = torch.cat([m[:images] for m in trace.mu[:T]])
    generator = torch.Generator(x.device).manual_seed(seed)
    cells = {"jac/sigma": cell}
    if layer.step_size != 1.0:  # the EM part alone: the same iteration with η = 1
        cells["jac/sigma_em"] = cell.em_part()
    out = []
    for name, c in cells.items():
        sigma = spectral_norm(c, x, mu, steps, generator).view(T, n)
        out += [(name, 1, sigma.mean(1)), (f"{name}_max", 1, sigma.amax(1))]
    return out
