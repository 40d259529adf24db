"""The recorder under torch.distributed: unwraps DDP and labels rows with the rank (one gloo process)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

import gradlab
from tests.instrument.conftest import make_net


@pytest.fixture
def process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_ddp_model_is_unwrapped_and_recorded(process_group, batch, tmp_path):
    net = make_net()
    ddp = torch.nn.parallel.DistributedDataParallel(net)
    with gradlab.watch(ddp, run_dir=tmp_path / "run", all_ranks=True) as rec:
        F.cross_entropy(ddp(batch[0]), batch[1]).backward()
        rec.step(0)
    frame = gradlab.load_records(tmp_path / "run")
    assert set(frame["rank"]) == {0}
    assert (frame[frame.quantity == "grad/x"].status == "ok").all()
    assert rec.model is net
