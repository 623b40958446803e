"""What averaging a trained StressNet's heads would give (model.combine_stream_logits).

  python docs/experiments/fusion_probe.py --workdir=RUN [--workdir=RUN2 ...] [--split=val,test]

A model trained with `model.stream_heads` has three classifiers: the fused one (what it
predicts), the image stream's head and the landmark stream's head. For each workdir's
best checkpoint (chosen on validation subjects in training) this prints the accuracy of
the fused head and of `model.combine_stream_logits` (the mean of the three heads'
logits) with the same weights: an inference-time switch is judged without training
again. Run it on development-population workdirs only; the choice it informs must not
see the reported folds. Prints one JSON line per workdir and split.
"""

from __future__ import annotations

import json

from absl import app, flags

_WORKDIRS = flags.DEFINE_multi_string("workdir", [], "Trained workdirs (stream heads on).")
_SPLITS = flags.DEFINE_list("split", ["val", "test"], "Subject splits to score.")


def main(argv):
  del argv
  from stress_jax import cli, evaluate

  cli.quiet_logging("error")

  for workdir in _WORKDIRS.value:
    config = evaluate.read_config(workdir)
    if not config.model.stream_heads:
      raise SystemExit(f"{workdir}: model.stream_heads is off, there are no stream heads")
    rows = {}
    for combine in (False, True):
      with config.unlocked():
        config.model.combine_stream_logits = combine
      trainer, state, step, _ = evaluate.restore(workdir, config, "best")
      for split in _SPLITS.value:
        outputs = trainer.predict(state, tuple(sorted(getattr(trainer.split, split))))
        correct = outputs["probabilities"].argmax(-1) == outputs["label"]
        row = rows.setdefault(split, {"workdir": workdir, "split": split, "step": step})
        row["clips"] = int(correct.size)
        row["combined" if combine else "fused"] = float(correct.mean())
    for row in rows.values():
      print(json.dumps(row), flush=True)


if __name__ == "__main__":
  app.run(main)
