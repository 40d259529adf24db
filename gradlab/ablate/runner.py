"""Run an ablation's trials, each as its own `gradlab train` process, `workers` at a time.

A trial whose run directory is complete is skipped; one with a checkpoint is resumed (`train --resume`); one
killed before its first checkpoint starts again. So killing `gradlab ablate` and running the same command again
continues where it stopped. Each trial's output goes to OUT/logs/NAME.log; a failed trial is reported and the
others go on. Children die with the parent (Linux: PR_SET_PDEATHSIG), so a killed ablation leaves no orphans.
SIGINT or SIGTERM passes the signal on to the running trials, which record "interrupted" (resumable), and raises
`AblationInterrupted`; a second signal, or STOP_TIMEOUT_S without an exit, kills them. `gpus` gives each running
trial its own device (CUDA_VISIBLE_DEVICES, the least busy of the list).

With an `executor` (gradlab.ablate.executors: submitit's SLURM, local or debug executors, concurrent.futures) the
trials go out as jobs instead, one job array where the executor batches. With `job_state` (the scheduler's state
of a job id, e.g. executors.slurm_state) a trial whose earlier job is still pending or running is left to it, and
one whose job ended without finishing it is shown failed (its log's last line) and submitted again; without
`wait` the call returns once the jobs are submitted, and a later call shows where each trial stands.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from gradlab.ablate import executors
from gradlab.ablate.grid import Trial
from gradlab.errors import ConfigError
from gradlab.parallel import available_cpus
from gradlab.run_dir import RunDirectory
from gradlab.train.config import to_toml
from gradlab.train.metrics_log import final_value

STOP_TIMEOUT_S = 30.0  # how long stopped trials may take to record "interrupted" before they are killed


class AblationInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the ablation; the trials that were running got the same signal and were
    waited for. `signum` is the signal, `stopped` the names of those trials."""

    def __init__(self, signum: int, stopped: list[str]):
        what = f"stopped {', '.join(stopped)} (resumable)" if stopped else "no trial was running"
        super().__init__(f"{signal.Signals(signum).name}, {what}")
        self.signum, self.stopped = signum, stopped


#: what became of a trial in one call: "done", "skipped" (complete before this call), "failed"; with an executor
#: also "running" (an earlier job still has it) and "submitted" (its job was sent and not waited for)
OUTCOMES = ("done", "skipped", "failed", "running", "submitted", "earlier")


@dataclass
class Outcome:
    trial: Trial
    state: str  # one of OUTCOMES
    seconds: float = 0.0
    message: str = ""


