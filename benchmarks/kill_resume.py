"""Kill -9 at random moments: SIGKILL a tiny training run, resume it, and check the run directory.

Each trial starts `gradlab train demo` on a tiny config as a subprocess and sends it SIGKILL at a moment drawn
from a seeded RNG: during start-up (imports), just after the run directory appears, during training, while a
records part, metrics.parquet or the checkpoint is being written, or just after a checkpoint (the last one
included: the run is then finishing). Some trials kill the resumed run a second time. Then `--resume` runs
to completion and the run directory is checked:

- meta.json says complete; checkpoints/last.pt loads with torch.load(weights_only=True) at the last step;
- every records/*.parquet part reads with pyarrow; hidden `.NAME.tmp` leftovers are never read as data
  (`part_files` skips them, `load_records` reads without a warning), a planted half-written
  `.part-r000-999999.parquet.tmp` included;
- `load_records` gives the recorded steps of the schedule exactly (every k-th step from 0, no gap, no
  duplicate), the same (layer, quantity, iteration) rows for every step, no duplicate row;
- metrics.parquet has each step's loss once and each validation once;
- records, metrics and parameters equal those of an uninterrupted run of the same config (in this process).

    python -m benchmarks.kill_resume              # 12 trials (~3-4 min on 2 busy CPU cores)
    python -m benchmarks.kill_resume --smoke      # 2 trials of a 12-step run; checks that it runs
    python -m benchmarks.kill_resume --trials 30 --seed 1 --keep runs/kill-resume

Exit status 1 when any trial fails a check (this is a correctness benchmark; it never asserts on time).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import torch

from benchmarks.common import write_json
from gradlab.records import KEY, load_records, part_files
from gradlab.train import RunDirectory, load_config, train

ROOT = Path(__file__).resolve().parents[1]
# what a first kill aims at; a second kill (of the resumed run) aims at one of SECOND_KINDS
KINDS = ("start-up", "run dir created", "training", "records flush", "metrics write", "checkpoint write",
         "after checkpoint")
SECOND_KINDS = ("timed", "records flush", "checkpoint write", "after checkpoint")  # timed: start-up or training
TMP_PHASE = {".last.pt.tmp": "checkpoint write", ".metrics.parquet.tmp": "metrics write",
             ".meta.json.tmp": "meta write", ".config.toml.tmp": "config write"}
POLL_S = 0.001


def overrides(args) -> list[str]:
    return [f"data.size={args.size}", f"data.train_length={args.train_length}", f"data.val_length={args.val_length}",
            "train.batch_size=4", f"train.steps={args.steps}", "model.bases=4", f"model.iterations={args.iterations}",
            f"train.eval_every={args.eval_every}", f"train.checkpoint_every={args.checkpoint_every}",
            f"record.every={args.every}", f"record.flush_every={args.flush_every}", "train.lr=0.01", "seed=0"]


def command(out: Path, sets: list[str], resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "gradlab", "train", "--quiet", "--out", str(out)]
    if resume:
        return [*cmd, "--resume"]
    return [*cmd, "demo", *(a for s in sets for a in ("--set", s))]


class Tracker:
    """Polls a run directory: checkpoints completed, records parts written and temp files seen since launch."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir
        self.ckpt = run_dir / "checkpoints" / "last.pt"
        self.ckpt_mtime = self._mtime()
        self.parts0 = set(self._parts())
        self.checkpoints = 0  # completed since launch
        self.parts = 0  # new records parts since launch

    def _mtime(self) -> int | None:
        try:
            return self.ckpt.stat().st_mtime_ns
        except OSError:
            return None

    def _parts(self) -> list[str]:
        try:
            return [e.name for e in os.scandir(self.dir / "records") if e.name.startswith("part-")]
        except OSError:
            return []

    def poll(self) -> None:
        mtime = self._mtime()
        if mtime is not None and mtime != self.ckpt_mtime:
            self.ckpt_mtime, self.checkpoints = mtime, self.checkpoints + 1
        self.parts = len(set(self._parts()) - self.parts0)

    def tmp_files(self, sub: str | None = None) -> list[Path]:
        folder = self.dir / sub if sub else self.dir
        if not folder.exists():
            return []
        return sorted(folder.glob(".*.tmp") if sub else folder.rglob(".*.tmp"))

    def exists(self, name: str) -> bool:
        return (self.dir / name).exists()


@dataclass
class Aim:
    """When to kill: `kind`, a delay after the trigger, the n-th event the trigger waits for."""

    kind: str
    delay: float = 0.0
    n: int = 1

    def label(self) -> str:
        return f"{self.kind} #{self.n}" if self.kind in ("records flush", "metrics write", "checkpoint write",
                                                         "after checkpoint") else self.kind


