"""The implicit-function-theorem gradient of an unrolled EM layer at its fixed point (grad_mode="implicit").

At a fixed point μ* = F(μ*, X) of one iteration F, dμ*/dX = (I − J_μ)⁻¹ J_X (J_μ = ∂F/∂μ, J_X = ∂F/∂X there),
so a gradient v reaching μ* reaches X as J_Xᵀ u with u the solution of the adjoint equation u = J_μᵀ u + v
(deep equilibrium models; torchdeq's `ift` backward). `adjoint_hook` builds a tensor hook that replaces v by u,
solved by fixed-point iteration with vector-Jacobian products on a graph of F of its own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

#: the smallest ‖u_new‖ the relative residual divides by (an exact zero gradient stops with residual 0)
_TINY = 1e-300


def solve_adjoint(f: torch.Tensor, mu: torch.Tensor, v: torch.Tensor, max_iterations: int,
                  tolerance: float) -> tuple[torch.Tensor, int, torch.Tensor]:
    """u = J_μᵀ u + v by fixed-point iteration from u = v, with J_μᵀ u = autograd.grad(f, μ, u) (f = F(μ)).

    Stops after the first iteration whose relative residual ‖u_new − u‖ / ‖u_new‖ is below `tolerance`, or after
    `max_iterations`. Returns (u, iterations done, the last relative residual as a 0-dim float64 tensor). Each
    iteration compares the residual on the host (one sync): the cost of deciding when to stop."""
    u, residual, done = v, torch.zeros((), dtype=torch.float64, device=v.device), 0
    while done < max_iterations:
        done += 1
        new = torch.autograd.grad(f, mu, u, retain_graph=True)[0] + v
        diff = torch.linalg.vector_norm(new - u, dtype=torch.float64)
        residual = diff / torch.linalg.vector_norm(new, dtype=torch.float64).clamp_min(_TINY)
        u = new
        if residual < tolerance:  # a NaN residual never stops early: it runs on and is reported as NaN
            break
    return u, done, residual


def adjoint_hook(cell: nn.Module, x: torch.Tensor, mu: torch.Tensor, max_iterations: int, tolerance: float,
                 report: Callable[[torch.Tensor, torch.Tensor], None]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A hook for the output of the differentiable application F(μ, X) (x (B, C, N), μ (B, K, C)): it replaces the
    gradient v reaching that output by the adjoint solution u = J_μᵀ u + v at (μ, X), and calls
    report(iterations, residual) with both as 0-dim float64 tensors on the gradient's device.

    J_μ comes from a graph of F at a detached copy of μ (and X detached), built now, while the forward runs: the
    layer's own graph is not re-entered, and the gradient continues from u through it to X (J_Xᵀ u)."""
    with torch.enable_grad():
        m = mu.detach().clone().requires_grad_()
        f = cell.forward(x.detach(), m)[0]  # .forward: no module hooks fire for this extra call

    def hook(v: torch.Tensor) -> torch.Tensor:
        u, done, residual = solve_adjoint(f, m, v.to(f.dtype), max_iterations, tolerance)
        report(torch.tensor(float(done), dtype=torch.float64, device=v.device), residual.to(v.device))
        return u.to(v.dtype)

    return hook
