"""Tests run their small tensors on one torch thread.

`make test` runs two pytest workers on two cores; two OpenMP threads per worker oversubscribe the cores, and
spinning threads then make a 0.4 s overfitting test take over 10 s. One thread is as fast for these sizes.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