def fired(aim: Aim, tr: Tracker, elapsed: float) -> bool:
    """True when the moment `aim` describes has come (events missed between polls fire just after)."""
    if aim.kind in ("start-up", "timed"):
        return elapsed >= aim.delay
    if aim.kind == "run dir created":
        return tr.exists("config.toml")
    if aim.kind == "training":
        return tr.exists("meta.json")
    if aim.kind == "records flush":
        return tr.parts >= aim.n or (tr.parts == aim.n - 1 and bool(tr.tmp_files("records")))
    if aim.kind in ("metrics write", "checkpoint write"):
        name = ".metrics.parquet.tmp" if aim.kind == "metrics write" else "checkpoints/.last.pt.tmp"
        return tr.checkpoints >= aim.n or (tr.checkpoints == aim.n - 1 and tr.exists(name))
    if aim.kind == "after checkpoint":
        return tr.checkpoints >= aim.n
    raise ValueError(aim.kind)


@dataclass
class Launch:
    aim: str
    killed: bool
    at_s: float
    rc: int | None
    phase: str
    ckpt_step: int | None = None
    recorded_to: int | None = None
    tmp_left: list[str] = field(default_factory=list)
    stderr: str = ""
    config_s: float | None = None  # when config.toml appeared (a fresh launch that was watched)


def checkpoint_step(run_dir: Path) -> int | None:
    try:
        return int(torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["step"])
    except Exception:
        return None


def last_recorded_step(run_dir: Path) -> int | None:
    steps = []
    for part in sorted((run_dir / "records").glob("part-*.parquet")):
        try:
            steps.append(pq.read_table(part, columns=["step"]).column("step").to_pylist()[-1])
        except Exception:
            pass
    return max(steps) if steps else None


def phase_of(tr: Tracker, fresh: bool, steps: int) -> str:
    """Where the killed process was, from what it left on disk."""
    tmps = tr.tmp_files()
    if tmps:
        return ", ".join(sorted({TMP_PHASE.get(p.name, "records flush") for p in tmps})) + " (temp file left)"
    if fresh and not tr.exists("config.toml"):
        return "start-up (no run dir yet)"
    if fresh and not tr.exists("meta.json"):
        return "creating the run dir"
    if tr.checkpoints == 0 and tr.parts == 0:
        return "start-up (nothing written yet)"
    if checkpoint_step(tr.dir) == steps:
        return "finishing (after the last checkpoint)"
    return "training"


def launch(run_dir: Path, cmd: list[str], aim: Aim | None, args, timeout: float = 300.0) -> Launch:
    """Run `cmd`; when `aim` is given, SIGKILL it at that moment. Returns what happened."""
    fresh = "--resume" not in cmd
    tr = Tracker(run_dir)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                stdin=subprocess.DEVNULL)
        t0 = time.monotonic()
        armed_at = None  # when the trigger fired; the kill follows after aim.delay (0 for start-up)
        killed, config_s = False, None
        while proc.poll() is None:
            elapsed = time.monotonic() - t0
            if elapsed > timeout:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"{' '.join(cmd)} ran past {timeout} s")
            if aim is not None:
                tr.poll()
                if fresh and config_s is None and tr.exists("config.toml"):
                    config_s = elapsed
                if armed_at is None and fired(aim, tr, elapsed):
                    armed_at = elapsed
                if armed_at is not None and elapsed >= armed_at + (0 if aim.kind in ("start-up", "timed")
                                                                   else aim.delay):
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    killed = True
                    break
            time.sleep(POLL_S if aim is not None else 0.05)
        at = time.monotonic() - t0
        rc = proc.wait()
        err.seek(0)
        stderr = err.read()
    tr.poll()
    if killed:
        phase = phase_of(tr, fresh, args.steps)
    else:
        phase = f"exited before the kill (rc={rc})" if aim is not None else f"ran to the end (rc={rc})"
    return Launch(aim.label() if aim else "-", killed, at, None if killed else rc, phase, checkpoint_step(run_dir),
                  last_recorded_step(run_dir), [str(p.relative_to(run_dir)) for p in tr.tmp_files()], stderr[-2000:],
                  config_s)


