"""A deterministic simulator of stressed and unstressed talking faces (`stress_faces/synthetic`).

Each subject gets an identity (face shape, eye spacing, brows, mouth, skin, hair,
room, lighting, camera), its own way of showing stress (a cue profile: some of the
cue families eyes, brows, mouth, skin and head, each with its own gain) and one
recorded session per class, like the stages of the Yonsei protocol. A session is a
continuous timeline of confounders every class shares: head motion, speech-like
mouth motion, spontaneous blinks, eyebrow flashes, gaze shifts, illumination drift
and camera noise. Clips of `num_frames` frames are cut from it every `clip_stride`
frames.

Stress shows as cue events, each occupying a stretch of a clip's frames and a
region of the face (`cues` lists them with their literature). Four move the 68
landmarks (blink_burst, brow_furrow, lip_press, head_jitter); four change only
pixels the landmarks cannot carry (gaze_aversion, pupil_dilation, flush, sweat).
A subject's events come from its own families only:

  no_stress      no events
  weak_stress    exactly one event (never head jitter alone), moderate intensity
                 (0.55-0.7 times the subject's gain)
  strong_stress  two or three events of different kinds (fewer if the subject has
                 fewer), high intensity (0.85-1.0 times the gain)

(binary: no_stress / stress, where stress is the strong profile). Every clip of a
stressed class holds at least one event inside its frames, so its label can be read
from the clip; then `label_noise` of all clips get a uniformly drawn wrong label.

The landmarks stored are dlib's 68-point fit on each rendered frame (`detector`), and
the crop is aligned on them, as on real video; each frame's cue region comes from
the true points. `difficulty` (default 1) scales both sides: cue intensities by
1.3 - 0.3 d, all confounder amplitudes and rates by 0.5 + 0.5 d.

One module per concern, in the order a clip is made:

  config       SimulatorConfig, split and video names, the seeded random streams
  identity     a subject's face, colours, habits, room and camera
  timeline     a session's confounders as signals over time
  cues         each subject's cue profile, which cue events a clip carries, its (noisy) label
  cue_effects  how the events change the face, and the map of where they act
  face_model   the 3D face and its projection into a camera frame
  render       drawing a frame (PIL polygons)
  camera       motion blur, lighting, white balance and sensor noise
  detector     dlib's 68 points on each drawn frame, in a detector-like box
  clip         `simulate_clip`: all of the above for one clip
  pool         clips as TFDS examples, rendered in worker processes
"""

from stress_jax.datasets.synthetic.clip import Clip, simulate_clip
from stress_jax.datasets.synthetic.config import (
  CUE_FAMILIES,
  LABEL_NAMES,
  SimulatorConfig,
  config_name,
  parse_config_name,
  parse_overrides,
  split_name,
  video_name,
)
from stress_jax.datasets.synthetic.cue_effects import REGION_SIZE, cue_regions
from stress_jax.datasets.synthetic.cues import (
  APPEARANCE_KINDS,
  EVENT_KINDS,
  FAMILY_KINDS,
  MAX_EVENTS,
  CueEvent,
  Profile,
  clip_label,
  cue_frames,
  event_rows,
  schedule_cues,
  subject_profile,
)
from stress_jax.datasets.synthetic.identity import Identity, subject_identity
from stress_jax.datasets.synthetic.pool import (
  RecordPool,
  clip_example,
  clip_key,
  default_num_workers,
  subject_tasks,
)

__all__ = [
  "APPEARANCE_KINDS",
  "CUE_FAMILIES",
  "EVENT_KINDS",
  "FAMILY_KINDS",
  "MAX_EVENTS",
  "REGION_SIZE",
  "Profile",
  "config_name",
  "cue_regions",
  "event_rows",
  "parse_config_name",
  "parse_overrides",
  "subject_profile",
  "LABEL_NAMES",
  "Clip",
  "CueEvent",
  "Identity",
  "RecordPool",
  "SimulatorConfig",
  "clip_example",
  "clip_key",
  "clip_label",
  "cue_frames",
  "default_num_workers",
  "schedule_cues",
  "simulate_clip",
  "split_name",
  "subject_identity",
  "subject_tasks",
  "video_name",
]
