from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients

from gradlab.attribution import AttributionError, SegmentationScore, attribution_mode


def test_score_is_each_class_logits_summed_over_the_region(loaded, batch):
    net = loaded["hem"].net
    with torch.no_grad():
        logits = net(batch.images)
        score = SegmentationScore(net)(batch.images, batch.regions)
    for b in range(len(batch.images)):
        inside = batch.regions[b].bool()
        assert torch.allclose(score[b], logits[b][:, inside].sum(1), rtol=1e-5, atol=1e-4)


def test_a_region_of_the_wrong_size_is_an_error(loaded, batch):
    with pytest.raises(AttributionError, match="region has shape"):
        SegmentationScore(loaded["em"].net)(batch.images, batch.regions[:, :-1])


def test_captum_keeps_each_image_with_its_own_region_along_the_path(loaded, batch):
    """A batch attributed at once equals each image attributed alone: the expanded regions stay aligned."""
    net = loaded["em"].net
    ig = IntegratedGradients(SegmentationScore(net))
    with attribution_mode(net):
        together = ig.attribute(batch.images, target=batch.classes, additional_forward_args=(batch.regions,),
                                n_steps=8)
        alone = torch.cat([ig.attribute(batch.images[b:b + 1], target=batch.classes[b:b + 1],
                                        additional_forward_args=(batch.regions[b:b + 1],), n_steps=8)
                           for b in range(len(batch.images))])
    assert batch.classes[0] != batch.classes[1] or not torch.equal(batch.regions[0], batch.regions[1])
    assert torch.allclose(together, alone, atol=1e-5)