def draw_aim(kind: str, rng: random.Random, args, boot_s: float, train_s: float, checkpoints: int,
             parts: int) -> Aim:
    if kind in ("start-up", "timed"):
        return Aim(kind, rng.uniform(0.0, boot_s))
    if kind == "run dir created":
        return Aim(kind, rng.uniform(0.0, 0.02))
    if kind == "training":
        return Aim(kind, rng.uniform(0.0, train_s))
    if kind == "records flush":
        return Aim(kind, 0.0, rng.randint(1, max(1, parts)))
    if kind in ("metrics write", "checkpoint write"):
        return Aim(kind, 0.0, rng.randint(1, max(1, checkpoints)))
    return Aim(kind, rng.uniform(0.0, 0.005), rng.randint(1, max(1, checkpoints)))  # after checkpoint


# -- checks ------------------------------------------------------------------------------------------------
def check_run(run_dir: Path, ref: dict, args) -> tuple[dict[str, str], int, float]:
    """Every check on a finished run directory: {check: "" (ok) or what is wrong}, rows checked, max |diff|."""
    problems: dict[str, str] = {}
    run = RunDirectory(run_dir)
    status = run.meta().get("status")
    problems["meta complete"] = "" if status == "complete" else f"status {status!r}"
    try:
        state = torch.load(run.checkpoint, map_location="cpu", weights_only=True)
        problems["checkpoint"] = "" if state["step"] == args.steps else f"step {state['step']}"
    except Exception as err:
        state = None
        problems["checkpoint"] = f"{type(err).__name__}: {err}"
    unreadable = []
    for part in sorted((run_dir / "records").glob("*.parquet")):
        try:
            pq.read_table(part)
        except Exception as err:
            unreadable.append(f"{part.name}: {err}")
    problems["parts read"] = "; ".join(unreadable)
    hidden = [p.name for p in part_files(run_dir) if p.name.startswith(".")]
    problems["tmp not data"] = f"read as parts: {hidden}" if hidden else ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = load_records(run_dir)
    if caught:
        problems["tmp not data"] += "; ".join(str(w.message) for w in caught)
    problems["records"], rows = check_records(frame, ref["records"], args)
    problems["metrics"] = check_metrics(pd.read_parquet(run.metrics_path), args)

    diff = 0.0
    a = frame.query("quantity != 'step_time'").drop(columns="run").reset_index(drop=True)
    try:
        pd.testing.assert_frame_equal(a, ref["records"], rtol=1e-6)
        m = pd.read_parquet(run.metrics_path)
        pd.testing.assert_frame_equal(m, ref["metrics"], rtol=1e-6)
        if state is not None:
            diff = max(float((state["model"][k].double() - v.double()).abs().max()) if v.numel() else 0.0
                       for k, v in ref["model"].items())
        problems["same as straight run"] = "" if diff <= 1e-6 else f"parameters differ by {diff:.2e}"
    except AssertionError as err:
        problems["same as straight run"] = str(err).splitlines()[0][:200]
    return problems, rows, diff


def _row_sets(frame: pd.DataFrame) -> pd.Series:
    """step → the frozenset of (layer, quantity, iteration) recorded at that step."""
    rows = pd.DataFrame({"step": frame.step, "key": list(zip(frame.layer, frame.quantity,
                                                            frame.iteration.astype("float").fillna(-1)))})
    return rows.groupby("step").key.agg(frozenset)


def check_records(frame: pd.DataFrame, ref: pd.DataFrame, args) -> tuple[str, int]:
    schedule = list(range(0, args.steps, args.every))
    steps = sorted(frame.step.unique())
    if steps != schedule:
        missing, extra = sorted(set(schedule) - set(steps)), sorted(set(steps) - set(schedule))
        return f"recorded steps differ from the schedule: missing {missing}, extra {extra}", len(frame)
    if frame.duplicated(KEY).any():
        return f"{int(frame.duplicated(KEY).sum())} duplicate rows", len(frame)
    keys, expected = _row_sets(frame), _row_sets(ref)  # per step: some quantities (σ_t) have their own schedule
    step_time = {("", "step_time", -1.0)}  # the straight run's reference has no wall times
    wrong = [int(s) for s, k in keys.items() if k | step_time != expected.get(s, frozenset()) | step_time]
    if wrong:
        return f"steps {wrong[:5]} hold another row set than the straight run's", len(frame)
    return "", len(frame)


def check_metrics(metrics: pd.DataFrame, args) -> str:
    evals = [s - 1 for s in range(1, args.steps + 1) if s % args.eval_every == 0 or s == args.steps]
    miou = sorted(metrics[metrics.name == "miou"].step)
    if miou != evals:
        return f"validations at steps {miou}, expected {evals} (each once)"
    loss = sorted(metrics[metrics.name == "loss"].step)
    if loss != list(range(args.steps)):
        return f"loss rows at {len(loss)} steps ({len(set(loss))} distinct), expected {args.steps}"
    return ""


