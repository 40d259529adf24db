"""The CLI: one-line errors with exit status 2, nothing left claiming to be complete, and --help."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gradlab.cli import main
from tests.data.conftest import save_palette_png, voc_image
from tests.train.conftest import TINY


def voc_folder(root, sizes=((40, 36), (40, 36)), masks=None, train_ids=None):
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    ids = [f"2007_{i:06d}" for i in range(len(sizes))]
    for i, (sid, (w, h)) in enumerate(zip(ids, sizes)):
        Image.fromarray(voc_image(w, h, i)).save(root / "JPEGImages" / f"{sid}.jpg")
        mask = masks[i] if masks else np.zeros((h, w), dtype=np.uint8)
        save_palette_png(root / "SegmentationClass" / f"{sid}.png", mask)
    split = root / "ImageSets" / "Segmentation"
    (split / "train.txt").write_text("\n".join(ids if train_ids is None else train_ids) + "\n")
    (split / "val.txt").write_text("\n".join(ids) + "\n")
    return root


def run_cli(capsys, *args):
    code = main(list(args))
    err = capsys.readouterr().err.strip()
    return code, err


def train_args(tmp_path, *sets):
    args = ["train", "demo", "--out", str(tmp_path / "run"), "--quiet"]
    for s in [*TINY, *sets]:
        args += ["--set", s]
    return args


def assert_not_complete(tmp_path):
    meta = tmp_path / "run" / "meta.json"
    assert not meta.exists() or json.loads(meta.read_text())["status"] != "complete"


@pytest.mark.parametrize(
    "sets,message",
    [
        (["model.bogus=1"], "unknown config key 'model.bogus'; valid keys:"),
        (["model.iterations='x'"], "wrong type"),
        (["model.temperature=-1"], "model.temperature=-1 is out of range: allowed > 0"),
        (["data.source=idx", "data.root=/nonexistent/idx"], "/nonexistent/idx"),
        (["train.amp=true", "train.device=cpu"], "train.amp=true needs a CUDA device"),
    ],
)
def test_bad_config_and_missing_data_exit_2_with_one_line(tmp_path, capsys, sets, message):
    code, err = run_cli(capsys, *train_args(tmp_path, *sets))
    assert code == 2 and err.startswith("gradlab: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_voc_empty_split(tmp_path, capsys):
    root = voc_folder(tmp_path / "VOC", train_ids=[])
    code, err = run_cli(capsys, *train_args(tmp_path, "data.source=voc", f"data.root='{root}'"))
    assert code == 2 and "empty" in err and "\n" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("case", ["size_mismatch", "bad_label"])
def test_voc_bad_masks_fail_cleanly(tmp_path, capsys, case, workers):
    masks = [np.zeros((36, 40), dtype=np.uint8), np.zeros((36, 40), dtype=np.uint8)]
    if case == "size_mismatch":
        masks[1] = np.zeros((30, 40), dtype=np.uint8)
    else:
        masks[1][5, 5] = 40  # VOC has classes 0..20 and 255
    root = voc_folder(tmp_path / "VOC", masks=masks)
    code, err = run_cli(capsys, *train_args(tmp_path, "data.source=voc", f"data.root='{root}'", "train.batch_size=1",
                                            "data.train_length=2", "data.size=32", f"data.workers={workers}"))
    assert code == 2 and "2007_000001" in err and "\n" not in err, err
    assert_not_complete(tmp_path)


def test_existing_run_directory_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("x")
    code, err = run_cli(capsys, *train_args(tmp_path))
    assert code == 2 and "--resume" in err
    assert (tmp_path / "run" / "keep.txt").read_text() == "x"


def test_resume_without_a_run_directory(tmp_path, capsys):
    code, err = run_cli(capsys, "train", "--resume", "--out", str(tmp_path / "none"))
    assert code == 2 and "not a run directory" in err


def test_train_help_lists_every_key(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "model.grad_iterations" in out and "record.every" in out and "train.checkpoint_every" in out
    assert "presets: ablation, demo, voc" in out


def test_list_presets_prints_each_preset_with_its_description(capsys):
    assert main(["train", "--list-presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["ablation", "demo", "voc"]
    assert lines[1].startswith("demo       The demo: a tiny dilated ResNet")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from tests.report.runs import tiny_runs

    return tiny_runs(tmp_path_factory)


def test_report_prints_the_path_of_its_html_file(runs, tmp_path, capsys):
    code = main(["report", str(runs["em"]), str(runs["hem"]), "--out", str(tmp_path / "out"), "--title", "EM vs HEM"])
    out = capsys.readouterr().out.strip()
    assert code == 0 and out == str(tmp_path / "out" / "report.html")
    assert "<title>EM vs HEM</title>" in (tmp_path / "out" / "report.html").read_text()
    assert (tmp_path / "out" / "report.md").is_file()


def test_compare_prints_one_row_per_group(runs, capsys):
    code = main(["compare", *map(str, runs.values()), "--by", "model.kind"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and lines[0].startswith("decades of grad/x over the last 10%")
    assert lines[2].split()[:5] == ["model.kind", "layer", "runs", "decades", "95%"]
    assert [line.split()[:3] for line in lines[3:]] == [["em", "head.ema.em", "1"], ["hem", "head.ema.em", "2"]]


def test_compare_by_two_keys_and_another_metric(runs, capsys):
    code = main(["compare", *map(str, runs.values()), "--by", "model.kind", "--by", "model.grad_iterations",
                 "--quantity", "grad/mu", "--metric", "rho"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and lines[0].startswith("rho of grad/mu") and len(lines) == 3 + 3


@pytest.mark.parametrize("args,message", [
    (["report", "{missing}"], "no run directory at"),
    (["compare", "{missing}", "--by", "model.kind"], "no run directory at"),
    (["compare", "{em}", "--by", "model.bogus"], "unknown --by key 'model.bogus'; valid keys: seed, "),
    (["compare", "{em}", "--quantity", "grad/q"], "recorded per-iteration gradients: grad/mu, grad/x, grad/z"),
    (["compare", "{em}", "--metric", "mean"], "unknown metric 'mean'; valid metrics: first, last"),
    (["compare", "{em}", "--fraction", "2"], "--fraction 2.0 is out of range"),
])
def test_report_and_compare_errors_exit_2_with_one_line(runs, tmp_path, capsys, args, message):
    args = [a.format(missing=tmp_path / "nowhere", em=runs["em"]) for a in args]
    code, err = run_cli(capsys, *args)
    assert code == 2 and err.startswith("gradlab: error: ") and message in err and "\n" not in err


def test_a_users_os_error_is_one_line_and_gradlab_debug_shows_its_traceback(tmp_path, capsys, monkeypatch):
    """An --out under a file is refused before any work; an OS error later (a folder that cannot be written)
    is one line too, and GRADLAB_DEBUG=1 shows its traceback instead."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as stop:  # a usage error, as argparse reports them
        main(["report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "file" / "report")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gradlab: error: argument --out:") and "is a file" in err[0]
    monkeypatch.setattr("gradlab.report.build_report",
                        lambda *a, **k: (tmp_path / "file" / "report.html").write_text("y"))
    assert main(["report", "r"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"gradlab: error: Not a directory: {tmp_path / 'file' / 'report.html'}"]
    monkeypatch.setenv("GRADLAB_DEBUG", "1")
    with pytest.raises(NotADirectoryError):
        main(["report", "r"])
