"""One simulated clip, start to finish: states, face, drawing, alignment, exposure.

Frames are drawn in a camera image, then aligned by `stress_jax.faces.geometry.align_face`,
the same eye-based similarity the real-video pipeline applies; the stored landmarks
are the drawn points mapped through that alignment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from stress_jax.datasets.synthetic import camera, cue_effects, cues, face_model, render, timeline
from stress_jax.datasets.synthetic.config import SimulatorConfig, split_name, video_name
from stress_jax.datasets.synthetic.cues import CueEvent
from stress_jax.datasets.synthetic.identity import subject_identity
from stress_jax.faces import geometry as fg


@dataclasses.dataclass
class Clip:
  """One rendered clip and what went into it."""

  frames: np.ndarray  # (T, 112, 112, 3) uint8 aligned crops
  landmarks: np.ndarray  # (T, 68, 2) float32 crop coords / 112
  cue_frames: np.ndarray  # (T,) bool
  cue_region: np.ndarray  # (112, 112) float32
  events: list[CueEvent]
  label: int  # after label noise
  true_label: int
  subject: str
  video: str
  start_frame: int
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
  state = timeline.confounder_states(config, subject, session, clip)
  state = cue_effects.apply_cues(state, events, config, subject, session, clip)
  num_frames, size = config.num_frames, config.image_size
  exposure = camera.Exposure.for_clip(config, idn, subject, session, clip)
  background = render.background_canvas(
    size, idn.wall, np.array(idn.room_shapes), np.array(idn.room_colours)
  )

  crops = np.zeros((num_frames, fg.CROP_SIZE, fg.CROP_SIZE, 3), np.uint8)
  crop_landmarks = np.zeros((num_frames, 68, 2), np.float32)
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
    )
    image = render.draw_face(background, geometry, look, idn.palette)
    face_centre = geometry.landmarks.mean(axis=0)
    if state["blur"][f] and previous_centre is not None:
      image = camera.motion_blur(image, face_centre, previous_centre)
    previous_centre = face_centre
    if dot_landmarks:
      dotted = render.paint_dots(image.astype(np.float64), geometry.landmarks[list(dot_landmarks)])
      image = np.round(dotted).astype(np.uint8)
    crop, crop_landmarks[f], matrices[f] = fg.align_face(image, geometry.landmarks)
    crops[f] = exposure.expose(crop, matrices[f], state["gain"][f], state["angle"][f])
    camera_landmarks[f] = geometry.landmarks
    if camera_frames is not None:
      camera_frames[f] = image

  return Clip(
    frames=crops,
    landmarks=crop_landmarks,
    cue_frames=cues.cue_frames(events, num_frames),
    cue_region=cue_effects.cue_region(events, crop_landmarks),
    events=events,
    label=cues.clip_label(config, subject, session, clip),
    true_label=session,
    subject=split_name(subject, config.num_subjects),
    video=video_name(subject, session, config.num_subjects),
    start_frame=int(config.clip_starts()[clip]),
    camera_frames=camera_frames,
    camera_landmarks=camera_landmarks if keep_camera else None,
    matrices=matrices if keep_camera else None,
  )
