"""The stress-face simulator: determinism, geometry, labels, cue events and their effects."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

from stress_jax.datasets import synthetic
from stress_jax.datasets.synthetic import CueEvent, SimulatorConfig
from stress_jax.faces import geometry as fg
from stress_jax.faces import records

# Small frames and short clips keep rendering fast; the geometry does not depend on them.
SMALL = SimulatorConfig(
  num_subjects=4, clips_per_class_per_subject=3, num_frames=12, clip_stride=12, image_size=128
)
# The renderer's exact points instead of dlib's: pixels then change only where a cue acts
# (dlib's fit, and with it the crop, moves a little with any change of the image).
EXACT = dataclasses.replace(SMALL, detector="none")
DEFAULT = SimulatorConfig()
CANONICAL = np.array([fg.CANONICAL_RIGHT_EYE, fg.CANONICAL_LEFT_EYE])


def all_clips(config):
  for subject in range(config.num_subjects):
    yield from synthetic.subject_tasks(config, subject)


def eye_aperture(landmarks: np.ndarray) -> np.ndarray:
  y = landmarks[..., 1]
  return (y[..., [40, 41, 46, 47]].sum(-1) - y[..., [37, 38, 43, 44]].sum(-1)) / 4


def brow_height(landmarks: np.ndarray) -> np.ndarray:
  return landmarks[..., 36:48, 1].mean(-1) - landmarks[..., 17:27, 1].mean(-1)


def lip_thickness(landmarks: np.ndarray) -> np.ndarray:
  y = landmarks[..., 1]
  return (y[..., 57] - y[..., 51]) - (y[..., 66] - y[..., 62])


# ------------------------------------------------------------------------ config


def test_default_config_is_the_demo_size():
  assert DEFAULT.num_subjects >= 24 and DEFAULT.num_classes == 3 and DEFAULT.num_frames == 16
  assert DEFAULT.label_names == ("no_stress", "weak_stress", "strong_stress")
  assert SimulatorConfig(num_classes=2).label_names == ("no_stress", "stress")
  assert DEFAULT.num_session_frames == (DEFAULT.clips_per_class_per_subject - 1) * 20 + 16
  np.testing.assert_array_equal(DEFAULT.clip_starts(), np.arange(12) * 20)
  spread = SimulatorConfig(clips_per_class_per_subject=3, session_frames=116)
  np.testing.assert_array_equal(spread.clip_starts(), [0, 50, 100])
  assert spread.num_session_frames == 116


@pytest.mark.parametrize(
  "changes",
  [dict(num_classes=4), dict(session_frames=20), dict(label_noise=1.0), dict(num_frames=1)],
)
def test_bad_configs_are_refused(changes):
  with pytest.raises(ValueError):
    SimulatorConfig(**changes)


def test_split_names_are_tfds_safe_and_sortable():
  names = [synthetic.split_name(s, 30) for s in range(30)]
  assert names[:3] == ["s00", "s01", "s02"] and names == sorted(names)
  assert synthetic.split_name(7, 150) == "s007"
  assert all(name.isidentifier() for name in names)


# --------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_different_seed_different():
  first = synthetic.clip_example(synthetic.simulate_clip(SMALL, 1, 2, 0))
  again = synthetic.clip_example(synthetic.simulate_clip(SMALL, 1, 2, 0))
  assert first["frames"] == again["frames"]  # the JPEG bytes
  for key in ("landmarks", "cue_frames", "cue_region", "cue_events"):
    np.testing.assert_array_equal(first[key], again[key])
  other = synthetic.clip_example(
    synthetic.simulate_clip(dataclasses.replace(SMALL, seed=1), 1, 2, 0)
  )
  assert all(a != b for a, b in zip(first["frames"], other["frames"], strict=True))
  assert np.abs(first["landmarks"] - other["landmarks"]).max() > 0.01


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_records_do_not_depend_on_worker_count(start_method):
  tiny = dataclasses.replace(SMALL, num_frames=4, clip_stride=4, clips_per_class_per_subject=2)
  with synthetic.RecordPool(tiny, num_workers=0) as serial:
    expected = list(serial.records(2))
  with synthetic.RecordPool(tiny, num_workers=2, start_method=start_method) as parallel:
    got = list(parallel.records(2))
  assert [key for key, _ in got] == [key for key, _ in expected]
  for (_, a), (_, b) in zip(got, expected, strict=True):
    assert a["frames"] == b["frames"]
    np.testing.assert_array_equal(a["landmarks"], b["landmarks"])


def test_workers_are_spawned_once_jax_is_loaded(monkeypatch):
  monkeypatch.delitem(sys.modules, "jax", raising=False)
  assert synthetic.RecordPool(SMALL).start_method == "fork"
  monkeypatch.setitem(sys.modules, "jax", object())
  assert synthetic.RecordPool(SMALL).start_method == "spawn"


def test_identities_differ_between_subjects():
  a, b = synthetic.subject_identity(DEFAULT, 0), synthetic.subject_identity(DEFAULT, 1)
  assert a.palette.skin != b.palette.skin and a.brow_height != b.brow_height
  heights = [
    synthetic.subject_identity(DEFAULT, s).brow_height for s in range(DEFAULT.num_subjects)
  ]
  # Resting brow height is a per-subject baseline, spread as widely as a weak cue moves it.
  assert np.ptp(heights) > 0.08


# ------------------------------------------------------------------------ geometry


def test_record_landmarks_are_dlibs_fit_and_the_crop_is_aligned_on_them():
  clip = synthetic.simulate_clip(SMALL, 0, 2, 1, keep_camera=True)
  for f in range(SMALL.num_frames):
    mapped = fg.apply_affine(clip.matrices[f], clip.camera_landmarks[f]) / fg.CROP_SIZE
    np.testing.assert_allclose(clip.true_landmarks[f], mapped, atol=1e-5)
    # Aligned on the detector's points, as the video path aligns: their eyes are canonical.
    np.testing.assert_allclose(np.stack(fg.eye_centres(clip.landmarks[f])), CANONICAL, atol=1e-5)
  assert clip.frames.shape == (SMALL.num_frames, 112, 112, 3) and clip.frames.dtype == np.uint8
  assert clip.frame_mask.all()
  # dlib's error on these renderings: like its error on real faces (docs/method.md), not zero.
  error = synthetic.detector.nme(clip.landmarks, clip.true_landmarks)
  assert 0.01 < error.mean() < 0.1, error
  # The face fills the crop: its points stay (almost) inside it; dlib's chin may overshoot.
  assert clip.true_landmarks.min() > -0.05 and clip.true_landmarks.max() < 1.05
  assert clip.landmarks.min() > -0.1 and clip.landmarks.max() < 1.1
  exact = synthetic.simulate_clip(EXACT, 0, 2, 1)
  np.testing.assert_allclose(exact.landmarks, exact.true_landmarks, atol=1e-5)


@pytest.mark.parametrize("subject, session", [(0, 0), (3, 2)])
def test_rendered_landmark_dots_land_where_the_record_says(subject, session):
  marked = (8, 19, 30, 48, 54)  # chin, a brow, nose tip, mouth corners
  plain = synthetic.simulate_clip(EXACT, subject, session, 0)
  dotted = synthetic.simulate_clip(EXACT, subject, session, 0, dot_landmarks=marked)
  np.testing.assert_array_equal(plain.landmarks, dotted.landmarks)
  # Same noise and lighting in both: the difference is the (green) dots alone.
  diff = dotted.frames.astype(np.float64) - plain.frames.astype(np.float64)
  greenness = np.clip(diff[..., 1] - 0.5 * (diff[..., 0] + diff[..., 2]), 0, None)
  ys, xs = np.indices((112, 112)) + 0.5
  for f in range(0, EXACT.num_frames, 3):
    for k in marked:
      x, y = dotted.landmarks[f, k] * fg.CROP_SIZE
      window = (np.abs(xs - x) < 5) & (np.abs(ys - y) < 5)
      weight = greenness[f] * window
      assert weight.sum() > 500, (f, k)
      found = np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()
      np.testing.assert_allclose(found, [x, y], atol=0.35, err_msg=f"frame {f} landmark {k}")


# -------------------------------------------------------------------------- labels


def test_classes_are_balanced_and_label_noise_is_as_documented():
  labels = np.array([synthetic.clip_label(DEFAULT, *task) for task in all_clips(DEFAULT)])
  sessions = np.array([task[1] for task in all_clips(DEFAULT)])
  per_class = DEFAULT.num_subjects * DEFAULT.clips_per_class_per_subject
  counts = np.bincount(labels, minlength=3)
  assert np.all(np.abs(counts - per_class) <= 0.05 * per_class), counts
  noise = np.mean(labels != sessions)
  assert 0.005 < noise < 0.045  # default 2%
  clean = dataclasses.replace(DEFAULT, label_noise=0.0)
  assert all(synthetic.clip_label(clean, *t) == t[1] for t in all_clips(clean))


# ---------------------------------------------------------------------- cue events


def test_cue_schedule_follows_the_class_and_the_subject():
  for subject, session, clip in all_clips(DEFAULT):
    events = synthetic.schedule_cues(DEFAULT, subject, session, clip)
    profile = synthetic.subject_profile(DEFAULT, subject)
    kinds = [e.kind for e in events]
    assert set(kinds) <= set(profile.kinds)
    for e in events:
      assert 0 <= e.start < e.end <= DEFAULT.num_frames
    base = [e.intensity / (DEFAULT.cue_gain * profile.gain(e.kind)) for e in events]
    if session == 0:
      assert events == []
    elif session == 1:
      assert len(events) == 1 and kinds[0] != "head_jitter"
      assert 0.55 <= base[0] <= 0.7
    else:
      assert len(events) in (2, 3) and len(set(kinds)) == len(kinds)
      assert all(0.85 <= b <= 1.0 for b in base)


def test_subjects_show_stress_their_own_way():
  profiles = [synthetic.subject_profile(DEFAULT, s) for s in range(DEFAULT.num_subjects)]
  assert all(len(p.families) == DEFAULT.families_per_subject for p in profiles)
  assert len({p.families for p in profiles}) > 5
  geometric = set(synthetic.EVENT_KINDS) - set(synthetic.APPEARANCE_KINDS) - {"head_jitter"}
  # Neither stream sees every subject's stress: some show none the landmarks carry,
  # some nothing but what the landmarks carry.
  assert any(not set(p.kinds) & geometric for p in profiles)
  assert any(not set(p.kinds) & set(synthetic.APPEARANCE_KINDS) for p in profiles)
  only_skin = dataclasses.replace(DEFAULT, cue_families=("skin",))
  for subject, session, clip in list(all_clips(only_skin))[:60]:
    kinds = {e.kind for e in synthetic.schedule_cues(only_skin, subject, session, clip)}
    assert kinds <= {"flush", "sweat"}
  assert synthetic.subject_profile(only_skin, 0).families == ("skin",)
  with pytest.raises(ValueError, match="cue_families"):
    SimulatorConfig(cue_families=("skin", "nose"))


def test_populations_by_text_and_by_name():
  overrides = synthetic.parse_overrides("seed=7, num_subjects=20,cue_families=skin+head")
  assert overrides == dict(seed=7, num_subjects=20, cue_families=("skin", "head"))
  name = synthetic.config_name("synthetic", DEFAULT, {**overrides, "difficulty": 1.0})
  # Declaration order; a value equal to the base's is not part of the name.
  assert name == "synthetic-num_subjects20-seed7-cue_familiesskin+head"
  assert synthetic.parse_config_name(name) == ("synthetic", overrides)
  assert synthetic.config_name("synthetic", DEFAULT, {}) == "synthetic"
  for bad in ("seed", "colour=3", "seed=x"):
    with pytest.raises(ValueError):
      synthetic.parse_overrides(bad)


def test_binary_stress_uses_the_strong_profile():
  config = SimulatorConfig(num_classes=2)
  events = synthetic.schedule_cues(config, 0, 1, 0)
  assert len(events) >= 2 and synthetic.schedule_cues(config, 0, 0, 0) == []


def test_difficulty_scales_cues():
  easy = dataclasses.replace(DEFAULT, difficulty=0.0)
  hard = dataclasses.replace(DEFAULT, difficulty=2.0)
  intensity = lambda config: synthetic.schedule_cues(config, 0, 2, 0)[0].intensity
  assert intensity(easy) > intensity(DEFAULT) > intensity(hard)
  assert easy.confounder_gain < DEFAULT.confounder_gain < hard.confounder_gain


def test_cue_frames_are_exactly_the_scheduled_frames():
  clip = synthetic.simulate_clip(SMALL, 2, 2, 1)
  expected = np.zeros(SMALL.num_frames, bool)
  for e in clip.events:
    expected[e.start : e.end] = True
  np.testing.assert_array_equal(clip.cue_frames, expected)
  assert clip.cue_frames.any()

  calm = synthetic.simulate_clip(SMALL, 2, 0, 1)
  assert not calm.cue_frames.any() and not calm.cue_region.any()


@pytest.mark.parametrize("kind", synthetic.EVENT_KINDS)
@pytest.mark.parametrize("subject", [1, 2])
def test_a_cue_changes_the_clip_only_inside_its_frames_and_region(kind, subject):
  event = CueEvent(kind, 3, 9, 0.9)
  with_cue = synthetic.simulate_clip(EXACT, subject, 0, 2, events=[event])
  without = synthetic.simulate_clip(EXACT, subject, 0, 2, events=[])
  outside = ~with_cue.cue_frames
  assert with_cue.cue_frames.sum() == 6
  np.testing.assert_array_equal(with_cue.frames[outside], without.frames[outside])
  np.testing.assert_array_equal(with_cue.landmarks[outside], without.landmarks[outside])
  moved = np.abs(with_cue.frames.astype(int) - without.frames.astype(int)).max(axis=-1) > 12
  changed = moved.sum(axis=(1, 2))  # clearly changed pixels per frame
  assert (changed[3:9] >= 15).sum() >= 4, changed
  region = with_cue.cue_region
  np.testing.assert_array_equal(region.any(axis=(1, 2)), with_cue.cue_frames)
  if kind != "head_jitter":  # it moves the whole head; its region marks the face faintly
    cells = np.kron(region, np.ones((1, 4, 4), np.uint8)) >= 0.05 * 255
    assert not (moved & ~cells).any(), (moved & ~cells).sum(axis=(1, 2))


@pytest.mark.parametrize("kind", synthetic.APPEARANCE_KINDS)
def test_appearance_cues_leave_the_landmarks_to_detector_noise(kind):
  event = CueEvent(kind, 2, 10, 1.0)
  on = synthetic.simulate_clip(SMALL, 3, 0, 0, events=[event], keep_camera=True)
  off = synthetic.simulate_clip(SMALL, 3, 0, 0, events=[], keep_camera=True)
  # The face's geometry does not change at all ...
  np.testing.assert_array_equal(on.camera_landmarks, off.camera_landmarks)
  # ... and the stored (dlib, aligned) points move by less than dlib's own error on
  # these frames, on average by less than half of it.
  noise = synthetic.detector.nme(off.landmarks, off.true_landmarks).mean()
  shift = synthetic.detector.nme(on.landmarks, off.landmarks)
  assert shift.max() < noise and shift[2:10].mean() < 0.5 * noise, (shift, noise)
  assert not shift[:2].any() and not shift[10:].any()
  # A geometric cue, by contrast, moves the true points.
  blink = synthetic.simulate_clip(
    SMALL, 3, 0, 0, events=[CueEvent("blink_burst", 2, 10, 1.0)], keep_camera=True
  )
  assert np.abs(blink.camera_landmarks - off.camera_landmarks).max() > 1.0


def test_cues_move_the_landmarks_they_are_about():
  def pair(kind):
    event = CueEvent(kind, 2, 11, 1.0)
    on = synthetic.simulate_clip(EXACT, 3, 0, 0, events=[event]).landmarks
    off = synthetic.simulate_clip(EXACT, 3, 0, 0, events=[]).landmarks
    return on[4:9], off[4:9]  # the event's hold frames

  on, off = pair("blink_burst")
  assert eye_aperture(on).min() < 0.15 * eye_aperture(off).mean()
  on, off = pair("brow_furrow")
  assert np.all(brow_height(on) < brow_height(off) - 0.02)
  inner_gap = lambda lm: lm[..., 22, 0] - lm[..., 21, 0]
  assert np.all(inner_gap(on) < inner_gap(off) - 0.02)
  on, off = pair("lip_press")
  assert np.all(lip_thickness(on) < 0.5 * lip_thickness(off))


def test_cue_region_marks_the_acting_part_of_each_frame():
  def region(kind, frame=6):
    clip = synthetic.simulate_clip(EXACT, 0, 0, 0, events=[CueEvent(kind, 2, 10, 0.8)])
    return clip.cue_region, clip.true_landmarks[frame] * synthetic.REGION_SIZE

  def value_at(region, point):
    x, y = np.clip(point.astype(int), 0, synthetic.REGION_SIZE - 1)
    return region[6, y, x] / 255

  for kind, inside, outside in (
    ("blink_burst", fg.RIGHT_EYE, [62]),
    ("lip_press", [51, 57], [37, 44]),
    ("brow_furrow", [21, 22], [57]),
    ("gaze_aversion", [37, 44], [57, 8]),
    ("sweat", [30], [57, 36]),
  ):
    mask, lm = region(kind)
    assert mask.dtype == np.uint8 and mask.shape == (EXACT.num_frames, 28, 28)
    assert all(value_at(mask, lm[k]) > 0.6 for k in inside), kind
    assert all(value_at(mask, lm[k]) < 0.05 for k in outside), kind
    frames = np.arange(EXACT.num_frames)
    np.testing.assert_array_equal(mask.any(axis=(1, 2)), (frames >= 2) & (frames < 10))


# ------------------------------------------------------------------------ records


def test_clip_example_fits_the_shared_record():
  clip = synthetic.simulate_clip(SMALL, 1, 1, 2)
  example = synthetic.clip_example(clip)
  features = records.clip_features(SMALL.num_frames, SMALL.label_names, synthetic=True)
  assert set(example) == set(features.keys())
  features.encode_example(example)  # raises on any shape or dtype mismatch
  assert example["subject"] == "s01" and example["video"] == "s01_session1"
  assert example["start_frame"] == 2 * SMALL.clip_stride
  assert len(example["frames"]) == SMALL.num_frames
  assert synthetic.clip_key(clip) == "s01_session1_000024"


def test_contact_sheet_writes_a_png(tmp_path):
  from PIL import Image

  from stress_jax.datasets.synthetic import contact_sheet

  config = dataclasses.replace(SMALL, num_frames=4, clip_stride=4)
  clips = contact_sheet.simulated_clips(config, clips_per_class=1)
  assert [clip["label"] for clip in clips] == [0, 1, 2]
  path = contact_sheet.draw_contact_sheet(clips, config.label_names, tmp_path / "sheet.png", 4)
  with Image.open(path) as image:
    assert image.format == "PNG" and image.width > 600 and image.height > 200
