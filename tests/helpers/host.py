"""Small host-side helpers shared by the priv and integration tests."""

from __future__ import annotations

import os
import signal
import time

from hutch.syscall import proc


def openable(dev: str) -> bool:
    """Precondition for device tests: the host itself lets us open dev."""
    try:
        open(dev, "rb").close()
        return True
    except OSError:
        return False


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def wait_child(parent: int, comm: str) -> int:
    """The pid of parent's child once it runs `comm` (unshare -f forks, then execs)."""
    for _ in range(500):
        for child in proc.children_pids(parent):
            try:
                with open(f"/proc/{child}/comm") as f:
                    if f.read().strip() == comm:
                        return child
            except OSError:
                pass
        time.sleep(0.01)
    raise RuntimeError(f"no {comm} child of {parent}")


def kill_pids(pids) -> None:
    """SIGKILL each pid that still exists."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
