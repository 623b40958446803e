"""The video ingest of one manifest row as an Apache Beam step (builders that run on Beam).

A worker decodes and processes its source into a scratch file of its own, yields
the clip examples, and puts the source's report entry on the `report` output; the
builder gathers those into `ingest_report.json` once the pipeline has run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

from stress_jax.preprocess import examples, ingest
from stress_jax.preprocess.config import PreprocessConfig
from stress_jax.preprocess.manifest import Row

REPORT_TAG = "report"


def job(row, source: str, config: PreprocessConfig) -> dict:
  """What a Beam worker needs to process one row (plain values: Beam pickles elements)."""
  return dict(row=dataclasses.asdict(row), source=source, config=config.to_dict())


def process(element: dict):
  """Beam FlatMap: a job -> (key, example) pairs, and its report entry on REPORT_TAG."""
  from apache_beam.pvalue import TaggedOutput

  row, config = Row(**element["row"]), PreprocessConfig(**element["config"])
  if row.follow:
    config = config.replace(follow=row.follow)  # the manifest row's choice of whom to follow
  result = ingest.SourceResult.for_row(row)
  with tempfile.TemporaryDirectory() as scratch:
    summary = ingest.process_source(
      element["source"], config, Path(scratch) / "clips.npz", start_s=row.start_s, end_s=row.end_s
    )
    for key, value in summary.items():
      setattr(result, key, value)
    yield from examples.iter_examples(result, config.num_frames)
  result.scratch = ""
  yield TaggedOutput(REPORT_TAG, result.report_entry())


def write_part(entries: list[dict], path: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Path(path).write_text(json.dumps(entries))


def read_parts(folder: str | os.PathLike) -> list[ingest.SourceResult]:
  """The report entries every split's Beam step wrote, as SourceResults."""
  results = []
  for part in sorted(Path(folder).glob("*.json")):
    for entry in json.loads(part.read_text()):
      results.append(ingest.SourceResult(**entry))
  return sorted(results, key=lambda r: r.line)


def ptransform(jobs: list[dict], part_path: str):
  """Processes `jobs` on the Beam runner; returns the examples' PCollection."""
  import tensorflow_datasets as tfds

  beam = tfds.core.lazy_imports.apache_beam

  def expand(pipeline):
    processed = (
      pipeline
      | "Sources" >> beam.Create(jobs)
      # One video per element: the unit of work is a source, minutes of decoding.
      | "Spread" >> beam.Reshuffle()
      | "Process" >> beam.FlatMap(process).with_outputs(REPORT_TAG, main="examples")
    )
    _ = (
      processed[REPORT_TAG]
      | "Gather" >> beam.combiners.ToList()
      | "WriteReport" >> beam.Map(write_part, path=part_path)
    )
    return processed.examples

  return beam.ptransform_fn(expand)()
