"""Parent/child synchronisation over two close-on-exec pipes.

Messages are short text lines ("verb payload").  Pipes rather than a socket:
they need no import on the start path, and EOF tells the parent that every
child holding the write end has exited or exec'd (the ends are close-on-exec).
"""

from __future__ import annotations

import os

from hutch import fastjson
from hutch.errors import HutchError


class ChannelClosed(Exception):
    """The other side went away without saying anything more."""


class Channel:
    def __init__(self) -> None:
        self._down_r, self._down_w = os.pipe2(os.O_CLOEXEC)   # parent -> child
        self._up_r, self._up_w = os.pipe2(os.O_CLOEXEC)       # child -> parent
        self._buffer = b""
        self._is_parent: bool | None = None

    # Call exactly one of these in each process right after fork.
    def as_parent(self) -> "Channel":
        os.close(self._down_r)
        os.close(self._up_w)
        self._is_parent = True
        return self

    def as_child(self) -> "Channel":
        os.close(self._down_w)
        os.close(self._up_r)
        self._is_parent = False
        return self

    def fds(self) -> tuple[int, int]:
        """The (read, write) fds this side uses."""
        return self._fds()

    def _fds(self) -> tuple[int, int]:
        return (self._up_r, self._down_w) if self._is_parent else (self._down_r, self._up_w)

    def send(self, verb: str, payload: str = "") -> None:
        line = f"{verb} {payload}".rstrip() + "\n"
        os.write(self._fds()[1], line.encode())

    def recv(self) -> tuple[str, str]:
        """Block for the next message; raise ChannelClosed on EOF."""
        read_fd = self._fds()[0]
        while b"\n" not in self._buffer:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                raise ChannelClosed()
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        verb, _, payload = line.decode().partition(" ")
        return verb, payload

    def expect(self, verb: str) -> str:
        """Receive a message that must be `verb`; a child's 'error' becomes an exception."""
        got, payload = self.recv()
        if got == "error":
            raise ChildError.decode(payload)
        if got != verb:
            raise ChildError(f"protocol error: expected {verb!r}, got {got!r}")
        return payload

    def close(self) -> None:
        """Close this side's fds (or all four before as_parent/as_child); idempotent."""
        names = (("_up_r", "_down_w") if self._is_parent else ("_down_r", "_up_w")) \
            if self._is_parent is not None else ("_up_r", "_up_w", "_down_r", "_down_w")
        for name in names:
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                try:
                    os.close(fd)
                except OSError:
                    pass


class ChildError(Exception):
    """An error raised in a container child and reported to the parent."""

    def __init__(self, message: str, exit_code: int | None = None, where: str | None = None):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.where = where

    def encode(self) -> str:
        # fastjson, not json: this runs in the container, where no new module can be imported.
        return fastjson.dumps({"m": self.message, "c": self.exit_code, "w": self.where})

    @classmethod
    def decode(cls, payload: str) -> "ChildError":
        try:
            data = fastjson.loads(payload)
            return cls(data["m"], data.get("c"), data.get("w"))
        except (HutchError, KeyError, TypeError):
            return cls(payload)
