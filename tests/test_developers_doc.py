"""DEVELOPERS.md's module list matches the tree: every module named, no name that is gone."""

from __future__ import annotations

import re

from tests.conftest import REPO


def _module_block() -> str:
  text = (REPO / "DEVELOPERS.md").read_text()
  section = text.split("## Modules", 1)[1]
  return section.split("```", 2)[1]


def test_module_list_names_every_module_and_only_existing_files():
  block = _module_block()
  modules = [
    path
    for path in (REPO / "stress_jax").rglob("*.py")
    if path.name != "__init__.py" and "__pycache__" not in path.parts
  ]
  unnamed = [
    str(path.relative_to(REPO))
    for path in modules
    if not re.search(rf"(?<![\w.]){re.escape(path.stem)}(\.py)?(?![\w])", block)
  ]
  assert not unnamed, f"DEVELOPERS.md does not name {unnamed}"
  existing = {
    path.name
    for part in ("stress_jax", "tests", "benchmarks")
    for path in (REPO / part).rglob("*.py")
  }
  gone = sorted(set(re.findall(r"\b\w+\.py\b", block)) - existing - {"train.py"})
  assert not gone, f"DEVELOPERS.md names files that are not in the tree: {gone}"
  folders = {p.name for p in (REPO / "stress_jax").iterdir() if (p / "__init__.py").exists()}
  named_folders = set(re.findall(r"^  (\w+)/", block, flags=re.M))
  assert named_folders == folders
