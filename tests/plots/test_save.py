from __future__ import annotations

import pytest

from gradlab.plots import decay_curves, save
from tests.plots.synthetic import make_records

MAGIC = {".png": b"\x89PNG", ".svg": b"<?xml", ".pdf": b"%PDF"}


@pytest.fixture(scope="module")
def fig():
    return decay_curves(make_records(kinds=("em",), steps=range(3)))


@pytest.mark.parametrize("suffix", sorted(MAGIC))
def test_save_writes_the_format_of_the_suffix_and_leaves_no_temp_file(fig, tmp_path, suffix):
    path = save(fig, tmp_path / "sub" / f"decay{suffix}")
    assert path.read_bytes().startswith(MAGIC[suffix]) and path.stat().st_size > 1000
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_svg_and_pdf_are_reproducible(fig, tmp_path):
    for suffix in (".svg", ".pdf"):
        first = save(fig, tmp_path / f"a{suffix}").read_bytes()
        assert save(fig, tmp_path / f"b{suffix}").read_bytes() == first


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temp_file(fig, tmp_path, monkeypatch):
    path = save(fig, tmp_path / "decay.png")
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        save(fig, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["decay.png"]


def test_unknown_suffix_raises(fig, tmp_path):
    with pytest.raises(ValueError, match=r"\.jpg.*\.pdf"):
        save(fig, tmp_path / "decay.jpg")
    assert list(tmp_path.iterdir()) == []
