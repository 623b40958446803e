"""A resumed run logs each step once: metrics.jsonl and TensorBoard drop steps after the restore."""

from __future__ import annotations

import json

from stress_jax import export_settings, provenance
from stress_jax.metric_writer import MetricWriter, read_metrics
from tests import tiny_config


def _events(path):
  """The Event protos of one TensorBoard event file (TFRecord framing, no TensorFlow)."""
  from tensorboardX.proto.event_pb2 import Event

  data, events, offset = path.read_bytes(), [], 0
  while offset < len(data):
    length = int.from_bytes(data[offset : offset + 8], "little")
    offset += 12  # length, its CRC
    events.append(Event.FromString(data[offset : offset + length]))
    offset += length + 4  # payload, its CRC
  return events


def test_resume_truncates_metrics_to_the_restored_step(tmp_path):
  first = MetricWriter(tmp_path, enabled=True)
  for step in range(1, 8):  # checkpoint at 5, killed after logging step 7
    first.write(step, {"loss": 1.0 / step}, prefix="train/")
  first.close()
  resumed = MetricWriter(tmp_path, enabled=True, resume_step=5)
  for step in range(6, 9):
    resumed.write(step, {"loss": 10.0 + step}, prefix="train/")
  resumed.close()
  rows = read_metrics(tmp_path)
  assert [r["step"] for r in rows] == list(range(1, 9))
  assert rows[5]["train/loss"] == 16.0  # step 6 is the resumed run's
  # The resumed run's event file tells TensorBoard to purge every step after 5.
  from tensorboardX.proto.event_pb2 import SessionLog

  newest = max((tmp_path / "tensorboard").glob("events.*"), key=lambda p: p.stat().st_mtime_ns)
  events = _events(newest)
  starts = [e.step for e in events if e.session_log.status == SessionLog.START]
  assert starts == [6]
  assert [e.step for e in events if e.summary.value] == [6, 7, 8]


def test_export_takes_the_face_pipeline_from_the_dataset(tmp_path):
  config = tiny_config.get_config()
  recorded = {"dataset_metadata": {"preprocess": {"fps": 7.5, "num_frames": 4, "stride": 3}}}
  provenance.record(tmp_path, recorded)
  settings, source = export_settings.preprocess_settings(tmp_path, config, num_frames=4)
  assert (settings["fps"], settings["stride"]) == (7.5, 3)
  assert source == "dataset metadata (provenance.json)"
  recorded["dataset_metadata"]["preprocess"]["num_frames"] = 8
  (tmp_path / provenance.FILE_NAME).write_text(json.dumps(recorded))
  try:
    export_settings.preprocess_settings(tmp_path, config, num_frames=4)
  except Exception as error:  # noqa: BLE001
    assert "cut 8-frame clips but the model takes 4" in str(error)
  else:
    raise AssertionError("a clip length that differs from the model's was accepted")
