"""Dilated ResNet backbones and the EMANet / HEMNet segmentation network."""

from gradlab.models.backbone import BACKBONES, build_backbone
from gradlab.models.head import EMAHead
from gradlab.models.param_groups import optimizer_param_groups, parameter_groups
from gradlab.models.resnet import RESNET_SPECS, ResNet, resnet
from gradlab.models.segnet import MODEL_KINDS, SegmentationNet, build_model, default_head_channels, model_from_config
from gradlab.models.torchvision_backbone import torchvision_backbone
from gradlab.models.weights import load_local_weights

__all__ = [
    "BACKBONES",
    "MODEL_KINDS",
    "RESNET_SPECS",
    "EMAHead",
    "ResNet",
    "SegmentationNet",
    "build_backbone",
    "build_model",
    "default_head_channels",
    "load_local_weights",
    "model_from_config",
    "optimizer_param_groups",
    "parameter_groups",
    "resnet",
    "torchvision_backbone",
]