# -- trials ------------------------------------------------------------------------------------------------
def reference(run_dir: Path, args) -> tuple[dict, float]:
    """An uninterrupted run in this process: what every resumed run must equal. Returns it and its wall time."""
    t0 = time.perf_counter()
    run = train(load_config("demo", overrides(args)), run_dir, progress=False)
    elapsed = time.perf_counter() - t0
    records = load_records(run.path).query("quantity != 'step_time'").drop(columns="run").reset_index(drop=True)
    model = torch.load(run.checkpoint, map_location="cpu", weights_only=True)["model"]
    return {"records": records, "metrics": pd.read_parquet(run.metrics_path), "model": model}, elapsed


def plant_decoy(run_dir: Path) -> None:
    """What a kill in the middle of a records flush leaves: the first half of a part under its temp name. The
    checks must not read it (kills rarely leave one that the resumed run does not overwrite)."""
    parts = sorted((run_dir / "records").glob("part-*.parquet"))
    if parts:
        data = parts[-1].read_bytes()
        (run_dir / "records" / ".part-r000-999999.parquet.tmp").write_bytes(data[: len(data) // 2])


def run_trial(i: int, kind: str, rng: random.Random, work: Path, ref: dict, args, timing: dict) -> dict:
    run_dir = work / f"trial-{i:02d}"
    checkpoints = -(-args.steps // args.checkpoint_every)
    parts = -(-len(range(0, args.steps, args.every)) // args.flush_every)
    aim = draw_aim(kind, rng, args, timing["boot_s"], timing["train_s"], checkpoints, parts)
    launches = [launch(run_dir, command(run_dir, overrides(args), False), aim, args)]
    if launches[0].config_s is not None:
        timing["boot_s"] = launches[0].config_s  # how long start-up takes on this machine now
    restarted = not (run_dir / "config.toml").exists()
    if restarted:  # killed before the run directory was written: nothing to resume; start again, as a user would
        launches.append(launch(run_dir, command(run_dir, overrides(args), False), None, args))
    if args.second_kill > 0 and rng.random() < args.second_kill:
        start = checkpoint_step(run_dir) or 0
        left = -(-(args.steps - start) // args.checkpoint_every)
        second_kind = rng.choice(SECOND_KINDS if left else ("timed",))
        second = draw_aim(second_kind, rng, args, timing["boot_s"] + timing["train_s"], timing["train_s"], left,
                          max(1, parts * (args.steps - start) // args.steps))
        launches.append(launch(run_dir, command(run_dir, [], True), second, args))
    final = launch(run_dir, command(run_dir, [], True), None, args)
    launches.append(final)
    tmp_left = [str(p.relative_to(run_dir)) for p in sorted(run_dir.rglob(".*.tmp"))]
    plant_decoy(run_dir)
    failed_runs = [la for la in launches if not la.killed and la.rc != 0]
    if failed_runs:
        problems = {"resume": "; ".join(f"exit status {la.rc}: {la.stderr.strip().splitlines()[-1:]}"
                                        for la in failed_runs)}
        rows, diff = 0, float("nan")
    else:
        problems, rows, diff = check_run(run_dir, ref, args)
    failed = {k: v for k, v in problems.items() if v}
    return {
        "trial": i,
        "aim": aim.label(),
        # every launch that was aimed at (the first, maybe the first resume): killed, or it exited first
        "kills": [{"aim": la.aim, "killed": la.killed, "at_s": round(la.at_s, 3), "phase": la.phase,
                   "checkpoint_step": la.ckpt_step, "recorded_to_step": la.recorded_to, "tmp_left": la.tmp_left}
                  for la in launches if la.aim != "-"],
        "resumes": len(launches) - 1 - restarted,
        "restarted_fresh": restarted,
        "resume_seconds": round(final.at_s, 2),
        "resume_ok": final.rc == 0,
        "rows_checked": rows,
        "max_param_diff": diff,
        "tmp_left_at_end": tmp_left,
        "checks": {k: ("ok" if not v else v) for k, v in problems.items()},
        "ok": not failed,
    }


def print_table(results: list[dict]) -> None:
    print(f"{'trial':>5}  {'aim':<20} {'kill 1 s':>8}  {'phase 1':<38} {'kill 2 s':>8}  {'phase 2':<38} "
          f"{'resumes':>7} {'resume ok':>9} {'rows checked':>12} {'tmp left':>8}  result")
    for r in results:
        k = r["kills"] + [None, None]  # aimed launches: [first, second]
        cells = [(f"{x['at_s']:.2f}" if x["killed"] else "-", x["phase"] + ("" if x["recorded_to_step"] is None else
                                                     f" @{x['recorded_to_step']}")) if x else ("-", "-") for x in k[:2]]
        bad = "FAIL " + "; ".join(f"{c}: {v}" for c, v in r["checks"].items() if v != "ok")
        print(f"{r['trial']:>5}  {r['aim']:<20} {cells[0][0]:>8}  {cells[0][1]:<38.38} {cells[1][0]:>8}  "
              f"{cells[1][1]:<38.38} {r['resumes']:>7} {'yes' if r['resume_ok'] else 'NO':>9} "
              f"{r['rows_checked']:>12} {len(r['tmp_left_at_end']):>8}  {'ok' if r['ok'] else bad}")


def summarise(results: list[dict], elapsed: float) -> dict:
    kills = [k for r in results for k in r["kills"] if k["killed"]]
    return {
        "trials": len(results),
        "passed": sum(r["ok"] for r in results),
        "kills": len(kills),
        "second_kills": sum(len(r["kills"]) == 2 and r["kills"][1]["killed"] for r in results),
        "aimed_but_exited_first": sum(not k["killed"] for r in results for k in r["kills"]),
        "phases": dict(Counter(k["phase"].split(" (")[0] for k in kills)),
        "kills_leaving_tmp_files": sum(bool(k["tmp_left"]) for k in kills),
        "tmp_files_left_at_end": sum(len(r["tmp_left_at_end"]) for r in results),
        "resume_runs": sum(r["resumes"] for r in results),
        "rows_checked": sum(r["rows_checked"] for r in results),
        "max_param_diff": max((r["max_param_diff"] for r in results if r["rows_checked"]), default=float("nan")),
        "seconds": round(elapsed, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--every", type=int, default=2, help="record.every")
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=30)
    parser.add_argument("--flush-every", type=int, default=3, help="record.flush_every")
    parser.add_argument("--iterations", type=int, default=3, help="model.iterations")
    parser.add_argument("--size", type=int, default=32, help="data.size")
    parser.add_argument("--train-length", type=int, default=32)
    parser.add_argument("--val-length", type=int, default=16)
    parser.add_argument("--second-kill", type=float, default=0.5, help="chance that the resumed run is killed too")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each run")
    parser.add_argument("--keep", default=None, help="keep the run directories in this folder")
    parser.add_argument("--smoke", action="store_true", help="2 trials of a 12-step run, no second kill")
    args = parser.parse_args()
    if args.smoke:
        args.trials, args.steps, args.every, args.checkpoint_every, args.eval_every = 2, 12, 1, 4, 6
        args.flush_every, args.iterations, args.train_length, args.val_length = 2, 2, 16, 8
        args.second_kill = 0.0
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="kill-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        ref, train_s = reference(work / "straight", args)
        # start-up = imports + data + model before the run directory appears: about 2 s here; learnt as it goes
        timing = {"boot_s": 2.0, "train_s": train_s}
        kinds = list(KINDS) * -(-args.trials // len(KINDS))
        rng.shuffle(kinds)
        if args.smoke:
            kinds = ["run dir created", "checkpoint write"]
        results = []
        for i, kind in enumerate(kinds[:args.trials]):
            results.append(run_trial(i, kind, rng, work, ref, args, timing))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    print(f"kill -9 and resume: {args.trials} trials of `gradlab train demo` ({args.steps} steps, checkpoint every "
          f"{args.checkpoint_every}, record every {args.every}, flush every {args.flush_every}), seed {args.seed}, "
          f"{args.threads} thread(s) per run")
    print_table(results)
    summary = summarise(results, elapsed)
    print(f"summary: {summary['passed']}/{summary['trials']} trials passed every check; {summary['kills']} kills "
          f"({summary['second_kills']} during a resume; {summary['aimed_but_exited_first']} aimed runs exited before "
          f"their kill), "
          f"{summary['resume_runs']} resume runs, {summary['rows_checked']} record rows checked, "
          f"{summary['kills_leaving_tmp_files']} kills left a temp file ({summary['tmp_files_left_at_end']} still "
          f"there at the end, never read as data), max parameter difference to the straight run "
          f"{summary['max_param_diff']:.1e}, {summary['seconds']} s")
    print("phases killed: " + ", ".join(f"{p} {n}" for p, n in sorted(summary["phases"].items())))
    if not args.smoke:
        path = write_json("kill_resume", {"args": vars(args), "summary": summary, "trials": results})
        print(f"wrote {path}")
    return 0 if summary["passed"] == summary["trials"] else 1


if __name__ == "__main__":
    sys.exit(main())
