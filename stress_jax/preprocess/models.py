"""dlib's models, from the `face-recognition-models` package, loaded once per process.

dlib is imported inside the functions that need it, so that `import stress_jax.preprocess`
(and through it the TFDS builders, training and export) works where dlib is not installed.
"""

from __future__ import annotations

import importlib.util
import os

_MODELS = None
_DESCRIPTOR_MODEL = None
LANDMARK_MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
DESCRIPTOR_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"


def landmark_model_path() -> str:
  """Where `face-recognition-models` keeps dlib's 68-point model.

  Found without importing the package: its __init__ imports pkg_resources, which
  setuptools >= 81 no longer ships.
  """
  spec = importlib.util.find_spec("face_recognition_models")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("dlib's 68-point model is missing: pip install face-recognition-models")
  return os.path.join(spec.submodule_search_locations[0], "models", LANDMARK_MODEL_FILE)


def load_models():
  """(detector, shape predictor), loaded once per process."""
  global _MODELS
  if _MODELS is None:
    predictor_path = landmark_model_path()
    if not os.path.exists(predictor_path):
      raise FileNotFoundError(f"dlib 68-point model missing at {predictor_path}")
    import dlib

    _MODELS = (dlib.get_frontal_face_detector(), dlib.shape_predictor(predictor_path))
  return _MODELS


def descriptor_model():
  """dlib's face recognition network (128-d descriptors), or None where it is not installed."""
  global _DESCRIPTOR_MODEL
  if _DESCRIPTOR_MODEL is None:
    import dlib

    path = os.path.join(os.path.dirname(landmark_model_path()), DESCRIPTOR_MODEL_FILE)
    _DESCRIPTOR_MODEL = dlib.face_recognition_model_v1(path) if os.path.exists(path) else False
  return _DESCRIPTOR_MODEL or None
