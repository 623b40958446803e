"""What a workdir was trained with, so a rerun cannot silently resume on something else.

`<workdir>/provenance.json` holds a fingerprint of the run: every config field that
changes what the checkpoints mean (data, protocol, input, model, optimizer, loop),
and the dataset's identity from its own metadata (name, builder config, version,
label names, split sizes, a hash of the features and of the builder's metadata).
A rerun in the same workdir whose fingerprint differs is refused before anything
is written, naming the changed fields; `allow` lists fields (or sections, e.g.
`train`) that may change on purpose, such as `train.num_epochs` to train longer.
crossval's skip-if-finished check compares the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json

from etils import epath

from stress_jax import cli, jsonio

FILE_NAME = "provenance.json"
# Fields that say where things are or how fast they run, not what is trained:
# changing them must not stop a resume. model.num_classes follows the dataset.
IGNORED = (
  "data.data_dir",
  "data.manual_dir",
  "data.build_if_missing",
  "input.num_workers",
  "input.prefetch_batches",
  "train.progress_bar",
  "train.log_every_steps",
  "train.async_checkpoints",
  "train.keep_checkpoints",
  "model.num_classes",
  "model.conv_chunk_images",
)


# Fields added after runs were recorded without them, with the value those runs had in
# effect: a workdir that lacks one resumes when the current config keeps that value.
ADDED_LATER = {
  "model.modality_dropout": 0.0,
  "model.combine_stream_logits": False,
  "model.image_reference": "",
  "model.image_reference_mode": "subtract",
  "preprocess.follow": "prominent",
  "train.report_checkpoint": "best",
}

# Fields that change what a finished run reports but not its checkpoints: a rerun with
# another value is let through without --allow_config_change and evaluates again.
EVALUATION_ONLY = ("train.report_checkpoint",)


class ProvenanceError(cli.UserError):
  """The workdir holds a run of another config or dataset."""


def _flatten(tree, prefix: str = "") -> dict:
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{name}."))
    else:
      flat[name] = list(value) if isinstance(value, tuple) else value
  return flat


def _ignored(name: str) -> bool:
  return any(name == field or name.startswith(f"{field}.") for field in IGNORED)


def config_fingerprint(config) -> dict:
  """Dotted config fields -> JSON values, without the IGNORED ones."""
  plain = json.loads(config.to_json_best_effort(sort_keys=True))
  return {k: v for k, v in sorted(_flatten(plain).items()) if not _ignored(k)}


def _digest(value) -> str:
  return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dataset_fingerprint(handle) -> dict:
  """The dataset's identity from its DatasetInfo (not from where it lies on disk)."""
  info = handle.builder.info
  builder_config = handle.builder.builder_config
  metadata = json.loads(json.dumps(dict(info.metadata or {}), default=str))
  return {
    "name": info.name,
    "config": builder_config.name if builder_config else None,
    "version": str(info.version),
    "label_names": list(handle.label_names),
    "splits": {name: int(split.num_examples) for name, split in sorted(info.splits.items())},
    "features": _digest(info.features.to_json_content()),
    "metadata": _digest(metadata),
  }


def fingerprint(config, handle) -> dict:
  info = handle.builder.info
  metadata = json.loads(json.dumps(dict(info.metadata or {}), default=str))
  return {
    "config": config_fingerprint(config),
    "dataset": dataset_fingerprint(handle),
    # Not compared: what export needs to know about how the clips were made.
    "dataset_metadata": metadata,
  }


def read(workdir) -> dict | None:
  path = epath.Path(workdir) / FILE_NAME
  if not path.exists():
    return None
  try:
    recorded = json.loads(path.read_text())
  except (ValueError, OSError) as error:
    raise ProvenanceError(
      f"{path} is unreadable ({cli.one_line(error)}); restore it, or move it away to resume "
      "without the config check"
    ) from None
  if not isinstance(recorded, dict):
    raise ProvenanceError(f"{path} is not a JSON object; restore it or move it away")
  return recorded


def _allowed(name: str, allow) -> bool:
  return any(name == a or name.startswith(f"{a}.") for a in allow)


def changes(recorded: dict, current: dict, allow=()) -> list[str]:
  """Fields whose value differs between two fingerprints and that `allow` does not cover."""
  changed = []
  for part in ("config", "dataset"):
    old, new = recorded.get(part) or {}, current.get(part) or {}
    for name in sorted(set(old) | set(new)):
      if part == "config" and name not in old and ADDED_LATER.get(name, ...) == new.get(name):
        continue  # recorded before the field existed, and it still has that run's value
      if old.get(name) != new.get(name):
        field = name if part == "config" else f"dataset.{name}"
        if not _allowed(field, allow):
          changed.append(field)
  return changed


def training_changes(recorded: dict, current: dict, allow=()) -> list[str]:
  """The changes that only training can honour: `changes` less EVALUATION_ONLY."""
  return changes(recorded, current, tuple(allow) + EVALUATION_ONLY)


def _show(recorded: dict, current: dict, field: str) -> str:
  part, name = (
    ("dataset", field[len("dataset.") :])
    if field.startswith("dataset.")
    else (
      "config",
      field,
    )
  )
  old = (recorded.get(part) or {}).get(name, "unset")
  new = (current.get(part) or {}).get(name, "unset")
  text = f"{field} {json.dumps(old)} -> {json.dumps(new)}"
  return text if len(text) < 120 else f"{field} (changed)"


def parse_allow(text) -> tuple[str, ...]:
  """'train.num_epochs, train.num_steps' -> ('train.num_epochs', 'train.num_steps')."""
  if not text:
    return ()
  if isinstance(text, (list, tuple)):
    return tuple(str(t).strip() for t in text if str(t).strip())
  return tuple(t.strip() for t in str(text).split(",") if t.strip())


def check(workdir, current: dict, allow=()) -> dict | None:
  """Raises ProvenanceError if `workdir` holds a run with another fingerprint.

  Returns the recorded fingerprint (None for a fresh workdir). A workdir written
  before provenance.json existed is compared on its config.json alone.
  """
  workdir = epath.Path(workdir)
  recorded = read(workdir)
  if recorded is None and (workdir / "config.json").exists():
    import ml_collections

    try:
      legacy = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
    except ValueError as error:
      raise ProvenanceError(f"{workdir / 'config.json'} is unreadable ({error})") from None
    recorded = {"config": config_fingerprint(legacy)}
    current = {"config": current["config"]}
  if recorded is None:
    return None
  changed = changes(recorded, current, tuple(allow) + EVALUATION_ONLY)
  if changed:
    shown = "; ".join(_show(recorded, current, f) for f in changed[:6])
    more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
    raise ProvenanceError(
      f"{workdir} holds a run of another config or dataset: {shown}{more}. Use a new "
      f"--workdir, or --allow_config_change={','.join(changed)} if the change is intended"
    )
  return recorded


def record(workdir, current: dict) -> None:
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  jsonio.write(workdir / FILE_NAME, current, sort_keys=True, default=str)