def run_trials(trials: list[Trial], out: Path, config: str | None, workers: int = 1, threads: int | None = None,
               progress: bool = True, *, gpus: Sequence[str] = (), executor: Any = None,
               job_state: Callable[[str], str] | None = None, wait: bool = True,
               processes: int = 1) -> list[Outcome]:
    """Run (or skip, or resume) every trial into out/NAME; returns one Outcome per trial, in trial order."""
    outcomes: dict[str, Outcome] = {}
    todo = []
    known = executors.load_jobs(out) if job_state is not None else {}
    for trial in trials:
        held = _held_by_job(out, trial, known, job_state)
        if held is not None:
            outcomes[trial.name] = held
            continue
        start = prepare(out / trial.name, trial)
        if start == "complete":
            outcomes[trial.name] = Outcome(trial, "skipped")
        else:
            todo.append((trial, start))
    if executor is not None:
        outcomes |= _run_as_jobs(executor, [t for t, _ in todo], out, config, threads, progress, wait, processes)
        if progress:  # where every trial stands, done ones included
            for trial in trials:
                if outcomes[trial.name].state != "done":  # those were shown as they finished
                    tqdm.write(_line(outcomes[trial.name], out))
        return [outcomes[t.name] for t in trials]
    threads = threads or max(1, available_cpus() // workers)
    bar = tqdm(total=len(trials), initial=len(outcomes), desc="ablation", unit="run", disable=not progress,
               dynamic_ncols=True)
    running: dict[subprocess.Popen, tuple[Trial, float]] = {}
    signals: list[int] = []  # SIGINT / SIGTERM received: noted by the handler, acted on between polls
    previous = _note_signals(signals)
    try:
        while (todo or running) and not signals:
            while todo and len(running) < workers:
                trial, start = todo.pop(0)
                gpu = _least_busy(gpus, [g for _, _, g in running.values()])
                running[_launch(trial, start, out, config, threads, gpu)] = (trial, time.monotonic(), gpu)
                bar.set_postfix_str(f"running {len(running)}")
            time.sleep(0.2)
            for proc in [p for p in running if p.poll() is not None and not signals]:
                trial, began, _ = running.pop(proc)
                outcome = _finish(proc, trial, out, time.monotonic() - began)
                outcomes[trial.name] = outcome
                bar.write(_line(outcome, out))
                bar.update(1)
        if signals:
            _stop(running, signals[0], signals)
            unfinished = [t.name for t, _, _ in running.values() if not RunDirectory(out / t.name).complete]
            raise AblationInterrupted(signals[0], unfinished)
    except BaseException as err:
        if not isinstance(err, AblationInterrupted):
            _stop(running, signal.SIGINT if isinstance(err, KeyboardInterrupt) else signal.SIGTERM, signals)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        bar.close()
    return [outcomes[t.name] for t in trials]


def _least_busy(gpus: Sequence[str], taken: list[str | None]) -> str | None:
    """The device of `gpus` that the fewest running trials use (None without --gpus)."""
    return min(gpus, key=taken.count) if gpus else None


def _held_by_job(out: Path, trial: Trial, known: dict[str, str], job_state) -> Outcome | None:
    """Outcome "running" when an earlier job of this unfinished trial is still active; None to go on (a job that
    ended without finishing the trial is reported, and the trial is submitted again)."""
    if trial.name not in known or RunDirectory(out / trial.name).complete:
        return None
    job, state = known[trial.name], job_state(known[trial.name])
    if state in executors.ACTIVE_STATES:
        return Outcome(trial, "running", message=f"job {job} {state}")
    log = out / "logs" / f"{trial.name}.log"
    last = _last_line(log, 1) if log.is_file() else "no log"
    tqdm.write(f"failed {trial.name}: job {job} {state}: {last}; submitting it again")
    return None


def _run_as_jobs(executor, trials: list[Trial], out: Path, config: str | None, threads: int | None,
                 progress: bool, wait: bool, processes: int = 1) -> dict[str, Outcome]:
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}
    commands = [executors.TrialCommand(t.name, str(out / t.name), str(out / "logs" / f"{t.name}.log"),
                                       command(t, "fresh", out / t.name, config, processes),
                                       command(t, "resume", out / t.name, config, processes), env) for t in trials]
    began = time.monotonic()
    jobs = dict(zip([t.name for t in trials], executors.submit(executor, commands)))
    executors.save_jobs(out, jobs)
    by_name = {t.name: t for t in trials}
    if not wait:
        return {name: Outcome(by_name[name], "submitted", message=f"job {getattr(job, 'job_id', '?')}")
                for name, job in jobs.items()}
    bar = tqdm(total=len(jobs), desc="ablation jobs", unit="run", disable=not progress, dynamic_ncols=True)
    outcomes: dict[str, Outcome] = {}

    def finished(name: str, result) -> None:
        trial, seconds = by_name[name], time.monotonic() - began
        if result == 0 and RunDirectory(out / name).complete:
            outcomes[name] = Outcome(trial, "done", seconds)
        else:
            log = out / "logs" / f"{name}.log"
            if isinstance(result, BaseException):  # the executor's error (submitit: the job's traceback)
                lines = [line for line in str(result).splitlines() if line.strip()]
                message = f"{type(result).__name__}: {lines[-1] if lines else ''} (log: {log})"
            else:
                message = _last_line(log, result) if log.is_file() else f"exit status {result}"
            outcomes[name] = Outcome(trial, "failed", seconds, message)
        bar.write(_line(outcomes[name], out))
        bar.update(1)

    try:
        executors.wait(jobs, finished)
    finally:
        bar.close()
    return outcomes


