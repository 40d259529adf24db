"""Analysis at scale: `decay` and `summarize` on 1M and 10M synthetic records with the real schema.

Records are built as `load_runs` returns them (categorical run / layer / quantity / status, Int64 iteration),
with the real mix of quantities per step and layer (grad/mu t = 0..T, grad/x and grad/z t = 1..T, the forward
diagnostics, grad/x_total, grad/params, loss, lr, step_time). Reported: seconds (best of --repeat) and the peak
Python-heap memory of each stage (tracemalloc), with the string columns held as categoricals (load_runs) and
as plain `str` columns (load_records). Target (analysis issue): 10M records, decay + summary ≤ 5 s.

    python -m benchmarks.analysis_scale             # 1M and 10M records
    python -m benchmarks.analysis_scale --smoke     # 20k records, seconds
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import pandas as pd

from benchmarks.common import write_json
from gradlab.analysis import decay, summarize

T = 8
LAYOUTS = ("categorical", "str")  # how the string columns are held
PER_LAYER = [("grad/mu", 0), ("grad/x", 1), ("grad/z", 1), ("loglik", 0), ("entropy", 1), ("shift", 1),
             ("similarity", 0)]
ONCE_PER_LAYER = ["grad/x_total", "feature_norm"]
PER_STEP = [("backbone", "grad/params"), ("em", "grad/params"), ("head", "grad/params"), ("", "loss"),
            ("", "lr"), ("", "step_time")]


def step_template(layers: int) -> pd.DataFrame:
    """The rows one recorded step writes (layer code, iteration or −1, quantity) for `layers` EM layers."""
    rows = []
    for layer in range(layers):
        name = f"head.ema{layer}.em"
        rows += [(name, -1, q) for q in ONCE_PER_LAYER]
        rows += [(name, t, q) for q, start in PER_LAYER for t in range(start, T + 1)]
    rows += [(layer, -1, q) for layer, q in PER_STEP]
    return pd.DataFrame(rows, columns=["layer", "iteration", "quantity"])


def synthetic_records(n_records: int, runs: int = 20, layers: int = 2, seed: int = 0) -> pd.DataFrame:
    """About `n_records` rows: `runs` runs × as many steps as it takes; grad/x decays geometrically with a
    per-run ρ, a few exact zeros and no_grad rows (the first iteration of every 10th run)."""
    rng = np.random.default_rng(seed)
    template = step_template(layers)
    steps = max(1, n_records // (runs * len(template)))
    n = runs * steps * len(template)
    tile = np.tile(np.arange(len(template)), runs * steps)
    run = np.repeat(np.arange(runs), steps * len(template))
    step = np.tile(np.repeat(np.arange(steps), len(template)), runs)
    it = template["iteration"].to_numpy()[tile]
    rho = rng.uniform(0.2, 1.1, runs)[run]
    value = np.where(it >= 0, rho ** (T - np.maximum(it, 0)), 1.0) * rng.lognormal(0, 0.3, n)
    value[rng.random(n) < 1e-4] = 0.0
    status = np.zeros(n, dtype=np.int8)
    no_grad = (run % 10 == 0) & (it == 1) & template["quantity"].str.startswith("grad/").to_numpy()[tile]
    status[no_grad], value[no_grad] = 2, np.nan
    layer = pd.Categorical(template["layer"])
    quantity = pd.Categorical(template["quantity"])
    return pd.DataFrame({
        "run": pd.Categorical.from_codes(run, [f"run{i:03d}" for i in range(runs)]),
        "step": step.astype(np.int64),
        "layer": pd.Categorical.from_codes(layer.codes[tile], layer.categories),
        "iteration": pd.arrays.IntegerArray(np.maximum(it, 0).astype(np.int64), it < 0),
        "quantity": pd.Categorical.from_codes(quantity.codes[tile], quantity.categories),
        "value": value,
        "status": pd.Categorical.from_codes(status, ["ok", "nonfinite", "no_grad", "unused"]),
        "rank": np.zeros(n, dtype=np.int64),
    })


def measure(fn, repeat: int):
    """(result, best seconds, peak traced bytes of one call)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, min(times), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="one size of 20k records, one repeat")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.repeat = [2e4], 1
    results = []
    print(f"{'records':>11} {'strings':>11} {'series':>9} {'decay s':>8} {'summary s':>10} {'total s':>8} "
          f"{'frame MB':>9} {'peak decay MB':>14} {'peak summary MB':>16}")
    for size in args.sizes:
        for layout in LAYOUTS:
            frame = synthetic_records(int(size))
            if layout == "str":  # as gradlab.load_records returns them (load_runs makes them categorical)
                frame = frame.astype({c: str for c in ("run", "layer", "quantity", "status")})
            d, t_decay, m_decay = measure(lambda f=frame: decay(f), args.repeat)
            s, t_sum, m_sum = measure(lambda d=d: summarize(d), args.repeat)
            row = {"records": len(frame), "strings": layout, "series": len(d), "summary_rows": len(s),
                   "decay_s": t_decay, "summary_s": t_sum, "total_s": t_decay + t_sum,
                   "frame_mb": frame.memory_usage(deep=True).sum() / 2**20, "peak_decay_mb": m_decay / 2**20,
                   "peak_summary_mb": m_sum / 2**20}
            results.append(row)
            print(f"{row['records']:>11,} {layout:>11} {row['series']:>9,} {t_decay:>8.2f} {t_sum:>10.2f} "
                  f"{row['total_s']:>8.2f} {row['frame_mb']:>9.0f} {row['peak_decay_mb']:>14.0f} "
                  f"{row['peak_summary_mb']:>16.0f}")
    if not args.smoke:
        print("wrote", write_json("analysis_scale", {"T": T, "repeat": args.repeat, "results": results}))


if __name__ == "__main__":
    main()
