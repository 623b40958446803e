"""The clip record every builder writes: stress_faces (synthetic, video), yonsei_stress.

One example is one clip of T consecutive frames of one person:

  frames       (T, 112, 112, 3) uint8   eye-aligned face crops (JPEG-encoded on disk)
  features     (T, 7, 7, 256)   float16 ResNet-18 stage-3 maps (Yonsei: instead of frames)
  landmarks    (T, 68, 2)       float32 crop coordinates / crop size, so in ~[0, 1]
  frame_mask   (T,)             bool    False = padding or no face in that frame
  label        ClassLabel
  subject      Text                     a person; splits never share one
  video        Text                     the source recording
  start_frame  int32                    index of the clip's first frame in its source
  cue_frames   (T,)             bool    synthetic only: a stress cue is active
  cue_region   (T, 28, 28)      uint8   synthetic only: where on each frame cues act (255 =
                                        inside; a cell is 4x4 crop pixels)
  cue_events   (4, 4)           float32 synthetic only: one row per event, (kind, first
                                        frame, end frame, intensity); kind indexes the
                                        builder metadata's `cue_kinds`, -1 = no event

Frames are handed to TFDS as a list of already-encoded JPEG bytes: TFDS can then
write and read array_record shards without TensorFlow.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from stress_jax.faces.geometry import CROP_SIZE, NUM_LANDMARKS

JPEG_QUALITY = 92
CUE_REGION_SIZE = 28
MAX_CUE_EVENTS = 4


def clip_features(
  num_frames: int,
  label_names: Sequence[str],
  *,
  pixels: bool = True,
  landmarks: bool = True,
  synthetic: bool = False,
  feature_shape: tuple[int, int, int] = (7, 7, 256),
) -> tfds.features.FeaturesDict:
  spec = {
    "frame_mask": tfds.features.Tensor(shape=(num_frames,), dtype=np.bool_),
    "label": tfds.features.ClassLabel(names=list(label_names)),
    "subject": tfds.features.Text(),
    "video": tfds.features.Text(),
    "start_frame": tfds.features.Scalar(dtype=np.int32),
  }
  if pixels:
    spec["frames"] = tfds.features.Sequence(
      tfds.features.Image(shape=(CROP_SIZE, CROP_SIZE, 3), encoding_format="jpeg"),
      length=num_frames,
    )
  else:
    # No per-feature zlib: array_record already compresses the shard, and zlib in
    # the writer's main process was 90% of the Yonsei build time.
    spec["features"] = tfds.features.Tensor(shape=(num_frames, *feature_shape), dtype=np.float16)
  if landmarks:
    spec["landmarks"] = tfds.features.Tensor(shape=(num_frames, NUM_LANDMARKS, 2), dtype=np.float32)
  if synthetic:
    spec["cue_frames"] = tfds.features.Tensor(shape=(num_frames,), dtype=np.bool_)
    spec["cue_region"] = tfds.features.Tensor(
      shape=(num_frames, CUE_REGION_SIZE, CUE_REGION_SIZE), dtype=np.uint8
    )
    spec["cue_events"] = tfds.features.Tensor(shape=(MAX_CUE_EVENTS, 4), dtype=np.float32)
  return tfds.features.FeaturesDict(spec)


def encode_jpeg(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
  buffer = io.BytesIO()
  # Fixed encoder settings: the same pixels always give the same bytes.
  Image.fromarray(np.ascontiguousarray(frame)).save(
    buffer, format="JPEG", quality=quality, subsampling=0, optimize=False
  )
  return buffer.getvalue()


def encode_frames(frames: np.ndarray) -> list[bytes]:
  """(T, H, W, 3) uint8 -> the list of JPEG bytes that `clip_features` expects."""
  return [encode_jpeg(frame) for frame in frames]


def as_text(value) -> str:
  """TFDS hands Text features back as bytes when read without TensorFlow."""
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)
