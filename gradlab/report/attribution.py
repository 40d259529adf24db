"""Attribution results a run may hold (written by a later gradlab feature): `attribution.parquet` and
`report/attribution*.png` in the run directory. Included when present, skipped silently otherwise."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from gradlab.atomic import atomic_path

TABLE_ROWS = 20


def attribution_images(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "report").glob("attribution*.png"))


def attribution_table(run_dir: Path) -> pd.DataFrame | None:
    """The first TABLE_ROWS rows of run_dir/attribution.parquet, or None (absent or unreadable)."""
    path = run_dir / "attribution.parquet"
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path).head(TABLE_ROWS)
    except Exception:  # an optional extra: an unreadable file is reported as absent
        return None


def copy_image(source: Path, folder: Path, run: str) -> Path:
    """Copy a PNG into the report's figures folder under a name made safe from the run's name."""
    target = folder / f"attribution-{slug(run)}-{source.name}"
    with atomic_path(target) as tmp:
        tmp.write_bytes(source.read_bytes())
    return target


def slug(name: str) -> str:
    """A file-name-safe version of a run name ("em/seed0" → "em-seed0")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "run"
