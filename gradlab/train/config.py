"""Typed training configuration: dataclasses, TOML presets, `--set key=value` overrides, validation.

Every key has a default, a type, an allowed range and a line of help; `gradlab train --help` lists them all.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from gradlab._toml import tomllib
from gradlab.errors import ConfigError
from gradlab.instrument.diagnostics import DIAGNOSTICS_EVERY
from gradlab.instrument.jacobian import JACOBIAN_EVERY, JACOBIAN_IMAGES
from gradlab.layers import GRAD_MODES, EMSpec
from gradlab.layers.kernels import KERNELS
from gradlab.models.segnet import MODEL_KINDS
from gradlab.run_dir import RunDirectory, toml_value


def key(default: Any, help: str, allowed: str = "", check=None) -> Any:
    """A config field with its help text and validity check (`check(value) -> bool`, described by `allowed`)."""
    return field(default=default, metadata={"help": help, "allowed": allowed, "check": check})


def positive(v) -> bool:
    return v > 0


def at_least(n):
    return lambda v: v >= n


def between(low, high):
    return lambda v: low <= v <= high


INT64 = (-(2**63), 2**63 - 1)  # every integer key fits here: numpy and torch take it as one int64


@dataclass
class DataConfig:
    source: str = key("digits", "scene sprites (digits, idx) or a VOC folder (voc)", "digits, idx or voc",
                      lambda v: v in ("digits", "idx", "voc"))
    root: str = key("", "folder of the IDX files or of VOC2012 ('' = the source's default)")
    size: int = key(64, "canvas side of scenes, crop side of VOC training images", "in [16, 4096]",
                    between(16, 4096))
    train_length: int = key(2000, "scenes in the train split (scene sources)", ">= 1", at_least(1))
    val_length: int = key(500, "scenes in the val split (scene sources)", ">= 1", at_least(1))
    min_sprites: int = key(2, "fewest sprites per scene (scene sources)", ">= 1", at_least(1))
    max_sprites: int = key(5, "most sprites per scene (scene sources)", ">= 1", at_least(1))
    scale_min: float = key(0.35, "smallest sprite side as a fraction of the canvas", "in (0, 1]", lambda v: 0 < v <= 1)
    scale_max: float = key(0.6, "largest sprite side as a fraction of the canvas", "in (0, 1]", lambda v: 0 < v <= 1)
    threshold: float = key(0.25, "mask = sprite pixels above this fraction of the sprite's maximum", "in (0, 1)",
                           lambda v: 0 < v < 1)
    workers: int = key(0, "DataLoader worker processes", ">= 0", at_least(0))


@dataclass
class ModelConfig:
    """[model]: the network; its EM keys are those of `gradlab.layers.EMSpec`, with its defaults."""

    kind: str = key(EMSpec.kind, "EM unit: em (EMANet), hem (HEMNet) or none (baseline)", "em, hem or none",
                    lambda v: v in MODEL_KINDS)
    backbone: str = key("tiny", "dilated ResNet size: tiny, resnet50, resnet101")
    output_stride: int = key(8, "backbone output stride", "8 or 16", lambda v: v in (8, 16))
    pretrained: str = key("", "local state_dict file for the backbone ('' = random init)")
    channels: int = key(0, "head / EM channels C (0 = the backbone's default)", "in [0, 8192]", between(0, 8192))
    bases: int = key(EMSpec.bases, "bases K", "in [1, 4096]", between(1, 4096))
    iterations: int = key(EMSpec.iterations, "unrolled iterations T", ">= 1", at_least(1))
    step_size: float = key(EMSpec.step_size, "HEM step size η (em: resolved to 1)", "in (0, 2)", lambda v: 0 < v < 2)
    kernel: str = key(EMSpec.kernel, "E-step kernel", " or ".join(KERNELS), lambda v: v in KERNELS)
    temperature: float = key(EMSpec.temperature, "softmax temperature τ", "> 0", positive)
    normalize: bool = key(EMSpec.normalize, "normalise the bases (P of MATH.md)")
    grad_iterations: str | int = key("all", "differentiable last iterations: all, or k in [0, T]", '"all" or >= 0',
                                     lambda v: v == "all" or isinstance(v, int) and v >= 0)
    grad_mode: str = key(EMSpec.grad_mode, "unrolled (backprop through the iterations) or implicit (IFT gradient at "
                         "the fixed point: grad_iterations = all, T >= 2)", " or ".join(GRAD_MODES),
                         lambda v: v in GRAD_MODES)
    implicit_iterations: int = key(EMSpec.implicit_iterations, "implicit: most fixed-point steps of the adjoint "
                                   "solve per backward", ">= 1", at_least(1))
    implicit_tolerance: float = key(EMSpec.implicit_tolerance, "implicit: the adjoint solve stops at this relative "
                                    "residual", "in (0, 1)", lambda v: 0 < v < 1)
    dropout: float = key(0.1, "dropout before the classifier", "in [0, 1)", lambda v: 0 <= v < 1)
    sync_bn: bool = key(False, "SyncBatchNorm under DDP")


@dataclass
class TrainConfig:
    steps: int = key(600, "training steps", ">= 1", at_least(1))
    batch_size: int = key(8, "images per step (per process under DDP)", "in [1, 4096]", between(1, 4096))
    lr: float = key(0.01, "base learning rate (poly schedule)", "> 0", positive)
    momentum: float = key(0.9, "SGD momentum", "in [0, 1)", lambda v: 0 <= v < 1)
    weight_decay: float = key(1e-4, "weight decay on conv/linear weights", ">= 0", at_least(0))
    poly_power: float = key(0.9, "poly schedule: lr = base (1 - step/steps)^power", ">= 0", at_least(0))
    clip_grad: float = key(0.0, "clip the gradient norm to this (0 = off)", ">= 0", at_least(0))
    amp: bool = key(False, "mixed precision (CUDA only)")
    eval_every: int = key(200, "steps between validations (the last step always validates)", ">= 1", at_least(1))
    checkpoint_every: int = key(200, "steps between checkpoints (the last step always saves)", ">= 1", at_least(1))
    nonfinite: str = key("stop", "on a NaN/Inf loss or gradient: stop (keep the last checkpoint) or skip the step",
                         "stop or skip", lambda v: v in ("stop", "skip"))
    device: str = key("auto", "auto, cpu or cuda", "auto, cpu or cuda", lambda v: v in ("auto", "cpu", "cuda"))


@dataclass
class RecordConfig:
    every: int = key(1, "record every k-th step (0 = recorder off)", ">= 0", at_least(0))
    flush_every: int = key(50, "recorded steps per Parquet part", ">= 1", at_least(1))
    all_ranks: bool = key(False, "under DDP, record every rank (default: rank 0)")
    diagnostics_every: int = key(DIAGNOSTICS_EVERY, "diagnose the first recorded step of each block of this many "
                                 "steps: forward diagnostics, agreement, branch and group norms (0 = never; the "
                                 "iterations' gradient norms are recorded on every recorded step)", ">= 0", at_least(0))
    jacobian_every: int = key(JACOBIAN_EVERY, "steps between estimates of the state Jacobians' norms σ_t (0 = off; "
                              "on recorded steps only)", ">= 0", at_least(0))
    jacobian_images: int = key(JACOBIAN_IMAGES, "images of the batch whose σ_t is estimated", ">= 1",
                               at_least(1))


@dataclass
class Config:
    seed: int = key(0, "seed of data, initialisation and dropout", ">= 0", at_least(0))
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    record: RecordConfig = field(default_factory=RecordConfig)


def key_fields(config: Config | None = None) -> dict[str, tuple[Any, dataclasses.Field]]:
    """Dotted key → (the object that holds it, its field), e.g. "model.iterations"."""
    config = config or Config()
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out.update({f"{f.name}.{g.name}": (value, g) for g in fields(value)})
        else:
            out[f.name] = (config, f)
    return out


def _type_ok(f: dataclasses.Field, value: Any) -> bool:
    kinds = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "str | int": (str, int)}[f.type]
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds) and not (isinstance(value, float) and not math.isfinite(value))


def set_key(config: Config, dotted: str, value: Any) -> None:
    """Set one key with type and range checks; the error names the key, the value and what is allowed."""
    table = key_fields(config)
    if dotted not in table:
        raise ConfigError(f"unknown config key {dotted!r}; valid keys: {', '.join(table)}")
    holder, f = table[dotted]
    if not _type_ok(f, value):
        raise ConfigError(f"{dotted}={value!r} has the wrong type: expected {f.type}")
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        raise ConfigError(f"{dotted}={value} is out of range: an integer must fit in 64 bits")
    if isinstance(value, str) and not _encodable(value):
        raise ConfigError(f"{dotted}={value!r} is not valid text (undecodable bytes): give UTF-8 text")
    check = f.metadata["check"]
    if check is not None and not check(value):
        raise ConfigError(f"{dotted}={value!r} is out of range: allowed {f.metadata['allowed']}")
    setattr(holder, f.name, float(value) if f.type == "float" else value)


def _encodable(text: str) -> bool:
    """False for a string holding lone surrogates (undecodable command-line bytes): no file can hold it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_value(text: str) -> Any:
    """A TOML value (5, 0.5, true, "x"); anything else is taken as a bare string (data.source=idx)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    for item in overrides:
        name, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} is not key=value (e.g. --set model.iterations=5)")
        set_key(config, name.strip(), parse_value(text.strip()))
    return config


def from_dict(data: dict[str, Any]) -> Config:
    config = Config()
    sections = {f.name for f in fields(config) if dataclasses.is_dataclass(getattr(config, f.name))}
    for name, value in data.items():
        if isinstance(value, dict) and name in sections:  # `seed = {}` is a wrong type, not an empty section
            for sub, v in value.items():
                set_key(config, f"{name}.{sub}", v)
        else:
            set_key(config, name, value)
    return config


def preset_names() -> list[str]:
    """The presets shipped inside the package (gradlab/configs/NAME.toml, package data), e.g. demo."""
    return sorted(p.name.removesuffix(".toml") for p in _presets().iterdir() if p.name.endswith(".toml"))


def preset_text(name: str) -> str:
    """The TOML text of preset `name` (one of preset_names())."""
    if name not in preset_names():
        raise ConfigError(f"no preset {name!r}: the presets are {', '.join(preset_names())}")
    return (_presets() / f"{name}.toml").read_text(encoding="utf-8")


def _presets():
    """The presets' folder as importlib.resources sees it: works from a source tree, a wheel or a zip."""
    return resources.files("gradlab") / "configs"


