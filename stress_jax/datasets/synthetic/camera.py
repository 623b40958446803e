"""What the camera adds to a drawn frame: motion blur, lighting, white balance and sensor noise.

Lighting and noise act on the camera image but are applied after the eye
alignment, in crop pixels, because a crop has about half the pixels of a camera
frame. The light gradient is linear in camera coordinates, so mapping it through
the inverse warp is exact.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from stress_jax.datasets.synthetic import config as config_lib
from stress_jax.datasets.synthetic.config import SimulatorConfig
from stress_jax.datasets.synthetic.identity import Identity
from stress_jax.faces import geometry as fg


@functools.lru_cache(maxsize=4)
def _noise_bank(seed: int, size: int) -> np.ndarray:
  """Unit Gaussian camera noise, (2 size, 2 size, 3) float32.

  Drawing fresh noise for every frame cost more than drawing the face; frames take
  a randomly placed window of this bank instead, which no model can tell apart.
  """
  rng = np.random.default_rng(np.random.SeedSequence([seed, config_lib.NOISE]))
  return rng.standard_normal((2 * size, 2 * size, 3), dtype=np.float32)


def motion_blur(image: np.ndarray, face_centre: np.ndarray, previous_centre: np.ndarray):
  """A fast head movement smears the frame along the motion within the exposure."""
  step = 0.5 * (face_centre - previous_centre)
  shifts = [np.round(step * k).astype(int) for k in (-0.5, 0.5)]
  blurred = image.astype(np.float32)
  for shift in shifts:
    blurred += np.roll(image, (shift[1], shift[0]), axis=(0, 1))
  return np.round(blurred / 3).astype(np.uint8)


@dataclasses.dataclass
class Exposure:
  """One clip's lighting and sensor: `expose` turns an aligned crop into the stored one."""

  camera_size: int  # side of the camera frame the crop was warped from
  light_strength: float
  white_balance: np.ndarray  # (3,) float32
  noise_sigma: np.float32
  noise_bank: np.ndarray
  noise_rng: np.random.Generator  # where each frame's noise window lies

  @classmethod
  def for_clip(
    cls, config: SimulatorConfig, idn: Identity, subject: int, session: int, clip: int
  ) -> Exposure:
    return cls(
      camera_size=config.image_size,
      light_strength=idn.light_strength,
      white_balance=np.asarray(idn.white_balance, np.float32),
      noise_sigma=np.float32(idn.noise_sigma * config.confounder_gain),
      noise_bank=_noise_bank(config.seed, fg.CROP_SIZE),
      noise_rng=config_lib.rng(config, config_lib.NOISE, subject, session, clip),
    )

  def expose(self, crop: np.ndarray, matrix: np.ndarray, gain: float, angle: float) -> np.ndarray:
    """crop (112, 112, 3) uint8 through the camera->crop `matrix`, lit and noisy."""
    crop_grid = np.arange(fg.CROP_SIZE) + 0.5
    to_camera = fg.invert_affine(matrix) / self.camera_size
    direction = np.array([np.cos(angle), np.sin(angle)]) * self.light_strength
    slope = direction @ to_camera[:, :2]
    offset = direction @ (to_camera[:, 2] - 0.5)
    shade = gain * (1 + offset + slope[0] * crop_grid[None, :] + slope[1] * crop_grid[:, None])
    dy, dx = self.noise_rng.integers(0, fg.CROP_SIZE, 2)
    lit = crop * (shade[..., None].astype(np.float32) * self.white_balance)
    lit += self.noise_bank[dy : dy + fg.CROP_SIZE, dx : dx + fg.CROP_SIZE] * self.noise_sigma
    return np.clip(np.round(lit), 0, 255).astype(np.uint8)
