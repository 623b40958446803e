"""Your own recordings: face clips cut from videos listed in a manifest.

Lay out a folder as described in `stress_jax/preprocess/manifest.py` (manifest.csv
with path, subject, label[, session, start_s, end_s] + the media), then build
once and train:

  python -m stress_jax.data.build stress_faces/video --manual_dir=/path/to/videos
  python train.py --config=stress_jax/configs/video.py --workdir=runs/video \
      --config.data.manual_dir=/path/to/videos

(train.py builds the dataset itself when it is missing and data.manual_dir is set.)
`data.labels` ('calm,mild,stress', the build's --labels) declares the class names in
label order; empty keeps the builder's no_stress,stress. A manifest label outside
them stops the build.
The build writes `ingest_report.json` next to the dataset: per source its status,
frames read, frames with a face, clips written and dropped.

`config.preprocess` holds the face pipeline settings the `video` builder config
uses, for tools that run the same pipeline on new videos (see
`stress_jax.preprocess.PreprocessConfig`); changing them here does not rebuild
the dataset.
"""

from stress_jax.configs import common
from stress_jax.preprocess.config import PreprocessConfig


def get_config():
  config = common.video_clips_config("stress_faces/video", PreprocessConfig())
  config.data.manual_dir = ""  # --config.data.manual_dir=/path/to/videos
  config.data.labels = ""  # e.g. --config.data.labels=calm,stress; "" = no_stress,stress

  # Few subjects in a typical own recording: leave-one-subject-out, 1 validation subject.
  config.protocol.kind = "loso"
  config.protocol.num_val_subjects = 1

  # model.num_classes follows the dataset's labels (the manifest's) at train time.
  config.optim.warmup_steps = 100
  return config
