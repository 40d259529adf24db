"""Segmentation training with EM / HEM heads: config, loop, evaluation, checkpoints, DDP."""

from gradlab.run_dir import RunDirectory
from gradlab.train.config import Config, apply_overrides, describe_keys, load_config, run_config, to_toml
from gradlab.train.evaluate import confusion_matrix, em_branch_knockout, evaluate, scores
from gradlab.train.load_model import load_model
from gradlab.train.trainer import NonFiniteError, train

__all__ = [
    "Config", "NonFiniteError", "RunDirectory", "apply_overrides", "confusion_matrix", "describe_keys",
    "em_branch_knockout", "evaluate", "load_config", "load_model", "run_config", "scores", "to_toml", "train",
]
