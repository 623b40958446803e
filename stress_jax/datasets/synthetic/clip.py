"""One simulated clip, start to finish: states, face, drawing, alignment, exposure.

Frames are drawn in a camera image; dlib's predictor finds the 68 points in it
(`detector`, unless the config's detector is "none"), and the frame is aligned on
those points by `stress_jax.faces.geometry.align_face`, the eye-based similarity the
real-video pipeline applies. The stored landmarks are the found points mapped
through that alignment; the cue regions come from the true points, mapped the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from PIL import Image

from stress_jax.datasets.synthetic import (
  camera,
  cue_effects,
  cues,
  detector,
  face_model,
  render,
  timeline,
)
from stress_jax.datasets.synthetic.config import SimulatorConfig, split_name, video_name
from stress_jax.datasets.synthetic.cues import CueEvent
from stress_jax.datasets.synthetic.identity import subject_identity
from stress_jax.faces import geometry as fg
from stress_jax.faces.landmarks import fill_missing_landmarks


@dataclasses.dataclass
class Clip:
  """One rendered clip and what went into it."""

  frames: np.ndarray  # (T, 112, 112, 3) uint8 aligned crops
  landmarks: np.ndarray  # (T, 68, 2) float32 crop coords / 112, as the detector found them
  cue_frames: np.ndarray  # (T,) bool
  cue_region: np.ndarray  # (T, 28, 28) uint8, 255 = inside; each frame its active cues
  events: list[CueEvent]
  label: int  # after label noise
  true_label: int
  subject: str
  video: str
  start_frame: int
  frame_mask: np.ndarray | None = None  # (T,) bool; False where the detector missed
  true_landmarks: np.ndarray | None = None  # (T, 68, 2) the renderer's points, crop coords / 112
  camera_frames: np.ndarray | None = None  # (T, S, S, 3) uint8 as drawn, when asked for
  camera_landmarks: np.ndarray | None = None  # (T, 68, 2) camera pixels
  matrices: np.ndarray | None = None  # (T, 2, 3) camera -> crop


def simulate_clip(
  config: SimulatorConfig,
  subject: int,
  session: int,
  clip: int,
  *,
  events: Sequence[CueEvent] | None = None,
  keep_camera: bool = False,
  dot_landmarks: Sequence[int] = (),
) -> Clip:
  """Renders clip `clip` of subject `subject`'s session `session` (= its class).

  events: override the scheduled cue events (None: `cues.schedule_cues`).
  keep_camera: also return the camera frames (as drawn: before lighting and
    noise), landmarks and alignment matrices.
  dot_landmarks: paint a green dot on these landmarks in the camera image
    (before alignment), to check that the crop and the landmarks agree.
  """
  if not (0 <= subject < config.num_subjects and 0 <= session < config.num_classes):
    raise ValueError(f"no subject {subject} / session {session} in this config")
  if not 0 <= clip < config.clips_per_class_per_subject:
    raise ValueError(f"clip {clip} out of range")
  if events is None:
    events = cues.schedule_cues(config, subject, session, clip)
  events = list(events)
  idn = subject_identity(config, subject)
  pallor = cues.subject_profile(config, subject).pallor
  state = timeline.confounder_states(config, subject, session, clip)
  state = cue_effects.apply_cues(state, events, config, subject, session, clip)
  num_frames, size = config.num_frames, config.image_size
  exposure = camera.Exposure.for_clip(config, idn, subject, session, clip)
  background = render.background_canvas(
    size, idn.wall, np.array(idn.room_shapes), np.array(idn.room_colours)
  )

  crops = np.zeros((num_frames, fg.CROP_SIZE, fg.CROP_SIZE, 3), np.uint8)
  crop_landmarks = np.zeros((num_frames, 68, 2), np.float32)
  true_landmarks = np.zeros((num_frames, 68, 2), np.float32)
  found = np.ones(num_frames, bool)
  camera_frames = np.zeros((num_frames, size, size, 3), np.uint8) if keep_camera else None
  camera_landmarks = np.zeros((num_frames, 68, 2))
  matrices = np.zeros((num_frames, 2, 3))
  previous_centre = None
  for f in range(num_frames):
    geometry, expression = face_model.frame_geometry(idn, state, f)
    look = render.FrameLook(
      eye_open=expression.eye_open,
      mouth_open=expression.mouth_open,
      lip_press=expression.lip_press,
      furrow=expression.brow_drop,
      pupil=expression.pupil,
      flush=expression.flush,
      sweat=expression.sweat,
      pallor=pallor,
    )
    image = render.draw_face(background, geometry, look, idn.palette)
    face_centre = geometry.landmarks.mean(axis=0)
    if state["blur"][f] and previous_centre is not None:
      image = camera.motion_blur(image, face_centre, previous_centre)
    previous_centre = face_centre
    if dot_landmarks:
      dotted = render.paint_dots(image.astype(np.float64), geometry.landmarks[list(dot_landmarks)])
      image = np.round(dotted).astype(np.uint8)
    points = geometry.landmarks
    if config.detector == "dlib":
      gray = np.asarray(Image.fromarray(image).convert("L"))
      fitted = detector.fit_landmarks(gray, geometry.landmarks)
      found[f] = fitted is not None
      points = geometry.landmarks if fitted is None else fitted
    crop, crop_landmarks[f], matrices[f] = fg.align_face(image, points)
    true_landmarks[f] = fg.apply_affine(matrices[f], geometry.landmarks) / fg.CROP_SIZE
    # A missed frame is blank, as the video path stores it (its region stays true).
    crops[f] = exposure.expose(crop, matrices[f], state["gain"][f], state["angle"][f])
    if not found[f]:
      crops[f] = 0
    camera_landmarks[f] = geometry.landmarks
    if camera_frames is not None:
      camera_frames[f] = image

  if not found.all():
    crop_landmarks = fill_missing_landmarks(crop_landmarks, found)
  return Clip(
    frames=crops,
    landmarks=crop_landmarks,
    cue_frames=cues.cue_frames(events, num_frames),
    cue_region=cue_effects.cue_regions(events, true_landmarks),
    events=events,
    label=cues.clip_label(config, subject, session, clip),
    true_label=session,
    subject=split_name(subject, config.num_subjects),
    video=video_name(subject, session, config.num_subjects),
    start_frame=int(config.clip_starts()[clip]),
    frame_mask=found,
    true_landmarks=true_landmarks,
    camera_frames=camera_frames,
    camera_landmarks=camera_landmarks if keep_camera else None,
    matrices=matrices if keep_camera else None,
  )
