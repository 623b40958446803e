"""Sections `ingest` and `yonsei`: dataset-building throughput.

Thin workers over benchmarks/ingest_bench.py (video -> face crops -> records) and
benchmarks/yonsei_bench.py (feature-map database build), which also run alone.
"""

from __future__ import annotations

import numpy as np


def worker_ingest(s: dict) -> dict:
  from benchmarks import ingest_bench

  return ingest_bench.run(quick=s["quick"])


def worker_yonsei(s: dict) -> dict:
  from benchmarks import yonsei_bench

  np.seterr(all="ignore")
  return yonsei_bench.run(quick=s["quick"])
