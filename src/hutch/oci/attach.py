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


def run_attached(root: str, container_id: str, bundle: str, *, spec: dict | None = None,
                 console_socket: str | None = None, pid_file: str | None = None,
                 preserve_fds: int = 0, no_pivot: bool = False, systemd_cgroup: bool = False,
                 no_new_keyring: bool = False,
                 keep: bool = False, use_init: bool = False, cgroup: bool = True,
                 interactive: bool = True, stdio: tuple | None = None) -> int:
    """Create, start and wait for a container in the foreground; delete it afterwards."""
    container.check_preserved_fds(preserve_fds)     # before the console pair takes a number
    if spec is None:
        spec = container.load_bundle_config(os.path.abspath(bundle))
    tty = bool(spec["process"].get("terminal")) and not console_socket
    sock = theirs = None
    if tty:
        sock, theirs = console_pair()
    try:
        state, started = container.create(root, container_id, bundle, spec=spec, console_socket=console_socket,
                                          pid_file=pid_file, preserve_fds=preserve_fds, no_pivot=no_pivot,
                                          no_new_keyring=no_new_keyring,
                                          systemd_cgroup=systemd_cgroup, foreground=True, use_init=use_init,
                                          console_fd=theirs, cgroup=cgroup, stdio=stdio)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    finally:
        if theirs is not None:
            os.close(theirs)
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
        return wait_status(started.pid)
    finally:
        if not keep:
            container.delete(root, container_id, force=True)


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
