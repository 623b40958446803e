"""Checking and reading one frame's .npy file without trusting it.

`check_npy` reads the header and the file size only (planning a build must not read
every array); `load_frame` reads the array and applies the same checks. A defect is an
`NpyError` whose `kind` is one of the build report's problem kinds.
"""

from __future__ import annotations

import functools
import io
import os

import numpy as np

from stress_jax.featuredb.layout import FEATURE_DTYPES, FEATURE_SHAPE


class NpyError(Exception):
  def __init__(self, kind: str, detail: str):
    super().__init__(f"{kind}: {detail}")
    self.kind = kind
    self.detail = detail


_MAGIC = b"\x93NUMPY"
_MAX_HEADER = 10_000  # numpy's own limit for headers it will parse safely


def _parse_header(stream) -> tuple[tuple[int, ...], bool, np.dtype, int]:
  """(shape, fortran_order, dtype, data offset) from the start of an .npy stream."""
  prefix = stream.read(10)
  if len(prefix) < 10 or prefix[:6] != _MAGIC:
    raise NpyError("unreadable", "not an .npy file (bad magic string)")
  if prefix[6] == 1:
    length, start = int.from_bytes(prefix[8:10], "little"), 10
  elif prefix[6] in (2, 3):
    prefix += stream.read(2)
    length, start = int.from_bytes(prefix[8:12], "little"), 12
  else:
    raise NpyError("unreadable", f"unsupported .npy version {prefix[6]}.{prefix[7]}")
  if length > _MAX_HEADER:
    raise NpyError("unreadable", f"header of {length} bytes")
  header = stream.read(length)
  if len(header) < length:
    raise NpyError("unreadable", "header cut short")
  return (*_decode_header(prefix[:start] + header), start + length)


@functools.lru_cache(maxsize=64)
def _decode_header(blob: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
  # Every frame of a database carries the same header bytes: parse them once.
  stream = io.BytesIO(blob)
  try:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
      return np.lib.format.read_array_header_1_0(stream)
    # 3.0 differs from 2.0 only in allowing utf-8 field names, never in a float map.
    return np.lib.format.read_array_header_2_0(stream)
  except (ValueError, EOFError, SyntaxError, TypeError) as error:
    raise NpyError("unreadable", str(error) or type(error).__name__) from error


def _check_header(shape, dtype: np.dtype) -> None:
  if dtype.fields or not any(
    dtype.kind == "f" and dtype.itemsize == ok.itemsize for ok in FEATURE_DTYPES
  ):
    raise NpyError("wrong_dtype", f"dtype {dtype.str}, expected float32 or float16")
  if tuple(shape) != FEATURE_SHAPE:
    raise NpyError("wrong_shape", f"shape {tuple(shape)}, expected {FEATURE_SHAPE}")


def _check_size(size: int, data_offset: int, dtype: np.dtype) -> None:
  expected = data_offset + int(np.prod(FEATURE_SHAPE)) * dtype.itemsize
  if size < expected:
    raise NpyError("truncated", f"{size} bytes, expected {expected}")
  if size > expected:
    raise NpyError("bad_size", f"{size} bytes, expected {expected}")


def check_npy(path: str) -> None:
  """Raises NpyError unless `path` is a complete float32/float16 (7, 7, 256) .npy.

  Reads only the header (a few hundred bytes) and the file size, never the array.
  """
  try:
    with open(path, "rb") as stream:
      shape, _, dtype, offset = _parse_header(stream)
      _check_header(shape, dtype)
      _check_size(os.fstat(stream.fileno()).st_size, offset, dtype)
  except OSError as error:
    raise NpyError("unreadable", str(error)) from error


def load_frame(path: str) -> np.ndarray:
  """(7, 7, 256) float32 in native byte order; raises NpyError on any defect."""
  try:
    with open(path, "rb") as handle:
      raw = handle.read()
  except OSError as error:
    raise NpyError("unreadable", str(error)) from error
  shape, fortran_order, dtype, offset = _parse_header(io.BytesIO(raw))
  _check_header(shape, dtype)
  _check_size(len(raw), offset, dtype)
  array = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape)), offset=offset)
  array = array.reshape(shape, order="F" if fortran_order else "C")
  return np.ascontiguousarray(array, dtype=np.float32)
