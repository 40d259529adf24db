from __future__ import annotations

from gradlab.train import load_config

TINY = [
    "data.size=32", "data.train_length=32", "data.val_length=8", "train.batch_size=4", "train.steps=6",
    "model.bases=4", "model.iterations=2", "train.eval_every=3", "train.checkpoint_every=3", "record.flush_every=2",
    "record.every=1", "train.lr=0.01",
]


def tiny_config(*overrides: str):
    return load_config("demo", [*TINY, *overrides])
