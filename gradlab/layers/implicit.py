"""The implicit-function-theorem gradient of an unrolled EM layer at its fixed point (grad_mode="implicit").

At a fixed point μ* = F(μ*, X) of one iteration F, dμ*/dX = (I − J_μ)⁻¹ J_X (J_μ = ∂F/∂μ, J_X = ∂F/∂X there),
so a gradient v reaching μ* reaches X as J_Xᵀ u with u the solution of the adjoint equation u = J_μᵀ u + v
(deep equilibrium models; torchdeq's `ift` backward). `adjoint_hook` builds a tensor hook that replaces v by u,
solved by fixed-point iteration with vector-Jacobian products on a graph of F of its own. Where that iteration
diverges (J_μ does not contract: the fixed point does not attract, e.g. at sharp attention early in training),
there is no implicit gradient; the hook then keeps v, the Jacobian-free gradient of Fung et al. (JFB, AAAI
2022), which is backpropagation through the last two iterations, and reports that it did.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

#: the smallest ‖u_new‖ the relative residual divides by (an exact zero gradient stops with residual 0)
_TINY = 1e-300


class AdjointSolve(NamedTuple):
    """What `solve_adjoint` found: the solution `u`, the `iterations` done, the last relative residual, and whether
    it `diverged`: not converged, and the last step did not contract (‖u_n+1 − u_n‖ ≥ ‖u_n − u_n−1‖) or the
    residual is not finite. Then the series u = Σ_k (J_μᵀ)^k v does not converge and there is no implicit gradient
    (the fixed point does not attract); a capped solve that still contracts has not diverged, its u is the better
    approximation."""

    u: torch.Tensor
    iterations: int
    residual: torch.Tensor
    diverged: bool


def solve_adjoint(f: torch.Tensor, mu: torch.Tensor, v: torch.Tensor, max_iterations: int,
                  tolerance: float) -> AdjointSolve:
    """u = J_μᵀ u + v by fixed-point iteration from u = v, with J_μᵀ u = autograd.grad(f, μ, u) (f = F(μ)).

    Stops after the first iteration whose relative residual ‖u_new − u‖ / ‖u_new‖ is below `tolerance`, or after
    `max_iterations`. Each iteration compares the residual on the host (one sync): the cost of deciding when to
    stop. Returns an `AdjointSolve`."""
    u, done, converged = v, 0, False
    residual = torch.zeros((), dtype=torch.float64, device=v.device)
    diff = previous = torch.full((), math.nan, dtype=torch.float64, device=v.device)
    while done < max_iterations:
        done += 1
        new = torch.autograd.grad(f, mu, u, retain_graph=True)[0] + v
        diff, previous = torch.linalg.vector_norm(new - u, dtype=torch.float64), diff
        residual = diff / torch.linalg.vector_norm(new, dtype=torch.float64).clamp_min(_TINY)
        u = new
        if residual < tolerance:  # a NaN residual never stops early: it runs on and is reported as NaN
            converged = True
            break
    growing = diff >= previous  # the last step did not contract (False after one step: previous is NaN)
    diverged = not converged and bool(growing | ~torch.isfinite(residual))
    return AdjointSolve(u, done, residual, diverged)


def adjoint_hook(cell: nn.Module, x: torch.Tensor, mu: torch.Tensor, max_iterations: int, tolerance: float,
                 report: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]
                 ) -> Callable[[torch.Tensor], torch.Tensor]:
    """A hook for the output of the differentiable application F(μ, X) (x (B, C, N), μ (B, K, C)): it replaces the
    gradient v reaching that output by the adjoint solution u = J_μᵀ u + v at (μ, X) (v itself where the solve
    diverged), and calls report(iterations, residual, diverged) with all three as 0-dim float64 tensors on the
    gradient's device.

    J_μ comes from a graph of F at a detached copy of μ (and X detached), built now, while the forward runs: the
    layer's own graph is not re-entered, and the gradient continues from u through it to X (J_Xᵀ u)."""
    with torch.enable_grad():
        m = mu.detach().clone().requires_grad_()
        f = cell.forward(x.detach(), m)[0]  # .forward: no module hooks fire for this extra call

    def hook(v: torch.Tensor) -> torch.Tensor:
        solve = solve_adjoint(f, m, v.to(f.dtype), max_iterations, tolerance)
        report(torch.tensor(float(solve.iterations), dtype=torch.float64, device=v.device),
               solve.residual.to(v.device), torch.tensor(float(solve.diverged), dtype=torch.float64, device=v.device))
        return v if solve.diverged else solve.u.to(v.dtype)  # diverged: (I − J_μᵀ)⁻¹ ≈ I, the Jacobian-free gradient

    return hook
