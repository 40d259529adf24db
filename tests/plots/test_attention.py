from __future__ import annotations

import numpy as np
import pytest
import torch

from gradlab.plots import attention_maps
from tests.plots.synthetic import make_attention


def by_gid(fig, gid):
    return [ax for ax in fig.axes if ax.get_gid() == gid]


def test_one_row_per_iteration_bases_then_argmax_and_the_image_first():
    z = make_attention(T=3, K=5)
    fig = attention_maps(z, image=np.ones((16, 16, 3)), bases=[0, 2])
    assert len(by_gid(fig, "z")) == 3 * 2 and len(by_gid(fig, "argmax")) == 3 and len(by_gid(fig, "image")) == 1
    first_row = [ax.get_title() for ax in by_gid(fig, "z")[:2]]
    assert first_row == ["basis 0", "basis 2"]
    assert [ax.get_ylabel() for ax in by_gid(fig, "z")[::2]] == ["t = 1", "t = 2", "t = 3"]
    shown = by_gid(fig, "z")[1].images[0].get_array()
    np.testing.assert_allclose(shown, z[0, 2])
    assignment = by_gid(fig, "argmax")[2].images[0].get_array()
    np.testing.assert_array_equal(assignment, z[2].argmax(0))
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)


def test_default_bases_hold_the_most_attention_at_the_last_iteration():
    z = np.zeros((2, 6, 4, 4))
    z[:, 5] = 0.7
    z[:, 1] = 0.3
    fig = attention_maps(z, argmax=False)
    assert [ax.get_title() for ax in by_gid(fig, "z")[:4]] == ["basis 0", "basis 1", "basis 2", "basis 5"]
    assert by_gid(fig, "image") == [] and by_gid(fig, "argmax") == []


def test_torch_batches_and_lists_of_images():
    z = torch.softmax(torch.randn(2, 3, 4, 6, 6, requires_grad=True), dim=2)  # (B, T, K, H, W)
    images = torch.rand(2, 3, 24, 24) * 4 - 2  # channels first, not in [0, 1]
    fig = attention_maps(z, image=images, bases=1)
    assert len(by_gid(fig, "image")) == 2 and len(by_gid(fig, "z")) == 2 * 3 * 1
    shown = by_gid(fig, "image")[0].images[0].get_array()
    assert shown.shape == (24, 24, 3) and shown.min() >= 0 and shown.max() <= 1
    fig = attention_maps([make_attention(), make_attention(seed=1)], image=[np.zeros((8, 8)), np.zeros((8, 8))],
                         iterations=[4, 5, 6])
    assert by_gid(fig, "z")[0].get_ylabel() == "t = 4"


def test_bad_inputs_raise():
    z = make_attention(T=3, K=5)
    with pytest.raises(ValueError, match=r"\(T, K, H, W\).*shape \(5, 8, 8\)"):
        attention_maps(z[0])
    with pytest.raises(ValueError, match="out of range.*K = 5"):
        attention_maps(z, bases=[7])
    with pytest.raises(ValueError, match="2 image"):
        attention_maps(z, image=[np.zeros((8, 8))] * 2)
    with pytest.raises(ValueError, match="image must be"):
        attention_maps(z, image=np.zeros((8, 8, 5)))
    with pytest.raises(ValueError, match="3 iterations"):
        attention_maps(z, iterations=[1, 2])
    with pytest.raises(ValueError, match="nothing to show"):
        attention_maps(z, bases=[], argmax=False)
