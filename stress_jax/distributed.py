"""Joining a multi-host run: explicit flags, or the cluster the job was started in.

On a TPU pod slice, a SLURM job step, an Open MPI launch or an indexed Kubernetes
Job, every host runs the same command; `jax.distributed.initialize()` can read who
is who from the environment, but only if someone calls it. `initialize` calls it
when flags ask for it or when `detect` recognises such a cluster, and leaves a
single machine as one plain process.

Detection reads only environment variables and device files (no network), so a
laptop or CI runner never waits on a metadata server. jax then fills in whatever
was not given explicitly from the same environment.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from collections.abc import Mapping

from absl import flags

_SLURM = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")


def _count(environ: Mapping[str, str], name: str) -> int:
  try:
    return int(environ.get(name, "1"))
  except ValueError:
    return 1


def detect(environ: Mapping[str, str] | None = None, *, tpu_devices=None) -> str | None:
  """The multi-process environment this process runs in, or None for a lone process.

  `tpu_devices` overrides the device-file probe (tests fake it).
  """
  environ = os.environ if environ is None else environ
  if all(name in environ for name in _SLURM) and _count(environ, "SLURM_NTASKS") > 1:
    return "SLURM"
  if "OMPI_MCA_orte_hnp_uri" in environ and _count(environ, "OMPI_COMM_WORLD_SIZE") > 1:
    return "Open MPI"
  hosts = environ.get("TPU_PROCESS_ADDRESSES") or environ.get("TPU_WORKER_HOSTNAMES") or ""
  if len([h for h in hosts.split(",") if h.strip()]) > 1:
    return "GKE TPU"
  if (
    "KUBERNETES_SERVICE_HOST" in environ
    and "JOB_COMPLETION_INDEX" in environ
    and importlib.util.find_spec("kubernetes") is not None
  ):
    return "Kubernetes"
  if tpu_devices is None:
    tpu_devices = bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))
  if tpu_devices and importlib.util.find_spec("libtpu") is not None:
    # A Cloud TPU VM: jax asks the VM's metadata for the slice's workers, and a
    # single-host slice comes back as one process.
    return "Cloud TPU VM"
  return None


def define_flags() -> None:
  """The multi-host flags every entry point that trains shares."""
  flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0; default: from the cluster, if any."
  )
  flags.DEFINE_integer("num_processes", None, "Processes in a multi-host run.")
  flags.DEFINE_integer("process_id", None, "This process's index, 0-based.")
  flags.DEFINE_enum(
    "distributed",
    "auto",
    ["auto", "off"],
    "auto: join the cluster this job runs in (SLURM, Cloud TPU, GKE, Open MPI); off: never.",
  )
  flags.DEFINE_string(
    "cpu_collectives", "gloo", "CPU collectives implementation for multi-process CPU runs."
  )


def initialize_from_flags() -> str | None:
  """Joins the run the flags (or, failing those, the environment) describe."""
  values = flags.FLAGS
  return initialize(
    coordinator_address=values.coordinator_address,
    num_processes=values.num_processes,
    process_id=values.process_id,
    mode=values.distributed,
    cpu_collectives=values.cpu_collectives,
  )


def initialize(
  *,
  coordinator_address=None,
  num_processes=None,
  process_id=None,
  mode: str = "auto",
  cpu_collectives: str = "gloo",
  environ: Mapping[str, str] | None = None,
) -> str | None:
  """Calls jax.distributed.initialize when there is a run to join; returns what was found."""
  import jax

  explicit = coordinator_address or num_processes or process_id is not None
  found = "flags" if explicit else (detect(environ) if mode == "auto" else None)
  if found is None:
    return None
  # Only CPU backends read this; it must be set before the backend starts.
  jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  jax.distributed.initialize(
    coordinator_address=coordinator_address,
    num_processes=num_processes,
    process_id=process_id,
  )
  if jax.process_index() == 0:
    source = "explicit flags" if found == "flags" else f"the {found} environment"
    print(f"jax.distributed from {source}: {jax.process_count()} process(es)", flush=True)
  return found
