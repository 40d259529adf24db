"""captum attributions across the unrolled iterations of an EM / HEM layer.

    classes, regions = class_regions(masks)                          # a class and its pixels per image
    frame = depth_profile(net, images, classes, regions)             # attribution of μ^(t) per iteration t
    maps = input_attributions(net, images, classes, regions)         # Saliency and IntegratedGradients
    attribute_run("runs/hem")                                        # table + figures for `gradlab report`
"""

from gradlab.attribution.depth_profile import COLUMNS, depth_profile
from gradlab.attribution.errors import AttributionError
from gradlab.attribution.figures import depth_profile_figure, input_attribution_figure
from gradlab.attribution.inputs import input_attributions, integrated_gradients, saliency
from gradlab.attribution.methods import INPUT_METHODS, LAYER_METHODS, METHODS
from gradlab.attribution.mode import attribution_mode
from gradlab.attribution.regions import class_regions
from gradlab.attribution.runs import load_run, profile_runs
from gradlab.attribution.score import SegmentationScore
from gradlab.attribution.write import AttributionFiles, attribute_run

__all__ = [
    "COLUMNS", "INPUT_METHODS", "LAYER_METHODS", "METHODS", "AttributionError", "AttributionFiles",
    "SegmentationScore", "attribute_run", "attribution_mode", "class_regions", "depth_profile",
    "depth_profile_figure", "input_attribution_figure", "input_attributions", "integrated_gradients",
    "load_run", "profile_runs", "saliency",
]
