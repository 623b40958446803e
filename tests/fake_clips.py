"""A tiny dataset in the shared clip layout for pipeline and training tests.

Each class has its own mean frame brightness, so a model can learn it in a few
steps; subjects shift the brightness a little. Registered with TFDS on import as
`fake_clips`. Run as a script to build it: `python tests/fake_clips.py DATA_DIR`.
"""

from __future__ import annotations

import sys

import numpy as np
import tensorflow_datasets as tfds

from stress_jax.faces import records

NUM_SUBJECTS = 6
CLIPS_PER_SUBJECT = 9
NUM_FRAMES = 4
LABELS = ("low", "mid", "high")


class FakeClips(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self, features=records.clip_features(NUM_FRAMES, LABELS, synthetic=True)
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {f"s{k:02d}": self._generate_examples(k) for k in range(NUM_SUBJECTS)}

  def _generate_examples(self, subject):
    rng = np.random.default_rng(subject)
    for clip in range(CLIPS_PER_SUBJECT):
      label = clip % len(LABELS)
      level = 60 + 60 * label + rng.integers(-10, 10)
      frames = rng.normal(level, 20, (NUM_FRAMES, 112, 112, 3)).clip(0, 255).astype(np.uint8)
      mask = np.ones(NUM_FRAMES, bool)
      mask[-1] = clip % 2 == 0
      landmarks = rng.uniform(0.2, 0.8, (NUM_FRAMES, 68, 2)).astype(np.float32)
      yield (
        f"s{subject:02d}_{clip}",
        {
          "frames": records.encode_frames(frames),
          "landmarks": landmarks,
          "frame_mask": mask,
          "label": label,
          "subject": f"s{subject:02d}",
          "video": f"s{subject:02d}/v{clip // 3}",
          "start_frame": clip * NUM_FRAMES,
          "cue_frames": np.arange(NUM_FRAMES) < label,
          "cue_region": np.zeros((NUM_FRAMES, 28, 28), np.uint8),
          "cue_events": np.tile(np.float32([-1, 0, 0, 0]), (4, 1)),
        },
      )


def build(data_dir) -> tfds.core.DatasetBuilder:
  builder = FakeClips(data_dir=str(data_dir), file_format="array_record")
  builder.download_and_prepare()
  return builder


if __name__ == "__main__":
  build(sys.argv[1])
