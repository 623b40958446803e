"""Worker processes that end when the process that started them ends.

A build killed with SIGKILL cannot run its clean-up, and a worker of a process pool
would then live on, holding CPU and files. Each worker calls `die_with_parent()` at
start (the pool's initializer): a daemon thread watches the parent process id and
ends the worker once the parent is gone (the worker is then re-parented). It is
per process, unlike Linux's PR_SET_PDEATHSIG, which fires when the parent *thread*
that started the worker exits, and it works on every platform.
"""

from __future__ import annotations

import os
import threading
import time

POLL_SECONDS = 0.5


def _watch(parent: int) -> None:
  while True:
    if os.getppid() != parent:
      os._exit(1)  # no clean-up: the parent that would collect our results is gone
    time.sleep(POLL_SECONDS)


def die_with_parent() -> None:
  """Ends this process soon after its parent process ends (however it ended)."""
  parent = os.getppid()
  threading.Thread(target=_watch, args=(parent,), name="die-with-parent", daemon=True).start()
