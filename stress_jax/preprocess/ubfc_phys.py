"""UBFC-Phys as distributed -> the rows the video ingest processes, plus what is wrong with it.

The database (Meziati Sabour et al., IEEE Trans. Affective Computing 2021) has one
folder per subject, `s1` .. `s56`, each with `vid_sN_T1.avi`, `vid_sN_T2.avi`,
`vid_sN_T3.avi` (motion JPEG, 1024x1024, 35 fps, about 3 minutes each), the
`bvp_*`/`eda_*` signals, `selfReportedAnx_sN.csv` and `info_sN.txt` (subject id,
sex, group, date, time). Tasks: T1 rest, T2 speech, T3 arithmetic. The group
(`test` or `ctrl`) is the difficulty of T2/T3 and is read from each info file.

Known defects of some copies (a missing video such as vid_s40_T3.avi, a missing
info file, an empty video) are reported and skipped, never fatal. Video frame
counts in the container are unreliable, so nothing here trusts them: the ingest
decodes and counts.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from stress_jax.preprocess.manifest import Manifest, Row

TASKS = ("T1", "T2", "T3")
TASK_NAMES = {"T1": "rest", "T2": "speech", "T3": "arithmetic"}
GROUPS = ("test", "ctrl")
# Label schemes of the literature: the three tasks, or rest vs stress (T2 and T3).
SCHEMES = {
  "tasks": {"T1": "T1_rest", "T2": "T2_speech", "T3": "T3_arithmetic"},
  "binary": {"T1": "rest", "T2": "stress", "T3": "stress"},
}
SUBJECT_DIR = re.compile(r"^s(\d+)$")

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Request UBFC-Phys (IEEE DataPort), unpack every subject's archive and pass the
folder that holds the subject folders as --manual_dir:

  <manual_dir>/s1/vid_s1_T1.avi  vid_s1_T2.avi  vid_s1_T3.avi  info_s1.txt  ...
  <manual_dir>/s2/...

(one level of extra folder, e.g. <manual_dir>/UBFC-Phys/s1, is found too). Missing
or empty videos and info files are listed in ingest_report.json and skipped.
"""


@dataclasses.dataclass(frozen=True)
class Subject:
  name: str  # "s12"
  number: int
  group: str  # "test", "ctrl" or "unknown"
  sex: str  # "m", "f" or ""
  videos: tuple[tuple[str, str], ...]  # (task, path relative to the manual dir)


def problem(kind: str, path: str, detail: str) -> dict:
  return dict(kind=kind, path=path, detail=detail)


def _subject_dirs(root: Path) -> list[Path]:
  found = [p for p in root.iterdir() if p.is_dir() and SUBJECT_DIR.match(p.name)]
  if not found:
    # Archives often unpack into one more folder.
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
      found += [p for p in child.iterdir() if p.is_dir() and SUBJECT_DIR.match(p.name)]
  return sorted(found, key=lambda p: int(SUBJECT_DIR.match(p.name).group(1)))


def read_info(path: Path) -> tuple[str, str]:
  """(group, sex) from info_sN.txt; group 'unknown' if it names none."""
  lines = [line.strip().lower() for line in path.read_text(errors="replace").splitlines()]
  group = next((line for line in lines if line in GROUPS), "unknown")
  sex = next((line for line in lines if line in ("m", "f")), "")
  return group, sex


def scan(manual_dir: str | Path) -> tuple[list[Subject], list[dict]]:
  """Every subject folder with its readable videos, and the problems found on the way."""
  root = Path(manual_dir)
  if not root.is_dir():
    raise FileNotFoundError(f"UBFC-Phys folder {root} does not exist")
  subjects, problems = [], []
  for folder in _subject_dirs(root):
    name = folder.name
    relative = folder.relative_to(root).as_posix()
    info = folder / f"info_{name}.txt"
    group, sex = "unknown", ""
    if info.is_file():
      group, sex = read_info(info)
      if group == "unknown":
        problems.append(problem("no_group", f"{relative}/{info.name}", "names no test/ctrl group"))
    else:
      problems.append(problem("missing_info", f"{relative}/{info.name}", "group unknown"))
    videos = []
    for task in TASKS:
      video = folder / f"vid_{name}_{task}.avi"
      path = f"{relative}/{video.name}"
      if not video.is_file():
        problems.append(problem("missing_video", path, f"{TASK_NAMES[task]} task skipped"))
      elif video.stat().st_size == 0:
        problems.append(problem("empty_video", path, f"{TASK_NAMES[task]} task skipped"))
      else:
        videos.append((task, path))
    if not videos:
      problems.append(problem("no_video", relative, "subject skipped"))
      continue
    number = int(SUBJECT_DIR.match(name).group(1))
    subjects.append(Subject(name, number, group, sex, tuple(videos)))
  return subjects, problems


def manifest(manual_dir: str | Path, subjects: list[Subject], scheme: str) -> Manifest:
  """The ingest's manifest for these subjects: one row per video, one split per subject."""
  labels = SCHEMES[scheme]
  rows = []
  for subject in subjects:
    for task, path in subject.videos:
      rows.append(
        Row(
          line=len(rows) + 2,  # as if written to a manifest.csv below its header
          path=path,
          subject=subject.name,
          label=labels[task],
          session=f"{task} {TASK_NAMES[task]} ({subject.group})",
          start_s=None,
          end_s=None,
          split=subject.name,
        )
      )
  return Manifest(
    path=Path(manual_dir),
    manual_dir=Path(manual_dir),
    rows=tuple(rows),
    label_names=tuple(sorted(set(labels.values()))),
  )
