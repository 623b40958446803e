"""Multi-host start from the cluster's environment, and preemption agreed across hosts."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from stress_jax import checkpointing, distributed
from tests.conftest import REPO, free_port, subprocess_env, train_command, train_error
from tests.test_train import assert_trees_close, final_params
from tests.trained_model import TINY_RUN_ARGS as ARGS
from tests.trained_model import TINY_RUN_STEPS as STEPS
from tests.trained_model import two_process_run  # noqa: F401  (fixture)


def slurm_env(rank: int, port: int, job_id: int = 4242) -> dict:
  """What a SLURM job step on one node with two tasks sets, as jax's SlurmCluster reads it."""
  env = subprocess_env(1)
  env.update(
    SLURM_JOB_ID=str(job_id),
    SLURM_STEP_ID="0",
    SLURM_NTASKS="2",
    SLURM_NPROCS="2",
    SLURM_PROCID=str(rank),
    SLURM_LOCALID=str(rank),
    SLURM_NODEID="0",
    SLURM_STEP_NUM_NODES="1",
    SLURM_STEP_NUM_TASKS="2",
    SLURM_JOB_NUM_NODES="1",
    SLURM_STEP_NODELIST="127.0.0.1",
    SLURM_JOB_NODELIST="127.0.0.1",
    SLURM_NODELIST="127.0.0.1",
    # jax derives the coordinator port from the job id; a real job may do the same,
    # here a free port keeps parallel test runs apart.
    JAX_COORDINATOR_PORT=str(port),
  )
  return env


