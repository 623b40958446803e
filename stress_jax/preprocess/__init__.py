"""Real video -> eye-aligned face clips: decoding, face following, clips, dataset ingest.

  pipeline = FacePipeline(PreprocessConfig(fps=15))
  faces = pipeline.process_video("talk.mp4")  # VideoFaces: crops, landmarks, has_face, ...
  clips = make_clips(faces, num_frames=16, stride=8)

`ingest.split_generators` is what the `stress_faces/video` TFDS builder runs.
"""

from stress_jax.preprocess.clips import Clips, make_clips
from stress_jax.preprocess.config import PreprocessConfig
from stress_jax.preprocess.decode import DecodeError, read_frames
from stress_jax.preprocess.faces import FaceFrame, FacePipeline, VideoFaces
from stress_jax.preprocess.manifest import ManifestError, read_manifest

__all__ = [
  "Clips",
  "DecodeError",
  "FaceFrame",
  "FacePipeline",
  "ManifestError",
  "PreprocessConfig",
  "VideoFaces",
  "make_clips",
  "read_frames",
  "read_manifest",
]
