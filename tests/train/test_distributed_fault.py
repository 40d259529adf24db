"""A lost rank in a 2-process gloo run: the survivor stops within a bounded time with a one-line error.

The ranks are launched the way torchrun would start them (RANK, WORLD_SIZE, MASTER_ADDR/PORT), but without
its agent: on several nodes nobody kills the survivor for us, so rank 0 must notice on its own. One test also
runs under torchrun itself. Every wait is bounded; a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradlab.errors import ConfigError
from gradlab.train import distributed
from gradlab.train.distributed import Context, LostPeerError, lost_peer
from tests.train.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]
LONG = [*TINY, "train.steps=5000", "train.eval_every=5000", "train.checkpoint_every=5000", "record.all_ranks=true",
        "record.flush_every=2"]  # far longer than the test: it is killed once rank 1 has recorded 2 steps
EXIT_WITHIN_S = 60


def train_args(out: Path) -> list[str]:
    return ["-m", "gradlab", "train", "demo", "--out", str(out), "--quiet", *(a for s in LONG for a in ("--set", s))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(tmp_path: Path, extra_env: dict | None = None) -> list[subprocess.Popen]:
    port = free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), **(extra_env or {})}
        err = open(tmp_path / f"rank{rank}.err", "w")  # files, not pipes: nobody reads while they run
        procs.append(subprocess.Popen([sys.executable, *train_args(tmp_path / "run")], cwd=ROOT, env=env,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err))
        err.close()
    return procs


def wait_until_training(tmp_path: Path, procs: list[subprocess.Popen], timeout: float = 120) -> None:
    """Until rank 1 has written a records part (2 recorded steps): DDP is set up and gradients flow."""
    deadline = time.monotonic() + timeout
    while not list((tmp_path / "run" / "records").glob("part-r001-*.parquet")):
        dead = [p for p in procs if p.poll() is not None]
        assert not dead, f"a process ended before training: {read_errors(tmp_path)}"
        assert time.monotonic() < deadline, f"no training after {timeout} s: {read_errors(tmp_path)}"
        time.sleep(0.05)


def read_errors(tmp_path: Path) -> str:
    return "\n".join(p.read_text()[-2000:] for p in sorted(tmp_path.glob("*.err")))


def wait_exit(proc: subprocess.Popen, timeout: float) -> tuple[int, float]:
    t0 = time.monotonic()
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the surviving process still runs {timeout} s after its peer was lost: it hangs")
    return rc, time.monotonic() - t0


def kill_all(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()  # SIGKILL also ends a stopped process
            p.wait(timeout=30)


def assert_one_line_lost_contact(tmp_path: Path, *words: str) -> str:
    err = (tmp_path / "rank0.err").read_text()
    last = err.strip().splitlines()[-1]
    assert last.startswith("gradlab: error: rank 0: lost contact with rank 1 ("), err[-3000:]
    assert last.endswith("resume it with --resume") and all(w in last for w in words), last
    assert "Traceback" not in err, err[-3000:]
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["status"] == "failed" and "lost contact with rank 1" in meta["error"], meta
    return last


def test_a_killed_rank_stops_the_other_at_once_with_one_line(tmp_path):
    procs = start_ranks(tmp_path)
    try:
        wait_until_training(tmp_path, procs)
        procs[1].send_signal(signal.SIGKILL)
        rc, waited = wait_exit(procs[0], EXIT_WITHIN_S)
    finally:
        kill_all(procs)
    assert rc == 2, read_errors(tmp_path)
    last = assert_one_line_lost_contact(tmp_path)  # gloo's reason inside: "Connection reset by peer", ...
    print(f"rank 0 exited {waited:.1f} s after rank 1 was killed: {last}")


def test_a_hung_rank_stops_the_other_after_the_timeout(tmp_path):
    """A stopped (not dead) rank keeps its sockets open: rank 0 gives up after GRADLAB_DIST_TIMEOUT seconds."""
    timeout = 6
    procs = start_ranks(tmp_path, {distributed.TIMEOUT_ENV: str(timeout)})
    try:
        wait_until_training(tmp_path, procs)
        procs[1].send_signal(signal.SIGSTOP)
        rc, waited = wait_exit(procs[0], timeout + EXIT_WITHIN_S)
    finally:
        kill_all(procs)
    assert rc == 2, read_errors(tmp_path)
    last = assert_one_line_lost_contact(tmp_path)
    # gloo words the timeout as "Timed out waiting 6000ms ..." or, when it surfaces inside DDP's backward, as
    # "Application timeout caused pair closure" (both seen on this machine, 2026-12-04); either way after the timeout
    assert f"{timeout * 1000}ms" in last or "Application timeout caused pair closure" in last, last
    assert waited >= timeout - 1, waited
    print(f"rank 0 exited {waited:.1f} s after rank 1 was stopped: {last}")


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def rank_of(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"RANK=")), None)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank processes in /proc")
def test_under_torchrun_the_launcher_stops_and_names_the_killed_rank(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *train_args(tmp_path / "run")]
    with open(tmp_path / "torchrun.err", "w") as err:
        launcher = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                    stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT)
    workers: dict[int, str] = {}
    try:
        wait_until_training(tmp_path, [launcher])
        workers = {pid: rank for pid in descendants(launcher.pid) if (rank := rank_of(pid)) is not None}
        rank1 = [pid for pid, rank in workers.items() if rank == "1"]
        assert len(rank1) == 1, workers
        os.kill(rank1[0], signal.SIGKILL)
        rc, waited = wait_exit(launcher, EXIT_WITHIN_S)
    finally:
        kill_all([launcher])
        for pid, rank in workers.items():  # torchrun stops its workers; make sure, by their ids
            if rank_of(pid) == rank:
                os.kill(pid, signal.SIGKILL)
    out = (tmp_path / "torchrun.err").read_text()
    assert rc != 0, out[-3000:]
    # torchrun's report names the root cause: "rank : 1 (local_rank: 1)", "exitcode : -9 ... (SIGKILL)"
    assert "rank      : 1" in out and "SIGKILL" in out, out[-3000:]
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["status"] != "complete"
    print(f"torchrun exited {waited:.1f} s after rank 1 was killed")


# -- the message itself, without processes -------------------------------------------------------------------
GLOO_RESET = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
              "[127.0.0.1]:55510: Connection reset by peer. This is typically caused by a remote worker hanging "
              "or bugs in the application. Check the logs of the remote worker before reporting an error. GLHF!")
CTX = Context(rank=0, world=2, local_rank=0, device=None)


def test_a_gloo_error_becomes_one_line_naming_the_peer():
    err = lost_peer(RuntimeError(GLOO_RESET), CTX)
    assert isinstance(err, LostPeerError)
    assert str(err) == ("rank 0: lost contact with rank 1 (Read error [127.0.0.1]:55510: Connection reset by peer): "
                        "the distributed run stopped; resume it with --resume")
    four = lost_peer(RuntimeError(GLOO_RESET), Context(rank=2, world=4, local_rank=0, device=None))
    assert str(four).startswith("rank 2: lost contact with another of the 4 ranks (Read error")


def test_gloo_transport_errors_without_a_source_path_are_lost_peers_too():
    """DDP's backward raises gloo's transport error bare: a hung peer's timeout, seen in a CI run on 2026-12-04."""
    for text in ("Application timeout caused pair closure", "Connection closed by peer [127.0.0.1]:4242"):
        err = lost_peer(RuntimeError(text), CTX)
        assert isinstance(err, LostPeerError) and f"({text})" in str(err)


def test_other_errors_pass_through():
    assert lost_peer(RuntimeError("CUDA out of memory"), CTX) is None
    assert lost_peer(ValueError("gloo"), CTX) is None
    assert lost_peer(RuntimeError(GLOO_RESET), Context(rank=0, world=1, local_rank=0, device=None)) is None
    with pytest.raises(RuntimeError, match="out of memory"), distributed.lost_peers(CTX):
        raise RuntimeError("out of memory")
    with pytest.raises(LostPeerError) as caught, distributed.lost_peers(CTX):
        raise RuntimeError(GLOO_RESET)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_the_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(distributed.TIMEOUT_ENV, raising=False)
    assert distributed.timeout_from_env() == 120
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "7.5")
    assert distributed.timeout_from_env() == 7.5
    for bad in ("0", "-3", "soon", "nan", "inf"):
        monkeypatch.setenv(distributed.TIMEOUT_ENV, bad)
        with pytest.raises(ConfigError, match=distributed.TIMEOUT_ENV):
            distributed.timeout_from_env()
