"""captum attributions across the unrolled iterations of an EM / HEM layer.

    classes, regions = class_regions(masks)                          # a class and its pixels per image
    frame = depth_profile(net, images, classes, regions)             # attribution of μ^(t) per iteration t
    maps = input_attributions(net, images, classes, regions)         # Saliency and IntegratedGradients
    attribute_run("runs/hem")                                        # table + figures for `gradlab report`

core.py holds the score, regions, methods and the attributions themselves; run.py a trained run's network and
images, its profiles, figures and files.
"""

from __future__ import annotations

from gradlab.attribution.core import (
    COLUMNS,
    INPUT_METHODS,
    LAYER_METHODS,
    METHODS,
    AttributionError,
    SegmentationScore,
    attribution_mode,
    class_regions,
    depth_profile,
    input_attributions,
    integrated_gradients,
    saliency,
)
from gradlab.attribution.run import (
    AttributionFiles,
    attribute_run,
    depth_profile_figure,
    input_attribution_figure,
    load_run,
    profile_runs,
)

__all__ = [
    "COLUMNS", "INPUT_METHODS", "LAYER_METHODS", "METHODS", "AttributionError", "AttributionFiles",
    "SegmentationScore", "attribute_run", "attribution_mode", "class_regions", "depth_profile",
    "depth_profile_figure", "input_attribution_figure", "input_attributions", "integrated_gradients",
    "load_run", "profile_runs", "saliency",
]