def _note_signals(signals: list[int]) -> dict[int, object]:
    """SIGINT and SIGTERM append to `signals` instead of raising (main thread only, not over an ignored
    signal); returns the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) not in (signal.SIG_IGN, None):
            previous[sig] = signal.signal(sig, lambda signum, frame: signals.append(signum))
    return previous


def _stop(running: dict[subprocess.Popen, tuple[Trial, float]], sig: int, signals: list[int]) -> None:
    """Send `sig` to every running trial (so that it records "interrupted"), wait for them up to STOP_TIMEOUT_S
    or until another signal arrives, then kill what is left."""
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(sig)
    deadline, seen = time.monotonic() + STOP_TIMEOUT_S, len(signals)
    while any(proc.poll() is None for proc in running) and time.monotonic() < deadline and len(signals) == seen:
        time.sleep(0.05)
    for proc in running:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def prepare(run_dir: Path, trial: Trial) -> str:
    """"complete", "resume" or "fresh"; a trial directory without a checkpoint is cleared for a fresh start."""
    run = RunDirectory(run_dir)
    if run.config_path.is_file() and run.config_path.read_text() != to_toml(trial.config):
        raise ConfigError(f"{run_dir} holds a run with another config than trial {trial.name}: move it away "
                          "or choose another --out")
    if run.complete:
        return "complete"
    if run.checkpoint.is_file():
        return "resume"
    if run_dir.exists():
        if any(run_dir.iterdir()) and not run.config_path.is_file():
            raise ConfigError(f"{run_dir} is in the way of trial {trial.name} and is not a run directory: move it")
        shutil.rmtree(run_dir)  # killed before its first checkpoint: nothing to keep
    return "fresh"


def command(trial: Trial, start: str, run_dir: Path, config: str | None, processes: int = 1) -> list[str]:
    """`gradlab train` of the trial (`--resume` to continue it); under torchrun with `processes` > 1 (DDP on the
    job's GPUs, through the environment train/distributed.py reads)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] \
        if processes > 1 else [sys.executable]
    cmd = [*launcher, "-m", "gradlab", "train", "--quiet", "--out", str(run_dir)]
    if start == "resume":
        return [*cmd, "--resume"]
    return [*cmd, *([config] if config else []), *(a for item in trial.overrides for a in ("--set", item))]


def _launch(trial: Trial, start: str, out: Path, config: str | None, threads: int,
            gpu: str | None = None) -> subprocess.Popen:
    log = out / "logs" / f"{trial.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    cmd = command(trial, start, out / trial.name, config)
    with open(log, "a") as stream:
        stream.write(f"$ {' '.join(cmd)}\n")
        stream.flush()
        return subprocess.Popen(cmd, stdout=stream,
                                stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent,
                                stdin=subprocess.DEVNULL)


# resolved here, not in the forked child (no dynamic loading between fork and exec)
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGKILL when the parent dies (Linux; elsewhere a no-op)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _finish(proc: subprocess.Popen, trial: Trial, out: Path, seconds: float) -> Outcome:
    if proc.returncode == 0 and RunDirectory(out / trial.name).complete:
        return Outcome(trial, "done", seconds)
    return Outcome(trial, "failed", seconds, _last_line(out / "logs" / f"{trial.name}.log", proc.returncode))


def _last_line(log: Path, returncode: int) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    tail = lines[-1] if lines and not lines[-1].startswith("$ ") else f"exit status {returncode}"
    return f"{tail} (log: {log})"


def _line(outcome: Outcome, out: Path) -> str:
    name = outcome.trial.name
    if outcome.state == "failed":
        return f"failed {name}: {outcome.message}"
    if outcome.state in ("running", "submitted"):
        return f"{outcome.state:<6} {name}: {outcome.message}"
    miou = final_value(RunDirectory(out / name).metrics_path, "miou")
    return f"done   {name}: val mIoU {miou:.3f} ({outcome.seconds:.0f} s)"
