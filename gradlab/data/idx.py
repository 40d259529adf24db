"""IDX files (the MNIST / Fashion-MNIST format): read and write, with the header validated.

Layout: two zero bytes, a dtype code, the number of dimensions d, then d big-endian uint32 sizes, then the
values in C order, big-endian. Files may be gzip-compressed (``.gz``).
"""

from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np

from gradlab.errors import DataError

# dtype code (third byte of the magic number) -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist; check the dataset root") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"IDX file {path} cannot be read ({exc}); re-download or re-extract it") from None


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array of native byte order; DataError on a bad magic number or size."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{source} is not an IDX file (bad magic number); check the path or re-download it")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise DataError(f"{source} has unknown IDX dtype code 0x{code:02x}; the file is corrupt")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source} is truncated inside its IDX header; re-download it")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{source} holds {len(data) - header} data bytes but its header {shape} needs {expected}; "
            "the file is truncated or corrupt, re-download it"
        )
    values = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (plain or ``.gz``) into a numpy array."""
    path = Path(path)
    return parse_idx(_read_bytes(path), source=str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """Encode an array as IDX bytes (the inverse of :func:`parse_idx`)."""
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    dtype = np.asarray(array).dtype.newbyteorder("=")
    if dtype not in codes:
        raise DataError(f"IDX cannot store dtype {dtype}; use uint8, int8, int16, int32, float32 or float64")
    array = np.ascontiguousarray(array)
    header = bytes([0, 0, codes[dtype], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(IDX_DTYPES[codes[dtype]]).tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write an array as an IDX file atomically, gzip-compressed when the name ends in ``.gz``."""
    path = Path(path)
    data = encode_idx(array)
    if path.suffix == ".gz":
        data = gzip.compress(data)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
