"""The one JSON writer of every file the project writes: strict JSON, never NaN.

Python's json writes NaN and Infinity, which JSON does not have: jq, browsers and
most other languages refuse the file. An undefined figure (the precision of a class
never predicted) is written as null instead, and numpy scalars and arrays as plain
numbers and lists. Imports only numpy, so any layer may use it.
"""

from __future__ import annotations

import json
import math

import numpy as np


def json_safe(value):
  """NaN/inf -> None, numpy scalars and arrays -> Python; tuples -> lists."""
  if isinstance(value, dict):
    return {str(k): json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  if isinstance(value, np.ndarray):
    return json_safe(value.tolist())
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, (np.floating, float)):
    return float(value) if math.isfinite(value) else None
  if isinstance(value, np.integer):
    return int(value)
  return value


def dumps(value, **kwargs) -> str:
  """json.dumps of `json_safe(value)`; a NaN that slipped through raises, not writes."""
  return json.dumps(json_safe(value), allow_nan=False, **kwargs)


def write(path, value, *, indent: int | None = 2, **kwargs) -> None:
  """`path` (a pathlib or epath Path) holds `value` as strict JSON, newline-terminated."""
  path.write_text(dumps(value, indent=indent, **kwargs) + "\n")
