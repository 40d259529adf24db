"""Write a figure to PNG, SVG or PDF atomically (temp file beside the target, then `os.replace`)."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from gradlab.atomic import atomic_path
from gradlab.plots.frames import PlotInputError
from gradlab.plots.style import house_style

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def save(fig: Figure, path: str | os.PathLike, *, dpi: int = 150) -> Path:
    """Save `fig` in the format its suffix names (.png, .svg, .pdf); readers never see a half-written file."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise PlotInputError(f"cannot save {path.name!r}: the suffix must be one of {sorted(FORMATS)}")
    with house_style(), atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, metadata=_metadata(fmt))
    return path


def _metadata(fmt: str) -> dict[str, str | None]:
    """No creation date in SVG/PDF, so one figure saved twice gives the same bytes."""
    return {"Date": None} if fmt == "svg" else {"CreationDate": None} if fmt == "pdf" else {}
