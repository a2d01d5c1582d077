"""The Python API: `hutch.run()` and `hutch.Container`, over the same launch path as the CLI.

    >>> import hutch
    >>> r = hutch.run(["hostname"], hostname="box", capture_output=True)
    >>> r.returncode, r.stdout
    (0, b'box\\n')

    >>> with hutch.Container(["sleep", "60"], rootfs="/srv/busybox") as c:
    ...     c.start(); c.state()["status"]
    'running'

The container process is a child of the calling process (adopted from the
intermediate process hutch forks), so wait() reaps it like a subprocess.
"""

from __future__ import annotations

import os
import signal as _signal

from hutch.record import fields

from hutch.errors import StateError
from hutch.oci import container as lifecycle
from hutch.engine.runspec import RunOptions, build_spec, check_rootfs
from hutch.oci.state import default_root

_OPTION_NAMES = {f.name for f in fields(RunOptions)}


def _options(args, kwargs) -> RunOptions:
    unknown = set(kwargs) - _OPTION_NAMES
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    if isinstance(args, str):
        raise TypeError("args must be a list of strings, not a string")
    return RunOptions(args=list(args), **kwargs)


class Container:
    """A container you start, wait for, signal and inspect.

    Parameters are those of `hutch run` (see RunOptions): rootfs, hostname,
    userns, volumes, env, user, cap_add, resources, ...; stdin/stdout/stderr are
    file descriptors (or objects with fileno()) for the container's stdio.
    """

    def __init__(self, args, *, root: str | None = None, stdin=None, stdout=None, stderr=None, **options):
        self.options = _options(args, options)
        self.root = root or default_root()
        self.id = self.options.container_id()
        self.pid: int | None = None
        self.returncode: int | None = None
        self._stdio = tuple(_fileno(s, default) for s, default in ((stdin, 0), (stdout, 1), (stderr, 2)))
        self._state = None

    def start(self) -> "Container":
        if self.pid is not None:
            raise StateError("container already started")
        check_rootfs(self.options)
        from hutch.engine.run import join_container_network
        join_container_network(self.options, self.root)
        spec = build_spec(self.options, self.id)
        create = lifecycle.CreateOptions(foreground=True, use_init=self.options.init,
                                         cgroup=bool(self.options.resources), stdio=self._stdio)
        self._state, started = lifecycle.create(self.root, self.id, os.getcwd(), create, spec=spec)
        self.pid = started.pid
        try:
            lifecycle.release(self.root, self._state, started)
        except BaseException:
            self._cleanup()
            raise
        return self

    def wait(self) -> int:
        """Wait for the container's process; returns its exit status (128+N if killed by N)."""
        if self.pid is None:
            raise StateError("container not started")
        if self.returncode is None:
            from hutch.oci.launcher import wait_status
            self.returncode = wait_status(self.pid)
            self._cleanup()
        return self.returncode

    def signal(self, sig: int = _signal.SIGTERM) -> None:
        if self.pid is None or self.returncode is not None:
            raise StateError("container not running")
        lifecycle.signal_pid(self.pid, sig)

    def kill(self) -> None:
        self.signal(_signal.SIGKILL)

    def state(self) -> dict:
        """The OCI state (id, status, pid, bundle, ...); status "new" before start()."""
        if self.pid is None:
            return {"id": self.id, "status": "new", "pid": 0}
        if self.returncode is not None:
            return {"id": self.id, "status": "stopped", "pid": 0, "exit_status": self.returncode}
        return lifecycle.get_state(self.root, self.id)

    def _cleanup(self) -> None:
        try:
            lifecycle.delete(self.root, self.id, force=True)
        except StateError:
            pass

    def __enter__(self) -> "Container":
        return self

    def __exit__(self, *exc) -> None:
        if self.pid is not None and self.returncode is None:
            try:
                self.kill()
            except StateError:
                pass
            self.wait()


def _fileno(stream, default: int) -> int:
    if stream is None:
        return default
    return stream if isinstance(stream, int) else stream.fileno()


def run(args, *, capture_output: bool = False, input: bytes | None = None, check: bool = False,
        root: str | None = None, stdin=None, stdout=None, stderr=None, **options):
    """Run args in a new container and wait, like subprocess.run.

    Returns subprocess.CompletedProcess (stdout/stderr as bytes when captured).
    Raises subprocess.CalledProcessError with check=True and a non-zero status."""
    import subprocess
    import tempfile
    files = []
    try:
        if input is not None:
            stdin = tempfile.TemporaryFile()
            stdin.write(input)
            stdin.seek(0)
            files.append(stdin)
        elif stdin is None:
            stdin = open(os.devnull, "rb")
            files.append(stdin)
        if capture_output:
            stdout, stderr = tempfile.TemporaryFile(), tempfile.TemporaryFile()
            files += [stdout, stderr]
        box = Container(args, root=root, stdin=stdin, stdout=stdout, stderr=stderr, **options)
        code = box.start().wait()
        out = err = None
        if capture_output:
            stdout.seek(0)
            stderr.seek(0)
            out, err = stdout.read(), stderr.read()
    finally:
        for f in files:
            f.close()
    result = subprocess.CompletedProcess(list(args), code, out, err)
    if check:
        result.check_returncode()
    return result
