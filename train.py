"""Train StressNet. With no arguments: the demo on the embedded synthetic data.

  python train.py                                   # demo: builds data, trains, evaluates
  python train.py --config=stress_jax/configs/paper.py --workdir=runs/paper \
      --config.data.name=stress_faces/video --config.data.manual_dir=/data/videos
  python train.py --config=stress_jax/configs/demo.py --config.protocol.fold=2

Several hosts: run the same command on each. Inside a SLURM job step, a Cloud TPU
slice, GKE or an Open MPI launch the hosts find each other (docs/cloud.md); elsewhere:
  python train.py ... --coordinator_address=10.0.0.1:8476 --num_processes=4 --process_id=$RANK
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from stress_jax import cli, distributed

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  cli.shipped_config("stress_jax/configs/demo.py"),  # found from any working directory
  "Config file (a get_config() module).",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Where checkpoints, logs and results go.")
_ALLOW_CHANGE = flags.DEFINE_list(
  "allow_config_change",
  [],
  "Config fields (or sections) that may differ from the run already in --workdir, "
  "e.g. train.num_epochs to train longer; any other change is refused.",
)
distributed.define_flags()


def main(argv):
  cli.unexpected_arguments(argv)
  # orbax and TFDS log every file operation at INFO; keep the console readable.
  cli.quiet_logging("warning")
  import jax

  distributed.initialize_from_flags()
  from stress_jax import train

  summary = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, _ALLOW_CHANGE.value)
  if summary.get("preempted"):
    sys.exit(summary.get("exit_code", train.PREEMPTED_EXIT_CODE))
  if jax.process_index() == 0:
    from stress_jax.report import print_summary

    print_summary(summary, _WORKDIR.value)
    from stress_jax import seed_range

    # One run is one draw: show where the same fold landed across seeds on the results page.
    print(seed_range.summary_line(_CONFIG.value, summary), flush=True)


if __name__ == "__main__":
  app.run(cli.guarded(main, "train.py"), flags_parser=cli.flags_parser(flags.FLAGS, "train.py"))
