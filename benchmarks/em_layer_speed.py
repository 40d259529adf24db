"""EM layer speed: EMLayer / HEMLayer against EMANet's bmm/permute formulation and against torch.bmm's throughput.

The reference is EMANet's `EMAU.forward` loop (x (B, C, N), μ (B, C, K), z = softmax(xᵀμ) over K,
z_ = z / (1e-6 + Σ_n z), μ = l2norm(x z_)) with gradients through every iteration, plus HEMNet's highway
μ = l2norm((1 − η) μ + η μ_new) for η ≠ 1: the same math as the layer. Both must give the same output and the
same input gradient (allclose) before anything is timed. Then, interleaved in one process (each round times one
call of each, cycling through every order): the layer's forward+backward, the reference's, and the "bmm floor":
the 6T + 2 torch.bmm calls that the layer's forward+backward performs (forward: T logits, T M-steps, the
reconstruction; backward: the gradient of each with respect to each input that needs one — μ^(0) needs none),
with the same shapes and transposed operands, and nothing else. Matmul FLOPs: 2·B·N·K·C per bmm, so
(6T + 2)·2·B·N·K·C per forward+backward. Reported: median times, layer / reference (median of the per-round
ratios), achieved GFLOP/s (FLOPs / median time) and the fraction of torch.bmm's throughput (median of the
per-round floor time / layer time). Layers run in eval mode (the reference keeps no moving average). On Linux
the CPU allocator is held steady first (see `hem_vs_em.steady_malloc`; `--system-malloc` leaves it).
Target: at least as fast as the reference.

    python -m benchmarks.em_layer_speed                # EMANet's + two CPU sizes, η = 1 and 0.5 (~45 s)
    python -m benchmarks.em_layer_speed --smoke        # seconds; checks that it runs
    python -m benchmarks.em_layer_speed --device cuda --threads 8
    python -m benchmarks.em_layer_speed --breakdown    # + where layer and reference spend their time, by op
    python -m benchmarks.em_layer_speed --system-malloc    # glibc's allocator as it is: page faults, noisy
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import layer_parser, median, write_json
from benchmarks.hem_vs_em import (
    SIZES,
    SMOKE,
    breakdown,
    forward_backward,
    interleaved,
    make_input,
    page_faults,
    paired_ratio,
    print_breakdown,
    steady_malloc,
    time_calls,
)
from gradlab.layers import EMLayer, HEMLayer

MODES = ("layer", "reference", "bmm floor")


def l2norm(v: torch.Tensor, dim: int) -> torch.Tensor:
    """EMANet's `_l2norm`: v / (1e-6 + ‖v‖) along `dim`."""
    return v / (1e-6 + v.norm(dim=dim, keepdim=True))


class Reference(nn.Module):
    """EMANet's EM loop (bmm/permute, μ as (B, C, K)) with gradients through all iterations, + HEM's highway."""

    def __init__(self, bases: torch.Tensor, iterations: int, step_size: float = 1.0):
        super().__init__()
        self.register_buffer("mu", bases.t().unsqueeze(0).clone())  # (1, C, K) as in EMANet
        self.iterations, self.step_size = iterations, step_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.view(b, c, h * w)  # b * c * n
        mu = self.mu.repeat(b, 1, 1)  # b * c * k
        for _ in range(self.iterations):
            x_t = x.permute(0, 2, 1)  # b * n * c
            z = torch.bmm(x_t, mu)  # b * n * k
            z = F.softmax(z, dim=2)
            z_ = z / (1e-6 + z.sum(dim=1, keepdim=True))
            m = l2norm(torch.bmm(x, z_), dim=1)  # b * c * k
            mu = m if self.step_size == 1.0 else l2norm((1 - self.step_size) * mu + self.step_size * m, dim=1)
        z_t = z.permute(0, 2, 1)  # b * k * n
        x = mu.matmul(z_t)  # b * c * n
        return x.view(b, c, h, w)


class MatmulFloor:
    """The torch.bmm calls of the layer's forward+backward, on operands of the same shapes and layouts."""

    def __init__(self, cfg: dict, device: torch.device):
        B, C, K, T = cfg["batch"], cfg["channels"], cfg["bases"], cfg["iterations"]
        N = cfg["size"] ** 2
        r = torch.Generator().manual_seed(1)

        def rnd(*shape):
            return torch.randn(shape, generator=r).to(device)

        mu, x, a, dm, dy = rnd(B, K, C), rnd(B, C, N), rnd(B, K, N), rnd(B, K, C), rnd(B, C, N)
        xt = x.transpose(1, 2)
        calls = {  # name: (A, B, how many per forward+backward)
            "logits": (mu, x, T),  # a = μ X
            "logits dX": (mu.transpose(1, 2), a, T),  # μᵀ da
            "logits dmu": (a, xt, T - 1),  # da Xᵀ (μ^(0) needs no gradient)
            "M-step": (a, xt, T),  # Z Xᵀ
            "M-step dZ": (dm, x, T),  # dm X
            "M-step dX": (a.transpose(1, 2), dm, T),  # Zᵀ dm
            "reconstruction": (mu.transpose(1, 2), a, 1),  # μᵀ Z
            "reconstruction dmu": (dy, a.transpose(1, 2), 1),  # dy Zᵀ
            "reconstruction dZ": (mu, dy, 1),  # μ dy
        }
        self.calls = [(lhs, rhs) for lhs, rhs, n in calls.values() for _ in range(n)]
        self.flops_per_bmm = 2 * B * N * K * C

    @property
    def flops(self) -> int:
        return len(self.calls) * self.flops_per_bmm

    def __call__(self) -> None:
        for lhs, rhs in self.calls:
            torch.bmm(lhs, rhs)


