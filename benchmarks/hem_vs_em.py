"""HEM vs EM: forward+backward time and memory of an HEMLayer (η = 0.5) over an EMLayer with the same bases.

Both layers run in one process on the same input and output gradient, interleaved: each round times one
forward+backward of each (the order flips every round). Reported: the median time per layer, the median over
rounds of the ratio HEM / EM within a round (with its quartiles: the spread that machine load leaves), and the
memory ratios. Memory: on CUDA the peak of `torch.cuda.max_memory_allocated` above what was allocated before
the forward (reset per measurement); on every device the bytes autograd saves for backward, counted with
`torch.autograd.graph.saved_tensors_hooks` once per storage (views of one storage, such as the per-iteration
aliases X^(t) of the input, count once), with and without the input's storage ("w/o x"). Both layers run in
eval mode, so the moving-average update of the bases (the same for both) is left out. On Linux the CPU allocator
is held steady first (`steady_malloc`; `--system-malloc` leaves it). Target: <= 1.02 in time and memory.

    python -m benchmarks.hem_vs_em                 # EMANet's sizes + two CPU-sized ones (~45 s, 2 CPU cores)
    python -m benchmarks.hem_vs_em --smoke         # seconds; checks that it runs
    python -m benchmarks.hem_vs_em --device cuda --threads 8
    python -m benchmarks.hem_vs_em --breakdown     # + where each layer spends its time, by op
    python -m benchmarks.hem_vs_em --system-malloc # glibc's allocator as it is: page faults, noisy ratios
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import platform
import resource
import statistics
import time

import torch

from benchmarks.common import layer_parser, median, write_json
from gradlab.layers import EMLayer, HEMLayer

# name: C channels, K bases, T iterations, an S×S map, batch B, rounds (one forward+backward per mode each)
SIZES = {
    "emanet": {"channels": 512, "bases": 64, "iterations": 3, "size": 65, "batch": 2, "rounds": 200},
    "cpu-T3": {"channels": 64, "bases": 16, "iterations": 3, "size": 16, "batch": 8, "rounds": 1000},
    "cpu-T8": {"channels": 64, "bases": 16, "iterations": 8, "size": 16, "batch": 8, "rounds": 500},
}
SMOKE = {"smoke": {"channels": 16, "bases": 4, "iterations": 2, "size": 8, "batch": 2, "rounds": 6}}
STEP_SIZE = 0.5


def steady_malloc() -> str:
    """Keep freed CPU buffers in glibc's heap: a fixed mmap threshold of 64 MB and no trimming.

    By default glibc hands blocks over its (dynamic) mmap threshold back to the kernel on free, and every later
    allocation of them touches fresh pages: at EMANet's sizes 8k-30k page faults (30-120 MB of zeroed pages,
    10-30 ms) per forward+backward, in amounts that depend on what ran before in the process. Interleaving two
    modes then couples them (the HEM layer read 1.2x slower than EM next to the reference and 1.0x next to EM).
    Returns how the allocator was left, for the table and the JSON.
    """
    if platform.system() != "Linux":
        return "system (not Linux)"
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return "system (no glibc)"
    m_trim_threshold, m_mmap_threshold = -1, -3
    for threshold in (64 * 2**20, 32 * 2**20):  # 32 MB is glibc's cap on some builds
        if libc.mallopt(m_mmap_threshold, threshold) == 1 and libc.mallopt(m_trim_threshold, 2**30) == 1:
            return f"steady (glibc mmap threshold {threshold >> 20} MB, no trim)"
    return "system (mallopt refused)"


def page_faults(call, calls: int = 3) -> float:
    """Minor page faults per call of call() (fresh pages the allocator had to map)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        call()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_input(cfg: dict, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A (B, C, S, S) input that requires grad and a fixed output gradient of the same shape."""
    gen = torch.Generator().manual_seed(seed)
    shape = (cfg["batch"], cfg["channels"], cfg["size"], cfg["size"])
    x = torch.randn(shape, generator=gen).to(device).requires_grad_()
    return x, torch.randn(shape, generator=gen).to(device)


def forward_backward(fn, x: torch.Tensor, grad: torch.Tensor) -> None:
    x.grad = None
    fn(x).backward(grad)


def time_calls(call, steps: int, device: torch.device) -> list[float]:
    """Seconds of each of `steps` calls of call() (synchronised on CUDA)."""
    times = []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        call()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def interleaved(calls: dict, rounds: int, device: torch.device) -> dict[str, list[float]]:
    """One timed call of each mode per round, cycling through every order of the modes: a burst of load on the
    shared machine hits neighbouring calls of all modes alike, and no mode always runs first."""
    orders = list(itertools.permutations(calls))
    times: dict[str, list[float]] = {m: [] for m in calls}
    for r in range(rounds):
        for mode in orders[r % len(orders)]:
            times[mode] += time_calls(calls[mode], 1, device)
    return times


def paired_ratio(num: list[float], den: list[float]) -> dict:
    """Median and quartiles of the per-round ratios num[r] / den[r]."""
    q1, q2, q3 = statistics.quantiles([a / b for a, b in zip(num, den)], n=4)
    return {"median": q2, "q1": q1, "q3": q3}


def saved_bytes(fn, x: torch.Tensor) -> tuple[int, int]:
    """Bytes autograd keeps for the backward of fn(x): every saved tensor's storage, each storage counted once;
    in all, and without the input's storage (which the network holds anyway)."""
    storages: dict[tuple, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages[(str(t.device), s.data_ptr())] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(x)
    del y
    total = sum(storages.values())
    return total, total - storages.get((str(x.device), x.untyped_storage().data_ptr()), 0)


def cuda_peak_bytes(fn, x, grad, device: torch.device) -> int | None:
    """Peak CUDA memory of one forward+backward above what was allocated before it (None off CUDA)."""
    if device.type != "cuda":
        return None
    x.grad = None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    forward_backward(fn, x, grad)
    sync(device)
    return torch.cuda.max_memory_allocated(device) - before


def breakdown(calls: dict, device: torch.device, passes: int = 5, top: int = 6) -> dict[str, dict]:
    """Per mode: total self time of all aten ops per call, and the ops with the most self time, [op, calls, ms]
    (torch.profiler; self time on the GPU on CUDA, on the CPU otherwise)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    out = {}
    for mode, call in calls.items():
        with profile(activities=activities) as prof:
            time_calls(call, passes, device)
        events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
        key = (lambda e: e.self_device_time_total) if cuda else (lambda e: e.self_cpu_time_total)
        events.sort(key=key, reverse=True)
        out[mode] = {"total_ms": sum(key(e) for e in events) / passes / 1e3,
                     "top": [[e.key, e.count // passes, key(e) / passes / 1e3] for e in events[:top]]}
    return out


def print_breakdown(title: str, ops: dict) -> None:
    print(f"\n{title}: self time per call by op (torch.profiler)")
    for mode, row in ops.items():
        top = ", ".join(f"{op[6:]} x{n} {ms:.2f}" for op, n, ms in row["top"])
        print(f"  {mode:<12} all ops {row['total_ms']:.2f} ms; {top}")


def build_pair(cfg: dict, device: torch.device) -> dict[str, torch.nn.Module]:
    em = EMLayer(cfg["channels"], cfg["bases"], cfg["iterations"])
    hem = HEMLayer(cfg["channels"], cfg["bases"], cfg["iterations"], step_size=STEP_SIZE)
    hem.bases.copy_(em.bases)  # the same starting bases
    return {"EM": em.to(device).eval(), f"HEM eta={STEP_SIZE}": hem.to(device).eval()}


def compare(name: str, cfg: dict, rounds: int, device: torch.device, profile: bool = False) -> dict:
    layers = build_pair(cfg, device)
    x, grad = make_input(cfg, device)
    calls = {m: functools.partial(forward_backward, layer, x, grad) for m, layer in layers.items()}
    for call in calls.values():  # warm-up
        time_calls(call, 3, device)
    times = interleaved(calls, rounds, device)
    faults = {m: page_faults(call) for m, call in calls.items()}
    ops = breakdown(calls, device) if profile else None  # after: the profiler's own allocations upset the heap
    saved = {m: saved_bytes(layer, x) for m, layer in layers.items()}
    peak = {m: cuda_peak_bytes(layer, x, grad, device) for m, layer in layers.items()}
    em, hem = layers
    result = {"name": name, **cfg, "rounds": rounds, "modes": {}}
    for m in layers:
        result["modes"][m] = {"median_ms": 1e3 * median(times[m]), "passes": len(times[m]),
                              "saved_mb": saved[m][0] / 2**20, "saved_without_input_mb": saved[m][1] / 2**20,
                              "cuda_peak_mb": None if peak[m] is None else peak[m] / 2**20,
                              "page_faults_per_call": faults[m]}
    result["time_ratio"] = paired_ratio(times[hem], times[em])
    result["time_ratio_of_medians"] = median(times[hem]) / median(times[em])
    result["saved_ratio"] = saved[hem][0] / saved[em][0]
    result["saved_without_input_ratio"] = saved[hem][1] / saved[em][1]
    result["cuda_peak_ratio"] = None if peak[em] is None else peak[hem] / peak[em]
    result["breakdown"] = ops
    return result


def print_table(results: list[dict], device: torch.device, malloc: str) -> None:
    cuda = device.type == "cuda"
    print(f"HEM (eta={STEP_SIZE}) vs EM, forward+backward, {device.type}, {torch.get_num_threads()} threads, "
          f"malloc {malloc}")
    head = (f"{'size':<8} {'C':>4} {'K':>3} {'T':>2} {'map':>6} {'B':>2} {'EM ms':>9} {'HEM ms':>9} {'time':>6} "
            f"{'(q1-q3)':>13} {'EM saved MB':>12} {'HEM saved MB':>13} {'saved':>6} {'w/o x':>6} {'faults/call':>12}")
    if cuda:
        head += f" {'EM peak MB':>11} {'HEM peak MB':>12} {'peak':>6}"
    print(head)
    for r in results:
        em, hem = r["modes"].values()
        hw = f"{r['size']}x{r['size']}"
        q = f"({r['time_ratio']['q1']:.3f}-{r['time_ratio']['q3']:.3f})"
        faults = f"{em['page_faults_per_call']:.0f}/{hem['page_faults_per_call']:.0f}"
        line = (f"{r['name']:<8} {r['channels']:>4} {r['bases']:>3} {r['iterations']:>2} {hw:>6} {r['batch']:>2} "
                f"{em['median_ms']:>9.3f} {hem['median_ms']:>9.3f} {r['time_ratio']['median']:>6.3f} {q:>13} "
                f"{em['saved_mb']:>12.3f} {hem['saved_mb']:>13.3f} {r['saved_ratio']:>6.3f} "
                f"{r['saved_without_input_ratio']:>6.3f} {faults:>12}")
        if cuda:
            line += f" {em['cuda_peak_mb']:>11.2f} {hem['cuda_peak_mb']:>12.2f} {r['cuda_peak_ratio']:>6.3f}"
        print(line)


def main(argv: list[str] | None = None) -> None:
    args = layer_parser(__doc__, SIZES, "rounds per size (default: its own)").parse_args(argv)
    sizes = SMOKE if args.smoke else {k: SIZES[k] for k in args.sizes}
    malloc = "system" if args.system_malloc else steady_malloc()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    results = []
    for name, cfg in sizes.items():
        results.append(compare(name, cfg, args.rounds or cfg["rounds"], device, args.breakdown))
    print_table(results, device, malloc)
    for r in results if args.breakdown else []:
        print_breakdown(r["name"], r["breakdown"])
    if not args.smoke:
        name = f"hem_vs_em_{device.type}" + ("_breakdown" if args.breakdown else "") + \
            ("_system_malloc" if args.system_malloc else "")
        path = write_json(name, {"args": vars(args), "malloc": malloc, "step_size": STEP_SIZE, "results": results})
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
