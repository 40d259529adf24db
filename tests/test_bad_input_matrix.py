"""The bad-input matrix (reliability issue #10, item 5): every case exits with status 2, prints exactly one line
`gradlab: error: ...` on stderr with the case's own words, and leaves no partial output.

Each case builds its input in a fresh folder (config files, IDX and VOC folders, copies of a tiny trained run,
an ablation folder), then runs `gradlab.cli.main` in-process from that folder; two cases run `python -m gradlab`
in a subprocess, where nothing can hide a traceback or a warning. What a case may leave on disk:

- "nothing": no file under the folder was created, changed or removed (a given --out does not exist after);
- "failed run": the error came from the data during training, after the run directory was created: it holds
  meta.json with "status": "failed" and the message, and no checkpoint.

docs/reliability.md shows the table with the real messages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gradlab.cli import main
from tests.data.conftest import save_palette_png, voc_image, write_idx_folder
from tests.report.runs import copy_run, tiny_runs
from tests.train.conftest import TINY

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Ctx:
    tmp: Path
    factory: pytest.TempPathFactory

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    def run_copy(self, kind: str = "em", checkpoint: bool = False) -> Path:
        """A private copy of a tiny trained run (with or without its checkpoint)."""
        source = tiny_runs(self.factory)[kind]
        target = self.tmp / f"run-{kind}"
        if checkpoint:
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("report"))
            return target
        return copy_run(source, target)


@dataclass
class Case:
    id: str
    args: Callable[[Ctx], list[str]]  # builds the input under ctx.tmp, returns the argv
    fragment: str  # words the one line must hold ({tmp} is replaced by the case's folder)
    leaves: str = "nothing"  # or "failed run"
    subprocess: bool = False
    what: str = ""  # the input, in words (for docs/reliability.md)
    marks: tuple = ()


def train(ctx: Ctx, *sets: str, config: str = "demo", out: Path | None = None) -> list[str]:
    args = ["train", config, "--out", str(out or ctx.out), "--quiet"]
    for s in [*TINY, *sets]:
        args += ["--set", s]
    return args


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


# -- data fixtures (the layouts of tests/data/conftest.py and tests/test_cli.py) ------------------------------
VOC_IDS = ["2007_000000", "2007_000001"]


def voc(ctx: Ctx, *, sizes=((40, 36), (40, 36)), masks=None, split=None, skip=()) -> Path:
    root = ctx.tmp / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        if folder not in skip:
            (root / folder).mkdir(parents=True, exist_ok=True)
    if "JPEGImages" not in skip and "SegmentationClass" not in skip:
        for i, (sid, (w, h)) in enumerate(zip(VOC_IDS, sizes)):
            Image.fromarray(voc_image(w, h, i)).save(root / "JPEGImages" / f"{sid}.jpg")
            save_palette_png(root / "SegmentationClass" / f"{sid}.png",
                             masks[i] if masks else np.zeros((h, w), dtype=np.uint8))
    if "ImageSets/Segmentation" not in skip:
        lists = root / "ImageSets" / "Segmentation"
        (lists / "train.txt").write_text("\n".join(VOC_IDS if split is None else split) + "\n")
        (lists / "val.txt").write_text("\n".join(VOC_IDS) + "\n")
    return root


def voc_train(ctx: Ctx, root: Path, *sets: str) -> list[str]:
    return train(ctx, "data.source=voc", f"data.root='{root}'", "train.batch_size=1", "data.size=32", *sets)


def bad_label_mask() -> list[np.ndarray]:
    masks = [np.zeros((36, 40), dtype=np.uint8) for _ in VOC_IDS]
    masks[1][5, 5] = 40
    return masks


def voc_corrupt_image(ctx: Ctx) -> list[str]:
    root = voc(ctx)
    write(root / "JPEGImages" / f"{VOC_IDS[1]}.jpg", b"\xff\xd8 not a jpeg at all")
    return voc_train(ctx, root)


def voc_rgb_mask(ctx: Ctx) -> list[str]:
    root = voc(ctx)
    Image.fromarray(voc_image(40, 36, 5)).save(root / "SegmentationClass" / f"{VOC_IDS[1]}.png")
    return voc_train(ctx, root)


def no_train_split(root: Path) -> Path:
    (root / "ImageSets" / "Segmentation" / "train.txt").unlink()
    return root


def corrupt_config(ctx: Ctx) -> Path:
    run = ctx.run_copy(checkpoint=True)
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text(text[: len(text) // 2] + '"unterminated')
    return run


def idx_root(ctx: Ctx, damage: Callable[[Path], None] | None = None) -> Path:
    root = ctx.tmp / "mnist"
    write_idx_folder(root, "train", count=30, gz=False)
    write_idx_folder(root, "t10k", count=10, gz=False)
    if damage is not None:
        damage(root / "train-images-idx3-ubyte")
    return root


# -- run directories ----------------------------------------------------------------------------------------------
class Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def resume_with_checkpoint(ctx: Ctx, content: bytes | None) -> list[str]:
    run = ctx.run_copy(checkpoint=True)
    path = run / "checkpoints" / "last.pt"
    if content is None:  # a real checkpoint with a pickled object inside
        state = torch.load(path, weights_only=True)
        torch.save({**state, "payload": Payload(str(ctx.tmp / "pwned"))}, path)
    else:
        path.write_bytes(content)
    return ["train", "--resume", "--out", str(run), "--quiet"]


def other_ablation(ctx: Ctx) -> list[str]:
    from gradlab.ablate.ablation import claim

    claim(ctx.out, {"config": "demo", "set": [], "grid": {"model.kind": ["em", "hem"]}, "seeds": 1,
                    "quick": True, "trials": ["kind-em_seed-0", "kind-hem_seed-0"]})
    return ["ablate", "demo", "--grid", "model.iterations=1,2", "--out", str(ctx.out), "--quick", "--no-report"]


def not_empty(ctx: Ctx) -> list[str]:
    write(ctx.out / "notes.txt", "mine")
    return ["ablate", "demo", "--grid", "model.iterations=1,2", "--out", str(ctx.out), "--quick"]


def ablate(ctx: Ctx, *args: str) -> list[str]:
    return ["ablate", "demo", *args, "--out", str(ctx.out), "--quick", "--no-report"]


def earlier_of_another_ablation(ctx: Ctx) -> list[str]:
    from gradlab.ablate.ablation import claim

    claim(ctx.tmp / "earlier", {"config": "demo", "set": [], "grid": {"model.kind": ["em", "hem"]}, "seeds": 1,
                                "quick": True, "trials": ["kind-em_seed-0", "kind-hem_seed-0"]})
    write(ctx.tmp / "earlier" / "runs.csv", "run,layer\n")
    return ablate(ctx, "--grid", "model.iterations=1,2", "--earlier", str(ctx.tmp / "earlier"))


def damaged_earlier(ctx: Ctx, miou: str = "0.6O", curve_step: str | None = None) -> list[str]:
    """The folder of an earlier run of this same ablation whose runs.csv was hand-edited: a letter O typed for a
    zero in an mIoU (or, with `curve_step`, whose curves.csv has that in a step)."""
    from gradlab.ablate import parse_axis
    from gradlab.ablate.ablation import claim, manifest
    from gradlab.ablate.grid import expand
    from gradlab.ablate.summary import RUN_COLUMNS

    axes = [parse_axis("model.iterations=1,2")]
    trials, _ = expand("demo", axes, 1, [])
    claim(ctx.tmp / "earlier", manifest("demo", axes, 1, [], True, trials))
    rows = [",".join([t.name, "head.ema.em", str(t_train), "0", miou, *[""] * (len(RUN_COLUMNS) - 1)])
            for t, t_train in zip(trials, (1, 2))]
    write(ctx.tmp / "earlier" / "runs.csv", ",".join(["run", "layer", "model.iterations", "seed", *RUN_COLUMNS])
          + "\n" + "\n".join(rows) + "\n")
    if curve_step is not None:
        write(ctx.tmp / "earlier" / "curves.csv", f"run,step,miou,train_loss\n{trials[0].name},{curve_step},0.6,0.3\n")
    return ablate(ctx, "--grid", "model.iterations=1,2", "--earlier", str(ctx.tmp / "earlier"))


def damaged_curves(ctx: Ctx) -> list[str]:
    """The same folder with a good runs.csv and a curves.csv whose step reads "1999.5"."""
    return damaged_earlier(ctx, miou="0.6", curve_step="1999.5")


def compare(ctx: Ctx, *args: str) -> list[str]:
    return ["compare", str(ctx.run_copy("em")), str(ctx.run_copy("hem")), *args]


CASES = [
    # config
    Case("unknown key", lambda c: train(c, "model.bogus=1"), "unknown config key 'model.bogus'; valid keys: seed,",
         what="`--set model.bogus=1`"),
    Case("wrong type", lambda c: train(c, "model.iterations='x'"),
         "model.iterations='x' has the wrong type: expected int", what="`--set model.iterations='x'`"),
    Case("out of range", lambda c: train(c, "model.step_size=2.5"),
         "model.step_size=2.5 is out of range: allowed in (0, 2)", what="`--set model.step_size=2.5`"),
    Case("grad_iterations > iterations", lambda c: train(c, "model.grad_iterations=3"),
         "model.grad_iterations=3 is out of range: allowed 'all' or an integer in [0, model.iterations=2]",
         what="`--set model.grad_iterations=3` with T = 2"),
    Case("min above max", lambda c: train(c, "data.min_sprites=9"), "each min must be <= its max",
         what="`--set data.min_sprites=9` (max_sprites 5)"),
    Case("malformed --set", lambda c: train(c, "model.iterations"),
         "--set 'model.iterations' is not key=value", what="`--set model.iterations`"),
    Case("undecodable --set bytes", lambda c: train(c, "data.root=caf\udce9"),
         "data.root='caf\\udce9' is not valid text", what="`--set data.root=caf\\xe9` (Latin-1 bytes)"),
    Case("missing TOML", lambda c: train(c, config=str(c.tmp / "nowhere.toml")), "no config file",
         subprocess=True, what="`gradlab train nowhere.toml` (in a subprocess)"),
    Case("invalid TOML", lambda c: train(c, config=str(write(c.tmp / "bad.toml", "[model\niterations = 3\n"))),
         "bad.toml is not valid TOML", what="a TOML file with `[model` unclosed"),
    Case("binary config file", lambda c: train(c, config=str(write(c.tmp / "bin.toml", b"\x89PNG\r\n\x1a\n\xff"))),
         "bin.toml is not valid TOML", what="a PNG renamed to .toml"),
    Case("unknown key in TOML", lambda c: train(c, config=str(write(c.tmp / "k.toml", "[model]\nbogus = 1\n"))),
         "unknown config key 'model.bogus'", what="`[model] bogus = 1` in the file"),
    Case("section as a value", lambda c: train(c, config=str(write(c.tmp / "s.toml", "seed = {}\n"))),
         "seed={} has the wrong type: expected int", what="`seed = {}` in the file"),
    Case("voc without root", lambda c: train(c, "data.source=voc"), "data.source='voc' needs data.root",
         what="`--set data.source=voc`"),
    Case("amp on CPU", lambda c: train(c, "train.amp=true", "train.device=cpu"), "train.amp=true needs a CUDA device",
         what="`--set train.amp=true --set train.device=cpu`"),
    Case("batch larger than split", lambda c: train(c, "data.train_length=3", "train.batch_size=4"),
         "train.batch_size=4 is too large: the train split has 3 images",
         what="`train.batch_size=4`, `data.train_length=3`"),
    Case("missing pretrained file", lambda c: train(c, f"model.pretrained='{c.tmp / 'r50.pth'}'"),
         "r50.pth' does not exist", what="`--set model.pretrained=r50.pth` (absent)"),
    # data
    Case("missing data root", lambda c: train(c, "data.source=idx", f"data.root='{c.tmp / 'none'}'"),
         "none is not a folder; pass the folder holding the *-ubyte files",
         what="`data.source=idx`, `data.root` absent"),
    Case("IDX file missing", lambda c: train(c, "data.source=idx", f"data.root='{idx_root(c, os.remove)}'"),
         "IDX file train-images-idx3-ubyte(.gz) is missing from", what="IDX folder without `train-images-idx3-ubyte`"),
    Case("corrupt IDX file", lambda c: train(c, "data.source=idx", f"data.root='{idx_root(c, corrupt_idx)}'"),
         "is not an IDX file (bad magic number)", what="`train-images-idx3-ubyte` overwritten with text"),
    Case("truncated IDX file", lambda c: train(c, "data.source=idx", f"data.root='{idx_root(c, truncate_idx)}'"),
         "the file is truncated or corrupt", what="`train-images-idx3-ubyte` cut to half"),
    Case("VOC missing folder", lambda c: voc_train(c, voc(c, skip=("SegmentationClass",))),
         "has no SegmentationClass/ folder", what="VOC root without `SegmentationClass/`"),
    Case("VOC missing split file", lambda c: voc_train(c, no_train_split(voc(c))),
         "train.txt is missing; splits found: val", what="`ImageSets/Segmentation/train.txt` absent"),
    Case("VOC empty split", lambda c: voc_train(c, voc(c, split=[])), "train.txt lists no ids",
         what="empty `train.txt`"),
    Case("VOC id without image", lambda c: voc_train(c, voc(c, split=["2007_000000", "2007_999999"])),
         "train.txt lists '2007_999999' but", what="`train.txt` names an absent image"),
    Case("VOC corrupt image", voc_corrupt_image, "cannot decode image", leaves="failed run",
         what="a JPEG overwritten with garbage"),
    Case("VOC image/mask size mismatch",
         lambda c: voc_train(c, voc(c, masks=[np.zeros((36, 40), np.uint8), np.zeros((30, 40), np.uint8)])),
         "2007_000001: image 40x36 and mask 40x30 differ in size", leaves="failed run",
         what="a 40x36 image with a 40x30 mask"),
    Case("VOC bad labels", lambda c: voc_train(c, voc(c, masks=bad_label_mask())),
         "has label values [40] outside [0, 21) and not 255", leaves="failed run", what="a mask holding label 40"),
    Case("VOC RGB mask", voc_rgb_mask, "has mode RGB; VOC masks are palette", leaves="failed run",
         what="an RGB PNG as mask"),
    # run directories
    Case("existing run dir", lambda c: train(c, out=write(c.out / "keep.txt", "x").parent),
         "already exists and is not empty: add --resume", what="`--out` holds a file, no `--resume`"),
    Case("--resume on a non-run", lambda c: ["train", "--resume", "--out", str(write(c.out / "x", "").parent)],
         "is not a run directory (no config.toml)", what="`--resume --out` a folder without config.toml"),
    Case("--resume without --out", lambda c: ["train", "--resume"], "--resume needs --out RUN_DIR",
         what="`gradlab train --resume`"),
    Case("corrupt config.toml on resume", lambda c: ["train", "--resume", "--out", str(corrupt_config(c))],
         "config.toml is not valid TOML", what="a run whose config.toml was cut short"),
    Case("corrupt checkpoint", lambda c: resume_with_checkpoint(c, b"PK\x03\x04 truncated zip"),
         "last.pt cannot be read", what="`last.pt` overwritten with garbage"),
    Case("pickled object in checkpoint", lambda c: resume_with_checkpoint(c, None),
         "last.pt cannot be read (UnpicklingError)", what="`last.pt` with a pickled `open(...)` call added"),
    # report, compare, attribute
    Case("report on a missing dir", lambda c: ["report", str(c.tmp / "nowhere"), "--out", str(c.out)],
         "no run directory at", what="`gradlab report nowhere`"),
    Case("report on a folder of no runs", lambda c: ["report", str(write(c.tmp / "e" / "x", "").parent)],
         "is not a run directory (no config.toml) and holds none", what="`gradlab report` a folder without runs"),
    Case("compare unknown --by", lambda c: compare(c, "--by", "model.bogus"),
         "unknown --by key 'model.bogus'; valid keys: seed,", what="`--by model.bogus`"),
    Case("compare unknown quantity", lambda c: compare(c, "--quantity", "grad/q"),
         "recorded per-iteration gradients: grad/mu, grad/x, grad/z", what="`--quantity grad/q`"),
    Case("compare unknown metric", lambda c: compare(c, "--metric", "mean"),
         "unknown metric 'mean'; valid metrics:", what="`--metric mean`"),
    Case("compare --fraction", lambda c: compare(c, "--fraction", "2"), "--fraction 2.0 is out of range",
         what="`--fraction 2`"),
    Case("attribute without checkpoint", lambda c: ["attribute", str(c.run_copy()), "--out", str(c.out)],
         "no checkpoint at", what="a run without checkpoints/"),
    Case("attribute a non-run", lambda c: ["attribute", str(write(c.tmp / "e" / "x", "").parent)],
         "is not a run directory (no config.toml)", what="a folder without config.toml"),
    Case("attribute unknown method", lambda c: ["attribute", str(c.run_copy()), "--method", "shap"],
         "unknown attribution method(s) ['shap']", what="`--method shap`"),
    # ablate
    Case("ablate without --grid", lambda c: ablate(c), "give at least one --grid KEY=V1,V2",
         what="`gradlab ablate demo`"),
    Case("ablate unknown grid key", lambda c: ablate(c, "--grid", "model.bogus=1,2"),
         "unknown config key 'model.bogus'", what="`--grid model.bogus=1,2`"),
    Case("ablate malformed grid", lambda c: ablate(c, "--grid", "model.iterations"),
         "--grid 'model.iterations' is not KEY=V1,V2,...", subprocess=True,
         what="`--grid model.iterations` (in a subprocess)"),
    Case("ablate empty grid value", lambda c: ablate(c, "--grid", "model.iterations=1,,3"),
         "is not KEY=V1,V2,...", what="`--grid model.iterations=1,,3`"),
    Case("ablate repeated value", lambda c: ablate(c, "--grid", "model.iterations=1,1"),
         "--grid 'model.iterations=1,1' repeats a value", what="`--grid model.iterations=1,1`"),
    Case("ablate value out of range", lambda c: ablate(c, "--grid", "model.iterations=0,1"),
         "model.iterations=0 is out of range: allowed >= 1", what="`--grid model.iterations=0,1`"),
    Case("ablate key twice", lambda c: ablate(c, "--grid", "model.iterations=1,2", "--grid", "model.iterations=3"),
         "--grid names a key twice", what="two `--grid model.iterations=...`"),
    Case("ablate seed axis", lambda c: ablate(c, "--grid", "seed=0,1"), "seed is not a grid axis: use --seeds N",
         what="`--grid seed=0,1`"),
    Case("ablate --seeds 0", lambda c: ablate(c, "--grid", "model.iterations=1,2", "--seeds", "0"),
         "--seeds 0 is out of range: allowed >= 1", what="`--seeds 0`"),
    Case("ablate --workers 0", lambda c: ablate(c, "--grid", "model.iterations=1,2", "--workers", "0"),
         "--workers 0 is out of range: allowed >= 1", what="`--workers 0`"),
    Case("ablate another ablation's --out", other_ablation, "holds another ablation (grid, trials differ",
         what="`--out` holds ablation.json of another grid"),
    Case("ablate non-empty --out", not_empty, "exists, is not empty and holds no ablation.json",
         what="`--out` holds an unrelated file"),
    Case("usage: unknown command", lambda c: ["trian", "demo"], "invalid choice: 'trian'", subprocess=True,
         what="`gradlab trian demo` (a typo; argparse's error as one line)"),
    Case("usage: not a number", lambda c: ablate(c, "--grid", "model.iterations=1,2", "--seeds", "abc"),
         "argument --seeds: invalid int value: 'abc'", subprocess=True, what="`--seeds abc`"),
    # presets
    Case("unknown preset", lambda c: train(c, config="demoo"),
         "no config file 'demoo': give a TOML path or a preset (ablation, demo, voc)",
         what="`gradlab train demoo` (a typo of a preset)"),
    Case("ablate unknown preset", lambda c: ["ablate", "demoo", "--grid", "model.iterations=1,2", "--out",
                                             str(c.out), "--quick"],
         "no config file 'demoo': give a TOML path or a preset (ablation, demo, voc)",
         what="`gradlab ablate demoo --grid model.iterations=1,2`"),
    Case("--list-presets with a config", lambda c: ["train", "demo", "--list-presets"],
         "--list-presets cannot be combined with a config (demo): it only prints the presets",
         what="`gradlab train demo --list-presets`"),
    Case("--list-presets with --out", lambda c: ["train", "--list-presets", "--out", str(c.out)],
         "--list-presets cannot be combined with --out: it only prints the presets", subprocess=True,
         what="`gradlab train --list-presets --out DIR` (in a subprocess)"),
    Case("negative Jacobian schedule", lambda c: train(c, "record.jacobian_every=-1"),
         "record.jacobian_every=-1 is out of range: allowed >= 0", what="`--set record.jacobian_every=-1`"),
    Case("no Jacobian images", lambda c: train(c, "record.jacobian_images=0"),
         "record.jacobian_images=0 is out of range: allowed >= 1", what="`--set record.jacobian_images=0`"),
    Case("ablate --earlier missing", lambda c: ablate(c, "--grid", "model.iterations=1,2", "--earlier",
                                                      str(c.tmp / "earlier")),
         "give the folder of an earlier run of this ablation, with its ablation.json and runs.csv",
         what="`--earlier` names a folder that does not exist"),
    Case("ablate --earlier of another ablation", earlier_of_another_ablation,
         "another ablation (grid, trials differ from this one's)",
         what="`--earlier` names the folder of another grid's ablation"),
    Case("negative diagnostics schedule", lambda c: train(c, "record.diagnostics_every=-1"),
         "record.diagnostics_every=-1 is out of range: allowed >= 0", what="`--set record.diagnostics_every=-1`"),
    Case("linked axis short of a value", lambda c: ablate(c, "--grid", "model.grad_mode:model.grad_iterations="
                                                                       "unrolled:0,implicit"),
         "'implicit' is not one value per linked key (2 values joined by ':', e.g. V:V)",
         what="`--grid model.grad_mode:model.grad_iterations=unrolled:0,implicit`"),
    Case("ablate --earlier with a damaged runs.csv", damaged_earlier,
         "its runs.csv has '0.6O' in column miou of run 'iterations-1_seed-0': not a number",
         what="`--earlier` names a folder whose runs.csv has text where a number belongs"),
    Case("ablate --earlier with a damaged curves.csv", damaged_curves,
         "its curves.csv has 1999.5 in column step of run 'iterations-1_seed-0': not an integer",
         what="`--earlier` names a folder whose curves.csv has a fractional step"),
]



def corrupt_idx(path: Path) -> None:
    path.write_text("these are not the images you are looking for")


def truncate_idx(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def state(root: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def run_cli(argv: list[str], in_subprocess: bool, capsys, cwd: Path) -> tuple[int, str]:
    if in_subprocess:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-m", "gradlab", *argv], capture_output=True, text=True, cwd=cwd,
                              env=env, timeout=120)
        return proc.returncode, proc.stderr
    old = os.getcwd()
    os.chdir(cwd)
    try:
        code = main(argv)
    finally:
        os.chdir(old)
    return code, capsys.readouterr().err


def test_the_matrix_is_big_enough():
    assert len([c for c in CASES if not c.marks]) >= 25 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_exits_2_with_one_line_and_leaves_no_partial_output(case, tmp_path, tmp_path_factory, capsys):
    ctx = Ctx(tmp_path, tmp_path_factory)
    argv = case.args(ctx)
    before = state(tmp_path)
    capsys.readouterr()
    code, err = run_cli(argv, case.subprocess, capsys, tmp_path)

    assert code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, f"not exactly one line:\n{err}"
    line = err.rstrip("\n")
    assert line.startswith("gradlab: error: "), line
    assert case.fragment.replace("{tmp}", str(tmp_path)) in line, line
    after = state(tmp_path)
    if case.leaves == "nothing":
        assert after == before, sorted(set(after.items()) ^ set(before.items()))
    else:
        new = {p for p in after if p not in before}
        assert new and all(p == ctx.out or ctx.out in p.parents for p in new), new
        meta = json.loads((ctx.out / "meta.json").read_text())
        assert meta["status"] == "failed" and case.fragment in meta["error"]
        assert not (ctx.out / "checkpoints" / "last.pt").exists()
    assert not (tmp_path / "pwned").exists()