def start(workdir, data_dir, envs, *extra):
  return [
    subprocess.Popen(
      train_command(workdir, data_dir, *ARGS, *extra[i]),
      env=env,
      cwd=REPO,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i, env in enumerate(envs)
  ]


def finish(procs, expected_rc=0, timeout=300):
  outs = []
  for proc in procs:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == expected_rc, err[-4000:]
    outs.append(out)
  return outs


def _logged_step(workdir) -> int:
  path = workdir / "metrics.jsonl"
  if not path.exists():
    return 0
  rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  return max((r["step"] for r in rows if "train/loss" in r), default=0)


@pytest.mark.slow  # two 2-process runs, one preempted
def test_slurm_job_preempted_on_one_host_stops_both_and_resumes_to_the_explicit_run(
  fake_data_dir,
  two_process_run,  # noqa: F811
  tmp_path,
):
  """A SLURM-started job trains like explicit flags, through a SIGTERM to one host."""
  port = free_port()
  workdir = tmp_path / "preempted"
  procs = start(workdir, fake_data_dir, [slurm_env(i, port, 77) for i in range(2)], (), ())
  head = []
  for line in procs[0].stdout:  # process 0 is about to start the loop
    head.append(line)
    if line.startswith("training "):
      break
  # Only the second host is told; the first must learn it through the sync manager.
  procs[1].send_signal(signal.SIGTERM)
  outs = finish(procs, expected_rc=143, timeout=180)
  outs[0] = "".join(head) + outs[0]
  assert "preempted at step" in outs[0]
  stopped = int(outs[0].split("preempted at step ")[1].split(":")[0])
  assert 1 <= stopped < STEPS
  assert checkpointing.load_state_arrays(workdir)[0] == stopped
  assert _logged_step(workdir) <= stopped

  port = free_port()
  outs = finish(start(workdir, fake_data_dir, [slurm_env(i, port, 78) for i in range(2)], (), ()))
  assert "jax.distributed from the SLURM environment: 2 process(es)" in outs[0]
  assert "2 device(s) x 2 process(es)" in outs[0]
  assert f"resuming at step {stopped}" in outs[0]
  straight, resumed = final_params(two_process_run), final_params(workdir)
  assert int(resumed["step"]) == STEPS
  assert_trees_close(straight["params"], resumed["params"], rtol=0, atol=1e-6)
  assert_trees_close(straight["batch_stats"], resumed["batch_stats"], rtol=0, atol=1e-6)
  assert_trees_close(straight["opt_state"], resumed["opt_state"], rtol=0, atol=1e-6)


ENVIRONMENTS = [
  ({}, None),
  (
    {
      "SLURM_JOB_ID": "1",
      "SLURM_STEP_NODELIST": "n1",
      "SLURM_NTASKS": "1",
      "SLURM_PROCID": "0",
      "SLURM_LOCALID": "0",
    },
    None,  # one task: a lone process
  ),
  (
    {
      "SLURM_JOB_ID": "1",
      "SLURM_STEP_NODELIST": "n[1-2]",
      "SLURM_NTASKS": "2",
      "SLURM_PROCID": "1",
      "SLURM_LOCALID": "0",
    },
    "SLURM",
  ),
  ({"SLURM_JOB_ID": "1", "SLURM_NTASKS": "4"}, None),  # an salloc shell, not a job step
  ({"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:1", "OMPI_COMM_WORLD_SIZE": "4"}, "Open MPI"),
  ({"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:1", "OMPI_COMM_WORLD_SIZE": "1"}, None),
  ({"TPU_WORKER_HOSTNAMES": "w-0,w-1,w-2,w-3"}, "GKE TPU"),
  ({"TPU_WORKER_HOSTNAMES": "w-0"}, None),
]


@pytest.mark.parametrize(("environ", "expected"), ENVIRONMENTS)
def test_detect_reads_the_cluster_environment(environ, expected):
  assert distributed.detect(environ, tpu_devices=False) == expected


def test_lone_process_is_not_initialized():
  assert distributed.initialize(environ={}) is None
  assert distributed.initialize(mode="off", environ={"TPU_WORKER_HOSTNAMES": "a,b"}) is None


@pytest.mark.parametrize(
  ("dtype", "backend", "expected"),
  [
    ("auto", "tpu", "bfloat16"),
    ("auto", "gpu", "bfloat16"),
    ("auto", "cpu", "float32"),
    ("float32", "tpu", "float32"),
    ("bfloat16", "cpu", "bfloat16"),
  ],
)
def test_auto_dtype_resolves_by_backend(dtype, backend, expected):
  from stress_jax.trainer import resolve_dtype

  assert resolve_dtype(dtype, backend) == expected


def test_paper_config_computes_in_bfloat16_on_accelerators_only():
  from stress_jax.configs import paper
  from stress_jax.trainer import resolve_dtype

  config = paper.get_config()
  assert resolve_dtype(config.model.dtype, "tpu") == "bfloat16"
  assert resolve_dtype(config.model.dtype, "cpu") == "float32"


def test_build_model_takes_the_paper_config_as_train_py_would():
  import jax

  from stress_jax.configs import paper
  from stress_jax.models import build_model

  model = build_model(paper.get_config().model)
  expected = "bfloat16" if jax.default_backend() != "cpu" else "float32"
  assert model.config.dtype == expected


def test_indivisible_batch_is_a_one_line_error(fake_data_dir, tmp_path):
  result = subprocess.run(
    train_command(tmp_path / "run", fake_data_dir, "--config.input.batch_size=6"),
    env=subprocess_env(4),
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=240,
  )
  assert result.returncode == 2  # cli.USER_ERROR_EXIT_CODE
  lines = result.stderr.strip().splitlines()
  assert lines[-1].startswith(
    "train.py: error: input.batch_size=6 does not divide over the 4 devices"
  )
  assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("model.spatial_attention_mode", "hard", "spatial_attention_mode must be one of"),
    ("train.stream_loss_weight", 0.0, "model.detach_stream_attention needs"),
  ],
)
def test_bad_config_values_are_one_line_errors(fake_data_dir, tmp_path, field, value, message):
  line = train_error(tmp_path / "run", fake_data_dir, **{field: value})
  assert line.startswith(f"train.py: error: {message}")
  # Refused before anything was written.
  assert not (tmp_path / "run" / "checkpoints").exists()
