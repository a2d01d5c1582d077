"""Staying attached to a container process: signal forwarding, the pty proxy, and
the foreground `run` (create, release, wait, delete)."""

from __future__ import annotations

import os
import _signal as signal  # the C module: `signal` pulls in enum (5 ms on the start path)

from hutch.oci import container
from hutch.oci.launcher import wait_status

FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGCONT, signal.SIGALRM)


def forward_signals_to(pid: int) -> None:
    """Our terminal's and our caller's signals go to the container process (not SIGWINCH:
    the pty proxy answers that one)."""
    from hutch.oci.init import forward_signals
    forward_signals(pid, FORWARDED)


def wait_forwarding_signals(pid: int) -> int:
    forward_signals_to(pid)
    return wait_status(pid)


def console_pair() -> tuple[object, int]:
    """A socketpair: our end receives the pty master, the other end goes to the child."""
    import socket
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return ours, theirs.detach()


def receive_master(sock) -> int:
    from hutch.oci.console import receive_fd
    try:
        return receive_fd(sock)
    finally:
        sock.close()


def run_attached(root: str, container_id: str, bundle: str, options, *, spec: dict | None = None,
                 keep: bool = False, interactive: bool = True) -> int:
    """Create (with container.CreateOptions), start and wait for a container in the
    foreground; delete it afterwards (with keep, record its exit status instead)."""
    container.check_preserved_fds(options.preserve_fds)   # before the console pair takes a number
    if spec is None:
        spec = container.load_bundle_config(os.path.abspath(bundle))
    tty = bool(spec["process"].get("terminal")) and not options.console_socket
    sock = theirs = None
    if tty:
        sock, theirs = console_pair()
    options.foreground, options.console_fd = True, theirs
    try:
        state, started = container.create(root, container_id, bundle, options, spec=spec)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    finally:
        if theirs is not None:
            os.close(theirs)
    status = None
    try:
        master = receive_master(sock) if tty else None
        if master is not None:
            # Size the container's terminal before its program runs and asks for it.
            from hutch.oci.tty import copy_size
            copy_size(0, master)
        forward_signals_to(started.pid)
        container.release(root, state, started)
        if master is not None:
            from hutch.oci.tty import proxy
            proxy(master, interactive=interactive)
        status = wait_status(started.pid)
        return status
    finally:
        if not keep:
            container.delete(root, container_id, force=True)
        elif status is not None:
            container.record_exit(root, container_id, status)


def exec_with_tty(root: str, container_id: str, process: dict, *, pid_file: str | None,
                  preserve_fds: int) -> int:
    """`exec -t` without a console socket: we hold the pty master and proxy it."""
    sock, theirs = console_pair()
    try:
        started = container.exec_process(root, container_id, process, pid_file=pid_file,
                                         preserve_fds=preserve_fds, console_fd=theirs)
    except BaseException:
        sock.close()
        raise
    finally:
        os.close(theirs)
    master = receive_master(sock)
    started.exec_result()
    forward_signals_to(started.pid)
    from hutch.oci.tty import proxy
    proxy(master)
    return wait_forwarding_signals(started.pid)
