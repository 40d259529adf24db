from __future__ import annotations

import gzip

import numpy as np
import pytest

from gradlab.data.idx import encode_idx, parse_idx, read_idx, write_idx
from gradlab.errors import DataError


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_write_then_read_round_trips_values_shape_and_dtype(tmp_path, suffix, dtype):
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    path = tmp_path / f"x-idx3{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_header_matches_the_mnist_magic_numbers():
    assert encode_idx(np.zeros((2, 28, 28), np.uint8))[:4] == bytes([0, 0, 0x08, 3])  # 2051
    assert encode_idx(np.zeros(2, np.uint8))[:4] == bytes([0, 0, 0x08, 1])  # 2049


def test_sizes_are_big_endian_as_in_mnist_files():
    data = encode_idx(np.zeros((60000, 28, 28), np.uint8))
    assert data[4:8] == (60000).to_bytes(4, "big") and data[8:16] == (28).to_bytes(4, "big") * 2


def test_nonzero_leading_bytes_are_a_bad_magic_number():
    with pytest.raises(DataError, match="magic"):
        parse_idx(b"\x1f\x8b\x08\x01" + bytes(8))


def test_unknown_dtype_code_is_rejected():
    with pytest.raises(DataError, match="dtype code 0x07"):
        parse_idx(bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]))


def test_truncated_header_is_rejected():
    with pytest.raises(DataError, match="header"):
        parse_idx(bytes([0, 0, 0x08, 3, 0, 0, 0, 2]))


@pytest.mark.parametrize("cut", [1, 100])
def test_truncated_data_is_rejected(cut):
    data = encode_idx(np.ones((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match="truncated or corrupt"):
        parse_idx(data[:-cut])


def test_trailing_bytes_are_rejected():
    with pytest.raises(DataError, match="truncated or corrupt"):
        parse_idx(encode_idx(np.ones(4, np.uint8)) + b"\x00")


def test_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope-idx1-ubyte")


def test_corrupt_gzip_raises_data_error(tmp_path):
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(encode_idx(np.ones(100, np.uint8)))[:-12])
    with pytest.raises(DataError, match="cannot be read"):
        read_idx(path)


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    write_idx(tmp_path / "a-idx1-ubyte", np.ones(3, np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["a-idx1-ubyte"]


def test_unsupported_dtype_cannot_be_written(tmp_path):
    with pytest.raises(DataError, match="cannot store dtype"):
        write_idx(tmp_path / "x", np.ones(3, np.int64))