def check_same(layer: nn.Module, ref: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> dict:
    """Max differences of output and input gradient; raises if they are not allclose."""
    outs, grads = [], []
    for module in (layer, ref):
        x.grad = None
        y = module(x)
        y.backward(grad)
        outs.append(y.detach())
        grads.append(x.grad.clone())
    tol = {"rtol": 1e-4, "atol": 1e-5} if x.dtype == torch.float32 else {"rtol": 1e-7, "atol": 1e-9}
    for what, (u, v) in (("output", outs), ("input gradient", grads)):
        if not torch.allclose(u, v, **tol):
            raise SystemExit(f"layer and reference differ in the {what}: max |diff| = {(u - v).abs().max():.3g}")
    return {"max_abs_diff_output": (outs[0] - outs[1]).abs().max().item(),
            "max_abs_diff_grad": (grads[0] - grads[1]).abs().max().item()}


def measure(name: str, cfg: dict, step_size: float, rounds: int, device: torch.device, profile: bool = False) -> dict:
    C, K, T = cfg["channels"], cfg["bases"], cfg["iterations"]
    layer = EMLayer(C, K, T) if step_size == 1.0 else HEMLayer(C, K, T, step_size=step_size)
    layer = layer.to(device).eval()
    ref = Reference(layer.bases, T, step_size).to(device)
    x, grad = make_input(cfg, device)
    same = check_same(layer, ref, x, grad)
    floor = MatmulFloor(cfg, device)

    calls = {"layer": functools.partial(forward_backward, layer, x, grad),
             "reference": functools.partial(forward_backward, ref, x, grad), "bmm floor": floor}
    for call in calls.values():  # warm-up
        time_calls(call, 3, device)
    times = interleaved(calls, rounds, device)
    faults = {m: page_faults(call) for m, call in calls.items()}
    ops = breakdown({m: calls[m] for m in ("layer", "reference")}, device) if profile else None
    med = {m: median(t) for m, t in times.items()}
    flops = floor.flops
    return {"name": name, **cfg, "step_size": step_size, "rounds": rounds, **same, "gflop": flops / 1e9,
            "modes": {m: {"median_ms": 1e3 * med[m], "passes": len(times[m]), "gflops": flops / med[m] / 1e9,
                          "page_faults_per_call": faults[m]} for m in MODES},
            "layer_over_reference": paired_ratio(times["layer"], times["reference"]),
            "layer_fraction_of_bmm": paired_ratio(times["bmm floor"], times["layer"]),
            "reference_fraction_of_bmm": paired_ratio(times["bmm floor"], times["reference"]),
            "breakdown": ops}


def print_table(results: list[dict], device: torch.device, malloc: str) -> None:
    print(f"EM layer speed, forward+backward, {device.type}, {torch.get_num_threads()} threads, malloc {malloc}; "
          f"GF/s = matmul FLOPs (6T+2)·2BNKC / median time")
    print(f"{'size':<8} {'C':>4} {'K':>3} {'T':>2} {'map':>6} {'B':>2} {'eta':>4} {'layer ms':>9} {'ref ms':>9} "
          f"{'bmm ms':>9} {'layer/ref':>9} {'layer GF/s':>10} {'ref GF/s':>9} {'bmm GF/s':>9} {'layer/bmm':>9} "
          f"{'max|dy|':>8} {'faults/call':>12}")
    for r in results:
        m = r["modes"]
        hw = f"{r['size']}x{r['size']}"
        ms = [m[mode]["median_ms"] for mode in MODES]
        gf = [m[mode]["gflops"] for mode in MODES]
        faults = f"{m['layer']['page_faults_per_call']:.0f}/{m['reference']['page_faults_per_call']:.0f}"
        print(f"{r['name']:<8} {r['channels']:>4} {r['bases']:>3} {r['iterations']:>2} {hw:>6} {r['batch']:>2} "
              f"{r['step_size']:>4g} {ms[0]:>9.3f} {ms[1]:>9.3f} {ms[2]:>9.3f} "
              f"{r['layer_over_reference']['median']:>9.3f} {gf[0]:>10.1f} {gf[1]:>9.1f} {gf[2]:>9.1f} "
              f"{r['layer_fraction_of_bmm']['median']:>9.2f} {r['max_abs_diff_output']:>8.1e} {faults:>12}")


def main(argv: list[str] | None = None) -> None:
    parser = layer_parser(__doc__, SIZES, "rounds per size (default: a third of hem_vs_em's)")
    parser.add_argument("--step-sizes", type=float, nargs="+", default=[1.0, 0.5], help="η: 1 = EM")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else {k: SIZES[k] for k in args.sizes}
    malloc = "system" if args.system_malloc else steady_malloc()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    results = [measure(name, cfg, eta, args.rounds or max(6, cfg["rounds"] // 3), device, args.breakdown)
               for name, cfg in sizes.items() for eta in args.step_sizes]
    print_table(results, device, malloc)
    for r in results if args.breakdown else []:
        print_breakdown(f"{r['name']} eta={r['step_size']:g}", r["breakdown"])
    if not args.smoke:
        name = f"em_layer_speed_{device.type}" + ("_breakdown" if args.breakdown else "") + \
            ("_system_malloc" if args.system_malloc else "")
        path = write_json(name, {"args": vars(args), "malloc": malloc, "results": results})
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
