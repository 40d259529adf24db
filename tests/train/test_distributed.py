"""Two gloo processes under torchrun: parameters agree across ranks, records are written per rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import gradlab
from tests.train.conftest import TINY


def test_two_process_gloo_run(tmp_path):
    sets = [*TINY, "train.steps=4", "record.all_ranks=true"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "gradlab", "train", "demo", "--out", str(tmp_path / "run"), "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["world_size"] == 2 and meta["ranks_agree"] is True
    records = gradlab.load_records(tmp_path / "run")
    assert set(records["rank"]) == {0, 1}
    assert records.groupby("rank").step.nunique().to_dict() == {0: 4, 1: 4}
