"""Proxy between our terminal and a container's pty master: raw mode, window size,
until the container side closes."""

from __future__ import annotations

import errno
import os
import select
import _signal as signal  # the C module: `signal` pulls in enum (5 ms on the start path)


def copy_size(src: int, dst: int) -> None:
    from hutch.oci.console import get_size, set_size
    size = get_size(src)
    if size:
        try:
            set_size(dst, *size)
        except OSError:
            pass


def proxy(master: int, interactive: bool = True) -> None:
    """Copy stdin -> master and master -> stdout until the pty hangs up."""
    stdin_tty = os.isatty(0)
    saved = None
    if stdin_tty:
        copy_size(0, master)
        signal.signal(signal.SIGWINCH, lambda *_: copy_size(0, master))
    if stdin_tty and interactive:
        # Raw mode only when we pass keys on: with -t alone, ^C stays a signal to hutch.
        import termios
        import tty
        saved = termios.tcgetattr(0)
        tty.setraw(0)
    inputs = [master] + ([0] if interactive else [])
    try:
        while True:
            try:
                ready, _, _ = select.select(inputs, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError as exc:
                    if exc.errno == errno.EIO:
                        break  # every slave fd closed: the container process is gone
                    raise
                if not data:
                    break
                _write_all(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    inputs.remove(0)
                    # Pass EOF on the way a terminal would: ^D at line start.
                    _write_all(master, b"\x04")
                    continue
                _write_all(master, data)
    finally:
        if saved is not None:
            import termios
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            n = os.write(fd, data)
        except InterruptedError:
            continue
        data = data[n:]
