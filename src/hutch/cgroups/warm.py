"""Take the cgroup attach's grace period off the container-start path.

Writing a pid to cgroup.procs takes the kernel's cgroup_threadgroup_rwsem for
writing.  That lock is a per-cpu rwsem: when no writer has taken it for a while,
the first writer waits for an RCU grace period (rcu_sync_enter) before it can
block readers, and writers that follow within about one more grace period do not.
Measured here (kernel 6.18, HZ=250, 2 vCPUs): the first write takes 6-16 ms, a
write within 10 ms of the previous one 0.05 ms, after 20 ms it is slow again.

A container's create or exec ends in exactly such a first write (the new process
joins its cgroup after fork), with the runtime waiting.  AttachWarmer pays the
grace period earlier, in a thread, while the runtime is still importing,
validating and building: it moves the runtime *to the cgroup it is already in*
(a no-op for the process, the same lock for the kernel) and repeats that every few
milliseconds until stopped just before the fork, so the real write finds the lock
warm.  Nothing changes for the runtime process: attaching a task to its own cgroup
migrates nothing.  Where the runtime cannot write its own cgroup.procs (rootless,
no cgroupfs, a read-only mount) the warmer does nothing.
"""

from __future__ import annotations

import _thread
import os

INTERVAL = 0.003          # seconds between writes: well inside the ~10 ms warm window


def own_procs_file(root: str = "/sys/fs/cgroup", text: str | None = None) -> str | None:
    """The cgroup.procs file of the calling process's own cgroup, in one hierarchy."""
    if text is None:
        try:
            with open("/proc/self/cgroup") as f:
                text = f.read()
        except OSError:
            return None
    unified, controllers_dirs = [], []
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        path = path.lstrip("/")
        if not controllers:
            # the root mount (v2) or root/unified (hybrid)
            unified += [os.path.join(root, path), os.path.join(root, "unified", path)]
        elif not controllers.startswith("name="):
            controllers_dirs.append(os.path.join(root, controllers, path))
    for directory in unified + controllers_dirs:     # one file is enough: the lock is global
        procs = os.path.join(directory, "cgroup.procs")
        if os.path.exists(procs):
            return procs
    return None


class AttachWarmer:
    """Keeps the cgroup attach lock warm from construction until stop()."""

    def __init__(self, procs_file: str | None = None, interval: float = INTERVAL):
        self.writes = 0
        self._interval = interval
        self._stopping = False
        self._wake = _thread.allocate_lock()
        self._wake.acquire()
        self._done = _thread.allocate_lock()
        self._fd = self._open(procs_file or own_procs_file())
        if self._fd is None:
            return
        self._done.acquire()
        _thread.start_new_thread(self._run, (str(os.getpid()).encode(),))

    @staticmethod
    def _open(path: str | None) -> int | None:
        if path is None:
            return None
        try:
            return os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            return None

    def _run(self, pid: bytes) -> None:
        try:
            while not self._stopping:
                os.write(self._fd, pid)        # the GIL is released while the kernel waits
                self.writes += 1
                self._wake.acquire(timeout=self._interval)
        except OSError:
            pass                               # e.g. moved under us by a manager: stop warming
        finally:
            self._done.release()

    @property
    def stopped(self) -> bool:
        return self._fd is None

    def stop(self) -> None:
        """Stop the thread and wait for it (at most the write in flight).  Idempotent."""
        if self._fd is None:
            return
        self._stopping = True
        self._wake.release()
        self._done.acquire()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "AttachWarmer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


_running: AttachWarmer | None = None


def start_warming(enabled: bool = True) -> AttachWarmer | None:
    """An AttachWarmer when the caller is root and will attach a process to a cgroup; the
    one already running if the command started it earlier (the CLI does, for create and
    exec, before it imports the rest: the grace period needs ~10 ms of other work to hide
    behind)."""
    global _running
    if not enabled:
        if _running is not None:
            _running.stop()      # started early for a verb that turned out to attach nothing
        return None
    if os.geteuid() != 0:
        return None
    if _running is None or _running.stopped:
        _running = AttachWarmer()
    return _running