def load_config(source: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """A TOML path, a preset name (e.g. "demo", see preset_names()), or None for the defaults; then overrides.
    An existing file wins over a preset of the same name; a folder does not."""
    config = Config()
    if source is not None:
        path = Path(source)
        if path.is_file():
            where, text = str(path), _read_config(path)
        elif str(source) in preset_names():
            where, text = f"preset {source}", preset_text(str(source))
        else:
            raise ConfigError(f"no config file {str(source)!r}: give a TOML path or a preset "
                              f"({', '.join(preset_names())})")
        try:
            config = from_dict(tomllib.loads(text))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{where} is not valid TOML: {err}") from None
    return validate(apply_overrides(config, overrides or []))


#: the keys `gradlab train --resume --set` may change: where and how often a run goes on, never what it trains
RESUME_KEYS = ("train.device", "data.workers", "train.eval_every", "train.checkpoint_every", "record.flush_every")


def resume_config(run_dir: str | Path, overrides: list[str] | None = None) -> Config:
    """The config to continue a run with: its config.toml with overrides of RESUME_KEYS only. Another key would
    change the model, the data or the schedule of a run that has started, and the folder would misstate it."""
    refused = [key for key, sep, _ in (item.partition("=") for item in overrides or [])
               if sep and key.strip() not in RESUME_KEYS]
    if refused:
        raise ConfigError(f"--resume cannot change {', '.join(k.strip() for k in refused)}: it would change what a "
                          "started run trains (start a new run with another --out instead); --resume may change "
                          f"{', '.join(RESUME_KEYS)}")
    return run_config(run_dir, overrides)


def run_config(run_dir: str | Path, overrides: list[str] | None = None) -> Config:
    """The config of a run directory (its config.toml), with `overrides` (e.g. ["train.device=cpu"])."""
    run = RunDirectory(run_dir)
    run.require_run()
    return load_config(run.config_path, overrides)


def _read_config(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    except OSError as err:
        raise ConfigError(f"config file {path} cannot be read: {err.strerror or err}") from None


def validate(config: Config) -> Config:
    """Checks that involve several keys, and the values they imply (EM is HEM with η = 1)."""
    m = config.model
    if m.kind == "em":
        m.step_size = 1.0  # the resolved config says what ran
    if m.grad_mode == "implicit" and (m.grad_iterations != "all" or m.iterations < 2):
        raise ConfigError(f"model.grad_mode='implicit' needs model.grad_iterations='all' and model.iterations >= 2 "
                          f"(got {m.grad_iterations!r} and {m.iterations}): the implicit gradient takes the place "
                          "of choosing which iterations carry gradient")
    if isinstance(m.grad_iterations, int) and m.grad_iterations > m.iterations:
        raise ConfigError(f"model.grad_iterations={m.grad_iterations} is out of range: allowed 'all' or an "
                          f"integer in [0, model.iterations={m.iterations}]")
    d = config.data
    if d.min_sprites > d.max_sprites or d.scale_min > d.scale_max:
        raise ConfigError(f"data.min_sprites={d.min_sprites}, data.max_sprites={d.max_sprites}, "
                          f"data.scale_min={d.scale_min}, data.scale_max={d.scale_max}: each min must be <= its max")
    if config.data.source == "voc" and not config.data.root:
        raise ConfigError("data.source='voc' needs data.root: the folder that holds JPEGImages/ and SegmentationClass/")
    return config


def to_toml(config: Config) -> str:
    """The resolved config as TOML (what a run directory's config.toml holds)."""
    top, tables = [], []
    for dotted, (holder, f) in key_fields(config).items():
        line = f"{f.name} = {toml_value(getattr(holder, f.name))}"
        if "." in dotted:
            section = dotted.split(".")[0]
            if not tables or tables[-1][0] != section:
                tables.append((section, []))
            tables[-1][1].append(line)
        else:
            top.append(line)
    blocks = ["\n".join(top)] + [f"[{s}]\n" + "\n".join(lines) for s, lines in tables]
    return "\n\n".join(blocks) + "\n"


def describe_keys() -> str:
    """One line per key: name, default, help, allowed values (for `gradlab train --help`)."""
    lines = []
    for dotted, (holder, f) in key_fields().items():
        allowed = f" [{f.metadata['allowed']}]" if f.metadata["allowed"] else ""
        lines.append(f"  {dotted:<24} {toml_value(getattr(holder, f.name)):<10} {f.metadata['help']}{allowed}")
    return "\n".join(lines)
