"""Where an ablation's trials run when not as local subprocesses: any executor with `submit(fn, *args) -> job`
whose jobs have `done()` and `result()` (concurrent.futures, submitit's SLURM, local and debug executors).

Each trial goes out as a `TrialCommand`: only its argv (to start and to resume), its run directory and its log.
The job decides when it starts whether the trial is complete (nothing to do), has a checkpoint (`--resume`) or
starts fresh, so a job that is preempted, times out and is requeued (submitit calls `checkpoint`, which
resubmits the same command) continues from the trial's last checkpoint.

    run_ablation("ablation", axes, seeds=3, out="runs/T", executor=submitit.AutoExecutor("runs/T/submitit"))
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradlab.atomic import write_text
from gradlab.errors import ConfigError
from gradlab.run_dir import RunDirectory

#: OUT/JOBS: trial name → the scheduler's job id of its last submission (read back by a later `gradlab ablate`)
JOBS = "jobs.json"
#: OUT/SUBMITIT: submitit's own folder (its pickles hold TrialCommands: argv and paths, nothing else)
SUBMITIT = "submitit"
#: scheduler states of a job that may still finish its trial
ACTIVE_STATES = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED")
POLL_S = 1.0


@dataclass
class TrialCommand:
    """One trial as a job runs it: `fresh` argv (a new run), `resume` argv (`train --resume`), where it writes."""

    name: str
    run_dir: str
    log: str
    fresh: list[str]
    resume: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self) -> int:
        """Run the trial to its end (or skip it when complete); the exit status of `gradlab train`."""
        run = RunDirectory(self.run_dir)
        if run.complete:
            return 0
        if run.checkpoint.is_file():
            argv = self.resume
        else:
            if Path(self.run_dir).exists():
                shutil.rmtree(self.run_dir)  # stopped before its first checkpoint: nothing to keep
            argv = self.fresh
        Path(self.log).parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as stream:
            stream.write(f"$ {' '.join(argv)}\n")
            stream.flush()
            self._proc = subprocess.Popen(argv, stdout=stream, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env={**os.environ, **self.env})
            return self._proc.wait()

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit, on preemption or timeout: stop the training (it records "interrupted", keeping its last
        checkpoint) and requeue this same command, which resumes from there."""
        import submitit

        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        return submitit.helpers.DelayedSubmission(TrialCommand(self.name, self.run_dir, self.log, self.fresh,
                                                               self.resume, self.env))


def submit(executor: Any, commands: list[TrialCommand]) -> list[Any]:
    """Submit every command; as one job array where the executor can batch (submitit), else one by one."""
    batch = getattr(executor, "batch", None)
    if batch is None or not commands:
        return [executor.submit(command) for command in commands]
    with batch():
        jobs = [executor.submit(command) for command in commands]
    return jobs


def wait(jobs: dict[str, Any], progress=None) -> dict[str, BaseException | int]:
    """Poll until every job is done; trial name → the job's exit status, or the exception it raised."""
    results: dict[str, BaseException | int] = {}
    while len(results) < len(jobs):
        for name, job in jobs.items():
            if name not in results and job.done():
                try:
                    results[name] = job.result()
                except Exception as err:  # the job failed on the executor's side: report it, go on
                    results[name] = err
                if progress is not None:
                    progress(name, results[name])
        if len(results) < len(jobs):
            time.sleep(POLL_S)
    return results


def save_jobs(out: Path, jobs: dict[str, Any]) -> None:
    """Keep trial → job id in OUT/jobs.json (merged with what is there) for a later call's status display."""
    known = load_jobs(out)
    known.update({name: str(job.job_id) for name, job in jobs.items() if getattr(job, "job_id", None)})
    write_text(out / JOBS, json.dumps(known, indent=2, sort_keys=True))


def load_jobs(out: Path) -> dict[str, str]:
    path = out / JOBS
    if not path.is_file():
        return {}
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path} is not a valid jobs file ({err}): delete it to resubmit every unfinished "
                          "trial") from None
    return {str(k): str(v) for k, v in known.items()} if isinstance(known, dict) else {}


def slurm_state(out: Path, job_id: str) -> str:
    """The scheduler's state of a SLURM job of this ablation (sacct, through submitit), e.g. RUNNING."""
    import submitit

    return str(submitit.SlurmJob(folder=out / SUBMITIT, job_id=job_id).state)


def slurm_executor(out: Path, *, partition: str | None, gpus_per_trial: int, minutes: int,
                   array_parallelism: int | None, cpus_per_trial: int | None = None) -> Any:
    """A submitit SLURM executor for one trial per array task (a trial that uses several GPUs runs torchrun
    inside its task: set them with --slurm-gpus-per-trial and launch via train/distributed.py's environment)."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--executor slurm needs submitit: pip install 'gradlab[slurm]'") from None
    try:
        executor = submitit.AutoExecutor(folder=out / SUBMITIT, cluster="slurm")
    except RuntimeError as err:  # submitit: 'Could not detect "srun", are you indeed on a slurm cluster?'
        raise ConfigError(f"--executor slurm: no SLURM on this machine ({err}); submit from a login node") from None
    params: dict[str, Any] = {"timeout_min": minutes, "gpus_per_node": gpus_per_trial, "tasks_per_node": 1,
                              "nodes": 1, "name": f"gradlab-{out.name}"}
    if partition:
        params["slurm_partition"] = partition
    if array_parallelism:
        params["slurm_array_parallelism"] = array_parallelism
    if cpus_per_trial:
        params["cpus_per_task"] = cpus_per_trial
    executor.update_parameters(**params)
    return executor
