"""The IDX file format of MNIST-style data sets (http://yann.lecun.com/exdb/mnist/), .gz or raw."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import torch

from mnist_cli.errors import UserError

UBYTE = 0x08  # the only element type MNIST-style files use


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file of unsigned bytes into a uint8 tensor of the shape its header gives."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path}: cannot read it ({e}); delete it and download or copy it again") from None
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != UBYTE or not 1 <= data[3] <= 4:
        raise UserError(f"{path}: not an IDX file of bytes (bad magic number); replace it with the original file")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: truncated header; delete it and download or copy it again")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + torch.Size(shape).numel()
    if len(data) != expected:
        raise UserError(
            f"{path}: {len(data)} bytes but its header says {expected} ({'x'.join(map(str, shape))}); "
            "the file is truncated or corrupt: delete it and download or copy it again"
        )
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(shape)


def write_idx(path: Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor as an IDX file (gzipped when the name ends in .gz)."""
    header = bytes([0, 0, UBYTE, array.dim()]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    data = header + array.to(torch.uint8).contiguous().numpy().tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
