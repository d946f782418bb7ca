"""The IDX file format of MNIST-style data sets (http://yann.lecun.com/exdb/mnist/), .gz or raw."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from mnist_cli.errors import UserError

# The element types MNIST-style files use: bytes (images, labels), big-endian int32 (QMNIST's labels).
UBYTE, INT = 0x08, 0x0C
ITEM_SIZE = {UBYTE: 1, INT: 4}


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file into a tensor of the shape its header gives: uint8 for bytes, int32 for ints."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path}: cannot read it ({e}); delete it and download or copy it again") from None
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] not in ITEM_SIZE or not 1 <= data[3] <= 4:
        raise UserError(
            f"{path}: not an IDX file of bytes or ints (bad magic number); replace it with the original file"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: truncated header; delete it and download or copy it again")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + torch.Size(shape).numel() * ITEM_SIZE[data[2]]
    if len(data) != expected:
        raise UserError(
            f"{path}: {len(data)} bytes but its header says {expected} ({'x'.join(map(str, shape))}); "
            "the file is truncated or corrupt: delete it and download or copy it again"
        )
    if data[2] == INT:
        values = np.frombuffer(data, dtype=">i4", offset=header).astype(np.int32)
        return torch.from_numpy(values).reshape(shape)
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(shape)


def write_idx(path: Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor (or an int32 one, as ints) as an IDX file (gzipped when the name ends in .gz)."""
    kind = INT if array.dtype == torch.int32 else UBYTE
    header = bytes([0, 0, kind, array.dim()]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    values = array.contiguous().numpy().astype(">i4") if kind == INT else array.to(torch.uint8).contiguous().numpy()
    data = header + values.tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
