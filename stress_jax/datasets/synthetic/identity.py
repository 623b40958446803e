"""Who is filmed: one simulated person's face shape, colours, habits, room and camera.

An identity is drawn once per subject from the config's seed, so every session and
clip of a subject shows the same person; subjects differ in exactly the ways a
model must learn to ignore (skin, hair, face proportions, resting brow height,
blink rate, background, lighting, camera noise).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from stress_jax.datasets.synthetic import config as config_lib
from stress_jax.datasets.synthetic.config import SimulatorConfig


@dataclasses.dataclass(frozen=True)
class Palette:
  """A person's colours (RGB), also of their shirt."""

  skin: tuple[int, int, int]
  skin_shadow: tuple[int, int, int]
  lip: tuple[int, int, int]
  hair: tuple[int, int, int]
  brow: tuple[int, int, int]
  iris: tuple[int, int, int]
  shirt: tuple[int, int, int]


_SKIN_TONES = np.array(
  [[246, 216, 192], [228, 188, 156], [205, 152, 116], [168, 116, 84], [120, 82, 58], [86, 58, 42]],
  np.float64,
)
_HAIR = np.array(
  [[26, 22, 20], [56, 38, 28], [92, 62, 40], [146, 104, 64], [196, 164, 110], [150, 146, 140],
   [122, 58, 34]],
  np.float64,
)  # fmt: skip
_IRIS = np.array(
  [[72, 46, 30], [102, 70, 42], [64, 94, 132], [74, 112, 82], [42, 32, 28]], np.float64
)


@dataclasses.dataclass(frozen=True)
class Identity:
  """One simulated person, their room and camera. Face lengths in eye-distance units."""

  eye_spacing: float
  eye_width: float
  eye_height: float
  eye_tilt: float
  brow_height: float  # resting height above the eye line: a per-subject baseline
  brow_arch: float
  brow_length: float
  brow_gap: float
  brow_thickness: float
  nose_length: float
  nose_width: float
  mouth_y: float
  mouth_width: float
  upper_lip: float
  lower_lip: float
  jaw_width: float
  jaw_top: float
  chin_y: float
  jaw_power: float
  forehead: float
  hairline: float
  hair_part: float
  hair_volume: float
  hair_length: float
  px_per_unit: float
  head_x: float
  head_y: float
  palette: Palette
  wall: tuple[float, float, float]
  room_shapes: tuple[tuple[float, float, float, float], ...]
  room_colours: tuple[tuple[float, float, float], ...]
  light_angle: float
  light_strength: float
  white_balance: tuple[float, float, float]
  noise_sigma: float
  blink_rate: float  # spontaneous blinks per second
  talkativeness: float
  motion: float
  brow_flash_rate: float


def _colour(values) -> tuple[int, int, int]:
  return tuple(int(round(v)) for v in np.clip(values, 0, 255))


@functools.lru_cache(maxsize=512)
def subject_identity(config: SimulatorConfig, subject: int) -> Identity:
  rng = config_lib.rng(config, config_lib.IDENTITY, subject)
  u = rng.uniform
  tone = u(0, len(_SKIN_TONES) - 1)
  lo = int(tone)
  skin = _SKIN_TONES[lo] + (_SKIN_TONES[min(lo + 1, len(_SKIN_TONES) - 1)] - _SKIN_TONES[lo]) * (
    tone - lo
  )
  skin = skin + rng.normal(0, 5, 3)
  hair = _HAIR[rng.integers(len(_HAIR))] * u(0.85, 1.15)
  lip = skin * np.array([0.86, 0.6, 0.62]) + np.array([18, 0, 4])
  palette = Palette(
    skin=_colour(skin),
    skin_shadow=_colour(skin * 0.82),
    lip=_colour(lip),
    hair=_colour(hair),
    brow=_colour(0.55 * hair + 0.45 * np.minimum(hair, skin) * 0.45),
    iris=_colour(_IRIS[rng.integers(len(_IRIS))]),
    shirt=_colour(rng.uniform(25, 230, 3)),
  )
  grey = u(70, 200)
  wall = grey + 0.45 * (rng.uniform(40, 220, 3) - grey)
  num_shapes = int(rng.integers(2, 5))
  shapes, colours = [], []
  for _ in range(num_shapes):
    x0, y0 = u(-0.1, 0.9), u(-0.1, 0.8)
    shapes.append((x0, y0, x0 + u(0.08, 0.45), y0 + u(0.1, 0.6)))
    colours.append(tuple(np.clip(wall + rng.normal(0, 35, 3), 0, 255)))
  size = config.image_size
  return Identity(
    eye_spacing=u(0.94, 1.06),
    eye_width=u(0.4, 0.48),
    eye_height=u(0.1, 0.135),
    eye_tilt=u(-0.06, 0.1),
    brow_height=u(0.3, 0.42),
    brow_arch=u(0.03, 0.09),
    brow_length=u(0.5, 0.62),
    brow_gap=u(0.3, 0.4),
    brow_thickness=u(0.09, 0.13),
    nose_length=u(0.62, 0.76),
    nose_width=u(0.36, 0.46),
    mouth_y=u(1.1, 1.22),
    mouth_width=u(0.78, 0.96),
    upper_lip=u(0.075, 0.105),
    lower_lip=u(0.09, 0.13),
    jaw_width=u(1.0, 1.12),
    jaw_top=u(0.02, 0.12),
    chin_y=u(1.62, 1.76),
    jaw_power=u(2.0, 2.8),
    forehead=u(1.05, 1.2),
    hairline=u(0.62, 0.8),
    hair_part=u(-0.1, 0.1),
    hair_volume=u(0.0, 1.0),
    hair_length=u(-0.6, 1.6),
    px_per_unit=size * u(0.215, 0.245),
    head_x=size * 0.5 + u(-4, 4),
    head_y=size * 0.41 + u(-3, 3),
    palette=palette,
    wall=tuple(wall),
    room_shapes=tuple(shapes),
    room_colours=tuple(colours),
    light_angle=u(0, 2 * np.pi),
    light_strength=u(0.15, 0.4),
    white_balance=(1 + u(-0.06, 0.06), 1.0, 1 + u(-0.06, 0.06)),
    noise_sigma=u(1.5, 3.5),
    blink_rate=u(0.2, 0.45),
    talkativeness=u(0.6, 1.2),
    motion=u(0.6, 1.3),
    brow_flash_rate=u(0.08, 0.2),
  )
