"""Unrolled EM (EMANet) and highway EM (HEMNet) attention layers, MATH.md §2–§5."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from gradlab.checks import is_int, require
from gradlab.layers.implicit import adjoint_hook
from gradlab.layers.iteration import EMIteration
from gradlab.layers.kernels import KERNELS, logits, objective, project
from gradlab.layers.trace import Trace
from gradlab.taps import tap as _tap

LAYER_KINDS = ("em", "hem")
GRAD_MODES = ("unrolled", "implicit")


@dataclass(frozen=True)
class EMSpec:
    """The settings of one unrolled EM / HEM layer, the one home of their defaults (MATH.md §2–§5), passed from
    a config through `gradlab.models.build_model` to the layer: `kind` "em" (EMANet, η = 1) or "hem" (HEMNet's
    highway step η), K `bases`, T `iterations`, `step_size` η (ignored by EM), the E-step `kernel`, the
    softmax `temperature` τ, `normalize` (P), the bases' moving-average `momentum` α, `grad_iterations`:
    None or "all" (every iteration carries gradient), or k (only the last k, MATH.md §5), and `grad_mode`:
    "unrolled" (backpropagation through the iterations that `grad_iterations` selects) or "implicit" (the
    implicit-function-theorem gradient at the fixed point, its adjoint solved in at most `implicit_iterations`
    fixed-point steps to the relative residual `implicit_tolerance`; docs/layers.md)."""

    kind: str = "hem"
    bases: int = 64
    iterations: int = 3
    step_size: float = 0.5
    kernel: str = "dot"
    temperature: float = 1.0
    normalize: bool = True
    momentum: float = 0.9
    grad_iterations: int | str | None = None
    grad_mode: str = "unrolled"
    implicit_iterations: int = 50
    implicit_tolerance: float = 1e-6

    def __post_init__(self) -> None:
        require(self.kind in LAYER_KINDS, "kind", self.kind, f"one of {', '.join(LAYER_KINDS)}")
        if self.grad_iterations == "all":
            object.__setattr__(self, "grad_iterations", None)

    def layer(self, channels: int) -> UnrolledEM:
        """The `EMLayer` or `HEMLayer` of these settings on `channels` channels (checks every value)."""
        options = {"kernel": self.kernel, "temperature": self.temperature, "normalize": self.normalize,
                   "momentum": self.momentum, "grad_iterations": self.grad_iterations, "grad_mode": self.grad_mode,
                   "implicit_iterations": self.implicit_iterations, "implicit_tolerance": self.implicit_tolerance}
        if self.kind == "em":
            return EMLayer(channels, self.bases, self.iterations, **options)
        return HEMLayer(channels, self.bases, self.iterations, self.step_size, **options)


class UnrolledEM(nn.Module):
    """T unrolled iterations of (highway) EM over the pixels of a feature map; output Z^(T) μ^(T).

    Input (B, C, H, W) → the reconstruction X̃ = Z^(T) μ^(T), same shape. The starting bases μ^(0) are the
    buffer `bases` (K, C), kept by the moving average of MATH.md §4 in training mode. `grad_iterations`
    selects how gradients flow (MATH.md §5): None = all T iterations, k = only the last k, 0 = none.
    `grad_mode="implicit"` replaces backpropagation through the iterations by the implicit-function-theorem
    gradient at the fixed point (needs grad_iterations=None and T >= 2; see `_forward_implicit`); its adjoint
    solve of the last backward is kept in `last_adjoint` = (iterations, relative residual, diverged: 1 where the
    solve diverged and the Jacobian-free gradient was used instead), 0-dim tensors.
    Set `tracing = True` to keep the detached states of each forward in `trace` (off by default: free).
    """

    def __init__(
        self,
        channels: int,
        bases: int = EMSpec.bases,
        iterations: int = EMSpec.iterations,
        step_size: float = EMSpec.step_size,
        *,
        kernel: str = EMSpec.kernel,
        temperature: float = EMSpec.temperature,
        normalize: bool = EMSpec.normalize,
        momentum: float = EMSpec.momentum,
        grad_iterations: int | None = EMSpec.grad_iterations,
        grad_mode: str = EMSpec.grad_mode,
        implicit_iterations: int = EMSpec.implicit_iterations,
        implicit_tolerance: float = EMSpec.implicit_tolerance,
    ):
        super().__init__()
        require(is_int(channels), "channels", channels, "an integer >= 1")
        require(is_int(bases), "bases", bases, "an integer >= 1")
        require(is_int(iterations), "iterations", iterations, "an integer >= 1")
        require(isinstance(step_size, (int, float)) and 0 < step_size < 2, "step_size", step_size, "in (0, 2)")
        require(kernel in KERNELS, "kernel", kernel, f"one of {', '.join(KERNELS)}")
        require(isinstance(temperature, (int, float)) and temperature > 0, "temperature", temperature, "> 0")
        require(isinstance(momentum, (int, float)) and 0 <= momentum <= 1, "momentum", momentum, "in [0, 1]")
        require(
            grad_iterations is None or (isinstance(grad_iterations, int) and 0 <= grad_iterations <= iterations),
            "grad_iterations", grad_iterations, f"None (all) or an integer in [0, iterations={iterations}]",
        )
        require(grad_mode in GRAD_MODES, "grad_mode", grad_mode, f"one of {', '.join(GRAD_MODES)}")
        require(is_int(implicit_iterations), "implicit_iterations", implicit_iterations, "an integer >= 1")
        require(isinstance(implicit_tolerance, (int, float)) and not isinstance(implicit_tolerance, bool)
                and 0 < implicit_tolerance < 1, "implicit_tolerance", implicit_tolerance, "in (0, 1)")
        if grad_mode == "implicit":
            require(grad_iterations is None, "grad_iterations", grad_iterations,
                    "None (all) with grad_mode='implicit' (grad_iterations selects among the unrolled variants)")
            require(iterations >= 2, "iterations", iterations,
                    ">= 2 with grad_mode='implicit' (the gradient at μ^(T-1) is solved through iteration T-1)")
        self.channels, self.num_bases, self.num_iterations = channels, bases, iterations
        self.step_size, self.kernel, self.temperature = float(step_size), kernel, float(temperature)
        self.normalize, self.momentum, self.grad_iterations = normalize, float(momentum), grad_iterations
        self.grad_mode, self.implicit_iterations = grad_mode, implicit_iterations
        self.implicit_tolerance = float(implicit_tolerance)
        self.last_adjoint: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.iterations = nn.ModuleList(
            EMIteration(t, self.step_size, kernel, self.temperature, normalize) for t in range(1, iterations + 1)
        )
        mu0 = torch.randn(bases, channels) * math.sqrt(2.0 / bases)  # N(0, 2/K), then P
        self.register_buffer("bases", project(mu0, normalize))
        self.tracing = False
        self.trace: Trace | None = None

    @property
    def differentiable_iterations(self) -> int:
        """How many of the last iterations carry gradient (T when grad_iterations is None)."""
        return self.num_iterations if self.grad_iterations is None else self.grad_iterations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if torch.is_autocast_enabled(x.device.type):  # EM runs in float32 under mixed precision
            with torch.autocast(x.device.type, enabled=False):
                return self._forward(x.float())
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_mode == "implicit":
            return self._forward_implicit(x)
        T, k = self.num_iterations, self.differentiable_iterations
        grad_on, first = torch.is_grad_enabled(), T - k + 1  # iterations first..T carry gradient
        tap = _tap if grad_on else _untapped  # a forward that builds no graph (validation) has nothing to record
        if k == 0:
            x = x.detach()  # the official EMANet code: nothing reaches the input through the loop
        x = tap(x, "grad/x_total", None, module=self)
        xf = x.flatten(2)  # X, (B, C, N)
        trace = self._start_trace(xf) if self.tracing else None
        with torch.set_grad_enabled(grad_on and first == 1):
            mu = self.bases.to(x.dtype, copy=True).expand(x.shape[0], -1, -1)  # copy: bases move in place
            mu = tap(mu, "grad/mu", 0, module=self, leaf=True)
        for t, cell in enumerate(self.iterations, start=1):
            with torch.set_grad_enabled(grad_on and t >= first):
                x_t = xf.view_as(xf) if torch.is_grad_enabled() else xf.detach()  # the alias X^(t)
                x_t = tap(x_t, "grad/x", t, module=self)
                mu, z = cell(x_t, mu, trace)
                mu = tap(mu, "grad/mu", t, module=self)
                z = tap(z, "grad/z", t, module=self)
            if trace is not None:
                trace.mu.append(mu.detach())
                trace.z.append(z.detach().view(*z.shape[:2], *x.shape[2:]))
        if trace is not None:
            self._finish_trace(trace, xf, mu)
        with torch.set_grad_enabled(grad_on and k > 0):
            y = torch.bmm(mu.transpose(1, 2), z).view_as(x)  # X̃ = Z^(T) μ^(T)
            y = tap(y, "grad/out", None, module=self)  # ‖∂L/∂X̃‖: the layer gain G = ‖∂L/∂X‖ / ‖∂L/∂X̃‖ (§9)
        if self.training:
            self._maintain_bases(mu)
        return y

    def _forward_implicit(self, x: torch.Tensor) -> torch.Tensor:
        """The forward of the unrolled layer (the same T iterations, the same numbers), with the gradient of the
        implicit function theorem: iterations 1..T−2 run without a graph; iteration T−1, μ^(T−1) = F(μ^(T−2), X)
        with μ^(T−2) constant, and iteration T, (μ^(T), Z^(T)) = F(μ^(T−1), X), are differentiable. The gradient v
        that reaches μ^(T−1) (through μ^(T) and through Z^(T)) is replaced by the solution u of u = J_μᵀ u + v, so
        X receives J_Xᵀ(∂L/∂μ^(T) + u) plus Z^(T)'s own part: at a fixed point this is the limit T → ∞ of
        backpropagation through all iterations. Only real gradients are tapped (grad/x_total, grad/out)."""
        T, grad_on = self.num_iterations, torch.is_grad_enabled()
        tap = _tap if grad_on else _untapped
        x = tap(x, "grad/x_total", None, module=self)
        xf = x.flatten(2)  # X, (B, C, N)
        trace = self._start_trace(xf) if self.tracing else None
        mu = self.bases.to(x.dtype, copy=True).expand(x.shape[0], -1, -1)  # copy: bases move in place
        for t, cell in enumerate(self.iterations, start=1):
            with torch.set_grad_enabled(grad_on and t >= T - 1):
                x_t = xf if torch.is_grad_enabled() else xf.detach()
                hook = None
                if t == T - 1 and x_t.requires_grad:
                    hook = adjoint_hook(cell, x_t, mu, self.implicit_iterations, self.implicit_tolerance,
                                        self._report_adjoint)
                mu, z = cell(x_t, mu, trace)
                if hook is not None:
                    mu.register_hook(hook)
            if trace is not None:
                trace.mu.append(mu.detach())
                trace.z.append(z.detach().view(*z.shape[:2], *x.shape[2:]))
        if trace is not None:
            self._finish_trace(trace, xf, mu)
        y = torch.bmm(mu.transpose(1, 2), z).view_as(x)  # X̃ = Z^(T) μ^(T)
        y = tap(y, "grad/out", None, module=self)
        if self.training:
            self._maintain_bases(mu)
        return y

    def _report_adjoint(self, iterations: torch.Tensor, residual: torch.Tensor, diverged: torch.Tensor) -> None:
        self.last_adjoint = (iterations, residual, diverged)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"input has shape {tuple(x.shape)}: expected (B, C, H, W) with C={self.channels}")
        if x.shape[1] != self.channels:
            raise ValueError(f"input has {x.shape[1]} channels: this layer was built with channels={self.channels}")

    def _start_trace(self, xf: torch.Tensor) -> Trace:
        xd = xf.detach()
        # mean_n ‖x_n‖ over the channel axis 1; square-sum-sqrt is 2.4× faster than vector_norm(dim=1) on the CPU
        feature_norm = xd.square().sum(1).sqrt_().mean()
        trace = Trace(feature_norm=feature_norm, temperature=self.temperature, x=xd)
        trace.mu.append(self.bases.to(xd.dtype, copy=True).expand(xd.shape[0], -1, -1))
        return trace

    def _finish_trace(self, trace: Trace, xf: torch.Tensor, mu: torch.Tensor) -> None:
        """ℓ^(0..T) in one call: the iterations' own E-step logits a(μ^(t-1)), and a(μ^(T))."""
        with torch.no_grad():
            trace.logits.append(logits(xf, mu, self.kernel, self.temperature))
            trace.loglik = list(objective(torch.stack(trace.logits), xf.detach(), self.kernel, self.temperature))
        trace.logits = []  # no longer needed: do not keep (T+1)·B·K·N numbers alive
        self.trace = trace

    @torch.no_grad()
    def _maintain_bases(self, mu: torch.Tensor) -> None:
        """μ^(0) ← α μ^(0) + (1 − α) P(mean_b μ^(T)), averaged over ranks; a non-finite mean is skipped."""
        mean = mu.detach().float().mean(0)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(mean)
            mean /= dist.get_world_size()
        new = self.bases * self.momentum + project(mean, self.normalize).to(self.bases.dtype) * (1 - self.momentum)
        self.bases.copy_(torch.where(torch.isfinite(mean).all(), new, self.bases))  # no host sync

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, bases={self.num_bases}, iterations={self.num_iterations}, "
            f"step_size={self.step_size}, kernel={self.kernel!r}, temperature={self.temperature}, "
            f"normalize={self.normalize}, grad_iterations={self.grad_iterations}, grad_mode={self.grad_mode!r}"
            + (f", implicit_iterations={self.implicit_iterations}, implicit_tolerance={self.implicit_tolerance}"
               if self.grad_mode == "implicit" else "")
        )


def _untapped(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return tensor


class EMLayer(UnrolledEM):
    """EMANet's unrolled EM attention: the HEM update with step size η = 1."""

    def __init__(self, channels: int, bases: int = EMSpec.bases, iterations: int = EMSpec.iterations, **kwargs):
        if "step_size" in kwargs:
            raise TypeError("EMLayer has no step_size (it is EM, η = 1): use HEMLayer(step_size=...)")
        super().__init__(channels, bases, iterations, 1.0, **kwargs)


class HEMLayer(UnrolledEM):
    """HEMNet's highway EM: each M-step is the damped step μ ← P((1 − η) μ + η P(m)), 0 < η < 2."""

    def __init__(self, channels: int, bases: int = EMSpec.bases, iterations: int = EMSpec.iterations,
                 step_size: float = EMSpec.step_size, **kwargs):
        super().__init__(channels, bases, iterations, step_size, **kwargs)

