"""The one error type hutch raises for anything a user can cause or fix.

Every failure a user can cause becomes a :class:`HutchError` carrying one line of
text, optionally where the problem is (a JSON path in config.json, an option, a
file) and the exit code the command line should use.  The CLI prints
``hutch: <where>: <message>`` and exits; it never shows a traceback for these.
"""

from __future__ import annotations

import errno as _errno
import os

# Exit codes.  `hutch run` follows docker/podman; the OCI verbs follow runc (1).
EXIT_RUNTIME_ERROR = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
EXIT_OCI_ERROR = 1


class HutchError(Exception):
    """A failure with a one-line explanation for the user."""

    def __init__(self, message: str, where: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class ConfigError(HutchError):
    """Invalid input: a config.json field, a command-line option, an id map."""


class NotFoundError(HutchError):
    """A container, namespace or process that does not exist."""


class StateError(HutchError):
    """An operation that the container's current status does not allow."""


class SysCallError(HutchError):
    """A system call failed; names the call, its argument and the errno.

    Not an OSError on purpose: an `except OSError` meant for a file the code opened
    must not swallow a failed mount or setns.  Catch SysCallError (and look at .errno)
    where a failing call is expected."""

    def __init__(self, call: str, err: int, detail: str | None = None):
        name = _errno.errorcode.get(err, str(err))
        text = f"{call}{' ' + detail if detail else ''}: {os.strerror(err)} ({name})"
        HutchError.__init__(self, text)
        self.errno = err
        self.call = call
        self.detail = detail
        self.strerror = os.strerror(err)

    def __str__(self) -> str:
        return self.message
