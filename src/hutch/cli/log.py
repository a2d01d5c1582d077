"""runc-compatible --log output (containerd's shim reads it as JSON lines).

runc opens the log file and checks --log-format before running any command (an invalid
format or a file it cannot open is an error, exit 1); ``check_log_options`` does the same.
A record is written by opening the file again in append mode: errors are rare, and the
common path keeps no descriptor that a container's processes could inherit.
"""

from __future__ import annotations

import os
import time

LOG_FORMATS = ("text", "json")
_LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC


def check_log_options(g) -> str | None:
    """What is wrong with --log-format / --log, in runc's words; None when they are usable."""
    if g.log_format not in LOG_FORMATS:
        return f"invalid log-format: {g.log_format}"
    if g.log:
        try:
            os.close(os.open(g.log, _LOG_FLAGS, 0o644))
        except OSError as err:
            return f"open {g.log}: {err.strerror}"
    return None


def format_record(log_format: str, level: str, message: str, stamp: str) -> str:
    """One record as logrus writes it for runc: JSON keys in order level, msg, time."""
    if log_format == "json":
        from hutch.fastjson import dumps
        return dumps({"level": level, "msg": message, "time": stamp})
    escaped = message.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'time="{stamp}" level={level} msg="{escaped}"'


def write_log(g, level: str, message: str) -> bool:
    """Append one record to the --log file; False when it could not be written."""
    if not g.log:
        return False
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
    line = format_record(g.log_format, level, message, stamp) + "\n"
    try:
        fd = os.open(g.log, _LOG_FLAGS, 0o644)
    except OSError:
        return False
    try:
        os.write(fd, line.encode("utf-8", "backslashreplace"))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
