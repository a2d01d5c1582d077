"""OCI hooks: run each hook with the container state on stdin, honouring timeouts.

Which namespace a hook runs in is the caller's business (the runtime's
namespace for prestart/createRuntime/poststart/poststop, the container's for
createContainer/startContainer): this module only runs the programs.
"""

from __future__ import annotations

import os
import _signal as signal  # the C module: `signal` pulls in enum (5 ms on the start path)
import sys
import time

from hutch import fastjson
from hutch import syscall as hsys
from hutch.errors import HutchError

HOOK_NAMES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def run_hooks(spec: dict, name: str, state: dict) -> None:
    """Run every hook of kind `name`; the first failure raises HutchError."""
    hooks = (spec.get("hooks") or {}).get(name) or ()
    if not hooks:
        return
    payload = fastjson.dumps(state).encode()
    for i, hook in enumerate(hooks):
        run_one(hook, payload, where=f"hooks.{name}[{i}]")


def run_hooks_warn(spec: dict, name: str, state: dict) -> None:
    """poststop: a failing hook is logged and the next one still runs (runtime-spec).
    (A failing poststart hook fails `start`, as in runc: see oci/container.py.)"""
    hooks = (spec.get("hooks") or {}).get(name) or ()
    payload = fastjson.dumps(state).encode()
    for i, hook in enumerate(hooks):
        try:
            run_one(hook, payload, where=f"hooks.{name}[{i}]")
        except HutchError as err:
            print(f"hutch: warning: {err}", file=sys.stderr)


def run_one(hook: dict, payload: bytes, where: str) -> None:
    path = hook["path"]
    args = hook.get("args") or [path]
    env = hook.get("env")
    timeout = hook.get("timeout")
    # The state goes in a memory file, not a pipe: a hook that never reads its stdin
    # cannot block us before its timeout starts, however large the state is.
    state_fd = os.memfd_create("hutch-hook-state", os.MFD_CLOEXEC)
    try:
        os.write(state_fd, payload)
        os.lseek(state_fd, 0, os.SEEK_SET)
        pid = os.fork()
    except OSError as exc:
        os.close(state_fd)
        raise HutchError(f"cannot start hook {path}: {exc.strerror}", where=where) from None
    if pid == 0:
        try:
            os.dup2(state_fd, 0)
            # A hook must not hold the runtime's sync pipes or the container's fds.
            hsys.close_range(3)
            if env is None:
                os.execv(path, args)
            os.execve(path, args, dict(e.split("=", 1) for e in env if "=" in e))
        finally:
            os._exit(127)
    os.close(state_fd)
    status = _wait(pid, timeout)
    if status is None:
        raise HutchError(f"hook {path} timed out after {timeout}s", where=where)
    if status != 0:
        raise HutchError(f"hook {path} failed: {_describe(status)}", where=where)


def _wait(pid: int, timeout: int | None) -> int | None:
    """Wait for pid; return its wait status, or None after killing it on timeout."""
    if not timeout:
        return os.waitpid(pid, 0)[1]
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.01)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
